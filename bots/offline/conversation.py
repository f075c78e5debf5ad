"""What the offline model reads and writes, whatever the protocol: a conversation in, an answer out.

Also the few text helpers every part of it shares: streamed words, token estimates, JSON objects
and quotes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from bots.offline.attached import Attached

__all__ = [
    "Answer",
    "Conversation",
    "Finish",
    "PlannedCall",
    "RequestRejected",
    "Said",
    "Wire",
    "estimate_tokens",
    "json_object",
    "quote",
    "words",
]

Wire = Literal["openai", "anthropic"]
Finish = Literal["stop", "tool_calls", "length"]


class RequestRejected(ValueError):
    """The request is not one the offline model can answer; the server answers 400."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PlannedCall:
    """A tool call, made by the model or found in the history."""

    id: str
    name: str
    arguments: dict[str, Any]

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.arguments, ensure_ascii=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Said:
    """One message of the conversation. ``tool`` is one tool result, answering ``call_id``;
    ``attachments`` are what a user attached (``text`` is then what they wrote, without them)."""

    role: Literal["user", "assistant", "tool"]
    text: str = ""
    attachments: tuple[Attached, ...] = ()
    calls: tuple[PlannedCall, ...] = ()
    call_id: str = ""
    is_error: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Conversation:
    """A request body of either protocol, as the model reads it."""

    said: tuple[Said, ...]
    system: str = ""
    tools: frozenset[str] = field(default_factory=frozenset)
    max_tokens: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """What to stream: ``pieces`` (words with their leading space) and then ``tool_calls``."""

    id: str
    pieces: tuple[str, ...]
    tool_calls: tuple[PlannedCall, ...] = ()
    finish: Finish = "stop"
    input_tokens: int = 0

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def output_tokens(self) -> int:
        return len(self.pieces) + sum(estimate_tokens(c.arguments_json) for c in self.tool_calls)


def words(text: str) -> list[str]:
    """``text`` as it is streamed: each word with the whitespace before it."""
    return re.findall(r"\s*\S+", text)


def estimate_tokens(text: str) -> int:
    """Tokens, roughly: one per word or punctuation run."""
    return len(re.findall(r"\w+|[^\w\s]+", text))


def json_object(text: str) -> dict[str, Any] | None:
    """``text`` parsed as a JSON object; ``None`` if it is not one."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def quote(prefix: str, text: str, limit: int = 120) -> str:
    """``prefix “text”.``, the text on one line and shortened at a word boundary."""
    quoted = " ".join(text.split())
    if len(quoted) > limit:
        quoted = quoted[:limit].rsplit(" ", 1)[0] + "…"
    end = "" if quoted.endswith((".", "!", "?", "…")) else "."
    return f"{prefix} “{quoted}”{end}"
