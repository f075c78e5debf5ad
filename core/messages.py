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
    "Attachment",
    "ConversationBreak",
    "ConversationKey",
    "FileNote",
    "FileText",
    "ImageContent",
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


ImageType = Literal["image/png", "image/jpeg", "image/gif", "image/webp"]


class ImageContent(_Frozen):
    """An image the user attached, sent to the model as an image part.

    ``data`` is the image's base64. A store keeps the bytes once, by ``sha256`` (of the raw
    bytes), in its blob table and the message without them; loading the message fills ``data``
    back in, or leaves it ``None`` when the blob is no longer kept (retention, the size cap) —
    the model is then told an image was attached and is gone. ``description`` is one plain
    line (the kind, size and format: "an image, 640 by 480 PNG") for a model that cannot see
    images and for notes.
    """

    type: Literal["image"] = "image"
    name: str
    media_type: ImageType
    sha256: str
    width: int
    height: int
    description: str
    data: str | None = None


class FileText(_Frozen):
    """A text or PDF file's text as the model reads it: ``text`` already carries its header,
    the untrusted-data wrapper and any cut note (``core.attachments.TextPart.render``)."""

    type: Literal["file_text"] = "file_text"
    name: str
    text: str
    description: str


class FileNote(_Frozen):
    """A file the model is not sent: ``note`` names it and says why (skipped, too big,
    download failed)."""

    type: Literal["file_note"] = "file_note"
    name: str
    note: str


Attachment = Annotated[ImageContent | FileText | FileNote, Field(discriminator="type")]


class UserMessage(_Frozen):
    """What a person said; ``attachments`` are the files of the message, in order, after its
    text."""

    role: Literal["user"] = "user"
    text: str
    author_id: str | None = None
    author_name: str | None = None
    attachments: tuple[Attachment, ...] = ()


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
