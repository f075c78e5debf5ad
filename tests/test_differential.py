"""Differential tests: ``LLMClient`` + ``MessageAssembler`` against the official SDKs.

Each stream of :mod:`tests.fakes.corpus` is served by the loopback gateway twice: once to
``LLMClient`` (its events fed to a ``MessageAssembler``) and once to the SDK's own stream
accumulator — ``AsyncOpenAI().chat.completions.stream(...).get_final_completion()`` or
``AsyncAnthropic().messages.stream(...).get_final_message()``. Both results are reduced to one
comparable :class:`Answer` and compared with the answer the stream holds.

Reading an SDK result into an :class:`Answer`:

- OpenAI ``refusal`` counts as the text (relaybot shows a refusal as the answer; the SDK keeps
  it apart in ``message.refusal``). Reasoning is the ``reasoning`` extra field, else
  ``reasoning_content``. Arguments are the SDK's accumulated ``function.arguments`` parsed by
  relaybot's rule: blank is ``{}``, a JSON object is itself, anything else is ``None``.
- Anthropic input tokens include cache reads and cache writes, as relaybot counts them.
- Finish reasons are normalized as ``core.events.FinishReason`` documents.
- For a ``finish_reason: "length"`` answer, openai's ``get_final_completion()`` raises
  (pinned by ``test_length_cut_answer_is_returned``); the completion the error carries is what
  the SDK accumulated, and that is compared.

Where the SDK is wrong, a named test asserts relaybot's answer, always, and pins the SDK's
behaviour inside ``sdk_quirk(sdk, seen_through=...)``: with the version the quirk was seen in
(``constraints.txt`` pins the SDKs) or an older one, the pinned behaviour must hold; with a newer
SDK the block still runs, but its outcome is recorded — "still wrong" or "changed" — and printed
in the run's summary instead of failing the test, so a new SDK release never turns the suite red
and the next pin refresh says which quirks it fixed:

- ``test_length_cut_answer_is_returned`` — openai's ``get_final_completion()`` raises
  ``LengthFinishReasonError`` for any ``finish_reason: "length"``, though nothing asked it to
  parse the content: the answer is only on the exception.
- ``test_repeated_tool_call_id_is_not_doubled`` — openai concatenates an id (and name)
  repeated in every fragment: ``call_Xcall_X``, ``get_weatherget_weather``.
- ``test_tool_calls_without_index_are_read`` — openai raises ``TypeError`` on a tool-call
  delta without ``index`` (Gemini's OpenAI-compatible endpoint).
- ``test_parallel_calls_sharing_an_index_stay_apart`` — openai merges two calls sent with
  ``index: 0`` and different ids into one call, ids, names and argument JSON concatenated.
- ``test_blank_data_line_after_an_id_is_skipped`` and
  ``test_keepalive_after_an_id_line_is_no_event`` — openai's SSE decoder dispatches an empty
  event (a blank ``data:`` line; any blank line once an ``id:`` was seen) and the stream does
  ``json.loads("")``: ``JSONDecodeError``.
- ``test_openai_byte_order_mark_hides_no_event`` — openai's decoder keeps the UTF-8 BOM that
  starts a body in the first line's field name, so the first event is silently lost;
  ``test_anthropic_byte_order_mark_hides_no_event`` — anthropic loses ``message_start`` that
  way, and ``get_final_message`` fails on a bare ``assert``.
- ``test_openai_stream_cut_before_done_is_an_error`` and
  ``test_anthropic_stream_cut_before_message_stop_is_an_error`` — a body that ends without its
  end marker is returned by both SDKs as a finished message (partial text, no finish reason).
- ``test_anthropic_connection_cut_is_a_typed_error`` — anthropic up to 2.16 lets a raw
  ``httpx2.RemoteProtocolError`` out of its stream instead of an ``APIConnectionError``;
  2.17 wraps it (recorded, as a quirk fixed).
- ``test_anthropic_stream_without_event_lines`` — anthropic dispatches on the ``event:`` line,
  silently drops every event without one, and ``get_final_message`` fails on a bare
  ``assert``.
- ``test_tool_use_cut_by_max_tokens_is_not_half_parsed`` — anthropic partial-parses the cut
  JSON of a tool_use block hit by ``max_tokens`` into a complete-looking input that lacks the
  cut field.

``test_server_tool_use_is_not_a_client_tool_call`` — a ``server_tool_use`` block (a tool
Anthropic ran itself) is not a client ``ToolCall``, as the SDK agrees.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from anthropic.types import Message, RedactedThinkingBlock, TextBlock, ThinkingBlock, ToolUseBlock
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionMessageFunctionToolCall,
    ParsedChatCompletion,
)
from packaging.version import Version

from core.assembly import MessageAssembler
from core.client import LLMClient, Timeouts
from core.errors import StreamInterrupted
from core.messages import AssistantMessage, ModelRequest, RedactedThinking, Thinking, UserMessage
from core.protocols import AnthropicProtocol, OpenAIProtocol
from core.protocols.base import WireProtocol
from tests.fakes import corpus
from tests.fakes.llm_gateway import FakeGateway, Stream

MODEL = "relaybot/differential"
REQUEST = ModelRequest(model=MODEL, messages=(UserMessage(text="Hi"),), max_tokens=64)
FAST = Timeouts(connect=10.0, read_idle=10.0, total=30.0)  # generous: loopback under load

Call = tuple[str, str, dict[str, Any] | None]
"""A tool call: ``(id, name, arguments)``."""


@dataclass(frozen=True, kw_only=True)
class Answer:
    """One model call, as both sides can state it.

    ``thinking`` holds ``("thinking", text, signature)`` and ``("redacted_thinking", data)``;
    ``usage`` is ``(input, output, cached input)`` tokens.
    """

    text: str = ""
    reasoning: str = ""
    thinking: tuple[tuple[str, ...], ...] = ()
    tool_calls: tuple[Call, ...] = ()
    finish_reason: str | None = None
    usage: tuple[int, int, int] = (0, 0, 0)


# --- pinning an SDK's behaviour ---------------------------------------------------------------

OPENAI_SEEN = "3.63.0"
"""The openai release every openai quirk below was seen in."""
ANTHROPIC_SEEN = "2.17.0"
"""The anthropic release every anthropic quirk below was seen in, unless it says otherwise."""


@contextmanager
def sdk_quirk(
    request: pytest.FixtureRequest, sdk: ModuleType, *, seen_through: str
) -> Iterator[None]:
    """Pin what ``sdk`` does inside the block. Up to ``seen_through`` it must hold; with a newer
    SDK its outcome is recorded (shown in the run's summary), never a failure."""
    installed = sdk.__version__
    if Version(installed) <= Version(seen_through):
        yield
        return
    name = f"{sdk.__name__} {installed}"
    try:
        yield
    except (Exception, pytest.fail.Exception) as changed:
        outcome = f"{name}: no longer does what {seen_through} did ({type(changed).__name__})"
    else:
        outcome = f"{name}: still does what {seen_through} did"
    request.node.user_properties.append(("sdk_quirk", outcome))


# --- the two sides --------------------------------------------------------------------------


async def ours(gateway: FakeGateway, stream: Stream, protocol: WireProtocol) -> AssistantMessage:
    gateway.enqueue(stream)
    base_url = gateway.url + "/v1" if protocol.name == "openai" else gateway.url
    assembler = MessageAssembler()
    async with httpx2.AsyncClient() as http:
        client = LLMClient(
            http=http, protocol=protocol, base_url=base_url, api_key="sk-test", timeouts=FAST
        )
        async with client.stream(REQUEST) as events:
            async for event in events:
                assembler.feed(event)
    return assembler.message()


async def openai_sdk(gateway: FakeGateway, stream: Stream) -> ParsedChatCompletion[Any]:
    gateway.enqueue(stream)
    client = openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="sk-test", max_retries=0)
    async with (
        client,
        client.chat.completions.stream(
            model=MODEL, messages=[{"role": "user", "content": "Hi"}]
        ) as completion,
    ):
        return await completion.get_final_completion()


async def openai_accumulated(gateway: FakeGateway, stream: Stream) -> ChatCompletion:
    """The completion the SDK accumulated, also when ``get_final_completion()`` refuses a
    length-cut one (the error carries it)."""
    try:
        return await openai_sdk(gateway, stream)
    except openai.LengthFinishReasonError as error:
        return error.completion


async def anthropic_sdk(gateway: FakeGateway, stream: Stream) -> Message:
    gateway.enqueue(stream)
    client = anthropic.AsyncAnthropic(base_url=gateway.url, api_key="x", max_retries=0)
    async with (
        client,
        client.messages.stream(
            model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "Hi"}]
        ) as message,
    ):
        return await message.get_final_message()


# --- one comparable shape -------------------------------------------------------------------

_OPENAI_FINISH = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}
_ANTHROPIC_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "refusal": "content_filter",
}


def answer_of_ours(message: AssistantMessage) -> Answer:
    thinking: list[tuple[str, ...]] = []
    for item in message.thinking:
        match item:
            case Thinking(thinking=text, signature=signature):
                thinking.append(("thinking", text, signature))
            case RedactedThinking(data=data):
                thinking.append(("redacted_thinking", data))
    usage = message.usage
    return Answer(
        text=message.text,
        reasoning=message.reasoning,
        thinking=tuple(thinking),
        tool_calls=tuple((call.id, call.name, call.arguments) for call in message.tool_calls),
        finish_reason=message.finish_reason,
        usage=(usage.input_tokens, usage.output_tokens, usage.cached_input_tokens),
    )


def answer_of_openai(completion: ChatCompletion) -> Answer:
    [choice] = completion.choices
    message = choice.message
    reasoning = getattr(message, "reasoning", None) or getattr(message, "reasoning_content", None)
    calls = tuple(
        (call.id, call.function.name, _arguments(call.function.arguments))
        for call in message.tool_calls or ()
        if isinstance(call, ChatCompletionMessageFunctionToolCall)
    )
    usage = completion.usage
    cached = 0
    if usage is not None and usage.prompt_tokens_details is not None:
        cached = usage.prompt_tokens_details.cached_tokens or 0
    return Answer(
        text=(message.content or "") + (message.refusal or ""),
        reasoning=reasoning or "",
        tool_calls=calls,
        finish_reason=_OPENAI_FINISH.get(choice.finish_reason, "other")
        if choice.finish_reason
        else None,
        usage=(usage.prompt_tokens, usage.completion_tokens, cached) if usage else (0, 0, 0),
    )


def answer_of_anthropic(message: Message) -> Answer:
    text: list[str] = []
    reasoning: list[str] = []
    thinking: list[tuple[str, ...]] = []
    calls: list[Call] = []
    for block in message.content:
        if isinstance(block, TextBlock):
            text.append(block.text)
        elif isinstance(block, ThinkingBlock):
            reasoning.append(block.thinking)
            thinking.append(("thinking", block.thinking, block.signature))
        elif isinstance(block, RedactedThinkingBlock):
            thinking.append(("redacted_thinking", block.data))
        elif isinstance(block, ToolUseBlock):
            arguments = block.input if isinstance(block.input, dict) else None
            calls.append((block.id, block.name, arguments))
    usage = message.usage
    cache_read = usage.cache_read_input_tokens or 0
    cache_write = usage.cache_creation_input_tokens or 0
    reason = message.stop_reason
    return Answer(
        text="".join(text),
        reasoning="".join(reasoning),
        thinking=tuple(thinking),
        tool_calls=tuple(calls),
        finish_reason=_ANTHROPIC_FINISH.get(reason, "other") if reason else None,
        usage=(usage.input_tokens + cache_read + cache_write, usage.output_tokens, cache_read),
    )


def _arguments(raw: str) -> dict[str, Any] | None:
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# --- the corpus: both sides give the answer the stream holds --------------------------------

OPENAI_ANSWERS = {
    "text": Answer(text="Paris is the capital of France.", finish_reason="stop"),
    "usage-only-final-chunk": Answer(
        text="Done — see the summary above.", finish_reason="stop", usage=(1187, 9, 1152)
    ),
    "parallel-tool-calls-interleaved": Answer(
        tool_calls=(
            ("call_Dcuer5y2RowXl7Ig47gCS9Ft", "get_weather", {"city": "Zürich"}),
            ("call_7QmZ0bXk2Yp9Lw4eRt1NvHsA", "get_weather", {"city": "Tokyo", "unit": "celsius"}),
        ),
        finish_reason="tool_calls",
        usage=(82, 48, 0),
    ),
    "refusal": Answer(
        text="I\u2019m sorry, I can\u2019t help with that.", finish_reason="stop", usage=(61, 11, 0)
    ),
    "finish-length": Answer(
        text="Once upon a time, in a", finish_reason="length", usage=(19, 8, 0)
    ),
    "finish-length-in-tool-call": Answer(
        tool_calls=(("call_Hn2wq9XbLk4Tz0Rv7YsMe1Pd", "get_weather", None),),
        finish_reason="length",
        usage=(77, 6, 0),
    ),
    "reasoning-content": Answer(
        text="9.9 is larger.",
        reasoning="The user asks for 9.11 vs 9.9; 0.90 > 0.11.",
        finish_reason="stop",
        usage=(18, 29, 0),
    ),
    "reasoning": Answer(
        text="Hello there!",
        reasoning="Short answer: greet back.",
        finish_reason="stop",
        usage=(9, 31, 0),
    ),
    "crlf": Answer(
        text="Checking.",
        tool_calls=(("chatcmpl-tool-5b8e0f3c2a714d6e9f1b", "get_weather", {"city": "São Paulo"}),),
        finish_reason="tool_calls",
        usage=(212, 29, 0),
    ),
    "keep-alive-comments": Answer(text="Still here.", finish_reason="stop", usage=(12, 3, 0)),
    "multibyte-3-byte-writes": Answer(
        text=corpus.MULTIBYTE_TEXT, finish_reason="stop", usage=(21, 17, 0)
    ),
    "azure-content-filter": Answer(text="Azure says hi.", finish_reason="stop", usage=(13, 4, 0)),
}
OPENAI_ANSWERS["no-space-after-colon"] = OPENAI_ANSWERS["parallel-tool-calls-interleaved"]

_SIGNATURE = (
    "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds6dLZ3O0eFX1lZk2FlkKM8mOHLnE3r7aJq6Rx"
    "qSt9mcXfkM6b2Lw7Wk="
)
_REDACTED = (
    "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpPkNRj2YfWXGmKDxH4mPnZ5sQ7v"
    "B3URj2pB"
)
_THOUGHT = "27 * 453 = 27 * 400 + 27 * 53 = 10800 + 1431 = 12231."
_SF_WEATHER: Call = (
    "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
    "get_weather",
    {"location": "San Francisco, CA", "unit": "fahrenheit"},
)

ANTHROPIC_ANSWERS = {
    "text": Answer(
        text="Bonjour ! Je suis Claude, ravi de vous aider.",
        finish_reason="stop",
        usage=(21, 14, 0),
    ),
    "tool-use-input-json-delta": Answer(
        text="Okay, let's check the weather for San Francisco, CA:",
        tool_calls=(_SF_WEATHER,),
        finish_reason="tool_calls",
        usage=(472 + 2048, 89, 2048),
    ),
    "thinking-signature-redacted": Answer(
        text="27 \u00d7 453 = **12,231**",
        reasoning=_THOUGHT,
        thinking=(("thinking", _THOUGHT, _SIGNATURE), ("redacted_thinking", _REDACTED)),
        finish_reason="stop",
        usage=(44, 141, 0),
    ),
    "pings": Answer(text="Still thinking about it.", finish_reason="stop", usage=(16, 7, 0)),
    "crlf-1-byte-writes": Answer(
        text=corpus.MULTIBYTE_TEXT,
        tool_calls=(("toolu_01Ab3kZ9wQpR2sT4uV6xY8zC", "get_weather", {"city": "東京"}),),
        finish_reason="tool_calls",
        usage=(30, 52, 0),
    ),
}
ANTHROPIC_ANSWERS["no-space-after-colon"] = ANTHROPIC_ANSWERS["thinking-signature-redacted"]


def test_every_corpus_stream_has_an_answer() -> None:
    assert OPENAI_ANSWERS.keys() == corpus.OPENAI_STREAMS.keys()
    assert ANTHROPIC_ANSWERS.keys() == corpus.ANTHROPIC_STREAMS.keys()


@pytest.mark.parametrize("name", list(corpus.OPENAI_STREAMS))
async def test_openai_stream_agrees_with_the_sdk(gateway: FakeGateway, name: str) -> None:
    stream = corpus.OPENAI_STREAMS[name]
    expected = OPENAI_ANSWERS[name]
    assert answer_of_ours(await ours(gateway, stream, OpenAIProtocol())) == expected
    assert answer_of_openai(await openai_accumulated(gateway, stream)) == expected


@pytest.mark.parametrize("name", list(corpus.ANTHROPIC_STREAMS))
async def test_anthropic_stream_agrees_with_the_sdk(gateway: FakeGateway, name: str) -> None:
    stream = corpus.ANTHROPIC_STREAMS[name]
    expected = ANTHROPIC_ANSWERS[name]
    assert answer_of_ours(await ours(gateway, stream, AnthropicProtocol())) == expected
    assert answer_of_anthropic(await anthropic_sdk(gateway, stream)) == expected


# --- where the OpenAI SDK is wrong ----------------------------------------------------------


async def test_length_cut_answer_is_returned(
    gateway: FakeGateway, request: pytest.FixtureRequest
) -> None:
    stream = corpus.OPENAI_FINISH_LENGTH
    expected = OPENAI_ANSWERS["finish-length"]
    assert answer_of_ours(await ours(gateway, stream, OpenAIProtocol())) == expected
    with sdk_quirk(request, openai, seen_through=OPENAI_SEEN):
        # No response_format was given, yet the SDK refuses to hand over a length-cut completion.
        with pytest.raises(openai.LengthFinishReasonError) as raised:
            await openai_sdk(gateway, stream)
        assert answer_of_openai(raised.value.completion) == expected


async def test_repeated_tool_call_id_is_not_doubled(
    gateway: FakeGateway, request: pytest.FixtureRequest
) -> None:
    stream = corpus.OPENAI_REPEATED_TOOL_CALL_ID
    assert answer_of_ours(await ours(gateway, stream, OpenAIProtocol())) == Answer(
        tool_calls=(("call_kQ3vB7xZ1mWn9RtY", "get_weather", {"city": "Lisbon"}),),
        finish_reason="tool_calls",
        usage=(154, 21, 0),
    )
    with sdk_quirk(request, openai, seen_through=OPENAI_SEEN):
        # The SDK adds up every string of a delta, the id and the name included.
        [call] = answer_of_openai(await openai_sdk(gateway, stream)).tool_calls
        assert call == (
            "call_kQ3vB7xZ1mWn9RtYcall_kQ3vB7xZ1mWn9RtY",
            "get_weatherget_weather",
            {"city": "Lisbon"},
        )


async def test_tool_calls_without_index_are_read(
    gateway: FakeGateway, request: pytest.FixtureRequest
) -> None:
    stream = corpus.OPENAI_TOOL_CALLS_WITHOUT_INDEX
    assert answer_of_ours(await ours(gateway, stream, OpenAIProtocol())) == Answer(
        tool_calls=(
            ("function-call-4431597201934551203", "get_weather", {"city": "Sydney"}),
            ("function-call-4431597201934551204", "get_weather", {"city": "Perth"}),
        ),
        finish_reason="stop",  # what Gemini says, even after tool calls
        usage=(63, 18, 0),
    )
    # The SDK indexes its list of calls with the missing index.
    with (
        sdk_quirk(request, openai, seen_through=OPENAI_SEEN),
        pytest.raises(TypeError, match="list indices must be integers"),
    ):
        await openai_sdk(gateway, stream)


async def test_parallel_calls_sharing_an_index_stay_apart(
    gateway: FakeGateway, request: pytest.FixtureRequest
) -> None:
    stream = corpus.OPENAI_PARALLEL_CALLS_SHARING_INDEX
    assert answer_of_ours(await ours(gateway, stream, OpenAIProtocol())) == Answer(
        tool_calls=(
            ("call_b2d1e8f0", "get_weather", {"city": "Oslo"}),
            ("call_4c7a9e13", "get_time", {"tz": "Europe/Oslo"}),
        ),
        finish_reason="tool_calls",
        usage=(96, 24, 0),
    )
    with sdk_quirk(request, openai, seen_through=OPENAI_SEEN):
        # The SDK merges everything at one index into one call.
        completion = await openai_sdk(gateway, stream)
        [call] = completion.choices[0].message.tool_calls or []
        assert (call.id, call.function.name, call.function.arguments) == (
            "call_b2d1e8f0call_4c7a9e13",
            "get_weatherget_time",
            '{"city":"Oslo"}{"tz":"Europe/Oslo"}',
        )


async def test_blank_data_line_after_an_id_is_skipped(
    gateway: FakeGateway, request: pytest.FixtureRequest
) -> None:
    stream = corpus.OPENAI_BLANK_DATA_AFTER_ID
    assert answer_of_ours(await ours(gateway, stream, OpenAIProtocol())) == Answer(
        text="Hi there.", finish_reason="stop", usage=(11, 3, 0)
    )
    # The SDK parses the empty event's data as JSON.
    with sdk_quirk(request, openai, seen_through=OPENAI_SEEN), pytest.raises(json.JSONDecodeError):
        await openai_sdk(gateway, stream)


async def test_keepalive_after_an_id_line_is_no_event(
    gateway: FakeGateway, request: pytest.FixtureRequest
) -> None:
    stream = corpus.OPENAI_KEEPALIVE_AFTER_ID
    assert answer_of_ours(await ours(gateway, stream, OpenAIProtocol())) == Answer(
        text="Hi there.", finish_reason="stop", usage=(11, 3, 0)
    )
    # Once an id was seen, the SDK's decoder dispatches an empty event at every blank line.
    with sdk_quirk(request, openai, seen_through=OPENAI_SEEN), pytest.raises(json.JSONDecodeError):
        await openai_sdk(gateway, stream)


async def test_openai_byte_order_mark_hides_no_event(
    gateway: FakeGateway, request: pytest.FixtureRequest
) -> None:
    stream = corpus.OPENAI_AFTER_BOM
    expected = Answer(text="Hello from Ollama.", finish_reason="stop", usage=(27, 5, 0))
    assert answer_of_ours(await ours(gateway, stream, OpenAIProtocol())) == expected
    with sdk_quirk(request, openai, seen_through=OPENAI_SEEN):
        # The SDK reads the first line's field as "\ufeffdata", ignores it, and loses "Hello".
        assert answer_of_openai(await openai_sdk(gateway, stream)) == replace(
            expected, text=" from Ollama."
        )


async def test_openai_stream_cut_before_done_is_an_error(
    gateway: FakeGateway, request: pytest.FixtureRequest
) -> None:
    stream = corpus.OPENAI_CUT_BEFORE_DONE
    with pytest.raises(StreamInterrupted):
        await ours(gateway, stream, OpenAIProtocol())
    with sdk_quirk(request, openai, seen_through=OPENAI_SEEN):
        # The SDK returns the partial answer as the final completion.
        assert answer_of_openai(await openai_sdk(gateway, stream)) == Answer(text="Done — see")


# --- where the Anthropic SDK is wrong -------------------------------------------------------


async def test_anthropic_stream_cut_before_message_stop_is_an_error(
    gateway: FakeGateway,
    request: pytest.FixtureRequest,
) -> None:
    stream = corpus.ANTHROPIC_CUT_BEFORE_MESSAGE_STOP
    with pytest.raises(StreamInterrupted):
        await ours(gateway, stream, AnthropicProtocol())
    with sdk_quirk(request, anthropic, seen_through=ANTHROPIC_SEEN):
        # The SDK returns the partial answer as the final message.
        assert answer_of_anthropic(await anthropic_sdk(gateway, stream)) == Answer(
            text="Bonjour ! Je suis Claude, ravi de", usage=(21, 2, 0)
        )


async def test_anthropic_connection_cut_is_a_typed_error(
    gateway: FakeGateway, request: pytest.FixtureRequest
) -> None:
    stream = corpus.ANTHROPIC_RESET_MID_STREAM
    with pytest.raises(StreamInterrupted):
        await ours(gateway, stream, AnthropicProtocol())
    with sdk_quirk(request, anthropic, seen_through="2.16.0"):
        # The SDK lets the transport's exception out, not one of its own (openai wraps it in
        # openai.APIConnectionError).
        with pytest.raises(httpx2.RemoteProtocolError) as raised:
            await anthropic_sdk(gateway, stream)
        assert not isinstance(raised.value, anthropic.APIError)


async def test_anthropic_byte_order_mark_hides_no_event(
    gateway: FakeGateway, request: pytest.FixtureRequest
) -> None:
    stream = corpus.ANTHROPIC_AFTER_BOM
    expected = ANTHROPIC_ANSWERS["text"]
    assert answer_of_ours(await ours(gateway, stream, AnthropicProtocol())) == expected
    # The SDK loses message_start (its event line reads "\ufeffevent"), so it never starts a
    # message, then asserts it has one.
    with sdk_quirk(request, anthropic, seen_through=ANTHROPIC_SEEN), pytest.raises(AssertionError):
        await anthropic_sdk(gateway, stream)


async def test_anthropic_stream_without_event_lines(
    gateway: FakeGateway, request: pytest.FixtureRequest
) -> None:
    stream = corpus.ANTHROPIC_WITHOUT_EVENT_LINES
    expected = ANTHROPIC_ANSWERS["tool-use-input-json-delta"]
    assert answer_of_ours(await ours(gateway, stream, AnthropicProtocol())) == expected
    # The SDK skips every event without an `event:` line, then asserts it saw a message.
    with sdk_quirk(request, anthropic, seen_through=ANTHROPIC_SEEN), pytest.raises(AssertionError):
        await anthropic_sdk(gateway, stream)


async def test_tool_use_cut_by_max_tokens_is_not_half_parsed(
    gateway: FakeGateway, request: pytest.FixtureRequest
) -> None:
    stream = corpus.ANTHROPIC_MAX_TOKENS_IN_TOOL_USE
    message = await ours(gateway, stream, AnthropicProtocol())
    expected = Answer(
        text="Checking.",
        tool_calls=(("toolu_01NbV5cX7zQwE3rT9yUiOp2A", "get_weather", None),),
        finish_reason="length",
        usage=(388, 32, 0),
    )
    assert answer_of_ours(message) == expected
    assert message.tool_calls[0].raw_arguments == '{"location": "San Francisco, CA", "unit": "fahr'
    with sdk_quirk(request, anthropic, seen_through=ANTHROPIC_SEEN):
        # The SDK keeps its partial parse of the cut JSON: a plausible input without "unit".
        cut_short = (
            "toolu_01NbV5cX7zQwE3rT9yUiOp2A",
            "get_weather",
            {"location": "San Francisco, CA"},
        )
        assert answer_of_anthropic(await anthropic_sdk(gateway, stream)) == replace(
            expected, tool_calls=(cut_short,)
        )


# --- server tools ------------------------------------------------------------------------------


async def test_server_tool_use_is_not_a_client_tool_call(gateway: FakeGateway) -> None:
    stream = corpus.ANTHROPIC_SERVER_TOOL_USE
    expected = Answer(
        text="I'll look up the weather in Paris.It is cloudy and 18 °C in Paris.",
        finish_reason="stop",
        usage=(10682, 510, 0),
    )
    assert answer_of_anthropic(await anthropic_sdk(gateway, stream)) == expected
    # We answer tool_calls=(("srvtoolu_014hJH82Qum7Td6UV8gDXThB", "web_search",
    # {"query": "weather Paris today"}),): the engine would run a tool that does not exist
    # here, and send the block back as a client tool_use.
    assert answer_of_ours(await ours(gateway, stream, AnthropicProtocol())) == expected
