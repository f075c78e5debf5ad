"""The conversation model: what was said in a thread, in a protocol-neutral shape.

Messages are pydantic models so the stores can serialize them; the wire protocols
(``core.protocols``) turn a :class:`ModelRequest` into a provider's request body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import quote, unquote

from pydantic import BaseModel, ConfigDict, Field

from core.events import FinishReason

__all__ = [
    "AssistantMessage",
    "ConversationBreak",
    "ConversationKey",
    "Message",
    "ModelRequest",
    "RedactedThinking",
    "SystemMessage",
    "Thinking",
    "TokenUsage",
    "ToolCall",
    "ToolResult",
    "ToolSpec",
    "UserMessage",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConversationKey:
    """Which conversation a message belongs to: one per thread.

    - Slack: ``("slack", team, channel, thread_ts)``
    - Discord: ``("discord", guild id or "dm", channel id, thread id or "-")``
    - terminal: ``("console", "local", user, session id)``

    ``str(key)`` is a stable form for stores (``slack:T1:C2:1700000000.000100``); each part is
    percent-encoded so a ``:`` inside a part cannot make two keys collide.
    """

    platform: str
    workspace: str
    channel: str
    thread: str

    def __str__(self) -> str:
        parts = (self.platform, self.workspace, self.channel, self.thread)
        return ":".join(quote(part, safe="") for part in parts)

    @classmethod
    def parse(cls, text: str) -> ConversationKey:
        parts = text.split(":")
        if len(parts) != 4:
            raise ValueError(f"not a conversation key: {text!r}")
        platform, workspace, channel, thread = (unquote(part) for part in parts)
        return cls(platform=platform, workspace=workspace, channel=channel, thread=thread)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SystemMessage(_Frozen):
    role: Literal["system"] = "system"
    text: str


class UserMessage(_Frozen):
    role: Literal["user"] = "user"
    text: str
    author_id: str | None = None
    author_name: str | None = None


class ToolCall(_Frozen):
    """A tool call the model made. ``arguments`` is the parsed JSON object, or ``None`` when the
    model sent something that is not one (``raw_arguments`` keeps what it sent)."""

    id: str
    name: str
    arguments: dict[str, Any] | None
    raw_arguments: str = ""


class Thinking(_Frozen):
    """An Anthropic thinking block with its signature, sent back verbatim within a tool loop."""

    type: Literal["thinking"] = "thinking"
    thinking: str
    signature: str


class RedactedThinking(_Frozen):
    type: Literal["redacted_thinking"] = "redacted_thinking"
    data: str


class TokenUsage(_Frozen):
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0


class AssistantMessage(_Frozen):
    """What the model said in one call: text, reasoning, tool calls, how it ended.

    ``stopped`` marks an answer cut short because the turn was cancelled (a Stop button);
    ``text`` then holds what was said until then.
    """

    role: Literal["assistant"] = "assistant"
    text: str = ""
    reasoning: str = ""
    thinking: tuple[Annotated[Thinking | RedactedThinking, Field(discriminator="type")], ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: FinishReason | None = None
    usage: TokenUsage = TokenUsage()
    stopped: bool = False


class ToolResult(_Frozen):
    """The result of one tool call, as the model will read it."""

    role: Literal["tool"] = "tool"
    call_id: str
    name: str
    content: str
    is_error: bool = False


class ConversationBreak(_Frozen):
    """Where a thread's conversation starts afresh (the ``new`` command): the model reads
    nothing before the last break. It is never sent to a model."""

    role: Literal["break"] = "break"


Message = Annotated[
    SystemMessage | UserMessage | AssistantMessage | ToolResult | ConversationBreak,
    Field(discriminator="role"),
]


class ToolSpec(_Frozen):
    """A tool offered to the model: its name, what it does, and a JSON Schema of its arguments."""

    name: str
    description: str
    parameters: dict[str, Any]


class ModelRequest(_Frozen):
    """One model call: everything a wire protocol needs to build the request body.

    ``tool_choice="none"`` keeps the tools visible but asks for an answer without calling one
    (the engine's last round).
    """

    model: str
    messages: tuple[Message, ...]
    system: str | None = None
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: Literal["auto", "none"] = "auto"
    max_tokens: int = 4096
    temperature: float | None = None
