"""The offline model's loopback server, read by relaybot's own client in both protocols.

The pure model (no server) is tested in ``test_offline_model.py``.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest

from bots.offline import INTRO, MODEL_NAME, OfflineLLMServer, run_offline_llm
from core.assembly import MessageAssembler
from core.client import LLMClient, Timeouts
from core.errors import BadRequest, StreamInterrupted
from core.messages import (
    AssistantMessage,
    Message,
    ModelRequest,
    ToolCall,
    ToolResult,
    ToolSpec,
    UserMessage,
)
from core.protocols import WireProtocol, protocol_for
from core.protocols.base import StreamDecoder
from core.retry import RetryPolicy, retrying_stream
from tests.support.waiting import until
from tests.support.weather import PARIS

PROTOCOLS = ["openai", "anthropic"]
FAST = Timeouts(connect=10.0, read_idle=10.0, total=30.0)  # generous: loopback under load
NO_RETRY = RetryPolicy(max_attempts=1)
WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather in a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)
UNREACHABLE = "the weather service is unreachable right now"  # as core.tools words it


@pytest.fixture
async def server() -> AsyncIterator[OfflineLLMServer]:
    async with OfflineLLMServer(pace=0) as running:
        yield running


@pytest.fixture(scope="module")
def tls() -> ssl.SSLContext:
    """Made once: building the default context is most of the cost of a new client."""
    return ssl.create_default_context()


@pytest.fixture
async def http(tls: ssl.SSLContext) -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(verify=tls) as client:
        yield client


def client_for(
    server: OfflineLLMServer, http: httpx2.AsyncClient, protocol: str | WireProtocol
) -> LLMClient:
    wire = protocol_for(protocol) if isinstance(protocol, str) else protocol
    base = server.openai_base_url if wire.name == "openai" else server.anthropic_base_url
    return LLMClient(http=http, protocol=wire, base_url=base, api_key="unused", timeouts=FAST)


async def ask(
    server: OfflineLLMServer,
    http: httpx2.AsyncClient,
    protocol: str | WireProtocol,
    *messages: Message,
    tools: tuple[ToolSpec, ...] = (),
    max_tokens: int = 1024,
) -> AssistantMessage:
    request = ModelRequest(
        model=MODEL_NAME, messages=messages, tools=tools, max_tokens=max_tokens, system="Be nice."
    )
    assembler = MessageAssembler()
    async with retrying_stream(client_for(server, http, protocol), request, NO_RETRY) as events:
        async for event in events:
            assembler.feed(event)
    return assembler.message()


def user(text: str) -> UserMessage:
    return UserMessage(text=text)


def weather_history(content: str, *, is_error: bool = False) -> tuple[Message, ...]:
    """A first round that asked get_weather for Paris, and the tool's result."""
    call = ToolCall(id="call_1", name="get_weather", arguments={"city": "Paris"})
    return (
        user("What's the weather like in Paris?"),
        AssistantMessage(text="Let me check the weather in Paris.", tool_calls=(call,)),
        ToolResult(call_id="call_1", name="get_weather", content=content, is_error=is_error),
    )


# --- Through relaybot's own client, in both protocols ---------------------------------------


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_greeting_says_it_is_the_offline_model(
    server: OfflineLLMServer, http: httpx2.AsyncClient, protocol: str
) -> None:
    message = await ask(server, http, protocol, user("Hello!"))
    assert message.text.startswith(INTRO + " Hello!")
    assert message.finish_reason == "stop"
    assert message.tool_calls == ()
    assert message.usage.output_tokens == len(message.text.split())
    assert message.usage.input_tokens > 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_the_same_conversation_gets_the_same_answer(
    server: OfflineLLMServer, http: httpx2.AsyncClient, protocol: str
) -> None:
    first = await ask(server, http, protocol, user("Tell me about sailing boats"))
    second = await ask(server, http, protocol, user("Tell me about sailing boats"))
    assert first.text == second.text
    assert "You said “Tell me about sailing boats”." in first.text


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_it_recalls_the_conversation(
    server: OfflineLLMServer, http: httpx2.AsyncClient, protocol: str
) -> None:
    message = await ask(
        server,
        http,
        protocol,
        user("My name is Ana."),
        AssistantMessage(text="Nice to meet you, Ana!"),
        user("I have a cat called Tom"),
        AssistantMessage(text="You said so."),
        user("Anything else?"),
    )
    assert not message.text.startswith(INTRO)
    assert "This is turn 3 of our conversation." in message.text
    assert "Earlier you said “I have a cat called Tom”." in message.text
    assert "You started with “My name is Ana.”" in message.text
    assert "You told me your name is Ana." in message.text


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_weather_becomes_a_get_weather_call(
    server: OfflineLLMServer, http: httpx2.AsyncClient, protocol: str
) -> None:
    message = await ask(
        server, http, protocol, user("What's the weather like in Paris?"), tools=(WEATHER,)
    )
    assert message.text == INTRO + " Let me check the weather in Paris."
    assert [(call.name, call.arguments) for call in message.tool_calls] == [
        ("get_weather", {"city": "Paris"})
    ]
    assert message.tool_calls[0].id
    assert message.finish_reason == "tool_calls"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_the_whole_weather_loop_uses_the_ids_it_made(
    server: OfflineLLMServer, http: httpx2.AsyncClient, protocol: str
) -> None:
    question = user("Is it raining in Tokyo?")
    first = await ask(server, http, protocol, question, tools=(WEATHER,))
    [call] = first.tool_calls
    result = ToolResult(
        call_id=call.id, name=call.name, content=json.dumps({**PARIS, "place": "Tokyo"})
    )
    second = await ask(server, http, protocol, question, first, result, tools=(WEATHER,))
    assert call.arguments == {"city": "Tokyo"}
    assert second.text.startswith("In Tokyo, France it is 12 °C")  # the fake data's country
    assert second.finish_reason == "stop"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_weather_result_is_put_into_words(
    server: OfflineLLMServer, http: httpx2.AsyncClient, protocol: str
) -> None:
    history = weather_history(json.dumps(PARIS))
    message = await ask(server, http, protocol, *history, tools=(WEATHER,))
    assert message.text == (
        "In Paris, France it is 12 °C (feels like 10 °C) with light rain; "
        "wind 14 km/h from the west."
    )
    assert message.finish_reason == "stop"
    assert message.tool_calls == ()


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_a_failed_weather_call_is_said_plainly(
    server: OfflineLLMServer, http: httpx2.AsyncClient, protocol: str
) -> None:
    # OpenAI has no error flag on a tool message: the text alone tells.
    history = weather_history(UNREACHABLE, is_error=True)
    message = await ask(server, http, protocol, *history, tools=(WEATHER,))
    expected = "I couldn't get the weather in Paris: the weather service is unreachable right now."
    assert message.text == expected


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_without_its_tool_it_cannot_check_the_weather(
    server: OfflineLLMServer, http: httpx2.AsyncClient, protocol: str
) -> None:
    message = await ask(server, http, protocol, user("What's the weather in Paris?"))
    assert "I can't check the weather without my get_weather tool" in message.text
    assert message.tool_calls == ()
    assert message.finish_reason == "stop"


@pytest.mark.parametrize("protocol", PROTOCOLS)
async def test_max_tokens_cuts_the_answer(
    server: OfflineLLMServer, http: httpx2.AsyncClient, protocol: str
) -> None:
    message = await ask(server, http, protocol, user("count to 20"), max_tokens=5)
    assert message.text == "I'm relaybot's offline model —"
    assert message.finish_reason == "length"
    assert message.usage.output_tokens == 5


@dataclass(frozen=True)
class ReshapedBody:
    """A wire protocol whose request body is changed before it is sent."""

    inner: WireProtocol
    changes: dict[str, Any]

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def path(self) -> str:
        return self.inner.path

    def headers(self, api_key: str) -> dict[str, str]:
        return self.inner.headers(api_key)

    def request_body(self, request: ModelRequest) -> dict[str, Any]:
        return {**self.inner.request_body(request), **self.changes}

    def decoder(self) -> StreamDecoder:
        return self.inner.decoder()

    def error_details(self, body: bytes) -> tuple[str | None, str | None]:
        return self.inner.error_details(body)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"messages": "hello"}, "messages: a non-empty list of messages is required"),
        ({"stream": False}, "the offline model only streams"),
        ({"max_tokens": -1}, "max_tokens: must be a positive integer"),
    ],
)
async def test_a_bad_request_is_a_typed_400(
    server: OfflineLLMServer,
    http: httpx2.AsyncClient,
    protocol: str,
    changes: dict[str, Any],
    says: str,
) -> None:
    wire = ReshapedBody(protocol_for(protocol), changes)
    with pytest.raises(BadRequest) as caught:
        await ask(server, http, wire, user("Hi"))
    assert caught.value.status == 400
    assert says in caught.value.message


async def test_malformed_json_is_a_400_in_each_protocols_shape(
    server: OfflineLLMServer, http: httpx2.AsyncClient
) -> None:
    openai = await http.post(server.url + "/v1/chat/completions", content=b'{"messages": [')
    anthropic = await http.post(server.url + "/v1/messages", content=b"not json")
    assert (openai.status_code, anthropic.status_code) == (400, 400)
    message = "the request body is not valid JSON"
    assert openai.json() == {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    }
    assert anthropic.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": message},
    }


# --- The bytes on the wire ------------------------------------------------------------------


def events_of(raw: bytes) -> list[tuple[str | None, str]]:
    """``(event, data)`` per SSE event; every event has exactly one ``data:`` line."""
    assert raw.endswith(b"\n\n")
    out: list[tuple[str | None, str]] = []
    for block in raw.decode().removesuffix("\n\n").split("\n\n"):
        lines = block.split("\n")
        event = lines[0].removeprefix("event: ") if lines[0].startswith("event: ") else None
        [data] = [line.removeprefix("data: ") for line in lines if line.startswith("data: ")]
        assert len(lines) == (2 if event else 1)
        out.append((event, data))
    return out


async def post(server: OfflineLLMServer, http: httpx2.AsyncClient, protocol: str) -> bytes:
    wire = protocol_for(protocol)
    request = ModelRequest(
        model=MODEL_NAME, messages=(user("Weather in São Paulo?"),), tools=(WEATHER,)
    )
    base = server.openai_base_url if protocol == "openai" else server.anthropic_base_url
    response = await http.post(base + wire.path, json=wire.request_body(request))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    return response.content


async def test_openai_bytes_are_a_chat_completion_chunk_stream(
    server: OfflineLLMServer, http: httpx2.AsyncClient
) -> None:
    raw = await post(server, http, "openai")
    assert '"content":" São"'.encode() in raw  # UTF-8, as providers send it
    events = events_of(raw)
    assert events[-1] == (None, "[DONE]")
    chunks = [json.loads(data) for _, data in events[:-1]]
    assert {chunk["object"] for chunk in chunks} == {"chat.completion.chunk"}
    assert {chunk["model"] for chunk in chunks} == {MODEL_NAME}
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    deltas = [chunk["choices"][0]["delta"] for chunk in chunks[1:-2]]
    text = "".join(delta.get("content") or "" for delta in deltas)
    assert text.endswith(" Let me check the weather in São Paulo.")
    calls = [call for delta in deltas for call in delta.get("tool_calls", ())]
    assert calls[0]["type"] == "function"
    assert calls[0]["function"] == {"name": "get_weather", "arguments": ""}
    assert calls[0]["id"].startswith("call_")
    arguments = "".join(call["function"]["arguments"] for call in calls)
    assert json.loads(arguments) == {"city": "São Paulo"}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == []
    usage = chunks[-1]["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_anthropic_bytes_are_a_messages_stream(
    server: OfflineLLMServer, http: httpx2.AsyncClient
) -> None:
    events = events_of(await post(server, http, "anthropic"))
    bodies = [json.loads(data) for _, data in events]
    assert [event for event, _ in events] == [body["type"] for body in bodies]
    kinds = [body["type"] for body in bodies]
    assert kinds[:3] == ["message_start", "content_block_start", "ping"]
    assert kinds[-2:] == ["message_delta", "message_stop"]
    starts = [body["content_block"] for body in bodies if body["type"] == "content_block_start"]
    assert [block["type"] for block in starts] == ["text", "tool_use"]
    assert starts[1]["name"] == "get_weather"
    assert starts[1]["id"].startswith("toolu_")
    fragments = [
        body["delta"]["partial_json"]
        for body in bodies
        if body["type"] == "content_block_delta" and body["index"] == 1
    ]
    assert fragments[0] == ""
    assert json.loads("".join(fragments)) == {"city": "São Paulo"}
    delta = bodies[-2]
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert delta["usage"]["input_tokens"] == bodies[0]["message"]["usage"]["input_tokens"]


async def test_models_and_health(server: OfflineLLMServer, http: httpx2.AsyncClient) -> None:
    models = (await http.get(server.openai_base_url + "/models")).json()
    assert [model["id"] for model in models["data"]] == [MODEL_NAME]
    health = await http.get(server.url + "/health")
    assert health.json() == {"status": "ok", "model": MODEL_NAME}


class CountedPauses(OfflineLLMServer):
    """The offline model counting its pauses (each one pace interval): those begun, and those
    ended by their pace or by a close rather than cancelled by the server's shutdown."""

    def __init__(self, *, pace: float) -> None:
        super().__init__(pace=pace)
        self.begun = self.ended = 0

    async def _pause(self) -> None:
        self.begun += 1
        await super()._pause()
        self.ended += 1


async def test_one_pace_interval_comes_before_each_word(http: httpx2.AsyncClient) -> None:
    async with CountedPauses(pace=0.001) as paced:
        history = (user("hi"), AssistantMessage(text="Hello!"), user("count to 5"))
        message = await ask(paced, http, "openai", *history)
    assert message.text == "1, 2, 3, 4, 5."
    assert (paced.begun, paced.ended) == (5, 5)


async def test_closing_mid_stream_ends_the_pause_and_cuts_the_stream(
    http: httpx2.AsyncClient,
) -> None:
    paced = CountedPauses(pace=3600.0)  # a pause only the close can end
    await paced.start()
    try:
        client = client_for(paced, http, "anthropic")
        request = ModelRequest(model=MODEL_NAME, messages=(user("Hi"),))
        async with client.stream(request) as events:
            await anext(events)  # message_start's usage came; the first word waits an hour
            await until(lambda: paced.begun == 1, "the pause before the first word")
            await paced.close()
            with pytest.raises(StreamInterrupted):
                await anext(events)
        assert paced.ended == 1, "the close ended the pause (not the shutdown's cancel)"
    finally:
        await paced.close()


async def test_run_offline_llm_announces_and_serves_until_cancelled(
    http: httpx2.AsyncClient,
) -> None:
    lines: list[str] = []
    announced = asyncio.Event()

    def announce(line: str) -> None:
        lines.append(line)
        announced.set()

    task = asyncio.create_task(run_offline_llm(host="127.0.0.1", port=0, pace=0, announce=announce))
    try:
        await asyncio.wait_for(announced.wait(), 20)  # a loopback server starting
        [line] = lines
        url = line.split()[4]
        assert line == f"offline model listening on {url} (OpenAI: {url}/v1, Anthropic: {url})"
        assert (await http.get(url + "/health")).status_code == 200
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
