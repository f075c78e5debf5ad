"""Trimming a conversation to a token budget without breaking it apart.

:func:`trim` keeps every system message and the longest recent part of the conversation that
fits the budget. That part starts at a user message (Anthropic requires the first message to be
the user's) and never where it would separate a tool call from its result. Thinking blocks live
in the assistant message that carries their tool calls, so they are kept or dropped together.

Token counts are estimates (:func:`estimate_tokens`: about four characters a token plus a small
overhead per message and per tool call; an image by its size, never by its base64); a model's
tokenizer counts differently, so leave headroom in the budget. Pure functions: no I/O, no state.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import assert_never

from core.messages import (
    AssistantMessage,
    Attachment,
    ConversationBreak,
    FileNote,
    FileText,
    ImageContent,
    Message,
    SystemMessage,
    ToolResult,
    UserMessage,
)
from core.protocols.user_parts import gone_image

__all__ = ["estimate_tokens", "image_tokens", "trim"]

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD = 4  # the role and the framing of one message
TOOL_CALL_OVERHEAD = 8  # the id, type and framing of one tool call
PART_OVERHEAD = 4  # the type and framing of one part of a message with attachments
PIXELS_PER_IMAGE_TOKEN = 750  # Anthropic's estimate: tokens = width * height / 750
MAX_IMAGE_TOKENS = 1_600  # a larger image is downscaled by the provider to about this


def estimate_tokens(message: Message) -> int:
    """About how many tokens ``message`` costs in a request (never less than the overhead).

    Counts what the protocols send back: text, attachments (:func:`image_tokens` for an image,
    the text of a file or a note), tool call names and arguments (the raw text when the
    arguments did not parse), thinking blocks, tool results. ``reasoning`` is not sent back,
    so it is not counted.
    """
    overhead = MESSAGE_OVERHEAD
    match message:
        case SystemMessage():
            chars = len(message.text)
        case UserMessage():
            chars = len(message.text) + len(message.author_name or "")
            if message.attachments:
                overhead += sum(_attachment_tokens(part) for part in message.attachments)
        case AssistantMessage():
            chars = len(message.text)
            for block in message.thinking:
                chars += len(block.thinking) if block.type == "thinking" else len(block.data)
            for call in message.tool_calls:
                arguments = (
                    call.raw_arguments
                    if call.arguments is None
                    else json.dumps(call.arguments, ensure_ascii=False, default=str)
                )
                chars += len(call.id) + len(call.name) + len(arguments)
            overhead += TOOL_CALL_OVERHEAD * len(message.tool_calls)
        case ToolResult():
            chars = len(message.call_id) + len(message.name) + len(message.content)
        case ConversationBreak():  # never sent: the engine cuts the history at it
            return 0
        case _:
            assert_never(message)
    return overhead + -(-chars // CHARS_PER_TOKEN)


def image_tokens(width: int, height: int) -> int:
    """About how many tokens an image of this size costs (Anthropic's estimate, capped where
    the provider downscales; OpenAI's tiles cost about as much at the sizes relaybot sends)."""
    return min(MAX_IMAGE_TOKENS, max(1, -(-width * height // PIXELS_PER_IMAGE_TOKEN)))


def _attachment_tokens(attachment: Attachment) -> int:
    match attachment:
        case ImageContent(data=None):
            return PART_OVERHEAD + _text_tokens(gone_image(attachment))
        case ImageContent(width=width, height=height):
            return PART_OVERHEAD + image_tokens(width, height)
        case FileText(text=text):
            return PART_OVERHEAD + _text_tokens(text)
        case FileNote(note=note):
            return PART_OVERHEAD + _text_tokens(note)
        case _:
            assert_never(attachment)


def _text_tokens(text: str) -> int:
    return -(-len(text) // CHARS_PER_TOKEN)


def trim(messages: Sequence[Message], budget: int) -> list[Message]:
    """The system messages, then the longest recent part of ``messages`` that fits ``budget``.

    The kept part begins at a user message that is not inside a tool exchange (between a tool
    call and its result), so no tool result loses its call and no call loses its result. A
    conversation that fits is returned whole. When not even the part from the last user
    message fits, that part is returned anyway — over budget: the caller decides what to do
    (``sum(map(estimate_tokens, kept)) > budget`` tells). A conversation without a user
    message is cut at an assistant message instead.
    """
    costs = [estimate_tokens(message) for message in messages]
    if sum(costs) <= budget:
        return list(messages)
    starts = _window_starts(messages)
    if not starts:
        return list(messages)
    system_cost = sum(
        cost for message, cost in zip(messages, costs, strict=True) if _is_system(message)
    )
    tail = [0] * (len(messages) + 1)  # tail[i]: the cost of the non-system messages from i on
    for i in reversed(range(len(messages))):
        tail[i] = tail[i + 1] + (0 if _is_system(messages[i]) else costs[i])
    start = next((i for i in starts if system_cost + tail[i] <= budget), starts[-1])
    return [message for message in messages[:start] if _is_system(message)] + list(messages[start:])


def _is_system(message: Message) -> bool:
    return isinstance(message, SystemMessage)


def _window_starts(messages: Sequence[Message]) -> list[int]:
    """Where a kept part may begin, oldest first: a user message outside every tool exchange,
    or, in a conversation without one, an assistant message outside every tool exchange."""
    inside = _inside_tool_exchanges(messages)
    outside = [i for i in range(len(messages)) if not inside[i]]
    users = [i for i in outside if isinstance(messages[i], UserMessage)]
    return users or [i for i in outside if isinstance(messages[i], AssistantMessage)]


def _inside_tool_exchanges(messages: Sequence[Message]) -> list[bool]:
    """``inside[i]``: some tool call made before message ``i`` has its result at ``i`` or later.

    A result answers the latest call with its id, so ids that repeat across turns are fine.
    """
    made_at: dict[str, int] = {}  # call id -> index of the assistant message that made it
    change = [0] * (len(messages) + 1)  # +1 where an exchange opens, -1 after it closes
    for i, message in enumerate(messages):
        if isinstance(message, AssistantMessage):
            made_at.update((call.id, i) for call in message.tool_calls)
        elif isinstance(message, ToolResult) and message.call_id in made_at:
            change[made_at.pop(message.call_id) + 1] += 1
            change[i + 1] -= 1
    inside: list[bool] = []
    depth = 0
    for i in range(len(messages)):
        depth += change[i]
        inside.append(depth > 0)
    return inside
