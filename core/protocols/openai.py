"""The OpenAI Chat Completions wire protocol: ``POST {base_url}/chat/completions``, streamed.

The request body is a pure function of :class:`~core.messages.ModelRequest`. The answer is a
stream of ``data:`` events, each one ``chat.completion.chunk`` JSON object (parsed once, read
as plain dicts), ended by ``data: [DONE]``. Only the first choice (``index`` 0) is read. A chunk
with an ``error`` key, or an SSE event named ``error``, is an in-band error and raises.

Tool calls arrive as fragments keyed by ``index``: the first names the call (``id``,
``function.name``), the rest carry pieces of ``function.arguments``. Compatible servers bend
this, so :class:`OpenAIStreamDecoder` accumulates by these rules:

- A missing ``index`` means 0. An ``id`` seen before routes to its call, so an id (or a name)
  repeated in every chunk is never doubled. An ``id`` that differs from the id of the call at
  that index opens a new call, and that index routes to the new call from then on.
- A call is numbered by order of first appearance (0, 1, ...); events carry that number, not
  the wire index. A call without an id is ``call_{number}``.
- The name is the first non-empty one; later names are ignored, never concatenated.
- ``ToolCallStarted`` goes out once the name is known; fragments that came before it follow
  at once as one ``ToolCallDelta``. Every later fragment is one ``ToolCallDelta``.
- When ``finish_reason`` arrives (or at ``[DONE]`` for a call still open) every open call
  becomes ``ToolCallReady``, its arguments parsed once: blank → ``{}``, a JSON object → that
  dict, anything else → ``None`` (``raw_arguments`` keeps the text). Fragments for a call
  that is already ready are dropped. A call that never got a name is reported with name
  ``""`` (so the engine tells the model), unless it had neither an id nor arguments.
"""

from __future__ import annotations

import json
from typing import Any

from core.errors import InvalidResponse, StreamInterrupted
from core.events import (
    FinishReason,
    ReasoningDelta,
    StreamEnd,
    StreamEvent,
    ToolCallDelta,
    ToolCallReady,
    ToolCallStarted,
    Usage,
)
from core.messages import AssistantMessage, ModelRequest, SystemMessage, ToolResult, UserMessage
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

__all__ = ["OpenAIProtocol", "OpenAIStreamDecoder"]


_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}
_EMPTY: dict[str, Any] = {}


class OpenAIProtocol:
    """The OpenAI Chat Completions protocol, as OpenAI and compatible gateways speak it."""

    __slots__ = ()

    name = "openai"
    path = "/chat/completions"

    def headers(self, api_key: str) -> dict[str, str]:
        """No ``authorization`` header without a key (Ollama, llama.cpp, the offline model)."""
        headers = {"content-type": "application/json", "accept": "text/event-stream"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        return headers

    def request_body(self, request: ModelRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": request.model,
            "messages": _messages(request),
            "max_tokens": request.max_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": tool.name,
                        "description": tool.description,
                        "parameters": tool.parameters,
                    },
                }
                for tool in request.tools
            ]
            body["tool_choice"] = request.tool_choice
        return body

    def decoder(self) -> OpenAIStreamDecoder:
        return OpenAIStreamDecoder()

    def error_details(self, body: bytes) -> tuple[str | None, str | None]:
        """``(type or code, message)`` from ``{"error": {...}}``, ``{"error": "..."}`` or a
        top-level ``{"message": ...}``; a body that is not JSON gives its first 200 chars."""
        return error_body_details(body)


def _messages(request: ModelRequest) -> list[dict[str, Any]]:
    parts = [request.system or ""]
    parts += [m.text for m in request.messages if isinstance(m, SystemMessage)]
    system = "\n\n".join(part for part in parts if part)
    out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for message in request.messages:
        match message:
            case UserMessage():
                out.append({"role": "user", "content": _user_content(message)})
            case AssistantMessage():
                out.append(_assistant(message))
            case ToolResult():
                out.append(
                    {"role": "tool", "tool_call_id": message.call_id, "content": message.content}
                )
    return out


def _user_content(message: UserMessage) -> str | list[dict[str, Any]]:
    """The text alone, or, with attachments, a list of parts: each image as a data URL, each
    text as a text part, the message's text last (:func:`~core.protocols.user_parts.user_parts`)."""
    if not message.attachments:
        return message.text
    return [_user_part(part) for part in user_parts(message)]


def _user_part(part: UserPart) -> dict[str, Any]:
    if isinstance(part, str):
        return {"type": "text", "text": part}
    return {"type": "image_url", "image_url": {"url": f"data:{part.media_type};base64,{part.data}"}}


def _assistant(message: AssistantMessage) -> dict[str, Any]:
    """Text and tool calls; reasoning is not sent back. Content is ``None`` beside tool calls
    when there is no text, and ``""`` otherwise (a message needs one or the other)."""
    if not message.tool_calls:
        return {"role": "assistant", "content": message.text}
    calls = [
        {
            "id": call.id,
            "type": "function",
            "function": {
                "name": call.name,
                "arguments": call.raw_arguments
                if call.arguments is None
                else json.dumps(call.arguments, ensure_ascii=False),
            },
        }
        for call in message.tool_calls
    ]
    return {"role": "assistant", "content": message.text or None, "tool_calls": calls}


class _Call:
    """One tool call being accumulated."""

    __slots__ = ("id", "index", "name", "parts", "ready", "started", "wire_id")

    def __init__(self, index: int, wire_id: str | None) -> None:
        self.index = index
        self.wire_id = wire_id
        self.id = wire_id or f"call_{index}"
        self.name = ""
        self.parts: list[str] = []
        self.started = False
        self.ready = False


class OpenAIStreamDecoder:
    """Turns the SSE events of one Chat Completions stream into :mod:`core.events`."""

    __slots__ = ("_by_id", "_by_index", "_calls", "_done", "_finish")

    def __init__(self) -> None:
        self._calls: list[_Call] = []
        self._by_index: dict[int, _Call] = {}  # wire index -> the call it routes to now
        self._by_id: dict[str, _Call] = {}
        self._finish: str | None = None
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
        if not data.startswith("{"):
            text = data.strip()
            if text == "[DONE]":
                return self._end()
            if not text:
                return []
        chunk = parse_object(data)
        try:
            return self._chunk(chunk)
        except (AttributeError, KeyError, TypeError) as exc:
            raise InvalidResponse(f"unexpected chunk from the gateway: {data[:80]!r}") from exc

    def close(self) -> list[StreamEvent]:
        if not self._done:
            raise StreamInterrupted("the model's stream ended before it was complete")
        return []

    def _chunk(self, chunk: dict[str, Any]) -> list[StreamEvent]:
        error = chunk.get("error")
        if error is not None:
            raise in_band_error(error)
        out: list[StreamEvent] = []
        choices = chunk.get("choices")
        if choices:
            for choice in choices:
                if not choice.get("index"):  # index 0, or the first without an index
                    self._choice(choice, out)
                    break
        usage = chunk.get("usage")
        if usage:
            details = usage.get("prompt_tokens_details")
            cached = details.get("cached_tokens") if details else None
            out.append(
                Usage(
                    input_tokens=usage.get("prompt_tokens") or 0,
                    output_tokens=usage.get("completion_tokens") or 0,
                    cached_input_tokens=cached or 0,
                )
            )
        return out

    def _choice(self, choice: dict[str, Any], out: list[StreamEvent]) -> None:
        delta = choice.get("delta")
        if delta:
            content = delta.get("content")
            if content and len(delta) == 1:  # the commonest chunk by far: text alone
                out.append(text_delta(content))
            else:
                self._delta(delta, content, out)
        finish = choice.get("finish_reason")
        if finish and isinstance(finish, str):
            self._finish = finish
            self._ready_all(out)

    def _delta(self, delta: dict[str, Any], content: Any, out: list[StreamEvent]) -> None:
        """Every field of a delta, in the order of the events: reasoning, text, tool calls."""
        reasoning = delta.get("reasoning")
        if reasoning:
            out.append(ReasoningDelta(text=reasoning))
        other = delta.get("reasoning_content")
        if other and other != reasoning:
            out.append(ReasoningDelta(text=other))
        if content:
            out.append(text_delta(content))
        refusal = delta.get("refusal")
        if refusal:
            out.append(text_delta(refusal))
        tool_calls = delta.get("tool_calls")
        if tool_calls:
            self._tool_calls(tool_calls, out)

    def _tool_calls(self, items: list[Any], out: list[StreamEvent]) -> None:
        for item in items:
            call = self._route(item)
            if call is None:
                continue
            function = item.get("function") or _EMPTY
            name = function.get("name")
            if name and not call.name:
                call.name = name
            fragment = function.get("arguments")
            if fragment and not isinstance(fragment, str):  # an object instead of its text
                fragment = json.dumps(fragment, ensure_ascii=False)
            if fragment:
                call.parts.append(fragment)
                if call.started:
                    out.append(ToolCallDelta(index=call.index, fragment=fragment))
            if not call.started and call.name:
                self._start(call, out)

    def _route(self, item: dict[str, Any]) -> _Call | None:
        """The call a tool-call fragment belongs to (opening it if new), or ``None`` when that
        call is already ready."""
        index = item.get("index") or 0
        wire_id = item.get("id") or None
        call = self._by_id.get(wire_id) if wire_id else None
        if call is None:
            current = self._by_index.get(index)
            if current is None or (wire_id and (current.wire_id or current.ready)):
                call = _Call(len(self._calls), wire_id)
                self._calls.append(call)
                if wire_id:
                    self._by_id[wire_id] = call
            else:
                call = current
                if wire_id and not call.started:  # the id came after the first fragment
                    call.id = call.wire_id = wire_id
                    self._by_id[wire_id] = call
        self._by_index[index] = call
        return None if call.ready else call

    def _start(self, call: _Call, out: list[StreamEvent]) -> None:
        call.started = True
        out.append(ToolCallStarted(index=call.index, id=call.id, name=call.name))
        if call.parts:
            buffered = "".join(call.parts)
            call.parts = [buffered]
            out.append(ToolCallDelta(index=call.index, fragment=buffered))

    def _ready_all(self, out: list[StreamEvent]) -> None:
        for call in self._calls:
            if call.ready:
                continue
            call.ready = True
            if not call.started:
                if not (call.parts or call.wire_id):
                    continue  # an empty fragment with nothing in it: not a call
                self._start(call, out)
            raw = "".join(call.parts)
            out.append(
                ToolCallReady(
                    index=call.index,
                    id=call.id,
                    name=call.name,
                    arguments=parse_arguments(raw),
                    raw_arguments=raw,
                )
            )

    def _end(self) -> list[StreamEvent]:
        out: list[StreamEvent] = []
        self._ready_all(out)
        raw = self._finish
        if raw is not None:
            reason = _FINISH.get(raw, "other")
        elif any(call.started for call in self._calls):
            reason = "tool_calls"
        else:
            reason = "stop"
        out.append(StreamEnd(finish_reason=reason, raw_reason=raw))
        self._done = True
        return out
