"""Assembling the events of one model call into an :class:`~core.messages.AssistantMessage`.

A pure state machine, the same for every protocol: text and reasoning concatenate, thinking
blocks gather their text and signature per block, tool calls are taken whole from
``ToolCallReady`` (their fragments were only for showing progress), the last ``Usage`` wins,
and ``AttemptVoid`` throws away everything of the failed attempt.
"""

from __future__ import annotations

from core.events import (
    AttemptVoid,
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
from core.messages import AssistantMessage, RedactedThinking, Thinking, TokenUsage, ToolCall

__all__ = ["MessageAssembler"]


class MessageAssembler:
    """``feed`` every event of a call, then read :meth:`message`."""

    __slots__ = ("_finish", "_reasoning", "_redacted", "_signatures", "_text", "_tools", "_usage")

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._text: list[str] = []
        self._reasoning: dict[int, list[str]] = {}
        self._signatures: dict[int, str] = {}
        self._redacted: dict[int, str] = {}
        self._tools: dict[int, ToolCall] = {}
        self._usage = TokenUsage()
        self._finish: FinishReason | None = None

    @property
    def finished(self) -> bool:
        return self._finish is not None

    def feed(self, event: StreamEvent) -> None:
        match event:
            case TextDelta(text=text):
                self._text.append(text)
            case ReasoningDelta(text=text, block=block):
                self._reasoning.setdefault(block, []).append(text)
            case ReasoningSignature(signature=signature, block=block):
                self._signatures[block] = self._signatures.get(block, "") + signature
            case ReasoningRedacted(data=data, block=block):
                self._redacted[block] = data
            case ToolCallReady(index=index, id=id_, name=name, arguments=args, raw_arguments=raw):
                self._tools[index] = ToolCall(id=id_, name=name, arguments=args, raw_arguments=raw)
            case Usage(input_tokens=i, output_tokens=o, cached_input_tokens=c):
                self._usage = TokenUsage(input_tokens=i, output_tokens=o, cached_input_tokens=c)
            case StreamEnd(finish_reason=reason):
                self._finish = reason
            case AttemptVoid():
                self._reset()
            case ToolCallStarted() | ToolCallDelta():
                pass

    def message(self) -> AssistantMessage:
        blocks = sorted({*self._signatures, *self._redacted})
        thinking: list[Thinking | RedactedThinking] = []
        for block in blocks:
            if block in self._redacted:
                thinking.append(RedactedThinking(data=self._redacted[block]))
            else:
                text = "".join(self._reasoning.get(block, ()))
                thinking.append(Thinking(thinking=text, signature=self._signatures[block]))
        return AssistantMessage(
            text="".join(self._text),
            reasoning="".join("".join(parts) for _, parts in sorted(self._reasoning.items())),
            thinking=tuple(thinking),
            tool_calls=tuple(call for _, call in sorted(self._tools.items())),
            finish_reason=self._finish,
            usage=self._usage,
        )
