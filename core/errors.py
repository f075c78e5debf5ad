"""Errors of talking to an LLM gateway, mapped once at the boundary (``core.client``).

Every foreign failure — an HTTP status, a transport error from httpx2, an in-band error event,
a stream that ends without its end marker — becomes exactly one of these. Their messages are
short, fit to log and to show a user, and never contain an API key.

    LLMError                    base; ``retryable`` is the default verdict for RetryPolicy
    ├── TransientError          worth retrying
    │   ├── RateLimited         429, or an in-band rate_limit_error
    │   ├── Overloaded          529, or an in-band overloaded_error
    │   ├── ServerError         5xx, 408, 409, an in-band api_error
    │   ├── ConnectFailed       could not connect (refused, DNS, TLS, connect timeout)
    │   ├── StreamInterrupted   the stream broke or ended before its end marker
    │   ├── StreamStalled       no bytes for the read-idle timeout
    │   └── InvalidResponse     the gateway sent something that is not the protocol
    └── PermanentError          retrying cannot help
        ├── AuthError           401, 403: a rejected or missing key
        ├── BadRequest          other 4xx: bad model name, bad parameters
        │   └── ContextTooLong  the conversation does not fit the model's context
        └── DeadlineExceeded    the call's total deadline passed

``retry_after`` carries the server's ``retry-after-ms`` / ``Retry-After`` in seconds and
``should_retry`` its ``x-should-retry`` header, when given; ``RetryPolicy`` weighs them.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "BadRequest",
    "ConnectFailed",
    "ContextTooLong",
    "DeadlineExceeded",
    "InvalidResponse",
    "LLMError",
    "Overloaded",
    "PermanentError",
    "RateLimited",
    "ServerError",
    "StreamInterrupted",
    "StreamStalled",
    "TransientError",
]


class LLMError(Exception):
    """A model call failed. ``str(error)`` is safe to show: short and secret-free."""

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        should_retry: bool | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.should_retry = should_retry
        self.request_id = request_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, status={self.status!r})"


class TransientError(LLMError):
    retryable = True


class RateLimited(TransientError):
    pass


class Overloaded(TransientError):
    pass


class ServerError(TransientError):
    pass


class ConnectFailed(TransientError):
    pass


class StreamInterrupted(TransientError):
    pass


class StreamStalled(TransientError):
    pass


class InvalidResponse(TransientError):
    pass


class PermanentError(LLMError):
    retryable = False


class AuthError(PermanentError):
    pass


class BadRequest(PermanentError):
    pass


class ContextTooLong(BadRequest):
    pass


class DeadlineExceeded(PermanentError):
    pass
