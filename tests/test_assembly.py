"""MessageAssembler: events of one call into the message a store keeps and a protocol sends back."""

from __future__ import annotations

from core.assembly import MessageAssembler
from core.events import (
    AttemptVoid,
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
from core.messages import AssistantMessage, RedactedThinking, Thinking, TokenUsage, ToolCall


def assemble(*events: StreamEvent) -> AssistantMessage:
    assembler = MessageAssembler()
    for event in events:
        assembler.feed(event)
    return assembler.message()


def test_thinking_blocks_keep_their_signatures_and_order() -> None:
    message = assemble(
        ReasoningDelta(text="Paris? ", block=0),
        ReasoningDelta(text="Use the tool.", block=0),
        ReasoningSignature(signature="sig-A", block=0),
        ReasoningRedacted(data="opaque", block=1),
        TextDelta(text="Checking."),
        ToolCallStarted(index=3, id="tu_1", name="get_weather"),
        ToolCallDelta(index=3, fragment='{"city":'),
        ToolCallDelta(index=3, fragment='"Paris"}'),
        ToolCallReady(
            index=3, id="tu_1", name="get_weather", arguments={"city": "Paris"},
            raw_arguments='{"city":"Paris"}',
        ),
        Usage(input_tokens=10, output_tokens=1),
        Usage(input_tokens=10, output_tokens=42),
        StreamEnd(finish_reason="tool_calls", raw_reason="tool_use"),
    )  # fmt: skip
    assert message == AssistantMessage(
        text="Checking.",
        reasoning="Paris? Use the tool.",
        thinking=(
            Thinking(thinking="Paris? Use the tool.", signature="sig-A"),
            RedactedThinking(data="opaque"),
        ),
        tool_calls=(
            ToolCall(
                id="tu_1",
                name="get_weather",
                arguments={"city": "Paris"},
                raw_arguments='{"city":"Paris"}',
            ),
        ),
        finish_reason="tool_calls",
        usage=TokenUsage(input_tokens=10, output_tokens=42),
    )


def test_attempt_void_discards_the_failed_attempt() -> None:
    message = assemble(
        TextDelta(text="Hel"),
        AttemptVoid(attempt=1, reason="cut"),
        TextDelta(text="Hello"),
        StreamEnd(finish_reason="stop"),
    )
    assert (message.text, message.finish_reason) == ("Hello", "stop")


def test_unfinished_call_has_no_finish_reason() -> None:
    assembler = MessageAssembler()
    assembler.feed(TextDelta(text="partial"))
    assert not assembler.finished
    assert assembler.message().finish_reason is None
