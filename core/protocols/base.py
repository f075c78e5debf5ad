"""What every wire protocol provides, and the error classification they share.

A wire protocol is sans-IO: it builds a request body from a :class:`~core.messages.ModelRequest`
and turns decoded Server-Sent Events into :mod:`core.events`. ``core.client`` does the I/O.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from core.errors import (
    AuthError,
    BadRequest,
    ContextTooLong,
    LLMError,
    Overloaded,
    RateLimited,
    ServerError,
)
from core.events import StreamEvent
from core.messages import ModelRequest
from core.sse import ServerSentEvent

__all__ = [
    "StreamDecoder",
    "WireProtocol",
    "classify_error",
    "looks_like_context_overflow",
    "looks_like_image_refusal",
]


class StreamDecoder(Protocol):
    """Turns the SSE events of one response into normalized events.

    ``feed`` raises an :class:`~core.errors.LLMError` for an in-band error event and
    :class:`~core.errors.InvalidResponse` for data that is not the protocol. ``close`` is called
    at the end of the body: it raises :class:`~core.errors.StreamInterrupted` when the end marker
    was never seen. ``done`` turns true once the end marker was decoded (the last event fed
    returned a :class:`~core.events.StreamEnd`).
    """

    @property
    def done(self) -> bool: ...

    def feed(self, event: ServerSentEvent) -> list[StreamEvent]: ...

    def close(self) -> list[StreamEvent]: ...


class WireProtocol(Protocol):
    """One wire protocol: where to POST, which headers, which body, how to read the answer."""

    @property
    def name(self) -> str: ...

    @property
    def path(self) -> str:
        """Appended to the base URL, e.g. ``/chat/completions`` or ``/v1/messages``."""
        ...

    def headers(self, api_key: str) -> dict[str, str]: ...

    def request_body(self, request: ModelRequest) -> dict[str, Any]: ...

    def decoder(self) -> StreamDecoder: ...

    def error_details(self, body: bytes) -> tuple[str | None, str | None]:
        """``(kind, message)`` from an error response body; ``(None, None)`` if unreadable."""
        ...


_CONTEXT_MARKERS = (
    "context_length_exceeded",
    "context length",
    "context window",
    "prompt is too long",
    "maximum context",
    "too many tokens",
    "input is too long",
    "reduce the length",
)


def looks_like_context_overflow(kind: str | None, message: str | None) -> bool:
    text = f"{kind or ''} {message or ''}".lower()
    return any(marker in text for marker in _CONTEXT_MARKERS)


_IMAGE_REFUSAL = re.compile(
    r"(?:not|n't|no endpoints found that) supports? (?:images?|image input|vision|multi-?modal)"
    r"|image[ _]?(?:url|input|content)s? (?:is|are) (?:only supported|not supported|unsupported)"
    r"|(?:images?|image input|vision) (?:is |are )?(?:not supported|unsupported)"
    r"|not a multi-?modal model"
    r"|at most 0 images?"
    r"|missing data required for image input",
    re.IGNORECASE,
)
"""How gateways say a model cannot take images: OpenAI ("image_url is only supported by certain
models"), Anthropic-compatible and Ollama ("this model does not support image input"; older
Ollama "this model is missing data required for image input"), OpenRouter ("No endpoints found
that support image input", a 404), vLLM ("... is not a multimodal model", "At most 0 image(s)
may be provided in one request"), and the variants of "images are not supported"."""


def looks_like_image_refusal(kind: str | None, message: str | None) -> bool:
    """Whether an error says the model cannot take images (the request carried some)."""
    text = " ".join(f"{kind or ''} {message or ''}".split())
    return _IMAGE_REFUSAL.search(text) is not None


def classify_error(
    *,
    status: int | None,
    kind: str | None,
    message: str,
    retry_after: float | None = None,
    should_retry: bool | None = None,
    request_id: str | None = None,
) -> LLMError:
    """One error class for an HTTP status (``None`` for an in-band error) and error kind.

    The kind is the provider's error type or code (``overloaded_error``, ``rate_limit_exceeded``,
    ``context_length_exceeded``...). The status decides when there is one; an in-band error is
    classified by its kind, and an unknown in-band kind counts as a server error.
    """
    fields: dict[str, Any] = {
        "status": status,
        "retry_after": retry_after,
        "should_retry": should_retry,
        "request_id": request_id,
    }
    kind_l = (kind or "").lower()
    if looks_like_context_overflow(kind, message) and (status is None or 400 <= status < 500):
        return ContextTooLong(message, **fields)
    if status is not None:
        if status == 429:
            return RateLimited(message, **fields)
        if status == 529:
            return Overloaded(message, **fields)
        if status in (401, 403):
            return AuthError(message, **fields)
        if status in (408, 409) or status >= 500:
            return ServerError(message, **fields)
        return BadRequest(message, **fields)
    if "rate_limit" in kind_l:
        return RateLimited(message, **fields)
    if "overloaded" in kind_l:
        return Overloaded(message, **fields)
    if kind_l in ("authentication_error", "permission_error", "invalid_api_key"):
        return AuthError(message, **fields)
    if kind_l in ("invalid_request_error", "not_found_error", "request_too_large"):
        return BadRequest(message, **fields)
    return ServerError(message, **fields)
