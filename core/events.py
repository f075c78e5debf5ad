"""Normalized events of one model call, the same for every wire protocol.

A wire protocol (``core.protocols``) turns the gateway's Server-Sent Events into these; nothing
provider-shaped travels further. Consumers ``match`` on :data:`StreamEvent`.

A model call produces, in order: any number of text, reasoning and tool-call events (tool calls
as ``ToolCallStarted`` → ``ToolCallDelta``\\* → ``ToolCallReady`` per call, calls possibly
interleaved), ``Usage`` whenever the gateway reports it (each one the total so far for the
call), and exactly one ``StreamEnd`` last. The retrying stream (``core.retry``) adds
``AttemptVoid`` and ``ModelRetrying`` between attempts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "AttemptVoid",
    "EngineEvent",
    "FinishReason",
    "ModelRetrying",
    "ReasoningDelta",
    "ReasoningRedacted",
    "ReasoningSignature",
    "StreamEnd",
    "StreamEvent",
    "TextDelta",
    "ToolCallDelta",
    "ToolCallReady",
    "ToolCallStarted",
    "ToolFinished",
    "ToolStarted",
    "TurnFailed",
    "TurnFinished",
    "Usage",
    "WaitingForSlot",
]

FinishReason = Literal["stop", "tool_calls", "length", "content_filter", "other"]
"""Why the model stopped, normalized across protocols.

OpenAI ``stop``/``tool_calls``/``length``/``content_filter`` map to themselves
(``function_call`` → ``tool_calls``); Anthropic ``end_turn``/``stop_sequence`` → ``stop``,
``tool_use`` → ``tool_calls``, ``max_tokens`` → ``length``, ``refusal`` → ``content_filter``.
Anything else is ``other`` (the raw value is kept on :class:`StreamEnd`).
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class TextDelta:
    """A piece of the answer's visible text."""

    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReasoningDelta:
    """A piece of the model's reasoning (OpenAI-compatible ``reasoning``/``reasoning_content``,
    Anthropic ``thinking_delta``). ``block`` numbers Anthropic thinking blocks; 0 elsewhere."""

    text: str
    block: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ReasoningSignature:
    """The signature that closes an Anthropic thinking block; it must be sent back with the
    block within a tool loop."""

    signature: str
    block: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ReasoningRedacted:
    """An Anthropic ``redacted_thinking`` block: opaque data to send back verbatim."""

    data: str
    block: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallStarted:
    """The model began a tool call. ``index`` tells interleaved calls of one response apart."""

    index: int
    id: str
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallDelta:
    """A fragment of a tool call's JSON arguments, as streamed."""

    index: int
    fragment: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallReady:
    """A tool call is complete. Its arguments were parsed once, here.

    ``arguments`` is the parsed JSON object, or ``None`` when ``raw_arguments`` is not a JSON
    object (the engine tells the model so instead of running the tool). Empty arguments parse
    as ``{}``.
    """

    index: int
    id: str
    name: str
    arguments: dict[str, Any] | None
    raw_arguments: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """Token counts for the call so far (each report replaces the previous one)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamEnd:
    """The model call finished with its end marker (``[DONE]`` / ``message_stop``)."""

    finish_reason: FinishReason
    raw_reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptVoid:
    """The attempt that produced the preceding events failed and is being retried.

    Everything the consumer received since the previous ``AttemptVoid`` (or the start) is void:
    a renderer rewrites the text back to where this model call began. ``attempt`` is the number
    of the attempt that failed (1 for the first); ``reason`` is a short text fit for a log line.
    """

    attempt: int
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelRetrying:
    """The model call is tried again after ``wait`` seconds; nothing arrives meanwhile.

    Yielded right before the wait (after the failed attempt's ``AttemptVoid``, if any), so a
    renderer can say why the answer pauses — a ``Retry-After`` can be half a minute. ``attempt``
    is the number of the attempt that failed (1 for the first); ``reason`` is a short text fit
    for a log line; ``busy`` says the gateway was rate limited or overloaded, rather than the
    connection or the stream failing.
    """

    attempt: int
    wait: float
    reason: str
    busy: bool


StreamEvent = (
    TextDelta
    | ReasoningDelta
    | ReasoningSignature
    | ReasoningRedacted
    | ToolCallStarted
    | ToolCallDelta
    | ToolCallReady
    | Usage
    | StreamEnd
    | AttemptVoid
    | ModelRetrying
)


# Events of one conversation turn, as ``core.engine`` yields them to a renderer (LiveReply, the
# terminal). A turn yields text and reasoning deltas, tool activity, attempt voids and retry
# notices, and ends with exactly one TurnFinished or TurnFailed.


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolStarted:
    """A tool began running. ``activity`` is a short line for a status display
    ("Checking the weather in Paris")."""

    call_id: str
    name: str
    arguments: dict[str, Any] | None
    activity: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolFinished:
    """A tool ended: ``ok`` or an error the model will read; ``summary`` is one short line."""

    call_id: str
    name: str
    ok: bool
    summary: str
    elapsed: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnFinished:
    """The turn's answer is complete.

    ``text`` is the whole visible answer — exactly the text deltas of the turn, after voids:
    the text of every round, rounds separated by a blank line. ``truncated`` says a length
    limit cut it (the text then says so); ``usage`` is summed over the turn's ``rounds`` model
    calls. ``stopped`` is for renderers that report a cancelled turn themselves.
    """

    text: str
    usage: Usage
    rounds: int
    truncated: bool = False
    stopped: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnFailed:
    """The turn could not produce an answer. ``message`` is short and fit to show a user;
    ``partial_text`` is whatever text had been shown of the round that failed."""

    message: str
    partial_text: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class WaitingForSlot:
    """Every one of the process's concurrent model requests is taken
    (``llm.max_concurrent_requests``): this turn's model call waits for one to end. Yielded
    once, before the wait, so a renderer can say why nothing comes yet."""


EngineEvent = (
    TextDelta
    | ReasoningDelta
    | ToolStarted
    | ToolFinished
    | AttemptVoid
    | ModelRetrying
    | WaitingForSlot
    | TurnFinished
    | TurnFailed
)
