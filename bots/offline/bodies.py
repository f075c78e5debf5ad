"""Request bodies of both protocols, read into one :class:`Conversation`.

OpenAI Chat Completions keeps the system prompt among the messages and each tool result in a
message of its own; the Anthropic Messages API has a ``system`` field and puts tool results in
content blocks of a user message. Anything the model cannot read is a :class:`RequestRejected`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bots.offline.attached import AttachedImage, image_from_url, split_parts
from bots.offline.conversation import (
    Conversation,
    PlannedCall,
    RequestRejected,
    Said,
    Wire,
    json_object,
)

__all__ = ["read_conversation"]


def read_conversation(body: Any, *, protocol: Wire) -> Conversation:
    """The conversation in a request body of ``protocol``."""
    return _read_openai(body) if protocol == "openai" else _read_anthropic(body)


# --- OpenAI Chat Completions -----------------------------------------------------------------


def _read_openai(body: Any) -> Conversation:
    said: list[Said] = []
    system: list[str] = []
    for message in _messages_of(body):
        role, text = message.get("role"), _text_of(message.get("content"))
        if role in ("system", "developer"):
            system.append(text)
        elif role == "user":
            said.append(_openai_user(message.get("content")))
        elif role == "assistant":
            calls = tuple(_openai_call(item) for item in message.get("tool_calls") or ())
            said.append(Said(role="assistant", text=text, calls=calls))
        elif role == "tool":
            call_id = str(message.get("tool_call_id") or "")
            said.append(Said(role="tool", text=text, call_id=call_id))
        else:
            raise RequestRejected(f"messages: unknown role {role!r}")
    tools = _tool_names(body, lambda tool: _field(tool.get("function"), "name") or tool.get("name"))
    if body.get("tool_choice") == "none":
        tools = frozenset()
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    return Conversation(
        said=tuple(said), system="\n".join(system), tools=tools, max_tokens=_limit(limit)
    )


def _openai_user(content: Any) -> Said:
    """A user message: its text, or its parts (``text`` and ``image_url``) with the attached
    files told apart from what the user wrote."""
    if not isinstance(content, list):
        return Said(role="user", text=_text_of(content))
    parts: list[str | AttachedImage] = []
    for part in content:
        if not isinstance(part, dict):
            raise RequestRejected("messages: a content part must be an object")
        if part.get("type") == "image_url":
            parts.append(image_from_url(str(_field(part.get("image_url"), "url") or "")))
        elif part.get("type") == "text":
            parts.append(str(part.get("text") or ""))
    texts, attachments = split_parts(parts)
    return Said(role="user", text="".join(texts), attachments=attachments)


def _openai_call(item: Any) -> PlannedCall:
    if not isinstance(item, dict):
        raise RequestRejected("messages: a tool call must be an object")
    function = item.get("function")
    if not isinstance(function, dict):
        raise RequestRejected("messages: a tool call needs a function object")
    arguments = json_object(str(function.get("arguments") or "")) or {}
    return PlannedCall(
        id=str(item.get("id") or ""), name=str(function.get("name")), arguments=arguments
    )


# --- Anthropic Messages ----------------------------------------------------------------------


def _read_anthropic(body: Any) -> Conversation:
    said = [item for message in _messages_of(body) for item in _anthropic_said(message)]
    tools = _tool_names(body, lambda tool: tool.get("name"))
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "none":
        tools = frozenset()
    return Conversation(
        said=tuple(said),
        system=_text_of(body.get("system")),
        tools=tools,
        max_tokens=_limit(body.get("max_tokens")),
    )


def _anthropic_said(message: dict[str, Any]) -> list[Said]:
    """One message: the tool results in it, then what it says (a user's only if it has text)."""
    role, content = message.get("role"), message.get("content")
    if role not in ("user", "assistant"):
        raise RequestRejected(f"messages: unknown role {role!r}")
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise RequestRejected("messages: content must be a string or a list of blocks")
    if not all(isinstance(block, dict) for block in content):
        raise RequestRejected("messages: a content block must be an object")
    said = [_tool_result(block) for block in content if block.get("type") == "tool_result"]
    if role == "assistant":
        texts = [str(block.get("text") or "") for block in content if block.get("type") == "text"]
        calls = tuple(_tool_use(block) for block in content if block.get("type") == "tool_use")
        said.append(Said(role="assistant", text="".join(texts), calls=calls))
        return said
    parts = [part for block in content if (part := _anthropic_part(block)) is not None]
    texts, attachments = split_parts(parts)
    if texts or attachments:
        said.append(Said(role="user", text="\n".join(texts), attachments=attachments))
    return said


def _anthropic_part(block: dict[str, Any]) -> str | AttachedImage | None:
    """A text block's text, an image block's image (base64 data, or a link), else ``None``."""
    if block.get("type") == "text":
        return str(block.get("text") or "")
    if block.get("type") != "image":
        return None
    source = block.get("source")
    if _field(source, "type") != "base64":
        return AttachedImage()
    return AttachedImage(
        media_type=str(_field(source, "media_type") or ""), data=str(_field(source, "data") or "")
    )


def _tool_use(block: dict[str, Any]) -> PlannedCall:
    given = block.get("input")
    arguments: dict[str, Any] = given if isinstance(given, dict) else {}
    return PlannedCall(id=str(block.get("id")), name=str(block.get("name")), arguments=arguments)


def _tool_result(block: dict[str, Any]) -> Said:
    return Said(
        role="tool",
        text=_text_of(block.get("content")),
        call_id=str(block.get("tool_use_id") or ""),
        is_error=bool(block.get("is_error")),
    )


# --- Both ------------------------------------------------------------------------------------


def _messages_of(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict):
        raise RequestRejected("the request body must be a JSON object")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestRejected("messages: a non-empty list of messages is required")
    if not all(isinstance(message, dict) for message in messages):
        raise RequestRejected("messages: each message must be an object")
    return messages


def _tool_names(body: dict[str, Any], name_of: Callable[[dict[str, Any]], Any]) -> frozenset[str]:
    tools = body.get("tools") or []
    if not isinstance(tools, list):
        raise RequestRejected("tools: must be a list")
    return frozenset(str(name_of(tool)) for tool in tools if isinstance(tool, dict))


def _field(value: Any, name: str) -> Any:
    return value.get(name) if isinstance(value, dict) else None


def _limit(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise RequestRejected("max_tokens: must be a positive integer")
    return value


def _text_of(content: Any) -> str:
    """A message's text: a string, or the text of a list of parts / blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text") or "") for part in content if isinstance(part, dict))
    return ""
