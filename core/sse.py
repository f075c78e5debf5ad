"""A sans-IO Server-Sent Events decoder: bytes in, :class:`ServerSentEvent` out.

``SSEDecoder().feed(chunk)`` returns the events that ``chunk`` completed; ``close()`` ends the
stream. No I/O, no awaiting: the transport's read loop around it is a few lines.

The rules are the WHATWG HTML "event stream interpretation", to the letter:

- A line ends at CR, LF or CRLF (also a CRLF split across two feeds); U+2028, U+2029 and
  U+0085 are ordinary characters. One UTF-8 BOM at the very start of the stream is dropped.
- The stream is UTF-8; invalid bytes become U+FFFD. A character split across feeds is kept whole.
- ``:comment`` is ignored. ``name:value`` sets a field, one space after the colon removed; a
  line without a colon is a field named by the whole line, with an empty value.
- ``data`` appends its value and a LF to the data buffer; ``event`` sets the event type; ``id``
  sets the last event ID unless the value holds a NUL; ``retry`` counts only when its value is
  ASCII digits. Other names (``Data`` too: names are case-sensitive) are ignored.
- A blank line dispatches: with an empty data buffer nothing is produced, otherwise one event
  whose data lost its final LF, whose type is ``"message"`` unless an ``event`` field said
  otherwise, carrying the last event ID in force and this block's ``retry``. Then the data and
  event type are reset; the last event ID persists.
- At the end of the stream an event not ended by a blank line is discarded.

How it is fast: every blank line resets all state but the last event ID, so the decoder works
on *blocks*, the text between blank lines. A chunk is decoded once, its line ends turned into
LF, and split once on ``"\\n\\n"``; the block still open is kept as a list of pieces joined when
it ends, so each byte is scanned a bounded number of times and a 16 MiB event costs linear time.
The commonest block, one ``data: `` line, becomes an event without being split into lines.
"""

from __future__ import annotations

from codecs import utf_8_decode
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["SSEDecoder", "ServerSentEvent"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSentEvent:
    """One dispatched event.

    ``id`` is the last event ID in force when it was dispatched (``None`` while the stream has
    set none); ``retry`` is the reconnection time in milliseconds given in this event's own
    block, if any.
    """

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


# The decoder builds events without the frozen ``__init__``, which pays an
# ``object.__setattr__`` call per field: half the cost of a typical event.
_fields = ServerSentEvent.__dict__  # holds the slots' member descriptors
_new_event = object.__new__
_set_event: Callable[[ServerSentEvent, str], None] = _fields["event"].__set__
_set_data: Callable[[ServerSentEvent, str], None] = _fields["data"].__set__
_set_id: Callable[[ServerSentEvent, str | None], None] = _fields["id"].__set__
_set_retry: Callable[[ServerSentEvent, int | None], None] = _fields["retry"].__set__


class SSEDecoder:
    """Turns the bytes of one event stream, fed in chunks of any size, into events."""

    __slots__ = ("_edge", "_last_id", "_lf", "_pending", "_skip", "_tail")

    _edge: bool  # one of the three below needs handling before the next chunk
    _tail: bytes  # the start of a UTF-8 character the last chunk ended in
    _skip: str  # a character to drop if the next text starts with it: a BOM, or a CRLF's LF
    _lf: bool  # the open block ended with a line end, taken off ``_pending``
    _pending: list[str]  # the open block's text, in pieces
    _last_id: str | None

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._edge = True
        self._tail = b""
        self._skip = "\ufeff"
        self._lf = False
        self._pending = []
        self._last_id = None

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        """Take the next chunk of the stream; return the events it completed."""
        if self._edge:
            text = self._edge_text(data)
        else:
            try:
                text = data.decode()
            except UnicodeDecodeError:  # invalid, or a character continues in the next chunk
                text = self._edge_text(data)
        if "\r" in text:
            if text[-1] == "\r":  # if the next chunk starts with LF, it is this CRLF's
                self._skip = "\n"
                self._edge = True
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if "\n\n" not in text:  # no blank line: the open block goes on
            if text and text[-1] == "\n":  # kept apart, to see a blank line across chunks
                self._lf = self._edge = True
                text = text[:-1]
            if text:
                self._pending.append(text)
            return []
        blocks = text.split("\n\n")
        rest = blocks.pop()
        pending = self._pending
        if pending:
            pending.append(blocks[0])
            blocks[0] = "".join(pending)
            pending.clear()
        if rest:
            if rest[-1] == "\n":
                self._lf = self._edge = True
                rest = rest[:-1]
            pending.append(rest)
        return self._dispatch(blocks)

    def close(self) -> list[ServerSentEvent]:
        """End the stream. An event not ended by a blank line is discarded, so this returns
        ``[]``; the decoder is then ready for a new stream."""
        self._reset()
        return []

    def _edge_text(self, data: bytes) -> str:
        """Decode ``data`` at a chunk edge that needs care (see the attributes)."""
        data = self._tail + data
        text, used = utf_8_decode(data, "replace", False)
        self._tail = data[used:]
        if text:
            if self._skip:
                if text[0] == self._skip:
                    text = text[1:]
                self._skip = ""
            if self._lf:
                text = "\n" + text
                self._lf = False
        self._edge = bool(self._tail or self._skip or self._lf)
        return text

    def _dispatch(self, blocks: list[str]) -> list[ServerSentEvent]:
        """Turn whole blocks (see ``_read_block``) into events."""
        events: list[ServerSentEvent] = []
        last_id = self._last_id
        for block in blocks:
            retry = None
            if block.startswith("data: ") and "\n" not in block:  # the commonest: `data: D`
                event, data = "message", block[6:]
            else:
                first, _, second = block.partition("\n")
                if (
                    first.startswith("event: ")
                    and second.startswith("data: ")
                    and "\n" not in second
                ):
                    event, data = first[7:] or "message", second[6:]  # `event: E`, `data: D`
                else:
                    event, values, last_id, retry = _read_block(block, last_id)
                    if not values:
                        continue
                    data = "\n".join(values)
            ev = _new_event(ServerSentEvent)
            _set_event(ev, event)
            _set_data(ev, data)
            _set_id(ev, last_id)
            _set_retry(ev, retry)
            events.append(ev)
        self._last_id = last_id
        return events


def _read_block(block: str, last_id: str | None) -> tuple[str, list[str], str | None, int | None]:
    """Read the fields of a block: LF-separated lines, none blank but maybe the first (a blank
    line after a dispatch changes nothing). Return its event type, its data values, the last
    event ID and its retry."""
    event = ""
    data: list[str] = []
    retry = None
    for line in block.split("\n"):
        if line.startswith("data:"):
            data.append(line[6:] if line[5:6] == " " else line[5:])
        elif line and line[0] != ":":  # not the leading blank line, not a comment
            name, _, value = line.partition(":")
            if value[:1] == " ":
                value = value[1:]
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
            elif name == "id" and "\0" not in value:
                last_id = value
            elif name == "retry" and value.isdigit() and value.isascii():
                retry = int(value)
    return event or "message", data, last_id, retry
