"""An :class:`Answer` as the SSE events a real gateway sends, in either protocol.

OpenAI: ``chat.completion.chunk`` events ending in ``data: [DONE]``. Anthropic:
``message_start`` … ``message_stop``, each with its ``event:`` line. Each event comes with
whether the server pauses (one pace interval) before sending it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from bots.offline.conversation import Answer, PlannedCall, words
from bots.offline.model import MODEL_NAME

__all__ = ["Event", "anthropic_events", "openai_events"]

Event = tuple[bytes, bool]  # the bytes of one SSE event, and whether a pause comes before it


def _sse(data: dict[str, Any] | str, event: str | None = None) -> bytes:
    if not isinstance(data, str):
        data = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {data}\n\n".encode()


# --- OpenAI Chat Completions -----------------------------------------------------------------


def openai_events(answer: Answer, *, include_usage: bool, created: int) -> Iterator[Event]:
    """A ``chat.completion.chunk`` stream: role, text, tool calls, finish, usage, ``[DONE]``."""
    head = {
        "id": f"chatcmpl-{answer.id}",
        "object": "chat.completion.chunk",
        "created": created,
        "model": MODEL_NAME,
    }

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        body = {**head, "system_fingerprint": "relaybot-offline", "choices": [choice]}
        return _sse({**body, "usage": None} if include_usage else body)

    yield chunk({"role": "assistant", "content": "", "refusal": None}), False
    for piece in answer.pieces:
        yield chunk({"content": piece}), True
    for index, call in enumerate(answer.tool_calls):
        function = {"name": call.name, "arguments": ""}
        first = {"index": index, "id": call.id, "type": "function", "function": function}
        yield chunk({"tool_calls": [first]}), True
        for fragment in words(call.arguments_json):
            more = {"index": index, "function": {"arguments": fragment}}
            yield chunk({"tool_calls": [more]}), True
    yield chunk({}, answer.finish), False
    if include_usage:
        usage = {
            "prompt_tokens": answer.input_tokens,
            "completion_tokens": answer.output_tokens,
            "total_tokens": answer.input_tokens + answer.output_tokens,
        }
        yield _sse({**head, "choices": [], "usage": usage}), False
    yield _sse("[DONE]"), False


# --- Anthropic Messages ----------------------------------------------------------------------

_STOP_REASONS = {"stop": "end_turn", "tool_calls": "tool_use", "length": "max_tokens"}


def _event(body: dict[str, Any]) -> bytes:
    return _sse(body, event=body["type"])


def anthropic_events(answer: Answer) -> Iterator[Event]:
    """A Messages stream: ``message_start``, text and ``tool_use`` blocks, ``message_delta``
    (stop reason, cumulative usage), ``message_stop`` — each with its ``event:`` line."""
    message: dict[str, Any] = {
        "id": f"msg_{answer.id}",
        "type": "message",
        "role": "assistant",
        "model": MODEL_NAME,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": answer.input_tokens, "output_tokens": 1},
    }
    yield _event({"type": "message_start", "message": message}), False
    has_text = bool(answer.pieces) or not answer.tool_calls
    if has_text:
        yield from _text_block(answer.pieces)
    for index, call in enumerate(answer.tool_calls, start=int(has_text)):
        yield from _tool_use_block(index, call)
    usage = {"input_tokens": answer.input_tokens, "output_tokens": answer.output_tokens}
    end = {"stop_reason": _STOP_REASONS[answer.finish], "stop_sequence": None}
    yield _event({"type": "message_delta", "delta": end, "usage": usage}), False
    yield _event({"type": "message_stop"}), False


def _text_block(pieces: tuple[str, ...]) -> Iterator[Event]:
    """Block 0: the text, one ``text_delta`` per piece (and a ``ping``, as Anthropic sends)."""
    block = {"type": "text", "text": ""}
    yield _event({"type": "content_block_start", "index": 0, "content_block": block}), False
    yield _event({"type": "ping"}), False
    for piece in pieces:
        delta = {"type": "text_delta", "text": piece}
        yield _event({"type": "content_block_delta", "index": 0, "delta": delta}), True
    yield _event({"type": "content_block_stop", "index": 0}), False


def _tool_use_block(index: int, call: PlannedCall) -> Iterator[Event]:
    """One ``tool_use`` block, its input streamed as ``input_json_delta`` fragments."""
    block = {
        "type": "tool_use",
        "id": f"toolu_{call.id.removeprefix('call_')}",
        "name": call.name,
        "input": {},
    }
    yield _event({"type": "content_block_start", "index": index, "content_block": block}), True
    for fragment in ["", *words(call.arguments_json)]:
        delta = {"type": "input_json_delta", "partial_json": fragment}
        body = {"type": "content_block_delta", "index": index, "delta": delta}
        yield _event(body), bool(fragment)
    yield _event({"type": "content_block_stop", "index": index}), False
