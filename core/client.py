"""``LLMClient``: one streaming model call over httpx2, failures mapped into ``core.errors``.

The client is the only place that touches httpx2: it POSTs the protocol's request body, checks
the status, feeds the body's bytes through :class:`~core.sse.SSEDecoder` and the protocol's
stream decoder, and yields :mod:`core.events`. Every httpx2 error, every error status and every
in-band error leaves as exactly one :class:`~core.errors.LLMError`, whose message never holds
the API key (nor anything shaped like one that a gateway echoed back).

Three clocks bound a call: ``connect`` (establishing the connection), ``read_idle`` (no bytes
at all for that long — keep-alive comments count as bytes) and ``total`` (the whole call).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx2

from core.errors import (
    BadRequest,
    ConnectFailed,
    DeadlineExceeded,
    InvalidResponse,
    LLMError,
    StreamInterrupted,
    StreamStalled,
)
from core.events import StreamEvent
from core.messages import ModelRequest
from core.protocols.base import WireProtocol, classify_error
from core.retry import parse_retry_after
from core.sse import SSEDecoder

__all__ = ["LLMClient", "Timeouts", "new_http_client"]

log = logging.getLogger("relaybot.llm")

_ERROR_BODY_LIMIT = 64 * 1024
_MESSAGE_LIMIT = 300
_KEY_SHAPES = re.compile(r"\b(?:sk|pk|rk|key)-[A-Za-z0-9_\-*.]{3,}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    """Seconds. ``read_idle`` is the longest silence tolerated inside a stream."""

    connect: float = 10.0
    read_idle: float = 60.0
    write: float = 30.0
    total: float = 600.0


def new_http_client(*, max_connections: int = 200) -> httpx2.AsyncClient:
    """An ``AsyncClient`` sized for many concurrent streams (one connection each)."""
    limits = httpx2.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max(10, max_connections // 4),
        keepalive_expiry=30.0,
    )
    return httpx2.AsyncClient(limits=limits, follow_redirects=False)


class LLMClient:
    """Streams one model call: ``async with client.stream(request) as events``."""

    def __init__(
        self,
        *,
        http: httpx2.AsyncClient,
        protocol: WireProtocol,
        base_url: str,
        api_key: str,
        timeouts: Timeouts = Timeouts(),
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        self._http = http
        self._protocol = protocol
        self._url = base_url.rstrip("/") + protocol.path
        self._api_key = api_key
        self._timeouts = timeouts
        self._extra_headers = dict(extra_headers or {})
        self._timeout = httpx2.Timeout(
            connect=timeouts.connect,
            read=timeouts.read_idle,
            write=timeouts.write,
            pool=timeouts.connect,
        )

    def __repr__(self) -> str:
        return f"LLMClient(protocol={self._protocol.name!r}, url={self._url!r})"

    @property
    def protocol(self) -> WireProtocol:
        return self._protocol

    @asynccontextmanager
    async def stream(self, request: ModelRequest) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        """The events of one model call. The response is closed when the block exits."""
        events = self._events(request)
        try:
            yield events
        finally:
            await events.aclose()

    async def _events(self, request: ModelRequest) -> AsyncGenerator[StreamEvent, None]:
        deadline = asyncio.get_running_loop().time() + self._timeouts.total
        response = await self._open(request, deadline)
        request_id = _request_id(response.headers)
        reads = _ReadDeadline(deadline)
        try:  # the read loop, inline: every event passes here, so no inner generator
            sse = SSEDecoder()
            decoder = self._protocol.decoder()
            chunks = response.aiter_bytes()
            while True:
                try:
                    chunk = await reads.next(chunks)
                except StopAsyncIteration:
                    break
                for server_event in sse.feed(chunk):
                    for event in decoder.feed(server_event):
                        yield event
                    if decoder.done:
                        return
            for server_event in sse.close():
                for event in decoder.feed(server_event):
                    yield event
            for event in decoder.close():
                yield event
        except LLMError as error:
            raise self._scrubbed(error, request_id) from None
        except Exception as exc:
            raise self._map_failure(exc, request_id) from None
        finally:
            reads.cancel()
            await response.aclose()

    async def _open(self, request: ModelRequest, deadline: float) -> httpx2.Response:
        """Send the request; return the response once its status says a stream follows."""
        headers = {**self._protocol.headers(self._api_key), **self._extra_headers}
        body = self._protocol.request_body(request)
        try:
            http_request = self._http.build_request(
                "POST", self._url, json=body, headers=headers, timeout=self._timeout
            )
            async with asyncio.timeout_at(deadline):
                response = await self._http.send(http_request, stream=True)
        except Exception as exc:
            raise self._map_failure(exc, None) from None
        try:
            log.debug("%s %s -> %s", request.model, self._url, response.status_code)
            await self._check_response(response, deadline)
        except BaseException:
            await response.aclose()
            raise
        return response

    async def _check_response(self, response: httpx2.Response, deadline: float) -> None:
        content_type = response.headers.get("content-type", "")
        if response.status_code == 200 and not _is_document(content_type):
            return
        try:
            async with asyncio.timeout_at(deadline):
                raw = await _read_limited(response, _ERROR_BODY_LIMIT)
        except Exception as exc:
            raise self._map_failure(exc, _request_id(response.headers)) from None
        kind, message = self._protocol.error_details(raw)
        status: int | None = response.status_code
        if status == 200:
            if kind is None and message is None:
                raise InvalidResponse(
                    f"the gateway answered {content_type or 'something'} instead of an event "
                    "stream",
                    request_id=_request_id(response.headers),
                )
            status = None
        headers = {key.lower(): value for key, value in response.headers.items()}
        error = classify_error(
            status=status,
            kind=kind,
            message=self._describe(response.status_code, message),
            retry_after=parse_retry_after(headers),
            should_retry=_should_retry(headers),
            request_id=_request_id(response.headers),
        )
        raise error

    def _describe(self, status: int, message: str | None) -> str:
        text = f"the model gateway answered HTTP {status}"
        if message:
            text += f": {message}"
        return self._scrub(text)

    def _map_failure(self, exc: BaseException, request_id: str | None) -> LLMError:
        """The one place an httpx2 (or timeout) failure becomes an ``LLMError``."""
        if isinstance(exc, LLMError):
            return self._scrubbed(exc, request_id)
        if isinstance(exc, TimeoutError):
            seconds = self._timeouts.total
            return DeadlineExceeded(
                f"the model call took longer than {seconds:g} s", request_id=request_id
            )
        if isinstance(exc, httpx2.ReadTimeout):
            seconds = self._timeouts.read_idle
            return StreamStalled(
                f"the model gateway sent nothing for {seconds:g} s", request_id=request_id
            )
        if isinstance(exc, httpx2.ConnectTimeout | httpx2.PoolTimeout):
            return ConnectFailed("timed out connecting to the model gateway")
        if isinstance(exc, httpx2.ConnectError):
            return ConnectFailed(self._scrub(f"could not connect to the model gateway: {exc}"))
        if isinstance(exc, httpx2.InvalidURL | httpx2.UnsupportedProtocol):
            return BadRequest(self._scrub(f"the gateway base URL is not usable: {exc}"))
        if isinstance(exc, httpx2.TransportError | httpx2.DecodingError):
            return StreamInterrupted(
                self._scrub(f"the connection to the model gateway broke: {_name(exc)}"),
                request_id=request_id,
            )
        raise exc

    def _scrubbed(self, error: LLMError, request_id: str | None) -> LLMError:
        error.message = self._scrub(error.message)
        error.args = (error.message,)
        if error.request_id is None:
            error.request_id = request_id
        return error

    def _scrub(self, text: str) -> str:
        if self._api_key:
            text = text.replace(self._api_key, "[redacted]")
        text = _KEY_SHAPES.sub("[redacted]", text)
        if len(text) > _MESSAGE_LIMIT:
            text = text[: _MESSAGE_LIMIT - 1] + "…"
        return text


class _ReadDeadline:
    """The call's total deadline over the body's reads, kept by one timer for the whole stream.

    ``asyncio.timeout_at`` around each read costs about 3 µs (a timer scheduled and cancelled
    per read), as much as decoding a chunk. This is its logic for a loop of reads: when the
    deadline passes during a read, the reading task is cancelled and the read raises
    ``TimeoutError`` (a cancellation from elsewhere still propagates); a read that would start
    after it raises ``TimeoutError`` at once.
    """

    __slots__ = ("_cancelled", "_cancelling", "_expired", "_handle", "_reader")

    def __init__(self, deadline: float) -> None:
        self._expired = False
        self._reader: asyncio.Task[object] | None = None  # the task in a read, if any
        self._cancelled: asyncio.Task[object] | None = None  # the task we cancelled
        self._cancelling = 0  # its cancellation requests before ours
        self._handle = asyncio.get_running_loop().call_at(deadline, self._expire)

    def _expire(self) -> None:
        self._expired = True
        task = self._reader
        if task is not None:
            self._cancelled, self._cancelling = task, task.cancelling()
            task.cancel()

    async def next(self, chunks: AsyncIterator[bytes]) -> bytes:
        """``await anext(chunks)``, bounded by the deadline."""
        if self._expired:
            raise TimeoutError
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a stream is read inside a task")
        self._reader = task
        try:
            return await anext(chunks)
        except asyncio.CancelledError:  # by the deadline, and by nothing else? then time is up
            if self._cancelled is task and task.uncancel() <= self._cancelling:
                raise TimeoutError from None
            raise
        finally:
            self._reader = None

    def cancel(self) -> None:
        self._handle.cancel()


def _is_document(content_type: str) -> bool:
    """A 200 that is JSON or HTML is an error page, not a stream."""
    return "json" in content_type or "html" in content_type


async def _read_limited(response: httpx2.Response, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        parts.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(parts)[:limit]


def _request_id(headers: httpx2.Headers) -> str | None:
    return headers.get("x-request-id") or headers.get("request-id")


def _should_retry(headers: dict[str, str]) -> bool | None:
    value = headers.get("x-should-retry")
    if value == "true":
        return True
    if value == "false":
        return False
    return None


def _name(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
