"""The stream path's speed-ups change nothing a caller can see.

- ``payloads.loads`` (``pydantic_core.from_json``, then ``json.loads`` for what it rejects)
  returns exactly what ``json.loads`` returns, or fails where it fails.
- ``payloads.text_delta`` builds the same ``TextDelta`` as its ``__init__``.
- The OpenAI decoder's shortcut for a text-only delta leaves the order of mixed deltas alone.
- ``LLMClient``'s one timer for the total deadline behaves like ``asyncio.timeout_at`` per
  read: the deadline ends a read, a caller's own timeout or cancellation is the caller's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.client import LLMClient, Timeouts
from core.errors import DeadlineExceeded
from core.events import ReasoningDelta, StreamEvent, TextDelta
from core.messages import ModelRequest, UserMessage
from core.protocols import OpenAIProtocol
from core.protocols.openai import OpenAIStreamDecoder
from core.protocols.payloads import loads, text_delta
from core.sse import ServerSentEvent
from tests.fakes.llm_gateway import FakeGateway, Stream
from tests.fakes.streams import openai_chunks
from tests.support.waiting import until

# --- the JSON parser ------------------------------------------------------------------------


def stdlib(text: str) -> tuple[str, Any]:
    try:
        return "ok", json.loads(text)
    except (ValueError, RecursionError):
        return "error", None


def ours(text: str) -> tuple[str, Any]:
    try:
        return "ok", loads(text)
    except (ValueError, RecursionError):
        return "error", None


def same(a: Any, b: Any) -> bool:
    """Equal, with the same types and key order; NaN equals NaN and -0.0 is not 0.0."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and str(a) == str(b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[key], b[key]) for key in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(same, a, b))
    return bool(a == b)


def assert_like_stdlib(text: str) -> None:
    (kind_a, a), (kind_b, b) = stdlib(text), ours(text)
    assert kind_a == kind_b, text
    assert same(a, b), text


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(json_values, st.booleans())
def test_loads_reads_json_as_the_standard_library_does(value: Any, ascii_only: bool) -> None:
    assert_like_stdlib(json.dumps(value, ensure_ascii=ascii_only))


@settings(max_examples=300, deadline=None)
@given(json_values, st.data())
def test_loads_fails_where_the_standard_library_fails(value: Any, data: st.DataObject) -> None:
    text = json.dumps(value)
    at = data.draw(st.integers(min_value=0, max_value=len(text)))
    junk = data.draw(st.sampled_from(['"', "{", "}", ",", ":", "\\", "x", "", " ", "0", "-"]))
    cut = data.draw(st.integers(min_value=0, max_value=1))
    assert_like_stdlib(text[:at] + junk + text[at + cut :])


@pytest.mark.parametrize(
    "text",
    [
        '{"a":"\\ud83d"}',  # a lone surrogate: pydantic_core rejects it, json accepts it
        '{"a":"\\ud83d\\ude00"}',
        '{"a":123456789012345678901234567890}',
        '{"a":NaN,"b":Infinity,"c":-Infinity}',
        '{"a":1e400}',
        '{"a":1,"a":2}',
        "[" * 5000 + "]" * 5000,
        '\ufeff{"a":1}',
        '{"a":1} x',
        "",
        " ",
        '{"a":"\x01"}',
    ],
)
def test_loads_edge_cases(text: str) -> None:
    assert_like_stdlib(text)


# --- events built without __init__ ----------------------------------------------------------


def test_text_delta_is_a_text_delta() -> None:
    assert [field.name for field in dataclasses.fields(TextDelta)] == ["text"]
    event = text_delta("déjà")
    assert event == TextDelta(text="déjà")
    assert type(event) is TextDelta
    assert hash(event) == hash(TextDelta(text="déjà"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.text = "x"  # type: ignore[misc]


def decode(*deltas: dict[str, Any]) -> list[StreamEvent]:
    decoder = OpenAIStreamDecoder()
    out: list[StreamEvent] = []
    for delta in deltas:
        chunk = {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        out += decoder.feed(ServerSentEvent(data=json.dumps(chunk)))
    return out


def test_a_delta_with_text_and_reasoning_gives_the_reasoning_first() -> None:
    assert decode(
        {"content": "a"},
        {"reasoning_content": "r", "content": "b"},
        {"content": "c", "role": "assistant"},
        {"content": "d", "refusal": "e"},
    ) == [
        TextDelta(text="a"),
        ReasoningDelta(text="r"),
        TextDelta(text="b"),
        TextDelta(text="c"),
        TextDelta(text="d"),
        TextDelta(text="e"),
    ]


# --- the total deadline over the reads ------------------------------------------------------

REQUEST = ModelRequest(model="fake/model", messages=(UserMessage(text="Hi"),), max_tokens=64)
DEADLINE = 1.0
"""The total deadline these tests wait out: room for opening the stream and its first reads
on a loaded machine, so that it ends a read, never the opening."""


def client(gateway: FakeGateway, http: httpx2.AsyncClient, total: float) -> LLMClient:
    timeouts = Timeouts(connect=10, read_idle=5, total=total)
    return LLMClient(
        http=http,
        protocol=OpenAIProtocol(),
        base_url=gateway.url + "/v1",
        api_key="k",
        timeouts=timeouts,
    )


async def read_all(llm: LLMClient, into: list[StreamEvent] | None = None) -> list[StreamEvent]:
    """Every event of the stream, each added to ``into`` as it comes (kept if it fails)."""
    read = [] if into is None else into
    async with llm.stream(REQUEST) as events:
        async for event in events:
            read.append(event)
    return read


async def drain(events: AsyncIterator[StreamEvent], *, in_tasks: bool = False) -> None:
    """Read to the end; with ``in_tasks``, each read through ``asyncio.wait_for`` (which runs
    it in a task of its own)."""
    while True:
        try:
            if in_tasks:
                await asyncio.wait_for(anext(events), timeout=5)
            else:
                await anext(events)
        except StopAsyncIteration:
            return


def cancelling() -> int:
    task = asyncio.current_task()
    assert task is not None
    return task.cancelling()


async def test_the_deadline_ends_a_stalled_read(
    gateway: FakeGateway, http: httpx2.AsyncClient
) -> None:
    gateway.enqueue(Stream.stalled(openai_chunks("hello"), after=2))
    read: list[StreamEvent] = []
    with pytest.raises(DeadlineExceeded):  # not StreamStalled: the read-idle limit is 5 s
        await read_all(client(gateway, http, total=DEADLINE), into=read)
    assert read == [TextDelta(text="hell")], "the deadline ended the read after these"
    assert cancelling() == 0


async def test_a_deadline_passed_between_reads_ends_the_next_read(
    gateway: FakeGateway, http: httpx2.AsyncClient
) -> None:
    gateway.enqueue(Stream(openai_chunks("hello world"), delay_between=0.02))
    async with client(gateway, http, total=DEADLINE).stream(REQUEST) as events:
        await anext(events)
        await asyncio.sleep(DEADLINE)  # a slow consumer: the deadline passes outside a read
        with pytest.raises(DeadlineExceeded):
            await drain(events)


async def test_the_callers_own_timeout_stays_the_callers(
    gateway: FakeGateway, http: httpx2.AsyncClient
) -> None:
    gateway.enqueue(Stream.stalled(openai_chunks("hello"), after=2))
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.1):
            await read_all(client(gateway, http, total=5))
    assert cancelling() == 0


async def test_cancelling_the_reader_cancels_it(
    gateway: FakeGateway, http: httpx2.AsyncClient
) -> None:
    gateway.enqueue(Stream.stalled(openai_chunks("hello"), after=2))
    read: list[StreamEvent] = []
    reader = asyncio.create_task(read_all(client(gateway, http, total=5), into=read))
    await until(lambda: read, "the first event")  # then the reply stalls: the reader waits
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader


async def test_reads_from_different_tasks_keep_the_deadline(
    gateway: FakeGateway, http: httpx2.AsyncClient
) -> None:
    """``asyncio.wait_for(anext(events))`` runs each read in a task of its own."""
    gateway.enqueue(Stream.stalled(openai_chunks("hello"), after=2))
    async with client(gateway, http, total=DEADLINE).stream(REQUEST) as events:
        with pytest.raises(DeadlineExceeded):
            await drain(events, in_tasks=True)
