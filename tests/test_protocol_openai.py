# ruff: noqa: E501  (wire fixtures are one SSE line per chunk, as the gateway sends them)
"""The OpenAI Chat Completions protocol: literal SSE bytes in, whole event lists out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from core.errors import (
    AuthError,
    BadRequest,
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
    SystemMessage,
    Thinking,
    ToolCall,
    ToolResult,
    UserMessage,
)
from core.protocols import OpenAIProtocol, WireProtocol, protocol_for
from core.protocols.openai import OpenAIStreamDecoder
from core.sse import ServerSentEvent, SSEDecoder
from tests.support.protocols import WEATHER, decoded, fed, raises_in_band


def decode(wire: bytes, *, step: int = 0) -> list[StreamEvent]:
    return decoded(OpenAIStreamDecoder(), wire, step=step)


_PARSED: Any = object()


def ready(
    index: int, id: str, name: str, raw: str, arguments: dict[str, Any] | None = _PARSED
) -> ToolCallReady:
    """The ``ToolCallReady`` expected for ``raw``; ``arguments`` defaults to ``raw`` parsed."""
    parsed = json.loads(raw) if arguments is _PARSED else arguments
    return ToolCallReady(index=index, id=id, name=name, arguments=parsed, raw_arguments=raw)


# --- text, reasoning, usage, finish -----------------------------------------------------------


def test_plain_text_with_a_usage_only_final_chunk() -> None:
    wire = b"""\
: OPENROUTER PROCESSING

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":", world"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}

data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":8}}}

data: [DONE]

"""
    assert decode(wire) == [
        TextDelta(text="Hello"),
        TextDelta(text=", world"),
        Usage(input_tokens=12, output_tokens=3, cached_input_tokens=8),
        StreamEnd(finish_reason="stop", raw_reason="stop"),
    ]


def test_usage_with_missing_and_null_fields_counts_zero() -> None:
    wire = b"""\
data: {"choices":[{"index":0,"delta":{"content":"ok"},"finish_reason":"stop"}]}

data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":null,"prompt_tokens_details":null}}

data: [DONE]

"""
    assert decode(wire) == [
        TextDelta(text="ok"),
        Usage(input_tokens=7, output_tokens=0, cached_input_tokens=0),
        StreamEnd(finish_reason="stop", raw_reason="stop"),
    ]


def test_reasoning_and_reasoning_content_are_reasoning_once() -> None:
    wire = b"""\
data: {"choices":[{"index":0,"delta":{"role":"assistant","content":null,"reasoning_content":"Let me"}}]}

data: {"choices":[{"index":0,"delta":{"content":null,"reasoning":" think.","reasoning_content":" think."}}]}

data: {"choices":[{"index":0,"delta":{"reasoning":" Done.","reasoning_content":null}}]}

data: {"choices":[{"index":0,"delta":{"content":"42"}}]}

data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}

data: [DONE]

"""
    assert decode(wire) == [
        ReasoningDelta(text="Let me"),
        ReasoningDelta(text=" think."),
        ReasoningDelta(text=" Done."),
        TextDelta(text="42"),
        StreamEnd(finish_reason="stop", raw_reason="stop"),
    ]


def test_refusal_is_text() -> None:
    wire = b"""\
data: {"choices":[{"index":0,"delta":{"role":"assistant","content":null,"refusal":""}}]}

data: {"choices":[{"index":0,"delta":{"refusal":"I can't help with that."}}]}

data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}

data: [DONE]

"""
    assert decode(wire) == [
        TextDelta(text="I can't help with that."),
        StreamEnd(finish_reason="stop", raw_reason="stop"),
    ]


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("stop", "stop"),
        ("length", "length"),
        ("tool_calls", "tool_calls"),
        ("function_call", "tool_calls"),
        ("content_filter", "content_filter"),
        ("eos_token", "other"),
    ],
)
def test_finish_reasons_are_normalized_and_kept(raw: str, normalized: FinishReason) -> None:
    wire = f"""\
data: {{"choices":[{{"index":0,"delta":{{"content":"The answer is"}}}}]}}

data: {{"choices":[{{"index":0,"delta":{{}},"finish_reason":"{raw}"}}]}}

data: [DONE]

""".encode()
    assert decode(wire) == [
        TextDelta(text="The answer is"),
        StreamEnd(finish_reason=normalized, raw_reason=raw),
    ]


def test_only_the_first_choice_is_read() -> None:
    wire = b"""\
data: {"choices":[{"index":1,"delta":{"content":"second"}}]}

data: {"choices":[{"index":1,"delta":{"content":"two"}},{"index":0,"delta":{"content":"first"}}]}

data: {"choices":[{"index":1,"delta":{},"finish_reason":"length"},{"index":0,"delta":{},"finish_reason":"stop"}]}

data: [DONE]

"""
    assert decode(wire) == [
        TextDelta(text="first"),
        StreamEnd(finish_reason="stop", raw_reason="stop"),
    ]


def test_done_without_finish_reason_ends_with_stop() -> None:
    wire = b"""\
data: {"choices":[{"delta":{"content":"hi"}}]}

data: [DONE]

"""
    assert decode(wire) == [TextDelta(text="hi"), StreamEnd(finish_reason="stop")]


# --- tool calls ---------------------------------------------------------------------------------


def test_parallel_tool_calls_interleaved() -> None:
    wire = rb"""
data: {"choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}

data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"get_time","arguments":""}}]}}]}

data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}}]}

data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":"{\"tz\":\"UTC\"}"}}]}}]}

data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}}]}

data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}

data: {"choices":[],"usage":{"prompt_tokens":40,"completion_tokens":20}}

data: [DONE]

"""
    assert decode(wire) == [
        ToolCallStarted(index=0, id="call_a", name="get_weather"),
        ToolCallStarted(index=1, id="call_b", name="get_time"),
        ToolCallDelta(index=0, fragment='{"city":'),
        ToolCallDelta(index=1, fragment='{"tz":"UTC"}'),
        ToolCallDelta(index=0, fragment='"Paris"}'),
        ready(0, "call_a", "get_weather", '{"city":"Paris"}'),
        ready(1, "call_b", "get_time", '{"tz":"UTC"}'),
        Usage(input_tokens=40, output_tokens=20),
        StreamEnd(finish_reason="tool_calls", raw_reason="tool_calls"),
    ]


def test_id_and_name_repeated_in_every_chunk_are_not_doubled() -> None:
    wire = rb"""
data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":"{\"ci"}}]}}]}

data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":"ty\":\"Oslo\"}"}}]}}]}

data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"get_weather","arguments":""}}]},"finish_reason":"tool_calls"}]}

data: [DONE]

"""
    assert decode(wire) == [
        ToolCallStarted(index=0, id="call_a", name="get_weather"),
        ToolCallDelta(index=0, fragment='{"ci'),
        ToolCallDelta(index=0, fragment='ty":"Oslo"}'),
        ready(0, "call_a", "get_weather", '{"city":"Oslo"}'),
        StreamEnd(finish_reason="tool_calls", raw_reason="tool_calls"),
    ]


def test_missing_index_means_zero_and_missing_id_is_synthesized() -> None:
    wire = rb"""
data: {"choices":[{"delta":{"tool_calls":[{"type":"function","function":{"name":"lookup","arguments":"{\"q\":"}}]}}]}

data: {"choices":[{"delta":{"tool_calls":[{"function":{"arguments":"\"tea\"}"}}]}}]}

data: [DONE]

"""
    assert decode(wire) == [
        ToolCallStarted(index=0, id="call_0", name="lookup"),
        ToolCallDelta(index=0, fragment='{"q":'),
        ToolCallDelta(index=0, fragment='"tea"}'),
        ready(0, "call_0", "lookup", '{"q":"tea"}'),
        StreamEnd(finish_reason="tool_calls"),
    ]


def test_a_new_id_at_a_used_index_opens_a_new_call() -> None:
    wire = rb"""
data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}},{"index":0,"id":"call_2","type":"function","function":{"name":"get_weather","arguments":"{\"city\":"}}]}}]}

data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Rome\"}"}}]}}]}

data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_3","type":"function","function":{"name":"get_time","arguments":"{}"}}]}}]}

data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}

data: [DONE]

"""
    assert decode(wire) == [
        ToolCallStarted(index=0, id="call_1", name="get_weather"),
        ToolCallDelta(index=0, fragment='{"city":"Paris"}'),
        ToolCallStarted(index=1, id="call_2", name="get_weather"),
        ToolCallDelta(index=1, fragment='{"city":'),
        ToolCallDelta(index=1, fragment='"Rome"}'),
        ToolCallStarted(index=2, id="call_3", name="get_time"),
        ToolCallDelta(index=2, fragment="{}"),
        ready(0, "call_1", "get_weather", '{"city":"Paris"}'),
        ready(1, "call_2", "get_weather", '{"city":"Rome"}'),
        ready(2, "call_3", "get_time", "{}"),
        StreamEnd(finish_reason="tool_calls", raw_reason="tool_calls"),
    ]


def test_fragments_before_the_name_are_buffered_until_started() -> None:
    wire = rb"""
data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\""}}]}}]}

data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_late","function":{"arguments":":"}}]}}]}

data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"name":"f","arguments":"1}"}}]}}]}

data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}

data: [DONE]

"""
    assert decode(wire) == [
        ToolCallStarted(index=0, id="call_late", name="f"),
        ToolCallDelta(index=0, fragment='{"a":1}'),  # the buffer, with the naming chunk's piece
        ready(0, "call_late", "f", '{"a":1}'),
        StreamEnd(finish_reason="tool_calls", raw_reason="tool_calls"),
    ]


TINY_FRAGMENTS = r"""
data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_z","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}

data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"ci"}}]}}]}

data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ty\":\"Z"}}]}}]}

data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"ü"}}]}}]}

data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"rich ☀"}}]}}]}

data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\",\"note\":\"\\u00"}}]}}]}

data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"e9 \\ud83d"}}]}}]}

data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\\ude00\"}"}}]}}]}

data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}

data: [DONE]

""".encode()


@pytest.mark.parametrize("step", [0, 1, 2, 7])
def test_tiny_fragments_and_multibyte_text_split_anywhere(step: int) -> None:
    raw = '{"city":"Zürich ☀","note":"\\u00e9 \\ud83d\\ude00"}'
    assert decode(TINY_FRAGMENTS, step=step) == [
        ToolCallStarted(index=0, id="call_z", name="get_weather"),
        ToolCallDelta(index=0, fragment='{"ci'),
        ToolCallDelta(index=0, fragment='ty":"Z'),
        ToolCallDelta(index=0, fragment="ü"),
        ToolCallDelta(index=0, fragment="rich ☀"),
        ToolCallDelta(index=0, fragment='","note":"\\u00'),
        ToolCallDelta(index=0, fragment="e9 \\ud83d"),
        ToolCallDelta(index=0, fragment='\\ude00"}'),
        ready(0, "call_z", "get_weather", raw, {"city": "Zürich ☀", "note": "é 😀"}),
        StreamEnd(finish_reason="tool_calls", raw_reason="tool_calls"),
    ]


def test_arguments_parse_once_blank_to_empty_and_non_objects_to_none() -> None:
    wire = rb"""
data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c0","function":{"name":"now","arguments":"  "}},{"index":1,"id":"c1","function":{"name":"f","arguments":"[1, 2]"}},{"index":2,"id":"c2","function":{"name":"g","arguments":"{\"cut"}}]}}]}

data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}

data: [DONE]

"""
    assert decode(wire) == [
        ToolCallStarted(index=0, id="c0", name="now"),
        ToolCallDelta(index=0, fragment="  "),
        ToolCallStarted(index=1, id="c1", name="f"),
        ToolCallDelta(index=1, fragment="[1, 2]"),
        ToolCallStarted(index=2, id="c2", name="g"),
        ToolCallDelta(index=2, fragment='{"cut'),
        ready(0, "c0", "now", "  ", {}),
        ready(1, "c1", "f", "[1, 2]", None),
        ready(2, "c2", "g", '{"cut', None),
        StreamEnd(finish_reason="tool_calls", raw_reason="tool_calls"),
    ]


def test_a_call_that_never_gets_a_name_is_reported_and_late_fragments_dropped() -> None:
    wire = rb"""
data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":0}]}}]}

data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_n","function":{"arguments":"{}"}}]}}]}

data: {"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}

data: {"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_n","function":{"name":"late","arguments":"{}"}}]}}]}

data: [DONE]

"""
    assert decode(wire) == [
        ToolCallStarted(index=1, id="call_n", name=""),
        ToolCallDelta(index=1, fragment="{}"),
        ready(1, "call_n", "", "{}"),
        StreamEnd(finish_reason="tool_calls", raw_reason="tool_calls"),
    ]


# --- errors and the end of the stream ----------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "error", "message"),
    [
        (
            b'data: {"error":{"message":"Rate limit reached for gpt-4o","type":"tokens","param":null,"code":"rate_limit_exceeded"}}\n\n',
            RateLimited,
            "Rate limit reached for gpt-4o",
        ),
        (
            b'data: {"error":{"message":"Overloaded","type":"overloaded_error"}}\n\n',
            Overloaded,
            "Overloaded",
        ),
        (
            b'data: {"error":{"message":"The server had an error while processing your request.","type":"server_error","param":null,"code":null}}\n\n',
            ServerError,
            "The server had an error while processing your request.",
        ),
        (
            b'data: {"error":{"message":"Too long for this model.","type":"invalid_request_error","param":"messages","code":"context_length_exceeded"}}\n\n',
            ContextTooLong,
            "Too long for this model.",
        ),
        (
            b'data: {"id":"gen-1","object":"chat.completion.chunk","error":{"code":"server_error","message":"Provider disconnected"},"choices":[{"index":0,"delta":{"content":""},"finish_reason":"error"}]}\n\n',
            ServerError,
            "Provider disconnected",
        ),
        (
            b'data: {"error":{"code":429,"message":"Rate limited upstream"}}\n\n',
            RateLimited,
            "Rate limited upstream",
        ),
        (
            b'data: {"error":{"type":"invalid_request_error","code":"invalid_api_key","message":"Incorrect API key provided"}}\n\n',
            AuthError,
            "Incorrect API key provided",
        ),
        (
            b'data: {"error":{"type":"invalid_request_error","code":"model_not_found","message":"No such model"}}\n\n',
            BadRequest,
            "No such model",
        ),
        (b'data: {"error":{}}\n\n', ServerError, "the gateway reported an error"),
        (
            b'event: error\ndata: {"error":{"type":"overloaded_error","message":"Overloaded"}}\n\n',
            Overloaded,
            "Overloaded",
        ),
        (b"event: error\ndata: upstream went away\n\n", ServerError, "upstream went away"),
    ],
)
def test_in_band_errors_raise_typed_errors(
    wire: bytes, error: type[LLMError], message: str
) -> None:
    raises_in_band(
        OpenAIStreamDecoder(),
        before=b'data: {"choices":[{"index":0,"delta":{"content":"Par"}}]}\n\n',
        shown=[TextDelta(text="Par")],
        wire=wire,
        error=error,
        message=message,
    )


@pytest.mark.parametrize(
    "data",
    [
        '{"choices":[{"index":0,"delta":{"content":"cut',
        "[1, 2, 3]",
        '"just a string"',
        "<html>" + "x" * 500,
        '{"choices":[{"index":0,"delta":"not an object"}]}',
    ],
)
def test_data_that_is_not_the_protocol_raises_invalid_response(data: str) -> None:
    decoder = OpenAIStreamDecoder()
    with pytest.raises(InvalidResponse) as raised:
        decoder.feed(ServerSentEvent(data=data))
    assert len(str(raised.value)) < 140


def test_a_stream_without_done_is_interrupted_at_close() -> None:
    wire = b"""\
data: {"choices":[{"index":0,"delta":{"content":"Hal"}}]}

data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}

"""
    decoder = OpenAIStreamDecoder()
    assert fed(decoder, wire) == [TextDelta(text="Hal")]
    assert not decoder.done
    with pytest.raises(StreamInterrupted, match="ended before it was complete"):
        decoder.close()


def test_events_after_done_are_ignored() -> None:
    wire = b"""\
data: {"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}]}

data: [DONE]

data: {"choices":[{"index":0,"delta":{"content":"again"}}]}

data: {"error":{"type":"server_error","message":"late"}}

data: not json

data: [DONE]

"""
    sse = SSEDecoder()
    decoder = OpenAIStreamDecoder()
    per_event = [decoder.feed(event) for event in sse.feed(wire)]
    assert per_event == [
        [TextDelta(text="Hi")],
        [StreamEnd(finish_reason="stop", raw_reason="stop")],
        [],
        [],
        [],
        [],
    ]
    assert decoder.done
    assert decoder.close() == []


# --- the request ---------------------------------------------------------------------------------


def test_request_body_for_a_whole_conversation() -> None:
    request = ModelRequest(
        model="openai/gpt-4o",
        system="You are relaybot.",
        messages=(
            SystemMessage(text="Answer briefly."),
            UserMessage(text="Weather in Paris and Rome?", author_id="U1"),
            AssistantMessage(
                text="",
                reasoning="Two cities, two calls.",
                thinking=(Thinking(thinking="hmm", signature="sig"),),
                tool_calls=(
                    ToolCall(id="call_1", name="get_weather", arguments={"city": "Paris"}),
                    ToolCall(id="call_2", name="get_weather", arguments=None, raw_arguments="{ci"),
                ),
                finish_reason="tool_calls",
            ),
            ToolResult(call_id="call_1", name="get_weather", content='{"temp_c": 18}'),
            ToolResult(
                call_id="call_2", name="get_weather", content="bad arguments", is_error=True
            ),
            AssistantMessage(text="Paris is 18 °C; Rome I could not check."),
            UserMessage(text="Thanks!"),
        ),
        tools=(WEATHER,),
        tool_choice="none",
        max_tokens=1024,
        temperature=0.2,
    )
    assert OpenAIProtocol().request_body(request) == {
        "model": "openai/gpt-4o",
        "messages": [
            {"role": "system", "content": "You are relaybot.\n\nAnswer briefly."},
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    },
                    {
                        "id": "call_2",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": "{ci"},
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": 18}'},
            {"role": "tool", "tool_call_id": "call_2", "content": "bad arguments"},
            {"role": "assistant", "content": "Paris is 18 °C; Rome I could not check."},
            {"role": "user", "content": "Thanks!"},
        ],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Current weather for a city.",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                },
            }
        ],
        "tool_choice": "none",
        "max_tokens": 1024,
        "temperature": 0.2,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_request_body_without_tools_system_or_temperature() -> None:
    request = ModelRequest(model="m", messages=(UserMessage(text="hi"),))
    assert OpenAIProtocol().request_body(request) == {
        "model": "m",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 4096,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_protocol_surface() -> None:
    protocol: WireProtocol = protocol_for("openai")
    assert isinstance(protocol, OpenAIProtocol)
    assert (protocol.name, protocol.path) == ("openai", "/chat/completions")
    assert protocol.headers("sk-test") == {
        "authorization": "Bearer sk-test",
        "content-type": "application/json",
        "accept": "text/event-stream",
    }
    assert isinstance(protocol.decoder(), OpenAIStreamDecoder)
    assert isinstance(protocol_for("OpenAI"), OpenAIProtocol)


def test_protocol_for_an_unknown_name_says_which_exist() -> None:
    with pytest.raises(ValueError, match=r"unknown wire protocol 'gemini'.*'openai'.*'anthropic'"):
        protocol_for("gemini")


@pytest.mark.parametrize(
    ("body", "details"),
    [
        (
            b'{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}',
            ("invalid_request_error", "Incorrect API key provided"),
        ),
        (
            b'{"error":{"code":"rate_limit_exceeded","message":"Slow down"}}',
            ("rate_limit_exceeded", "Slow down"),
        ),
        (
            b'{"object":"error","message":"maximum context length is 4096","type":"BadRequestError","code":400}',
            ("BadRequestError", "maximum context length is 4096"),
        ),
        (b'{"error":"model \\"llama9\\" not found"}', (None, 'model "llama9" not found')),
        (b'[{"error":{"code":503,"message":"unavailable"}}]', ("503", "unavailable")),
        (b"<html>502 Bad Gateway</html>", (None, "<html>502 Bad Gateway</html>")),
        (b"x" * 1000, (None, "x" * 200)),
        (b"", (None, None)),
        (b"  \n", (None, None)),
    ],
)
def test_error_details(body: bytes, details: tuple[str | None, str | None]) -> None:
    assert OpenAIProtocol().error_details(body) == details
