"""How ``LLMClient`` reaches the gateway: one streaming POST, over aiohttp or httpx2.

:class:`~core.client.LLMClient` reads a model's answer through the small :class:`BodyStream`
interface — the status, the headers, then ``await read()`` until ``b""`` — and each transport
maps its library's failures into :mod:`core.errors` here, once, at the boundary:

- :class:`AiohttpTransport` (an ``aiohttp.ClientSession``) is what ``bots.runtime`` uses. Its C
  HTTP parser and its protocol, which keeps the socket registered instead of pausing it after
  every read, make a streamed token cost about a third of the CPU of the httpx2 path (see
  ``python -m bench.readpath``), which is what lets one process carry many live answers.
  aiohttp's ``sock_read`` bounds the wait for the headers; the body's read-idle limit is the
  caller's.
- :class:`Httpx2Transport` (an ``httpx2.AsyncClient``) serves callers that already hold one
  (``relaybot check``, tests): the same behaviour, at httpx2's cost, and no gathered reads
  (see :meth:`BodyStream.gather`).

The total deadline is the caller's (``LLMClient`` keeps it with one timer for the whole call);
messages here may hold whatever a library put in its error, so the client scrubs them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Protocol

import aiohttp
import httpx2

from core.errors import BadRequest, ConnectFailed, StreamInterrupted, StreamStalled

__all__ = ["AiohttpTransport", "BodyStream", "Httpx2Transport", "Transport", "transport_for"]


class BodyStream(Protocol):
    """A response whose body is read as it arrives. Header lookups ignore case."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    async def read(self) -> bytes:
        """The next bytes of the body as they come (at least one), ``b""`` at its end. Past the
        headers the read-idle limit is the caller's to keep (``LLMClient`` has one clock for
        it); a transport may also keep its own."""
        ...

    async def gather(self, pause: Callable[[], Awaitable[object]]) -> None:
        """Leave the body unread while ``await pause()`` runs (not at all if the whole body is
        in): what arrives meanwhile is taken by the next read in one piece — one system call,
        one parse and one wake-up of the reader instead of one for each token written."""
        ...

    async def aclose(self) -> None:
        """Give the connection back (kept alive if the body was read to its end)."""
        ...


class Transport(Protocol):
    """Sends one POST and returns the response once its headers are in."""

    async def post(self, url: str, *, headers: dict[str, str], body: bytes) -> BodyStream: ...


def transport_for(
    http: aiohttp.ClientSession | httpx2.AsyncClient,
    *,
    connect: float,
    read_idle: float,
    write: float,
) -> Transport:
    """The transport over ``http``, with these limits in seconds (``connect`` also bounds the
    wait for a free connection of the pool)."""
    if isinstance(http, aiohttp.ClientSession):
        return AiohttpTransport(http, connect=connect, read_idle=read_idle)
    return Httpx2Transport(http, connect=connect, read_idle=read_idle, write=write)


def _stalled(read_idle: float) -> StreamStalled:
    return StreamStalled(f"the model gateway sent nothing for {read_idle:g} s")


def _broken(exc: BaseException) -> StreamInterrupted:
    text = str(exc)
    name = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return StreamInterrupted(f"the connection to the model gateway broke: {name}")


# --- aiohttp --------------------------------------------------------------------------------


class AiohttpTransport:
    """POSTs over an ``aiohttp.ClientSession`` (its pool and TLS settings are the session's)."""

    def __init__(self, session: aiohttp.ClientSession, *, connect: float, read_idle: float) -> None:
        self._session = session
        self._read_idle = read_idle
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=connect, sock_connect=connect, sock_read=read_idle
        )

    async def post(self, url: str, *, headers: dict[str, str], body: bytes) -> BodyStream:
        try:
            response = await self._session.post(
                url, data=body, headers=headers, timeout=self._timeout, allow_redirects=False
            )
        except Exception as exc:
            raise self._mapped(exc) from None
        connection = response.connection
        if connection is not None and connection.protocol is not None:
            # sock_read bounded the wait for the headers; for the body it would reschedule a
            # timer on every read, and the caller's one clock keeps read-idle instead.
            connection.protocol.read_timeout = None
        return _AiohttpBody(response, self)

    def _mapped(self, exc: Exception) -> Exception:
        """The ``LLMError`` for an aiohttp failure (anything else is returned as it is)."""
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            return ConnectFailed("timed out connecting to the model gateway")
        if isinstance(exc, aiohttp.SocketTimeoutError):
            return _stalled(self._read_idle)
        if isinstance(exc, aiohttp.ClientConnectorError):
            return ConnectFailed(f"could not connect to the model gateway: {exc}")
        if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
            return BadRequest(f"the gateway base URL is not usable: {exc}")
        if isinstance(exc, aiohttp.ClientError):
            return _broken(exc)
        return exc


class _AiohttpBody:
    __slots__ = ("_content", "_ended", "_response", "_socket", "_transport", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse, transport: AiohttpTransport) -> None:
        self._response = response
        self._transport = transport
        self._content = response.content
        self._ended = False
        connection = response.connection
        self._socket = connection.transport if connection is not None else None
        self.status: int = response.status
        self.headers: Mapping[str, str] = response.headers

    async def read(self) -> bytes:
        try:
            data = await self._content.readany()
        except Exception as exc:
            raise self._transport._mapped(exc) from None
        if not data:
            self._ended = True
        return data

    async def gather(self, pause: Callable[[], Awaitable[object]]) -> None:
        if self._content.is_eof():
            return  # the whole body is in
        # aiohttp reads the socket as bytes come, whoever waits: pausing it leaves them to the
        # kernel, to be read in one go. A socket aiohttp paused itself (its buffer full) is
        # left to aiohttp.
        socket = self._socket
        if socket is None or not socket.is_reading():
            await pause()
            return
        socket.pause_reading()
        try:
            await pause()
        finally:
            if not socket.is_closing():
                socket.resume_reading()

    async def aclose(self) -> None:
        if self._ended:
            self._response.release()  # the whole body is in: the connection is reusable
        else:
            self._response.close()


# --- httpx2 ---------------------------------------------------------------------------------


class Httpx2Transport:
    """POSTs over an ``httpx2.AsyncClient``."""

    def __init__(
        self, http: httpx2.AsyncClient, *, connect: float, read_idle: float, write: float
    ) -> None:
        self._http = http
        self._read_idle = read_idle
        self._timeout = httpx2.Timeout(connect=connect, read=read_idle, write=write, pool=connect)

    async def post(self, url: str, *, headers: dict[str, str], body: bytes) -> BodyStream:
        try:
            request = self._http.build_request(
                "POST", url, content=body, headers=headers, timeout=self._timeout
            )
            response = await self._http.send(request, stream=True)
        except Exception as exc:
            raise self._mapped(exc) from None
        return _Httpx2Body(response, self)

    def _mapped(self, exc: Exception) -> Exception:
        """The ``LLMError`` for an httpx2 failure (anything else is returned as it is)."""
        if isinstance(exc, httpx2.ReadTimeout):
            return _stalled(self._read_idle)
        if isinstance(exc, httpx2.ConnectTimeout | httpx2.PoolTimeout):
            return ConnectFailed("timed out connecting to the model gateway")
        if isinstance(exc, httpx2.ConnectError):
            return ConnectFailed(f"could not connect to the model gateway: {exc}")
        if isinstance(exc, httpx2.InvalidURL | httpx2.UnsupportedProtocol):
            return BadRequest(f"the gateway base URL is not usable: {exc}")
        if isinstance(exc, httpx2.TransportError | httpx2.DecodingError):
            return _broken(exc)
        return exc


class _Httpx2Body:
    __slots__ = ("_chunks", "_response", "_transport", "headers", "status")

    def __init__(self, response: httpx2.Response, transport: Httpx2Transport) -> None:
        self._response = response
        self._transport = transport
        self._chunks: AsyncIterator[bytes] = response.aiter_bytes()
        self.status: int = response.status_code
        self.headers: Mapping[str, str] = response.headers

    async def read(self) -> bytes:
        try:
            return await anext(self._chunks)
        except StopAsyncIteration:
            return b""
        except Exception as exc:
            raise self._transport._mapped(exc) from None

    async def gather(self, pause: Callable[[], Awaitable[object]]) -> None:
        """Not at all: httpx2 hands out each chunk of the body on its own, even those one
        system call brought in together, so a pause after each would fall behind the stream
        instead of gathering it."""

    async def aclose(self) -> None:
        await self._response.aclose()
