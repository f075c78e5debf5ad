"""``relaybot slack``: how Slack reaches the bot — Socket Mode or HTTP.

- Socket Mode (the default; no public address): the bot opens a websocket to Slack with the
  app-level token (``SLACK_APP_TOKEN``, ``xapp-...``, scope ``connections:write``).
- HTTP mode (``--http --port N``): Slack POSTs events and button presses to
  ``/slack/events``; bolt checks each request's signature and timestamp against
  ``SLACK_SIGNING_SECRET`` (a bad or stale one gets 401). ``GET /health`` answers
  ``{"ok": true}`` for a load balancer. Workers are stateless apart from the store, so several
  can share one address (a Stop press reaches only the worker writing that answer, for now).

Both need the bot token (``SLACK_BOT_TOKEN``, ``xoxb-...``), checked with ``auth.test``
before the bot starts listening. SIGINT and SIGTERM stop the bot: answers being written end
with "Stopped.".
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bots.runtime import Runtime
from bots.settings import Settings
from bots.signals import until_stopped
from bots.slack.app import SlackBot, bot_token, slack_bot
from bots.slack.workspace import SLACK_FAILURES, SlackUnreachable, failure_reason
from core.settings import SettingsError

__all__ = ["EVENTS_PATH", "HEALTH_PATH", "run_slack", "serve_http", "socket_mode", "web_app"]

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/health"


def web_app(bot: SlackBot) -> web.Application:
    """The bot's HTTP endpoints: Slack's events and interactions, and the health check."""

    async def events(request: web.Request) -> web.Response:
        response = await bot.app.async_dispatch(await to_bolt_request(request))
        return await to_aiohttp_response(response)

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "busy": bot.busy})

    app = web.Application()
    app.router.add_post(EVENTS_PATH, events)
    app.router.add_get(HEALTH_PATH, health)
    return app


@asynccontextmanager
async def serve_http(bot: SlackBot, *, host: str, port: int) -> AsyncIterator[str]:
    """Serve :func:`web_app` on ``host:port`` (0: any free port) while the block runs; yields
    the base URL."""
    runner = web.AppRunner(web_app(bot), handle_signals=False, access_log=None)
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
    settings: Settings, *, http: bool, host: str, port: int, announce: Callable[[str], None]
) -> int:
    """``relaybot slack``: run until SIGINT or SIGTERM. Returns the exit status."""
    bot_token(settings.slack, http=http)  # a missing token stops us before anything starts
    app_token = settings.slack.app_token
    async with (
        Runtime.start(settings, announce=announce) as runtime,
        slack_bot(runtime, http=http) as bot,
    ):
        await bot.workspace.check()
        if http:
            async with serve_http(bot, host=host, port=port) as url:
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
