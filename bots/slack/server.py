"""``relaybot slack``: how Slack reaches the bot — Socket Mode or HTTP.

- Socket Mode (the default; no public address): the bot opens a websocket to Slack with the
  app-level token (``SLACK_APP_TOKEN``, ``xapp-...``, scope ``connections:write``).
- HTTP mode (``--http --port N``): Slack POSTs events and button presses to
  ``/slack/events``; bolt checks each request's signature and timestamp against
  ``SLACK_SIGNING_SECRET`` (a bad or stale one gets 401). ``GET /health`` says the process
  runs (``{"ok": true}``); ``GET /ready`` says whether it can accept and answer a message now
  (200 ``{"ready": true}``, else 503 with a short reason per check: :mod:`bots.readiness`),
  for a load balancer. Workers are stateless apart from the store, so several
  can share one address (a Stop press reaches only the worker writing that answer, for now).

Both need the bot token (``SLACK_BOT_TOKEN``, ``xoxb-...``), checked with ``auth.test``
before the bot starts listening. SIGINT and SIGTERM stop the bot: it stops listening first
(Slack sends what it could not deliver again, to this address), then spends
``[runtime] shutdown_grace`` ending the answers being written — "Restarting — I'll continue in
a moment" for those the next start answers again, the interrupted notice after a tool ran.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from urllib.parse import parse_qsl

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient

from bots.metrics_server import METRICS_PATH, metrics_handler, metrics_served
from bots.runtime import Runtime
from bots.settings import Settings, fleet_problem
from bots.signals import until_stopped
from bots.slack.app import SlackBot, bot_token, slack_bot
from bots.slack.workspace import SLACK_FAILURES, SlackUnreachable, failure_reason
from core.settings import SettingsError
from core.store.journal import TurnJournal

__all__ = [
    "EVENTS_PATH",
    "HEALTH_PATH",
    "READY_PATH",
    "run_slack",
    "serve_http",
    "socket_mode",
    "web_app",
]

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/health"
READY_PATH = "/ready"
MAX_BODY = 1024**2
"""Bytes of a request body read at most (aiohttp's ``client_max_size``; a body of exactly this
size is read). Slack's events and button presses weigh a few kilobytes: a bigger body is
refused with 413 before it is read."""
SIGNATURE_MAX_AGE = 60 * 5
"""Seconds a signature's timestamp may be off, as ``slack_sdk``'s verifier allows."""
REFUSALS_LOG_SECONDS = 60.0
"""Seconds between two log lines about refused requests of one status: a flood of forged
requests costs a line a minute, and the next line counts the refusals it stood for."""

log = logging.getLogger("relaybot.slack")


def web_app(
    bot: SlackBot,
    *,
    clock: Callable[[], float] = time.monotonic,
    journal: TurnJournal | None = None,
) -> web.Application:
    """The bot's HTTP endpoints: Slack's events and interactions, liveness and readiness, and
    the Prometheus metrics (``GET /metrics``: :mod:`bots.metrics_server`; the journal's
    backlog among them when a ``journal`` is given). ``clock`` paces the log lines about
    refused requests."""
    verifier = _verifier(bot)
    refusals = _Refusals(clock)

    async def events(request: web.Request) -> web.Response:
        """A request reaches bolt only once it is known to be Slack's and readable, so no
        forged or malformed body costs more than a log line now and then (bolt itself would log
        a forged body whole, and answer an unreadable one with 500 and a traceback)."""
        try:
            slack_request = await _slack_request(request, verifier)
        except _Refused as refused:
            refusals.note(refused, request.remote)
            return web.json_response({"error": refused.error}, status=refused.status)
        response = await bot.app.async_dispatch(slack_request)
        return await to_aiohttp_response(response)

    async def health(request: web.Request) -> web.Response:
        """Liveness: the process runs, whatever its store and gateway say."""
        return web.json_response({"ok": True, "busy": bot.busy})

    async def ready(request: web.Request) -> web.Response:
        verdict = await bot.readiness.check()
        return web.json_response(verdict.as_json(), status=200 if verdict.ready else 503)

    app = web.Application(client_max_size=MAX_BODY)
    app.router.add_post(EVENTS_PATH, events)
    app.router.add_get(HEALTH_PATH, health)
    app.router.add_get(READY_PATH, ready)
    app.router.add_get(METRICS_PATH, metrics_handler(journal))
    return app


class _Refused(Exception):
    """A request answered ``status`` without reaching bolt, for ``reason`` (what the log says;
    the client is told only :attr:`error`)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason

    @property
    def error(self) -> str:
        return {401: "invalid_request", 413: "too_large"}.get(self.status, "malformed_request")


class _Refusals:
    """Refused requests, logged at WARNING: the source address and the reason — never a header,
    never the body — in one line per :data:`REFUSALS_LOG_SECONDS` at most for each status."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._quiet_until: dict[int, float] = {}
        self._left_out: dict[int, int] = {}

    def note(self, refused: _Refused, remote: str | None) -> None:
        now, status = self._clock(), refused.status
        if now < self._quiet_until.get(status, now):
            self._left_out[status] = self._left_out.get(status, 0) + 1
            return
        left_out = self._left_out.pop(status, 0)
        more = f" ({left_out} more refused since the last line)" if left_out else ""
        log.warning("refused a request from %s with %d: %s%s",
                    remote or "an unknown address", status, refused.reason, more)  # fmt: skip
        self._quiet_until[status] = now + REFUSALS_LOG_SECONDS


def _verifier(bot: SlackBot) -> SignatureVerifier:
    secret = bot.settings.signing_secret  # the one the bot gave bolt
    if secret is None or not secret.get_secret_value().strip():
        raise SettingsError("HTTP mode needs the app's signing secret: set SLACK_SIGNING_SECRET")
    return SignatureVerifier(secret.get_secret_value())


async def _slack_request(request: web.Request, verifier: SignatureVerifier) -> AsyncBoltRequest:
    """The request as bolt takes it, or :class:`_Refused`. The cheapest checks come first: the
    signature's headers, then the declared size — neither reads the body — then the body's
    signature, and last what the body says."""
    timestamp, signature = _signature_headers(request, verifier)
    if (request.content_length or 0) > MAX_BODY:
        raise _Refused(413, f"a body over {MAX_BODY} bytes")
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:  # no Content-Length: aiohttp stops past the cap
        raise _Refused(413, f"a body over {MAX_BODY} bytes") from None
    text = _signed_text(body, timestamp, signature, verifier)
    _check_payload(text, json_type=request.content_type == "application/json")
    headers: dict[str, str | Sequence[str]] = dict(request.headers)
    try:
        return AsyncBoltRequest(body=text, query=request.query_string, headers=headers)
    except (LookupError, TypeError, ValueError, AttributeError):
        raise _Refused(400, "a payload bolt cannot read") from None


def _signature_headers(request: web.Request, verifier: SignatureVerifier) -> tuple[str, str]:
    """The signature and its timestamp, present and fresh (else 401)."""
    timestamp = request.headers.get("X-Slack-Request-Timestamp", "")
    signature = request.headers.get("X-Slack-Signature", "")
    if not (timestamp and signature):
        raise _Refused(401, "no signature")
    try:
        age = abs(verifier.clock.now() - int(timestamp))
    except (ValueError, OverflowError):
        raise _Refused(401, "a timestamp that is not a number") from None
    if age > SIGNATURE_MAX_AGE:
        raise _Refused(401, f"a timestamp {age:.0f} s off (a stale request, or a skewed clock)")
    return timestamp, signature


def _signed_text(body: bytes, timestamp: str, signature: str, verifier: SignatureVerifier) -> str:
    """The body as text, once its signature is Slack's (else 401). Slack signs UTF-8 text:
    bytes that are not UTF-8 were not signed by Slack."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refused(401, "a bad signature (the body is not UTF-8)") from None
    if not verifier.is_valid(text, timestamp, signature):
        raise _Refused(401, "a bad signature")
    return text


def _check_payload(text: str, *, json_type: bool) -> None:
    """What Slack sends: an event as a JSON object, or a form — an interaction's ``payload``
    being a JSON object (else 400); a form without one (a slash command, Slack's SSL check) is
    bolt's to read. Told apart as bolt tells them: JSON has its content type, or begins with
    ``{``."""
    if json_type or text.startswith("{"):
        document = text
    elif (payload := dict(parse_qsl(text)).get("payload")) is not None:
        document = payload
    else:
        return
    try:
        value: object = json.loads(document)
    except (ValueError, RecursionError):  # RecursionError: arrays nested thousands deep
        raise _Refused(400, "JSON that does not parse") from None
    if not isinstance(value, dict):
        raise _Refused(400, f"JSON that is not an object but {type(value).__name__}")


@asynccontextmanager
async def serve_http(
    bot: SlackBot, *, host: str, port: int, journal: TurnJournal | None = None
) -> AsyncIterator[str]:
    """Serve :func:`web_app` on ``host:port`` (0: any free port) while the block runs; yields
    the base URL."""
    runner = web.AppRunner(web_app(bot, journal=journal), handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        bound_host, bound_port = runner.addresses[0][:2]
        yield f"http://{_url_host(bound_host)}:{bound_port}"
    finally:
        await runner.cleanup()


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def socket_mode(
    bot: SlackBot, app_token: str, *, web_client: AsyncWebClient | None = None
) -> AsyncSocketModeHandler:
    """A Socket Mode connection for the bot (``web_client`` opens it: the bot's by default)."""
    return AsyncSocketModeHandler(
        bot.app, app_token, web_client=web_client or bot.app.client, logger=bot.app.logger
    )


async def run_slack(
    settings: Settings,
    *,
    http: bool,
    host: str,
    port: int,
    announce: Callable[[str], None],
    metrics_port: int | None = None,
) -> int:
    """``relaybot slack``: run until SIGINT or SIGTERM. Returns the exit status. With
    ``metrics_port`` (0: any free port) ``GET /metrics`` is served there too, which Socket
    Mode needs (HTTP mode serves it beside Slack's events anyway)."""
    bot_token(settings.slack, http=http)  # a missing token stops us before anything starts
    if http and (problem := fleet_problem(settings)) is not None:
        raise SettingsError(problem)
    app_token = settings.slack.app_token
    async with (
        Runtime.start(settings, announce=announce) as runtime,
        slack_bot(runtime, http=http) as bot,
        metrics_served(runtime.store, port=metrics_port, announce=announce),
    ):
        await bot.workspace.check()
        if http:
            async with serve_http(bot, host=host, port=port, journal=runtime.store) as url:
                announce(f"listening for Slack on {url}{EVENTS_PATH}")
                await until_stopped()
            return 0
        if app_token is None:  # bot_token() refused this already; say so again, not assert
            raise SettingsError("Socket Mode needs the app-level token: set SLACK_APP_TOKEN")
        handler = socket_mode(bot, app_token.get_secret_value())
        try:
            await _connect(handler)
            announce("connected to Slack (Socket Mode)")
            await until_stopped()
        finally:
            await handler.close_async()  # type: ignore[no-untyped-call]  # bolt leaves it untyped
    return 0


async def _connect(handler: AsyncSocketModeHandler) -> None:
    """Connect, failing at once if Slack refuses the app-level token. (slack_sdk's
    ``connect()`` would log the refusal and retry forever, so the websocket URL is asked for
    here first; ``connect()`` then uses it.)"""
    client = handler.client
    try:
        client.wss_uri = await client.issue_new_wss_url()
    except SlackApiError as error:
        raise SettingsError(
            f"Slack refused the app-level token ({failure_reason(error)})"
        ) from None
    except SLACK_FAILURES as error:
        url = client.web_client.base_url
        raise SlackUnreachable(f"cannot reach Slack at {url} ({type(error).__name__})") from None
    await handler.connect_async()  # type: ignore[no-untyped-call]
