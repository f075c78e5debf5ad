# ruff: noqa: E501  (wire fixtures are one SSE line per event, as the gateway sends them)
"""The Anthropic Messages protocol: literal SSE bytes in, whole event lists out."""

from __future__ import annotations

import pytest

from core.errors import (
    ContextTooLong,
    InvalidResponse,
    LLMError,
    Overloaded,
    RateLimited,
    ServerError,
    StreamInterrupted,
)
from core.events import (
    FinishReason,
    ReasoningDelta,
    ReasoningRedacted,
    ReasoningSignature,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    ToolCallReady,
    ToolCallStarted,
    Usage,
)
from core.messages import (
    AssistantMessage,
    ModelRequest,
    RedactedThinking,
    SystemMessage,
    Thinking,
    ToolCall,
    ToolResult,
    UserMessage,
)
from core.protocols import AnthropicProtocol, WireProtocol, protocol_for
from core.protocols.anthropic import AnthropicStreamDecoder
from core.sse import ServerSentEvent, SSEDecoder
from tests.support.protocols import WEATHER, decoded, fed, raises_in_band


def decode(wire: bytes, *, step: int = 0) -> list[StreamEvent]:
    return decoded(AnthropicStreamDecoder(), wire, step=step)


def without_event_lines(wire: bytes) -> bytes:
    """The same stream as a gateway that drops the ``event:`` lines sends it."""
    lines = wire.splitlines(keepends=True)
    return b"".join(line for line in lines if not line.startswith(b"event:"))


def with_and_without_event_lines(wire: bytes) -> list[bytes]:
    stripped = without_event_lines(wire)
    assert stripped != wire
    return [wire, stripped]


TEXT = b"""\
event: message_start
data: {"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type": "ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":", world"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}

event: message_stop
data: {"type":"message_stop"}

"""


@pytest.mark.parametrize("wire", with_and_without_event_lines(TEXT))
def test_text_with_ping_ignored(wire: bytes) -> None:
    assert decode(wire) == [
        Usage(input_tokens=25, output_tokens=1),
        TextDelta(text="Hello"),
        TextDelta(text=", world"),
        Usage(input_tokens=25, output_tokens=15),
        StreamEnd(finish_reason="stop", raw_reason="end_turn"),
    ]


THINKING_AND_TOOL = rb"""
event: message_start
data: {"type":"message_start","message":{"id":"msg_2","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":50,"cache_creation_input_tokens":20,"cache_read_input_tokens":100,"output_tokens":1}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"The user wants"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":" the weather."}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQBCgIYAhIM1gbcDa9GJwZA2b3h"}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: content_block_start
data: {"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Let me check."}}

event: content_block_delta
data: {"type":"content_block_delta","index":1,"delta":{"type":"citations_delta","citation":{"type":"char_location","cited_text":"x"}}}

event: content_block_stop
data: {"type":"content_block_stop","index":1}

event: content_block_start
data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_01","name":"get_weather","input":{}}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"city\": "}}

event: content_block_delta
data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"\"Z\u00fcrich\"}"}}

event: content_block_stop
data: {"type":"content_block_stop","index":2}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}

event: message_stop
data: {"type":"message_stop"}

"""


@pytest.mark.parametrize("wire", with_and_without_event_lines(THINKING_AND_TOOL))
def test_thinking_signature_and_a_tool_use(wire: bytes) -> None:
    assert decode(wire) == [
        Usage(input_tokens=170, output_tokens=1, cached_input_tokens=100),
        ReasoningDelta(text="The user wants", block=0),
        ReasoningDelta(text=" the weather.", block=0),
        ReasoningSignature(signature="EqQBCgIYAhIM1gbcDa9GJwZA2b3h", block=0),
        TextDelta(text="Let me check."),
        ToolCallStarted(index=2, id="toolu_01", name="get_weather"),
        ToolCallDelta(index=2, fragment='{"city": '),
        ToolCallDelta(index=2, fragment='"Zürich"}'),
        ToolCallReady(
            index=2,
            id="toolu_01",
            name="get_weather",
            arguments={"city": "Zürich"},
            raw_arguments='{"city": "Zürich"}',
        ),
        Usage(input_tokens=170, output_tokens=89, cached_input_tokens=100),
        StreamEnd(finish_reason="tool_calls", raw_reason="tool_use"),
    ]


@pytest.mark.parametrize("step", [1, 3, 64])
def test_the_same_bytes_split_anywhere_give_the_same_events(step: int) -> None:
    assert decode(THINKING_AND_TOOL, step=step) == decode(THINKING_AND_TOOL)


def test_redacted_thinking_and_unknown_blocks_and_events() -> None:
    wire = b"""\
data: {"type":"message_start","message":{"id":"msg_3","type":"message","role":"assistant","content":[],"usage":{"input_tokens":9,"output_tokens":0}}}

data: {"type":"content_block_start","index":0,"content_block":{"type":"redacted_thinking","data":"EmwKAhgBEgy3va3pzix/LafPsn4a"}}

data: {"type":"content_block_stop","index":0}

data: {"type":"content_block_start","index":1,"content_block":{"type":"web_search_tool_result","tool_use_id":"srvtoolu_1","content":[]}}

data: {"type":"content_block_stop","index":1}

data: {"type":"content_block_start","index":2,"content_block":{"type":"text","text":"Hi"}}

data: {"type":"content_block_delta","index":2,"delta":{"type":"brand_new_delta","x":1}}

data: {"type":"content_block_stop","index":2}

data: {"type":"brand_new_event","x":1}

data: {"type":"message_delta","delta":{"stop_reason":"stop_sequence","stop_sequence":"###"},"usage":{"output_tokens":3}}

data: {"type":"message_stop"}

"""
    assert decode(wire) == [
        Usage(input_tokens=9, output_tokens=0),
        ReasoningRedacted(data="EmwKAhgBEgy3va3pzix/LafPsn4a", block=0),
        TextDelta(text="Hi"),
        Usage(input_tokens=9, output_tokens=3),
        StreamEnd(finish_reason="stop", raw_reason="stop_sequence"),
    ]


def test_usage_is_cumulative_each_report_replaces() -> None:
    wire = b"""\
data: {"type":"message_start","message":{"usage":{"input_tokens":25,"output_tokens":1}}}

data: {"type":"message_delta","delta":{"stop_reason":null},"usage":{"output_tokens":10}}

data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":30,"cache_read_input_tokens":7,"cache_creation_input_tokens":null,"output_tokens":12}}

data: {"type":"message_stop"}

"""
    assert decode(wire) == [
        Usage(input_tokens=25, output_tokens=1),
        Usage(input_tokens=25, output_tokens=10),
        Usage(input_tokens=37, output_tokens=12, cached_input_tokens=7),
        StreamEnd(finish_reason="stop", raw_reason="end_turn"),
    ]


def test_max_tokens_inside_a_tool_use_makes_it_ready_at_message_stop() -> None:
    wire = rb"""
data: {"type":"message_start","message":{"usage":{"input_tokens":5,"output_tokens":1}}}

data: {"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_9","name":"write_file","input":{}}}

data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"text\": \"Once upon"}}

data: {"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"output_tokens":64}}

data: {"type":"message_stop"}

"""
    assert decode(wire) == [
        Usage(input_tokens=5, output_tokens=1),
        ToolCallStarted(index=0, id="toolu_9", name="write_file"),
        ToolCallDelta(index=0, fragment='{"text": "Once upon'),
        Usage(input_tokens=5, output_tokens=64),
        ToolCallReady(
            index=0,
            id="toolu_9",
            name="write_file",
            arguments=None,
            raw_arguments='{"text": "Once upon',
        ),
        StreamEnd(finish_reason="length", raw_reason="max_tokens"),
    ]


def test_tool_use_inputs_empty_given_at_start_or_not_an_object() -> None:
    wire = rb"""
data: {"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_a","name":"now","input":{}}}

data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":""}}

data: {"type":"content_block_stop","index":0}

data: {"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_b","name":"get_weather","input":{"city":"Oslo"}}}

data: {"type":"content_block_stop","index":1}

data: {"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_c","name":"f","input":{}}}

data: {"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"[1]"}}

data: {"type":"content_block_stop","index":2}

data: {"type":"message_stop"}

"""
    assert decode(wire) == [
        ToolCallStarted(index=0, id="toolu_a", name="now"),
        ToolCallReady(index=0, id="toolu_a", name="now", arguments={}, raw_arguments=""),
        ToolCallStarted(index=1, id="toolu_b", name="get_weather"),
        ToolCallReady(
            index=1,
            id="toolu_b",
            name="get_weather",
            arguments={"city": "Oslo"},
            raw_arguments='{"city": "Oslo"}',
        ),
        ToolCallStarted(index=2, id="toolu_c", name="f"),
        ToolCallDelta(index=2, fragment="[1]"),
        ToolCallReady(index=2, id="toolu_c", name="f", arguments=None, raw_arguments="[1]"),
        StreamEnd(finish_reason="tool_calls"),
    ]


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("tool_use", "tool_calls"),
        ("max_tokens", "length"),
        ("refusal", "content_filter"),
        ("model_context_window_exceeded", "other"),
    ],
)
def test_stop_reasons_are_normalized_and_kept(raw: str, normalized: FinishReason) -> None:
    wire = f"""\
data: {{"type":"message_delta","delta":{{"stop_reason":"{raw}"}}}}

data: {{"type":"message_stop"}}

""".encode()
    assert decode(wire) == [StreamEnd(finish_reason=normalized, raw_reason=raw)]


# --- errors and the end of the stream ----------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "error", "message"),
    [
        (
            b'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n',
            Overloaded,
            "Overloaded",
        ),
        (
            b'data: {"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}\n\n',
            Overloaded,
            "Overloaded",
        ),
        (
            b'data: {"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}\n\n',
            RateLimited,
            "Number of request tokens has exceeded your per-minute rate limit",
        ),
        (
            b'data: {"type":"error","error":{"type":"api_error","message":"Internal server error"}}\n\n',
            ServerError,
            "Internal server error",
        ),
        (
            b'data: {"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}\n\n',
            ContextTooLong,
            "prompt is too long: 210000 tokens > 200000 maximum",
        ),
        (b'data: {"type":"error","error":{}}\n\n', ServerError, "the gateway reported an error"),
        (b"event: error\ndata: upstream reset\n\n", ServerError, "upstream reset"),
    ],
)
def test_error_events_raise_typed_errors(wire: bytes, error: type[LLMError], message: str) -> None:
    raises_in_band(
        AnthropicStreamDecoder(),
        before=b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}\n\n',
        shown=[TextDelta(text="Hi")],
        wire=wire,
        error=error,
        message=message,
    )


@pytest.mark.parametrize(
    "data",
    [
        '{"type":"content_block_delta","index":0,"delta":{"type":"text_de',
        "[]",
        "null",
        "event stream? " * 40,
        '{"type":"content_block_start","index":0}',
    ],
)
def test_data_that_is_not_the_protocol_raises_invalid_response(data: str) -> None:
    with pytest.raises(InvalidResponse) as raised:
        AnthropicStreamDecoder().feed(ServerSentEvent(event="message", data=data))
    assert len(str(raised.value)) < 140


def test_a_stream_without_message_stop_is_interrupted_at_close() -> None:
    wire = without_event_lines(TEXT).replace(b'data: {"type":"message_stop"}\n\n', b"")
    decoder = AnthropicStreamDecoder()
    assert fed(decoder, wire)[-1] == Usage(input_tokens=25, output_tokens=15)
    assert not decoder.done
    with pytest.raises(StreamInterrupted, match="ended before it was complete"):
        decoder.close()


def test_events_after_message_stop_are_ignored() -> None:
    wire = TEXT + (
        b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"late"}}\n\n'
        b'data: {"type":"error","error":{"type":"api_error","message":"late"}}\n\n'
        b"data: not json\n\n"
    )
    decoder = AnthropicStreamDecoder()
    per_event = [decoder.feed(event) for event in SSEDecoder().feed(wire)]
    assert per_event[-4:] == [[StreamEnd(finish_reason="stop", raw_reason="end_turn")], [], [], []]
    assert decoder.done
    assert decoder.close() == []


# --- the request ---------------------------------------------------------------------------------


def test_request_body_for_a_whole_conversation() -> None:
    request = ModelRequest(
        model="anthropic/claude-sonnet-4.5",
        system="You are relaybot.",
        messages=(
            SystemMessage(text="Answer briefly."),
            UserMessage(text="Weather in Paris and Rome?"),
            AssistantMessage(
                text="Checking both.",
                reasoning="Two cities, two calls.",
                thinking=(
                    Thinking(thinking="Two cities, two calls.", signature="sig-1"),
                    RedactedThinking(data="opaque=="),
                ),
                tool_calls=(
                    ToolCall(id="toolu_1", name="get_weather", arguments={"city": "Paris"}),
                    ToolCall(id="toolu_2", name="get_weather", arguments=None, raw_arguments="{ci"),
                ),
                finish_reason="tool_calls",
            ),
            ToolResult(call_id="toolu_1", name="get_weather", content='{"temp_c": 18}'),
            ToolResult(
                call_id="toolu_2", name="get_weather", content="bad arguments", is_error=True
            ),
            AssistantMessage(text=""),  # nothing to send: skipped, so the users merge
            UserMessage(text="And Oslo?"),
            AssistantMessage(text="Oslo is 9 °C."),
        ),
        tools=(WEATHER,),
        tool_choice="none",
        max_tokens=1024,
        temperature=0.2,
    )
    assert AnthropicProtocol().request_body(request) == {
        "model": "anthropic/claude-sonnet-4.5",
        "system": "You are relaybot.\n\nAnswer briefly.",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Weather in Paris and Rome?"}]},
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "thinking",
                        "thinking": "Two cities, two calls.",
                        "signature": "sig-1",
                    },
                    {"type": "redacted_thinking", "data": "opaque=="},
                    {"type": "text", "text": "Checking both."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                    {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": '{"temp_c": 18}'},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "content": "bad arguments",
                        "is_error": True,
                    },
                    {"type": "text", "text": "And Oslo?"},
                ],
            },
            {"role": "assistant", "content": [{"type": "text", "text": "Oslo is 9 °C."}]},
        ],
        "tools": [
            {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            }
        ],
        "tool_choice": {"type": "none"},
        "max_tokens": 1024,
        "temperature": 0.2,
        "stream": True,
    }


def test_request_body_without_tools_system_or_temperature() -> None:
    request = ModelRequest(model="m", messages=(UserMessage(text="hi"),), max_tokens=100)
    assert AnthropicProtocol().request_body(request) == {
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "max_tokens": 100,
        "stream": True,
    }


def test_protocol_surface() -> None:
    protocol: WireProtocol = protocol_for("anthropic")
    assert isinstance(protocol, AnthropicProtocol)
    assert (protocol.name, protocol.path) == ("anthropic", "/v1/messages")
    assert protocol.headers("sk-ant-test") == {
        "x-api-key": "sk-ant-test",
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
        "accept": "text/event-stream",
    }
    assert isinstance(protocol.decoder(), AnthropicStreamDecoder)


@pytest.mark.parametrize(
    ("body", "details"),
    [
        (
            b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_1"}',
            ("overloaded_error", "Overloaded"),
        ),
        (
            b'{"error":{"type":"invalid_request_error","message":"max_tokens: Field required"}}',
            ("invalid_request_error", "max_tokens: Field required"),
        ),
        (b'{"message":"Unauthorized"}', (None, "Unauthorized")),
        (b"upstream connect error", (None, "upstream connect error")),
        (b"", (None, None)),
    ],
)
def test_error_details(body: bytes, details: tuple[str | None, str | None]) -> None:
    assert AnthropicProtocol().error_details(body) == details
