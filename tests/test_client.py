"""LLMClient and the retrying stream against a real loopback gateway that injects faults.

Every test runs over both transports (:mod:`core.transport`): an ``aiohttp`` session, as the
bots stream, and an ``httpx2`` client, as callers that hold one do."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import logging
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx2
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bots.loopback import LoopbackServer
from core.assembly import MessageAssembler
from core.client import LLMClient, Timeouts, new_stream_session
from core.errors import (
    AuthError,
    BadRequest,
    ConnectFailed,
    ContextTooLong,
    DeadlineExceeded,
    InvalidResponse,
    LLMError,
    Overloaded,
    RateLimited,
    ServerError,
    StreamInterrupted,
    StreamStalled,
)
from core.events import AttemptVoid, StreamEnd, StreamEvent, TextDelta
from core.messages import AssistantMessage, ModelRequest, UserMessage
from core.protocols import AnthropicProtocol, OpenAIProtocol
from core.retry import RetryPolicy, retrying_stream
from tests.fakes.llm_gateway import Error, FakeGateway, Hang, Stream
from tests.fakes.streams import (
    GARBAGE_LINE,
    KEEPALIVE,
    anthropic_error_event,
    anthropic_events,
    openai_chunks,
    openai_error_chunk,
    sse,
    without_end,
)

KEY = "sk-test-0123456789abcdef"
REQUEST = ModelRequest(model="fake/model", messages=(UserMessage(text="Hi"),), max_tokens=64)
FAST = Timeouts(connect=10.0, read_idle=10.0, total=30.0)  # generous: loopback on a loaded machine
NO_WAIT = RetryPolicy(max_attempts=4, base_delay=0.0, max_delay=0.0, deadline=5.0)

Session = aiohttp.ClientSession | httpx2.AsyncClient


@pytest.fixture(params=["aiohttp", "httpx2"])
async def http(request: pytest.FixtureRequest) -> AsyncIterator[Session]:
    """The session ``LLMClient`` streams through, of each kind (closed after the test)."""
    session: Session = new_stream_session() if request.param == "aiohttp" else httpx2.AsyncClient()
    async with session:
        yield session


def openai_client(gw: FakeGateway, http: Session, timeouts: Timeouts = FAST) -> LLMClient:
    return LLMClient(
        http=http, protocol=OpenAIProtocol(), base_url=gw.url + "/v1", api_key=KEY,
        timeouts=timeouts,
    )  # fmt: skip


def anthropic_client(gw: FakeGateway, http: Session) -> LLMClient:
    return LLMClient(
        http=http, protocol=AnthropicProtocol(), base_url=gw.url, api_key=KEY, timeouts=FAST
    )


async def events_of(client: LLMClient, policy: RetryPolicy = NO_WAIT) -> list[StreamEvent]:
    seen: list[StreamEvent] = []
    async with retrying_stream(client, REQUEST, policy) as events:
        async for event in events:
            seen.append(event)
    return seen


async def message_of(client: LLMClient, policy: RetryPolicy = NO_WAIT) -> AssistantMessage:
    assembler = MessageAssembler()
    for event in await events_of(client, policy):
        assembler.feed(event)
    return assembler.message()


def texts(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def test_openai_request_and_stream(gateway: FakeGateway, http: Session) -> None:
    gateway.enqueue(Stream(openai_chunks("Hello, world!", usage=(7, 3))))
    message = await message_of(openai_client(gateway, http))
    assert (message.text, message.finish_reason) == ("Hello, world!", "stop")
    assert (message.usage.input_tokens, message.usage.output_tokens) == (7, 3)
    [request] = gateway.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.json is not None
    assert request.json["stream"] is True
    assert request.json["stream_options"] == {"include_usage": True}
    assert request.json["messages"] == [{"role": "user", "content": "Hi"}]


async def test_anthropic_request_and_stream(gateway: FakeGateway, http: Session) -> None:
    gateway.enqueue(
        Stream(anthropic_events("Bonjour", thinking="hmm", tool_uses=[("tu_1", "f", '{"a":1}')]))
    )
    message = await message_of(anthropic_client(gateway, http))
    assert message.text == "Bonjour"
    assert message.reasoning == "hmm"
    assert [(c.id, c.name, c.arguments) for c in message.tool_calls] == [("tu_1", "f", {"a": 1})]
    assert message.finish_reason == "tool_calls"
    [request] = gateway.requests
    assert request.path == "/v1/messages"
    assert request.headers["x-api-key"] == KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in request.headers


async def test_anthropic_without_event_lines(gateway: FakeGateway, http: Session) -> None:
    gateway.enqueue(Stream(anthropic_events("No event lines", event_lines=False)))
    assert (await message_of(anthropic_client(gateway, http))).text == "No event lines"


async def test_one_byte_per_write_with_multibyte_text(gateway: FakeGateway, http: Session) -> None:
    text = "Grüße aus Köln 🌧️ — 東京は晴れ。"
    gateway.enqueue(Stream(openai_chunks(text), write_size=1))
    assert (await message_of(openai_client(gateway, http))).text == text


async def test_keepalives_and_garbage_lines_are_ignored(
    gateway: FakeGateway, http: Session
) -> None:
    chunks = openai_chunks("steady")
    noisy = [KEEPALIVE, chunks[0], GARBAGE_LINE, b"\n", KEEPALIVE, *chunks[1:]]
    gateway.enqueue(Stream(noisy))
    assert (await message_of(openai_client(gateway, http))).text == "steady"


async def test_keepalive_comments_keep_an_idle_stream_alive(
    gateway: FakeGateway, http: Session
) -> None:
    """Silence longer than read_idle in total, but never between two writes."""
    chunks = openai_chunks("slow")
    writes = [chunks[0], *[KEEPALIVE] * 6, *chunks[1:]]
    gateway.enqueue(Stream(writes, delay_between=0.03))
    client = openai_client(gateway, http, Timeouts(connect=10, read_idle=0.15, total=30))
    assert (await message_of(client)).text == "slow"


@pytest.mark.parametrize(
    ("fault", "error_type"),
    [
        (Error(429, {"error": {"message": "slow down"}}, headers={"Retry-After": "0"}),
         RateLimited),
        (Error(429, b"", headers={"retry-after-ms": "1"}), RateLimited),
        (Error(500, {"error": {"message": "boom", "type": "server_error"}}), ServerError),
        (Error(503, b"<html>upstream down</html>", headers={"content-type": "text/html"}),
         ServerError),
        (Error(529, {"type": "error", "error": {"type": "overloaded_error",
                                                "message": "Overloaded"}}), Overloaded),
        (Error(408, b""), ServerError),
        (Error(409, b""), ServerError),
    ],
)  # fmt: skip
async def test_status_faults_retry_invisibly(
    gateway: FakeGateway, http: Session, fault: Error, error_type: type[LLMError]
) -> None:
    gateway.enqueue(fault, Stream(openai_chunks("recovered")))
    retried: list[LLMError] = []
    async with retrying_stream(
        openai_client(gateway, http), REQUEST, NO_WAIT,
        on_retry=lambda error, attempt, wait: retried.append(error),
    ) as events:  # fmt: skip
        seen = [event async for event in events]
    assert texts(seen) == "recovered"
    assert not any(isinstance(event, AttemptVoid) for event in seen)
    assert [type(error) for error in retried] == [error_type]
    assert len(gateway.requests) == 2


async def test_rate_limit_carries_retry_after(gateway: FakeGateway, http: Session) -> None:
    gateway.enqueue(Error(429, b"{}", headers={"Retry-After": "7", "x-request-id": "req_9"}))
    with pytest.raises(RateLimited) as caught:
        await events_of(openai_client(gateway, http), RetryPolicy(max_attempts=1))
    assert (caught.value.retry_after, caught.value.status) == (7.0, 429)
    assert caught.value.request_id == "req_9"


async def test_x_should_retry_false_is_honoured(gateway: FakeGateway, http: Session) -> None:
    gateway.enqueue(Error(500, b"{}", headers={"x-should-retry": "false"}))
    with pytest.raises(ServerError):
        await events_of(openai_client(gateway, http))
    assert len(gateway.requests) == 1


async def test_reset_after_output_voids_and_rewrites_without_duplicates(
    gateway: FakeGateway, http: Session
) -> None:
    chunks = openai_chunks("The quick brown fox jumps.")
    gateway.enqueue(Stream.cut(chunks, after=4), Stream(chunks))
    seen = await events_of(openai_client(gateway, http))
    [void] = [index for index, event in enumerate(seen) if isinstance(event, AttemptVoid)]
    assert texts(seen[:void]) == "The quick br"  # role chunk, then three 4-character pieces
    assert texts(seen[void + 1 :]) == "The quick brown fox jumps."
    void_event = seen[void]
    assert isinstance(void_event, AttemptVoid)
    assert void_event.attempt == 1
    assert isinstance(seen[-1], StreamEnd)
    assembler = MessageAssembler()
    for event in seen:
        assembler.feed(event)
    assert assembler.message().text == "The quick brown fox jumps."


async def test_stream_cut_before_end_marker_is_not_success(
    gateway: FakeGateway, http: Session
) -> None:
    gateway.enqueue(Stream(without_end(openai_chunks("almost"))))
    with pytest.raises(StreamInterrupted):
        await events_of(openai_client(gateway, http), RetryPolicy(max_attempts=1))


async def test_anthropic_cut_before_message_stop_retries(
    gateway: FakeGateway, http: Session
) -> None:
    events = anthropic_events("whole answer")
    gateway.enqueue(Stream(without_end(events)), Stream(events))
    seen = await events_of(anthropic_client(gateway, http))
    assert sum(isinstance(event, AttemptVoid) for event in seen) == 1
    assert texts(seen[[type(e) for e in seen].index(AttemptVoid) + 1 :]) == "whole answer"


async def test_stall_becomes_stalled_error_and_retries(gateway: FakeGateway, http: Session) -> None:
    chunks = openai_chunks("after the stall")
    gateway.enqueue(Stream.stalled(chunks, after=2), Stream(chunks))
    client = openai_client(gateway, http, Timeouts(connect=10, read_idle=0.05, total=30))
    retried: list[LLMError] = []
    async with retrying_stream(
        client, REQUEST, NO_WAIT, on_retry=lambda error, *_: retried.append(error)
    ) as events:
        seen = [event async for event in events]
    assert [type(error) for error in retried] == [StreamStalled]
    assert texts(seen).endswith("after the stall")


async def test_no_headers_at_all_is_a_stall(gateway: FakeGateway, http: Session) -> None:
    gateway.enqueue(Hang())
    client = openai_client(gateway, http, Timeouts(connect=10, read_idle=0.05, total=30))
    with pytest.raises(StreamStalled, match=r"sent nothing for 0\.05 s"):
        await events_of(client, RetryPolicy(max_attempts=1))


async def test_total_deadline_ends_a_trickling_stream(gateway: FakeGateway, http: Session) -> None:
    gateway.enqueue(Stream([KEEPALIVE] * 50, delay_between=0.02))
    client = openai_client(gateway, http, Timeouts(connect=10, read_idle=10, total=0.1))
    with pytest.raises(DeadlineExceeded):
        await events_of(client)
    assert len(gateway.requests) == 1


async def test_in_band_errors_are_typed_and_retried(gateway: FakeGateway, http: Session) -> None:
    chunks = openai_chunks("fine now")
    gateway.enqueue(
        Stream([chunks[0], chunks[1], openai_error_chunk("upstream hiccup")]), Stream(chunks)
    )
    seen = await events_of(openai_client(gateway, http))
    assert texts(seen).endswith("fine now")
    assert sum(isinstance(event, AttemptVoid) for event in seen) == 1


async def test_anthropic_overloaded_event_is_overloaded(
    gateway: FakeGateway, http: Session
) -> None:
    events = anthropic_events("x")
    gateway.enqueue(Stream([events[0], anthropic_error_event()]))
    with pytest.raises(Overloaded, match="Overloaded"):
        await events_of(anthropic_client(gateway, http), RetryPolicy(max_attempts=1))


async def test_garbage_data_is_an_invalid_response(gateway: FakeGateway, http: Session) -> None:
    gateway.enqueue(Stream([sse("<html>502 Bad Gateway</html>")]))
    with pytest.raises(InvalidResponse):
        await events_of(openai_client(gateway, http), RetryPolicy(max_attempts=1))


async def test_json_instead_of_a_stream_is_an_error(gateway: FakeGateway, http: Session) -> None:
    body = b'{"error": {"message": "model not loaded", "type": "server_error"}}'
    gateway.enqueue(Stream([body], content_type="application/json"))
    with pytest.raises(ServerError, match="model not loaded"):
        await events_of(openai_client(gateway, http), RetryPolicy(max_attempts=1))


async def test_context_too_long_never_retries(gateway: FakeGateway, http: Session) -> None:
    gateway.enqueue(
        Error.anthropic(400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000")
    )
    with pytest.raises(ContextTooLong):
        await events_of(anthropic_client(gateway, http))
    assert len(gateway.requests) == 1


async def test_bad_model_is_a_bad_request(gateway: FakeGateway, http: Session) -> None:
    gateway.enqueue(Error.openai(404, "The model `nope` does not exist", type="invalid_request"))
    with pytest.raises(BadRequest, match="HTTP 404: The model `nope` does not exist"):
        await events_of(openai_client(gateway, http))
    assert len(gateway.requests) == 1


async def test_401_never_retries_and_never_shows_the_key(
    gateway: FakeGateway, http: Session, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    echoed = f"Incorrect API key provided: sk-abc***xyz. Also you sent {KEY}."
    gateway.enqueue(Error.openai(401, echoed, type="invalid_request_error", code="invalid_api_key"))
    client = openai_client(gateway, http)
    with pytest.raises(AuthError) as caught:
        await events_of(client)
    assert len(gateway.requests) == 1
    shown = " ".join([str(caught.value), repr(caught.value), repr(client), caplog.text])
    assert "HTTP 401" in shown
    assert "sk-abc" not in shown
    assert KEY not in shown
    assert "0123456789" not in shown


async def test_connection_refused_is_connect_failed(http: Session) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = LLMClient(
        http=http, protocol=OpenAIProtocol(), base_url=f"http://127.0.0.1:{port}/v1",
        api_key=KEY, timeouts=FAST,
    )  # fmt: skip
    with pytest.raises(ConnectFailed):
        await events_of(client, RetryPolicy(max_attempts=2, base_delay=0))


async def test_unusable_base_url_is_a_bad_request(http: Session) -> None:
    client = LLMClient(http=http, protocol=OpenAIProtocol(), base_url="ftp://x", api_key=KEY)
    with pytest.raises(BadRequest, match="base URL"):
        await events_of(client)


async def test_leaving_early_closes_the_response(gateway: FakeGateway, http: Session) -> None:
    gateway.enqueue(Stream(openai_chunks("a long answer " * 20), delay_between=0.001))
    async with openai_client(gateway, http).stream(REQUEST) as events:
        async for event in events:
            if isinstance(event, TextDelta) and event.text:
                break
    gateway.enqueue(Stream(openai_chunks("next")))
    assert (await message_of(openai_client(gateway, http))).text == "next"


async def test_a_body_left_open_after_the_end_marker_still_ends_the_call(
    gateway: FakeGateway, http: Session
) -> None:
    """The client reads on briefly after ``[DONE]`` (to keep the connection), never for long:
    a gateway that leaves the body open does not hold the answer up nor fail it."""
    gateway.enqueue(Stream(openai_chunks("done is done"), then="stall"))
    client = openai_client(gateway, http, Timeouts(connect=10, read_idle=5, total=30))
    message = await message_of(client, RetryPolicy(max_attempts=1))
    assert (message.text, message.finish_reason) == ("done is done", "stop")


async def test_a_cancel_after_one_event_of_a_read_ends_the_stream_there(
    gateway: FakeGateway, http: Session
) -> None:
    """One read can hold a whole answer; a task that cancels itself after the first text (a
    Stop) gets no more of it, as when each read held one event."""
    gateway.enqueue(Stream([b"".join(openai_chunks("one two three"))]))
    seen: list[StreamEvent] = []

    async def read_until_text() -> None:
        async with openai_client(gateway, http).stream(REQUEST) as events:
            async for event in events:
                seen.append(event)
                if isinstance(event, TextDelta) and event.text:
                    task = asyncio.current_task()
                    assert task is not None
                    task.cancel()

    reader = asyncio.create_task(read_until_text())
    with pytest.raises(asyncio.CancelledError):
        await reader
    assert texts(seen) == "one "


@pytest.mark.parametrize("anthropic", [False, True])
async def test_keyless_endpoint_gets_no_auth_header(
    gateway: FakeGateway, http: Session, anthropic: bool
) -> None:
    """Ollama, llama.cpp and the offline model take no key: send none rather than a blank."""
    client = LLMClient(
        http=http,
        protocol=AnthropicProtocol() if anthropic else OpenAIProtocol(),
        base_url=gateway.url if anthropic else gateway.url + "/v1",
        api_key="",
    )
    gateway.enqueue(Stream(anthropic_events("ok") if anthropic else openai_chunks("ok")))
    assert (await message_of(client)).text == "ok"
    headers = gateway.requests[0].headers
    assert "authorization" not in headers
    assert "x-api-key" not in headers


# --- TLS: real gateways are https -----------------------------------------------------------


class TLSGateway(FakeGateway):
    """The fake gateway on ``https://127.0.0.1``, serving ``certificate``; ``peers`` are the
    client addresses of its requests, in order (one address: one connection, kept alive)."""

    def __init__(self, certificate: ssl.SSLContext) -> None:
        super().__init__(tls=certificate)
        self.peers: list[object] = []

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        transport = request.transport
        self.peers.append(transport.get_extra_info("peername") if transport else None)
        return await super()._handle(request)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A self-signed certificate for 127.0.0.1, key and certificate in one PEM file."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relaybot test gateway")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    path = tmp_path_factory.mktemp("tls") / "gateway.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + cert.public_bytes(serialization.Encoding.PEM)
    )
    return path


def session_trusting(kind: str, cafile: Path | None) -> Session:
    """A session of ``kind`` that trusts ``cafile`` (``None``: only the usual CAs)."""
    trust = ssl.create_default_context(cafile=cafile) if cafile else None
    if kind == "aiohttp":
        return new_stream_session(tls=trust)
    return httpx2.AsyncClient(verify=trust or True)


@pytest.mark.parametrize("kind", ["aiohttp", "httpx2"])
async def test_an_https_gateway_streams_and_reuses_its_connection(
    certificate: Path, kind: str
) -> None:
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(certificate)
    async with TLSGateway(served) as gateway, session_trusting(kind, certificate) as http:
        gateway.enqueue(Stream(openai_chunks("over TLS")), Stream(openai_chunks("again")))
        client = openai_client(gateway, http)
        assert (await message_of(client)).text == "over TLS"
        assert (await message_of(client)).text == "again"
    assert len(gateway.requests) == 2
    assert gateway.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert gateway.peers[0] == gateway.peers[1], "the second call reused the connection"


@pytest.mark.parametrize("kind", ["aiohttp", "httpx2"])
async def test_an_untrusted_certificate_is_connect_failed(certificate: Path, kind: str) -> None:
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(certificate)
    async with TLSGateway(served) as gateway, session_trusting(kind, None) as http:
        with pytest.raises(ConnectFailed, match="could not connect") as caught:
            await events_of(openai_client(gateway, http), RetryPolicy(max_attempts=1))
    assert KEY not in str(caught.value)
    assert gateway.requests == []


async def test_the_stream_session_uses_the_environments_proxy_as_httpx2_does() -> None:
    """HTTPS_PROXY / HTTP_PROXY / NO_PROXY apply to model streams as they did over httpx2."""
    async with new_stream_session() as session:
        assert session.trust_env
    async with httpx2.AsyncClient() as client:
        assert client.trust_env


# --- gathered reads (llm.read_interval) ------------------------------------------------------


class PacedByHand:
    """A gateway of one OpenAI answer the test paces: the first text, then three more pieces
    in three writes once the client pauses, then the rest once it pauses again (unless
    ``paced`` is false: then all of it at once). ``log`` has each pause's length, in the order
    of what the test adds to it; ``ports`` each client's port."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._handle)
        self.server = LoopbackServer(app, tls=tls)
        self.ports: list[int] = []
        self.chunks = openai_chunks("one two three four")  # role, 5 pieces, finish, usage, DONE
        self.reset()

    def reset(self, *, paced: bool = True) -> None:
        self.log: list[str | float] = []
        self.pauses = 0
        self._paused = [asyncio.Event(), asyncio.Event()]
        self._written = [asyncio.Event(), asyncio.Event()]
        for event in () if paced else self._paused:
            event.set()

    def client(
        self, http: Session, pause: Callable[[float], Awaitable[None]] | None = None
    ) -> LLMClient:
        return LLMClient(
            http=http, protocol=OpenAIProtocol(), base_url=self.server.url + "/v1", api_key=KEY,
            timeouts=FAST, read_interval=0.5, sleep=pause or self.pause,
        )  # fmt: skip

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.ports.append(request.transport.get_extra_info("peername")[1])  # type: ignore[union-attr]
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(self.chunks[0] + self.chunks[1])  # the role, then "one "
        for writes, paused, written in zip(
            (self.chunks[2:5], self.chunks[5:]), self._paused, self._written, strict=True
        ):
            await paused.wait()
            for chunk in writes:  # each on its own, as a gateway writes tokens
                await response.write(chunk)
            written.set()
        await response.write_eof()
        return response

    async def pause(self, seconds: float) -> None:
        """The client's sleep between reads: the gateway writes while the client waits."""
        self.log.append(seconds)
        self.pauses += 1
        if self.pauses <= len(self._paused):
            self._paused[self.pauses - 1].set()
            await self._written[self.pauses - 1].wait()


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
async def test_reads_are_gathered_once_the_answer_has_begun(certificate: Path, tls: bool) -> None:
    """With a read interval, the first words are read the moment they come; after them the
    client waits between reads (its socket left unread), and the tokens written meanwhile come
    in one read — no pause between them. The socket goes back to the pool reading again: the
    next call reuses the connection. Over TLS too."""
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(certificate)
    gateway = PacedByHand(served if tls else None)
    async with gateway.server, session_trusting("aiohttp", certificate) as session:
        client = gateway.client(session)
        async with client.stream(REQUEST) as events:
            async for event in events:
                if isinstance(event, TextDelta) and event.text:
                    gateway.log.append(event.text)
        assert gateway.log == ["one ", 0.5, "two ", "thre", "e fo", 0.5, "ur"]
        gateway.reset()
        assert (await message_of(client)).text == "one two three four"
    assert len(gateway.ports) == 2
    assert gateway.ports[0] == gateway.ports[1]


async def test_httpx2_reads_every_token_whatever_the_interval() -> None:
    """httpx2 hands out each chunk on its own: pausing after each would fall behind the
    stream, so it never pauses."""
    gateway = PacedByHand()
    gateway.reset(paced=False)
    async with gateway.server, httpx2.AsyncClient() as http:
        assert (await message_of(gateway.client(http))).text == "one two three four"
    assert gateway.pauses == 0


async def test_a_stop_during_a_pause_leaves_a_connection_that_works() -> None:
    """Cancelled while its socket is left unread (a Stop): the next call on the same session
    streams normally — no paused socket is handed out again."""
    gateway = PacedByHand()
    stopped = asyncio.Event()

    async def stop_in_pause(seconds: float) -> None:
        stopped.set()
        await asyncio.Event().wait()  # until cancelled

    async with gateway.server, new_stream_session() as session:
        reader = asyncio.create_task(events_of(gateway.client(session, stop_in_pause)))
        await stopped.wait()
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        gateway.reset(paced=False)
        assert (await message_of(gateway.client(session))).text == "one two three four"


def test_a_negative_read_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="read_interval"):
        LLMClient(
            http=httpx2.AsyncClient(), protocol=OpenAIProtocol(), base_url="http://x",
            api_key=KEY, read_interval=-1,
        )  # fmt: skip
