"""The SSE decoder: literal stream bytes in, whole event lists out.

Each rule of the WHATWG "event stream interpretation" has its test. Every stream is checked
fed whole, fed a byte at a time, and split at every index into two feeds (``assert_events``).
"""

from __future__ import annotations

import itertools
import sys
import tracemalloc
from types import FrameType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import sse
from core.sse import ServerSentEvent, SSEDecoder

Event = ServerSentEvent


def decode(*chunks: bytes) -> list[ServerSentEvent]:
    """Every event of a stream fed in these chunks, the decoder closed at the end."""
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    return events + decoder.close()


def assert_events(stream: bytes, expected: list[ServerSentEvent]) -> None:
    """The stream gives ``expected`` fed whole, a byte at a time and split anywhere in two."""
    assert decode(stream) == expected
    assert decode(*(stream[i : i + 1] for i in range(len(stream)))) == expected
    for i in range(len(stream) + 1):
        assert decode(stream[:i], stream[i:]) == expected, f"split at {i}"


def test_feed_returns_the_events_each_chunk_completes() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: hel") == []
    assert decoder.feed(b"lo\n") == []
    assert decoder.feed(b"\ndata: again\n\nda") == [Event(data="hello"), Event(data="again")]
    assert decoder.feed(b"ta: x\n\n") == [Event(data="x")]
    assert decoder.close() == []


# --- Lines ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stream",
    [
        pytest.param(b"data: a\ndata: b\n\n", id="LF"),
        pytest.param(b"data: a\rdata: b\r\r", id="CR"),
        pytest.param(b"data: a\r\ndata: b\r\n\r\n", id="CRLF"),
        pytest.param(b"data: a\rdata: b\n\r\n", id="mixed"),
        pytest.param(b"data: a\r\ndata: b\r\n\n", id="mixed-CRLF-LF"),
    ],
)
def test_line_ends(stream: bytes) -> None:
    assert_events(stream, [Event(data="a\nb")])


def test_crlf_split_across_feeds_is_one_line_end() -> None:
    # Two line ends there would make a blank line and dispatch "a" alone.
    assert decode(b"data: a\r", b"\ndata: b\r\n\r\n") == [Event(data="a\nb")]
    assert decode(b"data: a\r", b"", b"\n", b"data: b\r", b"\n\r", b"\n") == [Event(data="a\nb")]


@pytest.mark.parametrize(
    "char",
    ["\u2028", "\u2029", "\u0085", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e"],
    ids=["U+2028", "U+2029", "U+0085", "VT", "FF", "FS", "GS", "RS"],
)
def test_other_line_separators_stay_in_the_data(char: str) -> None:
    assert_events(f"data: a{char}b\n\n".encode(), [Event(data=f"a{char}b")])


# --- Byte order mark -----------------------------------------------------------------------


def test_bom_at_the_start_is_dropped() -> None:
    assert_events(b"\xef\xbb\xbfdata: x\n\n", [Event(data="x")])
    assert decode(b"\xef", b"\xbb", b"\xbf", b"data: x\n\n") == [Event(data="x")]


def test_only_one_bom_is_dropped() -> None:
    # The second one starts the field name "\ufeffdata", which is no field.
    assert_events(b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\n", [])


def test_bom_not_at_the_start_is_kept() -> None:
    assert_events(b"data: \xef\xbb\xbfx\n\n", [Event(data="\ufeffx")])
    assert_events(b"\n\xef\xbb\xbfdata: x\n\n", [])


# --- Fields --------------------------------------------------------------------------------


def test_comment_lines_are_ignored() -> None:
    assert_events(b": hello\ndata: x\n:\n:data: y\n\n", [Event(data="x")])
    assert_events(b": keep-alive\n\n", [])


@pytest.mark.parametrize(
    ("stream", "data"),
    [
        (b"data:x\n\n", "x"),
        (b"data: x\n\n", "x"),
        (b"data:  x\n\n", " x"),
        (b"data: x \n\n", "x "),
        (b"data:\tx\n\n", "\tx"),
    ],
)
def test_one_space_after_the_colon_is_removed(stream: bytes, data: str) -> None:
    assert_events(stream, [Event(data=data)])


def test_one_space_is_removed_from_every_field() -> None:
    assert_events(b"event:  up\ndata: x\n\n", [Event(event=" up", data="x")])
    assert_events(b"id:  7\ndata: x\n\n", [Event(data="x", id=" 7")])


def test_value_keeps_its_later_colons() -> None:
    assert_events(b"data: a: b:c\n\n", [Event(data="a: b:c")])


def test_line_without_colon_is_a_field_with_empty_value() -> None:
    assert_events(b"data\n\n", [Event(data="")])
    assert_events(b"data\ndata\n\n", [Event(data="\n")])
    assert_events(b"event: x\nevent\ndata: y\n\n", [Event(data="y")])


def test_data_lines_are_joined_with_lf() -> None:
    assert_events(b"data: a\ndata: b\ndata: c\n\n", [Event(data="a\nb\nc")])


def test_only_one_trailing_lf_is_stripped() -> None:
    assert_events(b"data:\n\n", [Event(data="")])
    assert_events(b"data: a\ndata:\n\n", [Event(data="a\n")])
    assert_events(b"data:\ndata:\ndata:\n\n", [Event(data="\n\n")])


def test_unknown_and_differently_cased_fields_are_ignored() -> None:
    stream = b"Data: x\nDATA: y\nEvent: e\nevent : f\nfoo: bar\nID: 1\nRetry: 5\ndata: z\n\n"
    assert_events(stream, [Event(data="z")])


# --- Dispatch ------------------------------------------------------------------------------


def test_blank_lines_without_data_dispatch_nothing() -> None:
    assert_events(b"\n\n\r\n\r\r\n", [])
    assert_events(b"\n\ndata: a\n\n\n\n\ndata: b\n\n\n", [Event(data="a"), Event(data="b")])


def test_event_only_block_dispatches_nothing() -> None:
    assert_events(b"event: ping\n\n", [])
    assert_events(b"event: ping\n\ndata: x\n\n", [Event(data="x")])


def test_event_type() -> None:
    assert_events(b"event: delta\ndata: x\n\n", [Event(event="delta", data="x")])
    assert_events(b"data: x\nevent: delta\n\n", [Event(event="delta", data="x")])
    assert_events(b"event: a\nevent: b\ndata: x\n\n", [Event(event="b", data="x")])


def test_empty_event_type_is_message() -> None:
    assert_events(b"event: a\nevent:\ndata: x\n\n", [Event(data="x")])
    assert_events(b"event: \ndata: x\n\n", [Event(data="x")])


def test_event_type_is_reset_after_dispatch() -> None:
    stream = b"event: a\ndata: 1\n\ndata: 2\n\n"
    assert_events(stream, [Event(event="a", data="1"), Event(data="2")])


def test_id_persists_across_events() -> None:
    stream = b"data: a\n\nid: 1\ndata: b\n\ndata: c\n\nid: 2\n\ndata: d\n\n"
    expected = [
        Event(data="a"),
        Event(data="b", id="1"),
        Event(data="c", id="1"),
        Event(data="d", id="2"),
    ]
    assert_events(stream, expected)


def test_id_with_nul_is_ignored() -> None:
    stream = b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n"
    assert_events(stream, [Event(data="a", id="1"), Event(data="b", id="1")])


def test_empty_id_resets_it_to_empty() -> None:
    stream = b"id: 1\ndata: a\n\nid\ndata: b\n\nid: 2\n\nid:\ndata: c\n\n"
    expected = [Event(data="a", id="1"), Event(data="b", id=""), Event(data="c", id="")]
    assert_events(stream, expected)


@pytest.mark.parametrize(
    ("line", "retry"),
    [
        (b"retry: 10", 10),
        (b"retry:10", 10),
        (b"retry: 0", 0),
        (b"retry: 007", 7),
        (b"retry: 5", 5),
        (b"retry:  5", None),
        (b"retry: 5 ", None),
        (b"retry: 1a", None),
        (b"retry: -1", None),
        (b"retry: +1", None),
        (b"retry: 1.5", None),
        (b"retry: 1_000", None),
        (b"retry:", None),
        (b"retry", None),
        ("retry: \u0663".encode(), None),  # ARABIC-INDIC DIGIT THREE
        ("retry: \u00b2".encode(), None),  # SUPERSCRIPT TWO
    ],
)
def test_retry_is_only_ascii_digits(line: bytes, retry: int | None) -> None:
    assert_events(line + b"\ndata: x\n\n", [Event(data="x", retry=retry)])


def test_retry_belongs_to_its_block() -> None:
    stream = b"retry: 5\ndata: a\n\ndata: b\n\nretry: 7\n\ndata: c\n\n"
    expected = [Event(data="a", retry=5), Event(data="b"), Event(data="c")]
    assert_events(stream, expected)


def test_all_fields_together() -> None:
    stream = b"id: 42\r\nevent: update\r\nretry: 3000\r\n: note\r\ndata: 1\r\ndata: 2\r\n\r\n"
    expected = [Event(event="update", data="1\n2", id="42", retry=3000)]
    assert_events(stream, expected)


# --- End of stream -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stream",
    [b"data: a\n\ndata: b\n", b"data: a\n\ndata: b", b"data: a\n\nevent: x\nid: 9\nda"],
)
def test_unterminated_last_event_is_discarded(stream: bytes) -> None:
    assert_events(stream, [Event(data="a")])


def test_close_returns_nothing_and_starts_a_new_stream() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"id: 1\ndata: a\n\ndata: b\n") == [Event(data="a", id="1")]
    assert decoder.close() == []
    assert decoder.feed(b"\xef\xbb\xbfdata: c\n\n") == [Event(data="c")]


# --- UTF-8 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stream", "data"),
    [
        (b"data: a\xffb\n\n", "a\ufffdb"),
        (b"data: \xe2\x82\n\n", "\ufffd"),  # a character cut short by the line end
        (b"data: \xc0\xaf\n\n", "\ufffd\ufffd"),  # an overlong "/"
        (b"data: \xed\xa0\x80\n\n", "\ufffd\ufffd\ufffd"),  # a surrogate
        (b"da\xffta: x\n\n", None),  # no field "data" then
    ],
)
def test_invalid_utf8_becomes_replacement_characters(stream: bytes, data: str | None) -> None:
    assert_events(stream, [] if data is None else [Event(data=data)])


def test_multibyte_characters_split_across_feeds_stay_whole() -> None:
    assert decode(b"data: \xe2\x82", b"\xac\n\n") == [Event(data="\u20ac")]
    assert_events("event: é\ndata: 😀€ü\n\n".encode(), [Event(event="é", data="😀€ü")])


# --- Realistic streams ---------------------------------------------------------------------


def test_openai_stream() -> None:
    stream = (
        b'data: {"choices":[{"delta":{"content":"hel"}}]}\n\n'
        b": keep-alive\n\n"
        b'data: {"choices":[{"delta":{"content":"lo"}}]}\n\n'
        b"data: [DONE]\n\n"
    )
    expected = [
        Event(data='{"choices":[{"delta":{"content":"hel"}}]}'),
        Event(data='{"choices":[{"delta":{"content":"lo"}}]}'),
        Event(data="[DONE]"),
    ]
    assert_events(stream, expected)


def test_anthropic_stream() -> None:
    stream = (
        b'event: ping\ndata: {"type": "ping"}\n\n'
        b'event: content_block_delta\ndata: {"delta":{"text":"hi"}}\n\n'
        b"event: \ndata: {}\n\n"
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    expected = [
        Event(event="ping", data='{"type": "ping"}'),
        Event(event="content_block_delta", data='{"delta":{"text":"hi"}}'),
        Event(data="{}"),
        Event(event="message_stop", data='{"type":"message_stop"}'),
    ]
    assert_events(stream, expected)


@pytest.mark.parametrize(
    ("stream", "event"),
    [
        (b"data: a\nretry: 1\n\n", Event(data="a", retry=1)),
        (b"data: a\nid: 1\n\n", Event(data="a", id="1")),
        (b"data: a\ndata: b\n\n", Event(data="a\nb")),
        (b"data: a\nevent: e\n\n", Event(event="e", data="a")),
        (b"event: e\ndata: a\ndata: b\n\n", Event(event="e", data="a\nb")),
        (b"event: e\ndata: a\nid: 3\n\n", Event(event="e", data="a", id="3")),
        (b"event: e\ndata:a\n\n", Event(event="e", data="a")),
        (b"event:e\ndata: a\n\n", Event(event="e", data="a")),
        (b"event: e\ndata\n\n", Event(event="e", data="")),
        (b"event: e\n:c\ndata: a\n\n", Event(event="e", data="a")),
        (b"id: 1\nevent: e\ndata: a\n\n", Event(event="e", data="a", id="1")),
    ],
)
def test_blocks_near_the_common_shapes(stream: bytes, event: ServerSentEvent) -> None:
    assert_events(stream, [event])


# --- Any stream ----------------------------------------------------------------------------

_names = st.sampled_from(["data", "event", "id", "retry", "Data", "", "x"])
_values = st.text(st.sampled_from(list(" :ab0179\x00é€😀\u2028\u0085\ufeff\u0663")), max_size=6)
_ends = st.sampled_from([b"\n", b"\r", b"\r\n"])


@st.composite
def _lines(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["blank", "comment", "name", "bytes", "field", "field"]))
    if kind == "blank":
        body = b""
    elif kind == "comment":
        body = b":" + draw(_values).encode()
    elif kind == "name":
        body = draw(_names).encode()
    elif kind == "bytes":  # anything but a line end, invalid UTF-8 too
        body = draw(st.binary(max_size=5)).replace(b"\n", b"").replace(b"\r", b"")
    else:
        body = draw(_names).encode() + b":" + draw(_values).encode()
    return body + draw(_ends)


@st.composite
def _streams(draw: st.DrawFn) -> bytes:
    bom = b"\xef\xbb\xbf" if draw(st.booleans()) else b""
    unterminated = draw(st.binary(max_size=4))
    return bom + b"".join(draw(st.lists(_lines(), max_size=16))) + unterminated


def _reference(stream: bytes) -> list[ServerSentEvent]:
    """The spec's algorithm, line by line, written for clarity and not speed."""
    stream = stream.removeprefix(b"\xef\xbb\xbf")
    lines = stream.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")[:-1]
    events = []
    data, event, last_id, retry = "", "", None, None
    for line in (raw.decode("utf-8", "replace") for raw in lines):
        name, colon, value = line.partition(":")
        value = value.removeprefix(" ") if colon else ""
        if not line:
            if data:
                type_ = event or "message"
                events.append(Event(event=type_, data=data[:-1], id=last_id, retry=retry))
            data, event, retry = "", "", None
        elif name == "data":
            data += value + "\n"
        elif name == "event":
            event = value
        elif name == "id" and "\0" not in value:
            last_id = value
        elif name == "retry" and value and all(c in "0123456789" for c in value):
            retry = int(value)
    return events


@settings(max_examples=300, deadline=None)
@given(_streams(), st.lists(st.integers(min_value=0, max_value=200), max_size=6))
def test_any_stream_split_anywhere_gives_the_same_events(stream: bytes, cuts: list[int]) -> None:
    bounds = [0, *sorted(min(cut, len(stream)) for cut in cuts), len(stream)]
    pieces = [stream[start:end] for start, end in itertools.pairwise(bounds)]
    whole = decode(stream)
    assert decode(*pieces) == whole
    assert whole == _reference(stream)


# --- Work ----------------------------------------------------------------------------------


def _work(stream: bytes) -> tuple[int, int]:
    """What decoding ``stream`` fed in 1 KiB pieces costs, counted rather than timed, so the
    same on every run however loaded the machine: the length of every ``str`` or ``bytes`` a
    method in ``core/sse.py`` is called on (rescanning the open event grows it), and each
    feed's peak allocation, summed (copying or joining the open event grows that)."""
    pieces = [stream[i : i + 1024] for i in range(0, len(stream), 1024)]
    decoder = SSEDecoder()
    events: list[ServerSentEvent] = []
    scanned = allocated = 0

    def count(frame: FrameType, event: str, arg: object) -> None:
        nonlocal scanned
        receiver = getattr(arg, "__self__", None)
        if event == "c_call" and frame.f_code.co_filename == sse.__file__:
            scanned += len(receiver) if isinstance(receiver, str | bytes) else 0

    tracing = tracemalloc.is_tracing()
    tracemalloc.start()
    try:
        for piece in pieces:
            tracemalloc.reset_peak()
            before, _ = tracemalloc.get_traced_memory()
            sys.setprofile(count)
            try:
                completed = decoder.feed(piece)
            finally:
                sys.setprofile(None)
            allocated += tracemalloc.get_traced_memory()[1] - before
            events += completed
    finally:
        if not tracing:
            tracemalloc.stop()
    assert len(events) == 1
    return scanned, allocated


@pytest.mark.parametrize(
    "line",
    [pytest.param(b"x", id="one-long-line"), pytest.param(b"x" * 60 + b"\ndata: ", id="lines")],
)
def test_work_is_linear_in_the_size_of_one_event(line: bytes) -> None:
    """A 4x bigger event fed in 1 KiB pieces costs 4x the work (exactly 4.0 today), not 16x:
    no piece rescans or copies the event still open."""

    def work(size: int) -> tuple[int, int]:
        return _work(b"data: " + line * (size // len(line)) + b"\n\n")

    (scanned, allocated), (scanned_4x, allocated_4x) = work(1 << 18), work(1 << 20)
    assert scanned_4x < 5 * scanned, "each piece rescans the open event"
    assert allocated_4x < 5 * allocated, "each piece copies the open event"
