"""Literal Server-Sent Events bytes, shaped exactly like the providers' streams.

Pure builders, no I/O: each returns a list in which every item is the bytes of one SSE event
(``data: {...}\\n\\n``), ready to be written one per write by the fake gateway, compared in a
test, or replayed by the offline model.

- :func:`openai_chunks` — an OpenAI Chat Completions stream (``chat.completion.chunk``
  objects, a usage-only chunk, ``data: [DONE]``).
- :func:`anthropic_events` — an Anthropic Messages stream (``message_start`` …
  ``message_stop``, typed ``event:`` lines).
- Faults: :func:`openai_error_chunk`, :func:`anthropic_error_event`, :data:`KEEPALIVE`,
  :data:`GARBAGE_LINE`, :func:`without_end`.

JSON is compact and UTF-8 (not ``\\u`` escaped), as the providers send it, so a multi-byte
character in the text is multi-byte on the wire.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

__all__ = [
    "DEFAULT_PIECE",
    "GARBAGE_LINE",
    "KEEPALIVE",
    "OPENAI_DONE",
    "anthropic_error_event",
    "anthropic_events",
    "openai_chunks",
    "openai_error_chunk",
    "split",
    "sse",
    "without_end",
]

DEFAULT_PIECE = 4
"""Characters per streamed delta when ``pieces`` is not given."""

KEEPALIVE = b": keep-alive\n\n"
"""An SSE comment, as gateways send to keep an idle connection open."""

GARBAGE_LINE = b"this is not sse at all\n"
"""A line that is no SSE field a decoder knows (a decoder ignores it)."""

OPENAI_DONE = b"data: [DONE]\n\n"

_CREATED = 1_700_000_000


def sse(data: dict[str, Any] | str, *, event: str | None = None) -> bytes:
    """One SSE event: an optional ``event:`` line and one ``data:`` line of compact JSON."""
    payload = data if isinstance(data, str) else _json(data)
    head = f"event: {event}\n" if event is not None else ""
    return f"{head}data: {payload}\n\n".encode()


def split(text: str, size: int | None = None) -> list[str]:
    """``text`` in pieces of ``size`` characters (the last one shorter); ``[]`` for ``""``."""
    step = DEFAULT_PIECE if size is None else size
    if step < 1:
        raise ValueError("piece size must be at least 1")
    return [text[i : i + step] for i in range(0, len(text), step)]


def without_end(chunks: Sequence[bytes]) -> list[bytes]:
    """The stream without its end marker (``data: [DONE]`` or ``message_stop``): a stream
    that just stops, which a client must treat as a failure."""
    return [c for c in chunks if c != OPENAI_DONE and b'"type":"message_stop"' not in c]


# --- OpenAI Chat Completions ----------------------------------------------------------------


def openai_chunks(
    text: str = "",
    *,
    tool_calls: Sequence[tuple[str, str, str]] = (),
    reasoning: str = "",
    finish_reason: str | None = None,
    usage: tuple[int, int] | None = (10, 5),
    model: str = "fake/model",
    pieces: int | None = None,
    id: str = "chatcmpl-fake",
) -> list[bytes]:
    """An OpenAI ``stream: true`` response with ``stream_options.include_usage``.

    In order: a role chunk (``{"role": "assistant", "content": ""}``), reasoning chunks
    (``{"content": null, "reasoning_content": ...}`` as DeepSeek-style gateways send them),
    text chunks, then for each ``(id, name, arguments_json)`` tool call a first chunk with
    ``index``, ``id``, ``type`` and ``function.name`` (``arguments: ""``) followed by argument
    fragments carrying only ``index``; a finish chunk (``finish_reason`` defaults to
    ``"tool_calls"`` when there are tool calls, else ``"stop"``); a usage-only chunk
    (``"choices": []``) unless ``usage`` is ``None``; and ``data: [DONE]``.
    ``pieces`` is the number of characters per delta.
    """
    has_usage = usage is not None

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        body: dict[str, Any] = {
            "id": id,
            "object": "chat.completion.chunk",
            "created": _CREATED,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if has_usage:
            body["usage"] = None
        return sse(body)

    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": None, "reasoning_content": p}) for p in split(reasoning, pieces)]
    out += [chunk({"content": p}) for p in split(text, pieces)]
    for index, (call_id, name, arguments) in enumerate(tool_calls):
        first = {
            "index": index,
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        out.append(chunk({"tool_calls": [first]}))
        for fragment in split(arguments, pieces):
            out.append(
                chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})
            )
    default_finish = "tool_calls" if tool_calls else "stop"
    out.append(chunk({}, finish_reason or default_finish))
    if usage is not None:
        prompt, completion = usage
        totals = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
        body = {
            "id": id,
            "object": "chat.completion.chunk",
            "created": _CREATED,
            "model": model,
            "choices": [],
            "usage": totals,
        }
        out.append(sse(body))
    out.append(OPENAI_DONE)
    return out


def openai_error_chunk(message: str, type: str = "server_error", code: str | None = None) -> bytes:
    """An error sent inside an OpenAI-style stream after a ``200`` (as OpenAI and OpenRouter
    do when the upstream fails mid-answer)."""
    return sse({"error": {"message": message, "type": type, "param": None, "code": code}})


# --- Anthropic Messages ---------------------------------------------------------------------


def anthropic_events(
    text: str = "",
    *,
    thinking: str = "",
    signature: str = "sig",
    tool_uses: Sequence[tuple[str, str, str]] = (),
    stop_reason: str | None = None,
    usage: tuple[int, int] = (10, 5),
    model: str = "fake-claude",
    id: str = "msg_fake",
    pieces: int | None = None,
    event_lines: bool = True,
) -> list[bytes]:
    """An Anthropic Messages ``stream: true`` response.

    ``message_start``; then content blocks numbered from 0 in this order: a thinking block when
    ``thinking`` is given (``thinking_delta`` pieces and one ``signature_delta``), a text block
    when ``text`` is given, one ``tool_use`` block per ``(id, name, input_json)`` (an empty
    ``input_json_delta`` first, as Anthropic sends, then ``partial_json`` pieces); a ``ping``
    after the first block starts; ``message_delta`` with ``stop_reason`` (``"tool_use"`` when
    there are tool uses, else ``"end_turn"``) and the cumulative ``output_tokens``;
    ``message_stop``. ``event_lines=False`` drops the ``event:`` lines, as some gateways do.
    """
    input_tokens, output_tokens = usage

    def ev(body: dict[str, Any]) -> bytes:
        return sse(body, event=body["type"] if event_lines else None)

    def block(index: int, start: dict[str, Any], deltas: list[dict[str, Any]]) -> list[bytes]:
        opened = [ev({"type": "content_block_start", "index": index, "content_block": start})]
        if index == 0:
            opened.append(ev({"type": "ping"}))
        moved = [ev({"type": "content_block_delta", "index": index, "delta": d}) for d in deltas]
        return [*opened, *moved, ev({"type": "content_block_stop", "index": index})]

    message: dict[str, Any] = {
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1},
    }
    out = [ev({"type": "message_start", "message": message})]
    blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    if thinking:
        deltas = [{"type": "thinking_delta", "thinking": p} for p in split(thinking, pieces)]
        deltas.append({"type": "signature_delta", "signature": signature})
        blocks.append(({"type": "thinking", "thinking": "", "signature": ""}, deltas))
    if text:
        deltas = [{"type": "text_delta", "text": p} for p in split(text, pieces)]
        blocks.append(({"type": "text", "text": ""}, deltas))
    for tool_id, name, input_json in tool_uses:
        fragments = ["", *split(input_json, pieces)]
        deltas = [{"type": "input_json_delta", "partial_json": f} for f in fragments]
        blocks.append(({"type": "tool_use", "id": tool_id, "name": name, "input": {}}, deltas))
    for index, (start, deltas) in enumerate(blocks):
        out += block(index, start, deltas)
    if not blocks:
        out.append(ev({"type": "ping"}))
    reason = stop_reason or ("tool_use" if tool_uses else "end_turn")
    out.append(
        ev(
            {
                "type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            }
        )
    )
    out.append(ev({"type": "message_stop"}))
    return out


def anthropic_error_event(
    type: str = "overloaded_error", message: str = "Overloaded", *, event_lines: bool = True
) -> bytes:
    """An ``error`` event inside an Anthropic stream after a ``200``."""
    body = {"type": "error", "error": {"type": type, "message": message}}
    return sse(body, event="error" if event_lines else None)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
