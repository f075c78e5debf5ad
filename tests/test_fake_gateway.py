"""The fake LLM gateway and its stream builders, checked with a plain aiohttp client."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.fakes.llm_gateway import NO_REPLY_BODY, Error, FakeGateway, Hang, Stream
from tests.fakes.streams import (
    KEEPALIVE,
    OPENAI_DONE,
    anthropic_error_event,
    anthropic_events,
    openai_chunks,
    without_end,
)

OPENAI = "/v1/chat/completions"
ANTHROPIC = "/v1/messages"
BODY = {"model": "fake/model", "stream": True, "messages": [{"role": "user", "content": "hi"}]}
WAIT = 20.0
"""The bound on each wait on a loopback socket or a process: generous for a loaded machine."""
NEVER = 3600.0
"""A shutdown timeout no test waits out: a close that waited for a stalled reply hangs."""


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp client: the fake is checked with no relaybot code in between."""
    async with aiohttp.ClientSession() as session:
        yield session


def post(
    client: aiohttp.ClientSession, gateway: FakeGateway, path: str = OPENAI, **kwargs: Any
) -> Any:  # the request context manager
    return client.post(gateway.url + path, json=BODY, **kwargs)


async def http_chunks(resp: aiohttp.ClientResponse) -> list[bytes]:
    """The body as the server's writes: one item per HTTP chunk (aiohttp ends with a b"")."""
    return [data async for data, _ in resp.content.iter_chunks() if data]


async def read_into(resp: aiohttp.ClientResponse, received: list[bytes]) -> None:
    """Read the body into ``received`` as it arrives (what came before a failure stays)."""
    async for data in resp.content.iter_any():
        received.append(data)


def sse_data(events: list[bytes]) -> list[Any]:
    """The JSON of each event's ``data:`` line (``[DONE]`` kept as a string)."""
    out: list[Any] = []
    for event in events:
        for line in event.decode().splitlines():
            if line.startswith("data: "):
                payload = line.removeprefix("data: ")
                out.append(payload if payload == "[DONE]" else json.loads(payload))
    return out


# --- the gateway ----------------------------------------------------------------------------


async def test_stream_comes_back_byte_exact_one_write_per_event(
    gateway: FakeGateway, client: aiohttp.ClientSession
) -> None:
    writes = [*openai_chunks("Héllo, wörld"), KEEPALIVE]
    gateway.enqueue(Stream(writes))
    async with post(client, gateway) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream"
        assert await http_chunks(resp) == writes


async def test_write_size_one_sends_one_byte_per_write(
    gateway: FakeGateway, client: aiohttp.ClientSession
) -> None:
    writes = openai_chunks("hi")
    gateway.enqueue(Stream(writes, write_size=1))
    async with post(client, gateway) as resp:
        chunks = await http_chunks(resp)
    assert b"".join(chunks) == b"".join(writes)
    assert set(map(len, chunks)) == {1}


async def test_write_size_one_arrives_as_many_reads(
    gateway: FakeGateway, client: aiohttp.ClientSession
) -> None:
    writes = anthropic_events("hi")
    gateway.enqueue(Stream(writes, write_size=1))
    async with post(client, gateway, ANTHROPIC) as resp:
        reads = [data async for data in resp.content.iter_any()]
    assert b"".join(reads) == b"".join(writes)
    assert len(reads) > 10


async def test_reset_cuts_the_body_after_the_writes(
    gateway: FakeGateway, client: aiohttp.ClientSession
) -> None:
    writes = openai_chunks("Hello there")
    gateway.enqueue(Stream.cut(writes, after=3))
    received: list[bytes] = []
    async with post(client, gateway) as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await read_into(resp, received)
    assert b"".join(received) == b"".join(writes[:3])


async def test_error_reply_carries_status_headers_and_json_body(
    gateway: FakeGateway, client: aiohttp.ClientSession
) -> None:
    body = {"error": {"message": "Rate limit reached", "type": "rate_limit_error"}}
    gateway.enqueue(Error(429, body, headers={"Retry-After": "0", "retry-after-ms": "5"}))
    async with post(client, gateway) as resp:
        assert resp.status == 429
        assert resp.headers["Retry-After"] == "0"
        assert resp.headers["retry-after-ms"] == "5"
        assert resp.headers["Content-Type"] == "application/json"
        assert await resp.json() == body


async def test_error_shapes_and_raw_bodies(
    gateway: FakeGateway, client: aiohttp.ClientSession
) -> None:
    gateway.enqueue(
        Error.openai(401, "Incorrect API key provided: sk-abc***xyz", type="invalid_request_error"),
        Error.anthropic(529, "overloaded_error", "Overloaded"),
        Error(502, b"<html>Bad Gateway</html>", headers={"Content-Type": "text/html"}),
    )
    async with post(client, gateway) as resp:
        assert resp.status == 401
        assert (await resp.json())["error"]["message"].startswith("Incorrect API key")
    async with post(client, gateway, ANTHROPIC) as resp:
        assert resp.status == 529
        assert await resp.json() == {
            "type": "error",
            "error": {"type": "overloaded_error", "message": "Overloaded"},
        }
    async with post(client, gateway) as resp:
        assert (resp.status, resp.content_type) == (502, "text/html")
        assert await resp.read() == b"<html>Bad Gateway</html>"


async def test_requests_are_recorded(gateway: FakeGateway, client: aiohttp.ClientSession) -> None:
    gateway.enqueue(Stream.ok(openai_chunks("a")), Stream.ok(anthropic_events("b")))
    async with post(client, gateway, headers={"Authorization": "Bearer sk-test"}) as resp:
        await resp.read()
    async with post(client, gateway, "/anthropic/v1/messages", headers={"X-Api-Key": "k"}) as resp:
        await resp.read()
    first, second = gateway.requests
    assert (first.method, first.path, first.json) == ("POST", OPENAI, BODY)
    assert first.headers["authorization"] == "Bearer sk-test"
    assert first.headers["content-type"] == "application/json"
    assert (second.path, second.headers["x-api-key"]) == ("/anthropic/v1/messages", "k")
    assert gateway.pending == 0


async def test_routes_any_path_ending_in_an_endpoint(
    gateway: FakeGateway, client: aiohttp.ClientSession
) -> None:
    paths = ["/chat/completions", "/openai/v1/chat/completions", "/v1/messages"]
    gateway.enqueue(*(Error(418, {"n": n}) for n in range(len(paths))))
    statuses = []
    for path in [*paths, "/v1/models"]:
        async with post(client, gateway, path) as resp:
            statuses.append(resp.status)
    assert statuses == [418, 418, 418, 404]


async def test_empty_queue_answers_500(gateway: FakeGateway, client: aiohttp.ClientSession) -> None:
    async with post(client, gateway) as resp:
        assert resp.status == 500
        assert await resp.read() == NO_REPLY_BODY


async def closes_without_waiting(gateway: FakeGateway) -> None:
    """``gateway.close()`` returns though its shutdown timeout is :data:`NEVER`: it cut the stalled
    or hanging reply instead of waiting for it."""
    try:
        async with asyncio.timeout(WAIT):
            await gateway.close()
    except TimeoutError:
        raise AssertionError("close() waited for the stalled reply") from None


async def test_stall_times_out_the_reader_and_close_is_prompt(
    client: aiohttp.ClientSession,
) -> None:
    gateway = FakeGateway(shutdown_timeout=NEVER)
    await gateway.start()
    writes = openai_chunks("Hello")
    gateway.enqueue(Stream.stalled(writes, after=2))
    timeout = aiohttp.ClientTimeout(sock_read=0.05)
    async with post(client, gateway, timeout=timeout) as resp:
        assert await resp.content.readexactly(len(writes[0] + writes[1])) == b"".join(writes[:2])
        with pytest.raises(asyncio.TimeoutError):
            await resp.content.read()
    await closes_without_waiting(gateway)


async def test_hang_never_sends_headers_and_close_is_prompt(
    client: aiohttp.ClientSession,
) -> None:
    gateway = FakeGateway(shutdown_timeout=NEVER)
    await gateway.start()
    gateway.enqueue(Hang())
    with pytest.raises(asyncio.TimeoutError):
        async with post(client, gateway, timeout=aiohttp.ClientTimeout(sock_read=0.05)):
            pass
    await closes_without_waiting(gateway)


async def test_closing_cuts_a_stalled_stream(client: aiohttp.ClientSession) -> None:
    gateway = FakeGateway()
    await gateway.start()
    writes = openai_chunks("Hello")
    gateway.enqueue(Stream.stalled(writes, after=1))
    async with post(client, gateway) as resp:
        assert await resp.content.readexactly(len(writes[0])) == writes[0]
        rest = asyncio.create_task(resp.content.read(), name="read the stalled rest")
        await gateway.close()
        with pytest.raises(aiohttp.ClientPayloadError):
            await rest


async def test_released_stall_ends_the_body(
    gateway: FakeGateway, client: aiohttp.ClientSession
) -> None:
    writes = anthropic_events("Hi")
    gateway.enqueue(Stream(writes, then="stall"))
    async with post(client, gateway, ANTHROPIC) as resp:
        head = await resp.content.readexactly(len(b"".join(writes)))
        gateway.release_stalls()
        assert head + await resp.read() == b"".join(writes)


async def test_stream_status_headers_and_delay(
    gateway: FakeGateway, client: aiohttp.ClientSession
) -> None:
    writes = [KEEPALIVE, anthropic_error_event()]
    gateway.enqueue(Stream(writes, headers={"X-Request-Id": "r1"}, delay_between=0.01))
    async with post(client, gateway, ANTHROPIC) as resp:
        assert resp.headers["X-Request-Id"] == "r1"
        assert await http_chunks(resp) == writes


async def test_runs_as_a_process_for_benchmarks() -> None:
    proc = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "tests.fakes.llm_gateway", "--port", "0", "--chunks", "50"],
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), WAIT)
        assert line.startswith(b"LISTENING http://127.0.0.1:")
        url = line.decode().split()[1]
        async with aiohttp.ClientSession() as client:
            for _ in range(2):
                async with client.post(url + OPENAI, json=BODY) as resp:
                    body = await resp.read()
                assert body.endswith(OPENAI_DONE)
                assert body.count(b'"content":"') == 50 + 1  # the role chunk's "" too
    finally:
        proc.kill()
        await proc.wait()


# --- the stream builders --------------------------------------------------------------------


def test_openai_chunks_reassemble() -> None:
    chunks = openai_chunks(
        "Hello",
        reasoning="think",
        tool_calls=[("call_1", "get_weather", '{"city":"Paris"}'), ("call_2", "now", "{}")],
        pieces=2,
    )
    *bodies, done = sse_data(chunks)
    assert done == "[DONE]"
    assert all(b["object"] == "chat.completion.chunk" for b in bodies)
    assert bodies[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    deltas = [c["delta"] for b in bodies for c in b["choices"]]
    assert "".join(d.get("content") or "" for d in deltas) == "Hello"
    assert "".join(d.get("reasoning_content") or "" for d in deltas) == "think"
    calls = [call for d in deltas for call in d.get("tool_calls", [])]
    starts = [c for c in calls if "id" in c]
    assert [(c["index"], c["id"], c["function"]["name"]) for c in starts] == [
        (0, "call_1", "get_weather"),
        (1, "call_2", "now"),
    ]
    assert "".join(c["function"]["arguments"] for c in calls if c["index"] == 0) == (
        '{"city":"Paris"}'
    )
    assert bodies[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert bodies[-1]["choices"] == []
    assert bodies[-1]["usage"] == {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    assert without_end(chunks) == chunks[:-1]


def test_openai_chunks_without_usage_end_with_stop() -> None:
    *bodies, _ = sse_data(openai_chunks("x", usage=None))
    assert bodies[-1]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in b for b in bodies)


def test_anthropic_events_reassemble() -> None:
    events = anthropic_events(
        "Hi", thinking="hmm", signature="s1", tool_uses=[("toolu_1", "get_weather", "{}")]
    )
    assert events[0].startswith(b"event: message_start\ndata: {")
    bodies = sse_data(events)
    types = [b["type"] for b in bodies]
    assert types[0] == "message_start"
    assert types[-2:] == ["message_delta", "message_stop"]
    assert types.count("content_block_start") == types.count("content_block_stop") == 3
    assert "ping" in types
    deltas = [b["delta"] for b in bodies if b["type"] == "content_block_delta"]
    assert "".join(d.get("thinking", "") for d in deltas) == "hmm"
    assert [d["signature"] for d in deltas if d["type"] == "signature_delta"] == ["s1"]
    assert "".join(d.get("text", "") for d in deltas) == "Hi"
    assert "".join(d.get("partial_json", "") for d in deltas) == "{}"
    assert bodies[-2]["delta"]["stop_reason"] == "tool_use"
    assert bodies[-2]["usage"] == {"output_tokens": 5}


def test_anthropic_events_without_event_lines_or_end() -> None:
    events = anthropic_events("Hi", event_lines=False)
    assert not any(e.startswith(b"event:") for e in events)
    assert without_end(events) == events[:-1]
    assert anthropic_error_event().startswith(b"event: error\ndata: ")
