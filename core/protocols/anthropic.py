"""The Anthropic Messages wire protocol: ``POST {base_url}/v1/messages``, streamed.

The request body is a pure function of :class:`~core.messages.ModelRequest`: the system prompt
apart, consecutive messages of one role merged into one message of content blocks, tool results
as ``tool_result`` blocks of a user message, thinking blocks sent back first in an assistant
message.

The answer is a stream of JSON events (each parsed once, read as plain dicts). They are told
apart by their JSON ``type``, not by the SSE ``event:`` line, which some gateways drop:
``message_start`` → ``content_block_start`` / ``_delta`` / ``_stop`` per block →
``message_delta`` → ``message_stop``, with ``ping`` (and any type we do not know) ignored and
``error`` raised as a typed error.

Accumulation rules of :class:`AnthropicStreamDecoder`:

- Blocks are numbered by their ``index``; tool calls carry the block index, and reasoning
  events carry it as ``block``.
- A ``tool_use`` block is ``ToolCallStarted`` at its start, one
  ``ToolCallDelta`` per non-empty ``input_json_delta``, and ``ToolCallReady`` at its stop, the
  accumulated JSON parsed once: blank → the ``input`` of the block's start if that was a
  non-empty object, else ``{}``; a JSON object → that dict; anything else → ``None``.
- ``server_tool_use`` blocks and their results (a tool Anthropic ran itself, such as web
  search) are not client tool calls: they produce no events; their text around them does.
- A tool block still open at ``message_stop`` (the model hit ``max_tokens`` inside it) is made
  ready there, before ``StreamEnd``, with whatever parsed (usually ``None``: cut-off JSON).
- Usage is cumulative: ``message_start`` gives the first counts, each ``message_delta`` usage
  replaces the fields it carries. ``Usage.input_tokens`` counts cache reads and cache writes
  too; ``cached_input_tokens`` is the cache reads.
"""

from __future__ import annotations

import json
from typing import Any

from core.errors import InvalidResponse, StreamInterrupted
from core.events import (
    FinishReason,
    ReasoningDelta,
    ReasoningRedacted,
    ReasoningSignature,
    StreamEnd,
    StreamEvent,
    ToolCallDelta,
    ToolCallReady,
    ToolCallStarted,
    Usage,
)
from core.messages import (
    AssistantMessage,
    ModelRequest,
    RedactedThinking,
    SystemMessage,
    Thinking,
    ToolResult,
    UserMessage,
)
from core.protocols.payloads import (
    error_body_details,
    error_event,
    in_band_error,
    parse_arguments,
    parse_object,
    text_delta,
)
from core.protocols.user_parts import UserPart, user_parts
from core.sse import ServerSentEvent

__all__ = ["AnthropicProtocol", "AnthropicStreamDecoder"]


_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "tool_use": "tool_calls",
    "max_tokens": "length",
    "refusal": "content_filter",
}
_TOOL_BLOCKS = ("tool_use",)


class AnthropicProtocol:
    """The Anthropic Messages protocol, as Anthropic and compatible gateways speak it."""

    __slots__ = ()

    name = "anthropic"
    path = "/v1/messages"

    def headers(self, api_key: str) -> dict[str, str]:
        """No ``x-api-key`` header without a key (a keyless local endpoint)."""
        headers = {
            "anthropic-version": "2023-06-01",
            "content-type": "application/json",
            "accept": "text/event-stream",
        }
        if api_key:
            headers["x-api-key"] = api_key
        return headers

    def request_body(self, request: ModelRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": _messages(request),
            "max_tokens": request.max_tokens,
            "stream": True,
        }
        parts = [request.system or ""]
        parts += [m.text for m in request.messages if isinstance(m, SystemMessage)]
        system = "\n\n".join(part for part in parts if part)
        if system:
            body["system"] = system
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.tools:
            body["tools"] = [
                {
                    "name": tool.name,
                    "description": tool.description,
                    "input_schema": tool.parameters,
                }
                for tool in request.tools
            ]
            body["tool_choice"] = {"type": request.tool_choice}
        return body

    def decoder(self) -> AnthropicStreamDecoder:
        return AnthropicStreamDecoder()

    def error_details(self, body: bytes) -> tuple[str | None, str | None]:
        """``(error.type, error.message)`` from ``{"type": "error", "error": {...}}`` (also
        ``{"error": "..."}`` or a top-level ``message``); a body that is not JSON gives its
        first 200 chars."""
        return error_body_details(body)


def _messages(request: ModelRequest) -> list[dict[str, Any]]:
    """Messages of content blocks, consecutive ones of a role merged; one without blocks
    (an empty assistant message, an empty user text) is skipped."""
    out: list[dict[str, Any]] = []
    for message in request.messages:
        match message:
            case UserMessage():
                role = "user"
                blocks = _user_blocks(message)
            case ToolResult():
                role = "user"
                blocks = [_tool_result(message)]
            case AssistantMessage():
                role = "assistant"
                blocks = _assistant_blocks(message)
            case _:  # a SystemMessage went into "system"
                continue
        if not blocks:
            continue
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return out


def _user_blocks(message: UserMessage) -> list[dict[str, Any]]:
    """Each attachment as an image or text block, then the message's text
    (:func:`~core.protocols.user_parts.user_parts`); an empty text is no block."""
    return [_user_block(part) for part in user_parts(message)]


def _user_block(part: UserPart) -> dict[str, Any]:
    if isinstance(part, str):
        return {"type": "text", "text": part}
    source = {"type": "base64", "media_type": part.media_type, "data": part.data}
    return {"type": "image", "source": source}


def _tool_result(result: ToolResult) -> dict[str, Any]:
    block: dict[str, Any] = {
        "type": "tool_result",
        "tool_use_id": result.call_id,
        "content": result.content,
    }
    if result.is_error:
        block["is_error"] = True
    return block


def _assistant_blocks(message: AssistantMessage) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for item in message.thinking:
        match item:
            case Thinking():
                blocks.append(
                    {"type": "thinking", "thinking": item.thinking, "signature": item.signature}
                )
            case RedactedThinking():
                blocks.append({"type": "redacted_thinking", "data": item.data})
    if message.text:
        blocks.append({"type": "text", "text": message.text})
    for call in message.tool_calls:
        blocks.append(
            {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments or {}}
        )
    return blocks


class _ToolBlock:
    """One tool_use block being accumulated."""

    __slots__ = ("id", "index", "initial", "name", "parts")

    def __init__(self, index: int, block: dict[str, Any]) -> None:
        self.index = index
        self.id: str = block.get("id") or f"call_{index}"
        self.name: str = block.get("name") or ""
        initial = block.get("input")
        self.initial: dict[str, Any] | None = initial if isinstance(initial, dict) else None
        self.parts: list[str] = []

    def ready(self) -> ToolCallReady:
        raw = "".join(self.parts)
        if self.initial and (not raw or raw.isspace()):
            raw = json.dumps(self.initial, ensure_ascii=False)
        arguments = parse_arguments(raw)
        return ToolCallReady(
            index=self.index, id=self.id, name=self.name, arguments=arguments, raw_arguments=raw
        )


class AnthropicStreamDecoder:
    """Turns the SSE events of one Messages stream into :mod:`core.events`."""

    __slots__ = (
        "_cache_read",
        "_cache_write",
        "_done",
        "_input",
        "_output",
        "_stop_reason",
        "_tool_seen",
        "_tools",
    )

    def __init__(self) -> None:
        self._tools: dict[int, _ToolBlock] = {}  # open tool blocks by block index
        self._tool_seen = False
        self._stop_reason: str | None = None
        self._input = self._output = self._cache_read = self._cache_write = 0
        self._done = False

    @property
    def done(self) -> bool:
        return self._done

    def feed(self, event: ServerSentEvent) -> list[StreamEvent]:
        if self._done:
            return []
        data = event.data
        if event.event == "error":
            raise error_event(data)
        if not data.startswith("{") and not data.strip():
            return []
        message = parse_object(data)
        try:
            return self._dispatch(message)
        except (AttributeError, KeyError, TypeError) as exc:
            raise InvalidResponse(f"unexpected event from the gateway: {data[:80]!r}") from exc

    def close(self) -> list[StreamEvent]:
        if not self._done:
            raise StreamInterrupted("the model's stream ended before it was complete")
        return []

    def _dispatch(self, message: dict[str, Any]) -> list[StreamEvent]:
        kind = message.get("type")
        if kind == "content_block_delta":
            delta = message["delta"]
            if delta.get("type") == "text_delta":  # the commonest event by far
                text = delta.get("text")
                return [text_delta(text)] if text else []
            return self._block_delta(message.get("index") or 0, delta)
        if kind == "content_block_start":
            return self._block_start(message.get("index") or 0, message["content_block"])
        if kind == "content_block_stop":
            tool = self._tools.pop(message.get("index") or 0, None)
            return [tool.ready()] if tool is not None else []
        if kind == "message_delta":
            stop_reason = (message.get("delta") or {}).get("stop_reason")
            if stop_reason:
                self._stop_reason = stop_reason
            usage = message.get("usage")
            return [self._usage(usage)] if usage else []
        if kind == "message_start":
            usage = (message.get("message") or {}).get("usage")
            return [self._usage(usage)] if usage else []
        if kind == "message_stop":
            return self._end()
        if kind == "error":
            raise in_band_error(message.get("error"))
        return []  # ping, and types this decoder does not know

    def _block_delta(self, index: int, delta: dict[str, Any]) -> list[StreamEvent]:
        kind = delta.get("type")
        if kind == "input_json_delta":
            fragment = delta.get("partial_json")
            tool = self._tools.get(index)
            if not fragment or tool is None:
                return []
            tool.parts.append(fragment)
            return [ToolCallDelta(index=index, fragment=fragment)]
        if kind == "thinking_delta":
            text = delta.get("thinking")
            return [ReasoningDelta(text=text, block=index)] if text else []
        if kind == "signature_delta":
            signature = delta.get("signature")
            return [ReasoningSignature(signature=signature, block=index)] if signature else []
        return []  # citations_delta, and types this decoder does not know

    def _block_start(self, index: int, block: dict[str, Any]) -> list[StreamEvent]:
        kind = block.get("type")
        if kind == "text":
            text = block.get("text")
            return [text_delta(text)] if text else []
        if kind in _TOOL_BLOCKS:
            tool = self._tools[index] = _ToolBlock(index, block)
            self._tool_seen = True
            return [ToolCallStarted(index=index, id=tool.id, name=tool.name)]
        if kind == "thinking":
            out: list[StreamEvent] = []
            text, signature = block.get("thinking"), block.get("signature")
            if text:
                out.append(ReasoningDelta(text=text, block=index))
            if signature:
                out.append(ReasoningSignature(signature=signature, block=index))
            return out
        if kind == "redacted_thinking":
            return [ReasoningRedacted(data=block.get("data") or "", block=index)]
        return []

    def _usage(self, usage: dict[str, Any]) -> Usage:
        value = usage.get("input_tokens")
        if value is not None:
            self._input = value
        value = usage.get("output_tokens")
        if value is not None:
            self._output = value
        value = usage.get("cache_read_input_tokens")
        if value is not None:
            self._cache_read = value
        value = usage.get("cache_creation_input_tokens")
        if value is not None:
            self._cache_write = value
        return Usage(
            input_tokens=self._input + self._cache_read + self._cache_write,
            output_tokens=self._output,
            cached_input_tokens=self._cache_read,
        )

    def _end(self) -> list[StreamEvent]:
        out: list[StreamEvent] = [self._tools[index].ready() for index in sorted(self._tools)]
        self._tools.clear()
        raw = self._stop_reason
        if raw is not None:
            reason = _FINISH.get(raw, "other")
        else:
            reason = "tool_calls" if self._tool_seen else "stop"
        out.append(StreamEnd(finish_reason=reason, raw_reason=raw))
        self._done = True
        return out
