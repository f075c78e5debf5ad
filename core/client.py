"""``LLMClient``: one streaming model call, failures mapped into ``core.errors``.

The client POSTs the protocol's request body through a :mod:`core.transport` (aiohttp in the
bots, or an httpx2 client a caller already holds), checks the status, feeds the body's bytes
through :class:`~core.sse.SSEDecoder` and the protocol's stream decoder, and yields
:mod:`core.events`. Every transport error, every error status and every in-band error leaves as
exactly one :class:`~core.errors.LLMError`, whose message never holds the API key (nor anything
shaped like one that a gateway echoed back).

Three clocks bound a call: ``connect`` (establishing the connection), ``read_idle`` (no bytes
at all for that long — keep-alive comments count as bytes) and ``total`` (the whole call).

``read_interval`` trades a little freshness for a lot of CPU: once the model has started to
answer, the body is read at most that often, and every token that came in between is read,
parsed and passed on in one go. A gateway writes each token on its own, and reading each as it
comes costs a system call and a wake-up of the whole chain of readers per token; a chat
platform shows an answer's growth at most once a second anyway. At 300 answers of 40 tokens a
second, 0.2 s takes about a third off the CPU per token of reading every one (``python -m
bench.load``). The first words are read the moment they come.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import aiohttp
import httpx2

from core.errors import DeadlineExceeded, InvalidResponse, LLMError, StreamStalled
from core.events import ReasoningDelta, StreamEvent, TextDelta, ToolCallStarted
from core.messages import ModelRequest
from core.protocols.base import WireProtocol, classify_error
from core.retry import parse_retry_after
from core.sse import SSEDecoder
from core.transport import BodyStream, transport_for

__all__ = ["LLMClient", "Timeouts", "new_http_client", "new_stream_session"]

log = logging.getLogger("relaybot.llm")

_ERROR_BODY_LIMIT = 64 * 1024
_MESSAGE_LIMIT = 300
_END_GRACE = 0.1
"""Seconds the body's end may take to follow the end marker (it comes at once from a gateway)."""
_KEY_SHAPES = re.compile(r"\b(?:sk|pk|rk|key)-[A-Za-z0-9_\-*.]{3,}")
_ANSWERING = (TextDelta, ReasoningDelta, ToolCallStarted)
"""The events that show the model has begun to answer: the reads after them are gathered."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    """Seconds. ``read_idle`` is the longest silence tolerated inside a stream."""

    connect: float = 10.0
    read_idle: float = 60.0
    write: float = 30.0
    total: float = 600.0


def new_http_client(*, max_connections: int = 200) -> httpx2.AsyncClient:
    """An ``AsyncClient`` sized for many concurrent requests (tools, probes; one connection
    each)."""
    limits = httpx2.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max(10, max_connections // 4),
        keepalive_expiry=30.0,
    )
    return httpx2.AsyncClient(limits=limits, follow_redirects=False)


def new_stream_session(
    *, max_connections: int = 200, tls: ssl.SSLContext | None = None
) -> aiohttp.ClientSession:
    """The session model streams go through: a pool of ``max_connections`` (one per stream),
    idle connections kept for 30 s, no cookies kept (a gateway's are no part of a call),
    certificates checked against ``tls`` (default: the CAs httpx2 trusts, so both clients
    trust the same), and the proxy of ``HTTPS_PROXY`` / ``HTTP_PROXY`` used as httpx2 uses it.
    Make it inside the running event loop; close it (``async with``)."""
    connector = aiohttp.TCPConnector(
        limit=max_connections,
        limit_per_host=0,
        keepalive_timeout=30.0,
        ssl=tls if tls is not None else httpx2.create_ssl_context(),
    )
    # trust_env: HTTP(S)_PROXY and NO_PROXY apply, as they do to httpx2's clients.
    return aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=True
    )


class LLMClient:
    """Streams one model call: ``async with client.stream(request) as events``.

    ``http`` is the session the calls go through: an ``aiohttp.ClientSession`` (see
    :func:`new_stream_session`; what the bots use, for its lower cost per token) or an
    ``httpx2.AsyncClient``. Both behave the same (:mod:`core.transport`). ``read_interval``
    (seconds, 0 = read every token as it comes) is described in the module's docstring;
    ``sleep`` waits it out.
    """

    def __init__(
        self,
        *,
        http: aiohttp.ClientSession | httpx2.AsyncClient,
        protocol: WireProtocol,
        base_url: str,
        api_key: str,
        timeouts: Timeouts = Timeouts(),
        extra_headers: dict[str, str] | None = None,
        read_interval: float = 0.0,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if read_interval < 0:
            raise ValueError(f"read_interval must not be negative, got {read_interval!r}")
        self._protocol = protocol
        self._read_interval = read_interval
        self._sleep = sleep
        self._url = base_url.rstrip("/") + protocol.path
        self._api_key = api_key
        self._timeouts = timeouts
        self._extra_headers = dict(extra_headers or {})
        self._transport = transport_for(
            http, connect=timeouts.connect, read_idle=timeouts.read_idle, write=timeouts.write
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
        reads = _ReadClock(deadline, self._timeouts.read_idle)
        marked_end = False
        interval, sleep = self._read_interval, self._sleep
        gathering = False  # reads are gathered once the model has begun to answer
        try:  # the read loop, inline: every event passes here, so no inner generator
            sse = SSEDecoder()
            decoder = self._protocol.decoder()
            read = response.read
            while chunk := await reads.next(read):
                for server_event in sse.feed(chunk):
                    for event in decoder.feed(server_event):
                        yield event
                        if _cancel_requested():  # let it land between events, not per read
                            await asyncio.sleep(0)
                        if not gathering and isinstance(event, _ANSWERING):
                            gathering = interval > 0
                    if decoder.done:
                        marked_end = True
                        return
                if gathering:
                    await response.gather(lambda: sleep(interval))
            for server_event in sse.close():
                for event in decoder.feed(server_event):
                    yield event
            for event in decoder.close():
                yield event
        except LLMError as error:
            raise self._scrubbed(error, request_id) from None
        except TimeoutError:
            raise self._deadline_exceeded(request_id) from None
        finally:
            reads.cancel()
            try:
                if marked_end:
                    await _read_to_end(response)
            finally:
                await response.aclose()

    async def _open(self, request: ModelRequest, deadline: float) -> BodyStream:
        """Send the request; return the response once its status says a stream follows."""
        headers = {
            "content-type": "application/json",
            **self._protocol.headers(self._api_key),
            **self._extra_headers,
        }
        body = json.dumps(
            self._protocol.request_body(request),
            ensure_ascii=False,
            separators=(",", ":"),
            allow_nan=False,
        ).encode()
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._transport.post(self._url, headers=headers, body=body)
        except LLMError as error:
            raise self._scrubbed(error, None) from None
        except TimeoutError:
            raise self._deadline_exceeded(None) from None
        try:
            log.debug("%s %s -> %s", request.model, self._url, response.status)
            await self._check_response(response, deadline)
        except BaseException:
            await response.aclose()
            raise
        return response

    async def _check_response(self, response: BodyStream, deadline: float) -> None:
        content_type = response.headers.get("content-type", "")
        if response.status == 200 and not _is_document(content_type):
            return
        request_id = _request_id(response.headers)
        reads = _ReadClock(deadline, self._timeouts.read_idle)
        try:
            raw = await _read_limited(response, reads, _ERROR_BODY_LIMIT)
        except LLMError as error:
            raise self._scrubbed(error, request_id) from None
        except TimeoutError:
            raise self._deadline_exceeded(request_id) from None
        finally:
            reads.cancel()
        kind, message = self._protocol.error_details(raw)
        status: int | None = response.status
        if status == 200:
            if kind is None and message is None:
                raise InvalidResponse(
                    f"the gateway answered {content_type or 'something'} instead of an event "
                    "stream",
                    request_id=request_id,
                )
            status = None
        headers = {key.lower(): value for key, value in response.headers.items()}
        failure = classify_error(
            status=status,
            kind=kind,
            message=self._describe(response.status, message),
            retry_after=parse_retry_after(headers),
            should_retry=_should_retry(headers),
            request_id=request_id,
        )
        raise failure

    def _describe(self, status: int, message: str | None) -> str:
        text = f"the model gateway answered HTTP {status}"
        if message:
            text += f": {message}"
        return self._scrub(text)

    def _deadline_exceeded(self, request_id: str | None) -> DeadlineExceeded:
        seconds = self._timeouts.total
        return DeadlineExceeded(
            f"the model call took longer than {seconds:g} s", request_id=request_id
        )

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


class _ReadClock:
    """The call's total deadline and its read-idle limit over the body's reads, kept by one
    timer for the whole stream.

    A timer scheduled and cancelled per read (``asyncio.timeout_at``, or aiohttp's
    ``sock_read``) costs 2 to 3 µs, as much as decoding a chunk. So a read only notes the time;
    the one timer, when it fires, looks: the deadline passed, or a read has waited ``idle``
    seconds (since it began: the one before it ended with bytes), ends that read (its task is
    cancelled and the read raises ``TimeoutError`` or ``StreamStalled``; a cancellation from
    elsewhere still propagates); otherwise the timer is set again for the earliest moment
    either could be true. A read that would start after the deadline raises at once.
    """

    __slots__ = (
        "_cancelled", "_cancelling", "_deadline", "_failure", "_handle", "_idle", "_last",
        "_loop", "_reader",
    )  # fmt: skip

    def __init__(self, deadline: float, idle: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._deadline, self._idle = deadline, idle
        self._last = self._loop.time()
        self._failure: Exception | None = None  # what the next read raises, once time is up
        self._reader: asyncio.Task[object] | None = None  # the task in a read, if any
        self._cancelled: asyncio.Task[object] | None = None  # the task we cancelled
        self._cancelling = 0  # its cancellation requests before ours
        self._handle = self._loop.call_at(min(deadline, self._last + idle), self._check)

    def _check(self) -> None:
        now = self._loop.time()
        task = self._reader
        if now >= self._deadline:
            self._failure = TimeoutError()
        elif task is not None and now >= self._last + self._idle:
            self._failure = StreamStalled(f"the model gateway sent nothing for {self._idle:g} s")
        else:
            quiet_until = self._last + self._idle if task is not None else now + self._idle
            self._handle = self._loop.call_at(min(self._deadline, quiet_until), self._check)
            return
        if task is not None:
            self._cancelled, self._cancelling = task, task.cancelling()
            task.cancel()

    async def next(self, read: Callable[[], Awaitable[bytes]]) -> bytes:
        """``await read()``, bounded by the deadline and the read-idle limit."""
        if self._failure is not None:
            raise self._failure
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a stream is read inside a task")
        self._reader = task
        self._last = self._loop.time()
        try:
            data = await read()
        except asyncio.CancelledError:  # by the clock, and by nothing else? then time is up
            if self._cancelled is task and task.uncancel() <= self._cancelling:
                assert self._failure is not None
                raise self._failure from None
            raise
        finally:
            self._reader = None
        return data

    def cancel(self) -> None:
        self._handle.cancel()


def _is_document(content_type: str) -> bool:
    """A 200 that is JSON or HTML is an error page, not a stream."""
    return "json" in content_type or "html" in content_type


async def _read_limited(response: BodyStream, reads: _ReadClock, limit: int) -> bytes:
    """The body up to ``limit`` bytes (an error page: read under the call's deadline)."""
    parts: list[bytes] = []
    size = 0
    while size < limit and (chunk := await reads.next(response.read)):
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)[:limit]


def _cancel_requested() -> bool:
    """Whether the task reading has a cancellation requested. One read may hold many events;
    a caller that cancels its task after one of them (a Stop) expects none of the rest, as
    when each read held one."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _read_to_end(response: BodyStream) -> None:
    """After the stream's end marker, the body's own end: read it (for up to
    ``_END_GRACE`` seconds) so that the connection goes back to the pool instead of being
    closed, and the next call skips a TCP and TLS handshake."""
    try:
        async with asyncio.timeout(_END_GRACE):
            while await response.read():
                pass
    except (TimeoutError, LLMError):
        pass  # a gateway that keeps the body open: the connection is closed, the call is done


def _request_id(headers: Mapping[str, str]) -> str | None:
    return headers.get("x-request-id") or headers.get("request-id")


def _should_retry(headers: dict[str, str]) -> bool | None:
    value = headers.get("x-should-retry")
    if value == "true":
        return True
    if value == "false":
        return False
    return None
