"""A real HTTP LLM gateway on loopback that replays scripted replies and injects faults.

    async with FakeGateway() as gw:
        gw.enqueue(Stream(openai_chunks("Hello")), Error(429, {...}, headers={"Retry-After": "0"}))
        client = LLMClient(base_url=gw.url + "/v1", ...)   # OpenAI: {gw.url}/v1/chat/completions
        ...                                                # Anthropic: base {gw.url}
        assert gw.requests[0].json["stream"] is True

Any POST whose path ends in ``/chat/completions`` or ``/v1/messages`` takes the next scripted
reply (:class:`Stream`, :class:`Error` or :class:`Hang`); with none left it asks ``respond``
(a function of the request, when one is given: a reply that depends on what was asked, for
concurrent callers), then answers the ``fallback`` reply, or ``500`` "fake gateway: no scripted
reply". Every request is recorded in :attr:`FakeGateway.requests`.

Run as a process for benchmarks (prints ``LISTENING http://127.0.0.1:PORT`` once bound):

    python -m tests.fakes.llm_gateway --port 0 --protocol openai --chunks 20000

With ``--pace TOKENS_PER_S`` (OpenAI protocol) it is a :class:`PacedGateway` instead: every
request, however many run at once, gets ``--chunks`` text deltas at that rate, the first one
stamped with the moment it is sent (see :func:`paced_text`), as a load benchmark needs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import ssl
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Literal

from aiohttp import web

from bots.loopback import LoopbackServer
from tests.fakes.streams import anthropic_events, openai_chunks

__all__ = [
    "NO_REPLY_BODY",
    "PACED_STAMP",
    "Error",
    "FakeGateway",
    "Hang",
    "PacedGateway",
    "RecordedRequest",
    "Reply",
    "Stream",
    "grouped",
    "paced_text",
]

NO_REPLY_BODY = b"fake gateway: no scripted reply"

Then = Literal["end", "reset", "stall"]


@dataclass(frozen=True)
class Stream:
    """A ``200`` (or ``status``) streaming reply: headers, then each of ``writes`` as one write.

    ``write_size`` re-chunks the concatenated writes into writes of that many bytes (``1`` =
    one byte per write). ``delay_between`` sleeps between writes. After the last write,
    ``then`` decides: ``"end"`` finishes the body normally; ``"reset"`` cuts the connection
    (the client sees an incomplete chunked body); ``"stall"`` sends nothing more until
    :meth:`FakeGateway.release_stalls` (then the body ends normally) or the gateway closes
    (then the connection is cut). ``Stream([], then="stall")`` is "headers, then silence".
    """

    writes: Sequence[bytes]
    _: KW_ONLY
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    then: Then = "end"
    write_size: int | None = None
    delay_between: float = 0.0
    content_type: str = "text/event-stream"

    @classmethod
    def ok(cls, writes: Sequence[bytes]) -> Stream:
        """The stream, complete."""
        return cls(writes)

    @classmethod
    def cut(cls, writes: Sequence[bytes], *, after: int) -> Stream:
        """The first ``after`` writes, then the connection is cut."""
        return cls(writes[:after], then="reset")

    @classmethod
    def stalled(cls, writes: Sequence[bytes], *, after: int) -> Stream:
        """The first ``after`` writes, then silence with the connection open."""
        return cls(writes[:after], then="stall")

    def chunks(self) -> list[bytes]:
        """The bytes of each write, as they go out."""
        if self.write_size is None:
            return list(self.writes)
        whole = b"".join(self.writes)
        return [whole[i : i + self.write_size] for i in range(0, len(whole), self.write_size)]


@dataclass(frozen=True)
class Error:
    """A complete non-streaming reply: ``status``, ``headers`` and ``body`` (a dict is sent as
    JSON; bytes are sent as they are, as ``application/json`` unless ``headers`` say else)."""

    status: int
    body: bytes | dict[str, Any]
    _: KW_ONLY
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def openai(
        cls,
        status: int,
        message: str,
        *,
        type: str = "server_error",
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Error:
        """An OpenAI-shaped error: ``{"error": {"message", "type", "param", "code"}}``."""
        body = {"error": {"message": message, "type": type, "param": None, "code": code}}
        return cls(status, body, headers=dict(headers or {}))

    @classmethod
    def anthropic(
        cls,
        status: int,
        type: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
    ) -> Error:
        """An Anthropic-shaped error: ``{"type": "error", "error": {"type", "message"}}``."""
        body = {"type": "error", "error": {"type": type, "message": message}}
        return cls(status, body, headers=dict(headers or {}))

    def payload(self) -> bytes:
        return json.dumps(self.body).encode() if isinstance(self.body, dict) else self.body


@dataclass(frozen=True)
class Hang:
    """Read the request, then never send headers. :meth:`FakeGateway.release_stalls` or
    closing the gateway cuts the connection."""


Reply = Stream | Error | Hang


@dataclass(frozen=True, kw_only=True)
class RecordedRequest:
    """A request as the gateway saw it. ``headers`` has lower-case names; ``json`` is the
    parsed body, or ``None`` when the body is not JSON."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any


class FakeGateway(LoopbackServer):
    """An aiohttp server on ``127.0.0.1`` (port 0 = ephemeral) replaying scripted replies
    (over HTTPS with ``tls``, the server's certificate)."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        fallback: Reply | None = None,
        respond: Callable[[RecordedRequest], Reply | None] | None = None,
        record: bool = True,
        shutdown_timeout: float = 0.5,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.requests: list[RecordedRequest] = []
        self._fallback = fallback
        self._respond = respond
        self._record = record
        self._replies: deque[Reply] = deque()
        self._wake = asyncio.Event()
        self._closing = False
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        super().__init__(app, host=host, port=port, shutdown_timeout=shutdown_timeout, tls=tls)

    async def close(self) -> None:
        """Stop serving; stalled and hanging replies are cut, not waited for."""
        self._closing = True
        self._wake.set()
        await super().close()

    def enqueue(self, *replies: Reply) -> None:
        """Script the next replies, one per request, in order."""
        self._replies.extend(replies)

    @property
    def pending(self) -> int:
        """Scripted replies not yet consumed."""
        return len(self._replies)

    def release_stalls(self) -> None:
        """Let every reply stalled or hanging right now go on (later stalls stall again)."""
        self._wake.set()
        self._wake = asyncio.Event()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        recorded = _recorded(request, body)
        if self._record:
            self.requests.append(recorded)
        if request.method != "POST" or not request.path.endswith(
            ("/chat/completions", "/v1/messages")
        ):
            return web.Response(status=404, body=b"fake gateway: no route " + request.path.encode())
        reply = self._replies.popleft() if self._replies else None
        if reply is None and self._respond is not None:
            reply = self._respond(recorded)
        if reply is None:
            reply = self._fallback
        match reply:
            case None:
                return web.Response(status=500, body=NO_REPLY_BODY, content_type="text/plain")
            case Error():
                headers = {"Content-Type": "application/json", **reply.headers}
                return web.Response(status=reply.status, body=reply.payload(), headers=headers)
            case Hang():
                await self._wake.wait()
                return _cut(request, web.Response(status=599))
            case Stream():
                return await self._stream(request, reply)

    async def _stream(self, request: web.Request, reply: Stream) -> web.StreamResponse:
        headers = {"Content-Type": reply.content_type, "Cache-Control": "no-cache", **reply.headers}
        resp = web.StreamResponse(status=reply.status, headers=headers)
        await resp.prepare(request)
        for i, chunk in enumerate(reply.chunks()):
            if i and reply.delay_between:
                await asyncio.sleep(reply.delay_between)
            await resp.write(chunk)  # drains when the transport's buffer is full
            await asyncio.sleep(0)  # let the bytes leave (and a same-loop client read them)
        if reply.then == "stall":
            await self._wake.wait()
            if self._closing:
                return _cut(request, resp)
        if reply.then == "reset":
            await _flushed(request)
            return _cut(request, resp)
        await resp.write_eof()
        return resp


def _cut(request: web.Request, resp: web.StreamResponse) -> web.StreamResponse:
    """Close the connection abruptly; aiohttp then fails to finish ``resp`` and drops it."""
    if request.transport is not None:
        request.transport.abort()
    return resp


def _recorded(request: web.Request, body: bytes) -> RecordedRequest:
    try:
        parsed: Any = json.loads(body) if body else None
    except ValueError:
        parsed = None
    headers = {name.lower(): value for name, value in request.headers.items()}
    return RecordedRequest(
        method=request.method, path=request.path, headers=headers, body=body, json=parsed
    )


async def _flushed(request: web.Request, *, limit: float = 1.0) -> None:
    """Wait (bounded) until the transport has handed every written byte to the socket."""
    transport = request.transport
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    # asyncio offers no event for "write buffer empty" outside the protocol's internals.
    while transport is not None and transport.get_write_buffer_size():
        if loop.time() >= deadline:
            return
        await asyncio.sleep(0.001)


def grouped(events: Sequence[bytes], *, seed: int = 0) -> list[bytes]:
    """Events joined into writes of roughly 1 to 16 KiB, as a busy gateway's TCP writes look."""
    rng = random.Random(seed)
    groups: list[bytes] = []
    current: list[bytes] = []
    size, target = 0, rng.randint(1024, 16384)
    for event in events:
        current.append(event)
        size += len(event)
        if size >= target:
            groups.append(b"".join(current))
            current, size, target = [], 0, rng.randint(1024, 16384)
    if current:
        groups.append(b"".join(current))
    return groups


def _benchmark_stream(protocol: str, chunks: int) -> Stream:
    words = _words(chunks)
    if protocol == "openai":
        events = openai_chunks(words, pieces=6)
    else:
        events = anthropic_events(words, pieces=6)
    return Stream(grouped(events))


def _words(chunks: int) -> str:
    """``chunks`` six-character words (one per delta at ``pieces=6``), some multi-byte."""
    vocabulary = ["relay ", "token ", "stream", " bytes", " déjà ", "hello "]
    return "".join(vocabulary[i % len(vocabulary)] for i in range(chunks))


# --- the paced mode of the process (load benchmarks) -----------------------------------------

PACED_STAMP = re.compile(r"\[(\d{10}\.\d{6})\] ")
"""The first delta of a paced stream: ``[<time.time() when it was sent>] `` (wall clock, which
every process on the machine shares; 17 digits until the year 2286)."""
_STAMP_SLOT = "[0000000000.000000] "


def paced_text(tokens: int, sent_at: float) -> str:
    """The whole text of a paced stream of ``tokens`` deltas whose first one was sent at
    ``sent_at``: the stamp, then ``tokens - 1`` six-character words."""
    return f"[{sent_at:017.6f}] " + _words(tokens)[6:]


class PacedGateway(LoopbackServer):
    """Answers every OpenAI request with ``tokens`` text deltas at ``rate`` per second, any
    number of streams at once: a model under load, for a benchmark.

    Each stream keeps its own schedule (delta ``k`` is due ``k / rate`` seconds after the first)
    and writes every delta due at once as one write, so a gateway that falls behind (its CPU
    shared with the process it serves) catches up in bigger writes rather than slowing the
    rate. The first delta carries its send time (:data:`PACED_STAMP`)."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, tokens: int, rate: float) -> None:
        if tokens < 1 or rate <= 0:
            raise ValueError("a paced stream needs at least one token and a positive rate")
        self._tokens, self._rate = tokens, rate
        chunks = openai_chunks(_words(tokens), pieces=6, usage=(10, tokens))
        self._head = chunks[0]  # the role chunk
        self._first = openai_chunks(_STAMP_SLOT, pieces=len(_STAMP_SLOT))[1]
        self._rest = chunks[2 : 1 + tokens]
        self._tail = b"".join(chunks[1 + tokens :])  # finish, usage, [DONE]
        app = web.Application()
        app.router.add_post("/{tail:.*}/chat/completions", self._handle)
        super().__init__(app, host=host, port=port, shutdown_timeout=0.5)

    async def start(self) -> None:
        """As :meth:`LoopbackServer.start`, with a listen backlog for thousands of clients
        connecting at once (aiohttp's 128 would drop their SYNs: a second's delay each)."""
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port, backlog=4096).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        headers = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        resp = web.StreamResponse(status=200, headers=headers)
        await resp.prepare(request)
        loop = asyncio.get_running_loop()
        stamp = f"[{time.time():017.6f}] ".encode()
        await resp.write(self._head + self._first.replace(_STAMP_SLOT.encode(), stamp))
        start, sent = loop.time(), 1
        while sent < self._tokens:
            await asyncio.sleep(start + sent / self._rate - loop.time())
            due = min(self._tokens, 1 + int((loop.time() - start) * self._rate))
            if due > sent:
                await resp.write(b"".join(self._rest[sent - 1 : due - 1]))
                sent = due
        await resp.write(self._tail)
        await resp.write_eof()
        return resp


async def _serve(port: int, protocol: str, chunks: int, pace: float | None) -> None:
    gateway: LoopbackServer
    if pace is not None:
        gateway = PacedGateway(port=port, tokens=chunks, rate=pace)
    else:
        gateway = FakeGateway(port=port, fallback=_benchmark_stream(protocol, chunks), record=False)
    async with gateway:
        print(f"LISTENING {gateway.url}", flush=True)
        await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve one scripted LLM stream per request.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--protocol", choices=["openai", "anthropic"], default="openai")
    parser.add_argument("--chunks", type=int, default=1000, help="text deltas per stream")
    parser.add_argument(
        "--pace",
        type=float,
        metavar="TOKENS_PER_S",
        help="send each stream's deltas at this rate, the first stamped (OpenAI protocol only)",
    )
    args = parser.parse_args(argv)
    if args.pace is not None and (args.protocol != "openai" or args.pace <= 0):
        parser.error("--pace takes a positive rate and streams the OpenAI protocol only")
    try:
        asyncio.run(_serve(args.port, args.protocol, args.chunks, args.pace))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
