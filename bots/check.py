"""``relaybot check``: whether this configuration can answer, asked of every part it names.

A setup mistake — a wrong key, a scope the app was installed without, the Message Content
intent left off — otherwise shows up as a user's silence. Here each part is asked once, the
way the bots ask it, and answers one line: ``✓ what`` or ``✗ what — the fix``. The fix says
which setting or which page of the platform's console to change, never a secret's value.

- settings: loaded as every command loads them; a :class:`~core.settings.SettingsError` is
  the only line (exit status 2), since nothing else can be asked without them;
- the store: opened (which brings its schema up to date) and written to, then closed; on
  Postgres a failure is told apart by the server's SQLSTATE (cannot connect, login refused,
  database missing, no right to create tables, a newer relaybot's schema), and named by
  ``host:port/database`` only, since the URL may hold a password;
- Redis, when ``redis.url`` is set: PING, a key under ``redis.key_prefix`` written, read and
  deleted, and ``TIME``, named by the URL without its password; without it, Slack HTTP mode on
  a Postgres store fails for the reason :func:`~bots.settings.fleet_problem` gives (the server
  would refuse to start);
- the model gateway: a one-token request with the configured protocol, key and model (the
  offline model, used when neither a key nor a base URL is set, passes as it is);
- Slack, when asked for or when a bot token is set: ``auth.test``, the token's scopes (Slack's
  ``x-oauth-scopes`` header) against :data:`SLACK_SCOPES`, and the app-level token
  (``apps.connections.open``) in Socket Mode or the signing secret's presence in HTTP mode;
- Discord, when asked for or when a token is set: logging in, the Message Content intent in the
  application's flags, and the invite link;
- Open-Meteo, when the weather tool is on: one geocoding request.

Every part is bounded by :data:`CHECK_TIMEOUT`, so the command never hangs. They run at once
and are reported in the order above.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TextIO
from urllib.parse import unquote, urlsplit

import aiohttp
import discord
import httpx2
from discord.http import Route
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, ReadOnlyError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.redis_budget import redacted_url
from bots.discord.client import DiscordUnavailable, discord_endpoints, invite_url, log_in
from bots.discord.client import new_client as new_discord_client
from bots.discord.settings import DiscordSettings
from bots.runtime import ModelEndpoint, model_endpoint
from bots.settings import Settings, fleet_problem, load_settings
from bots.slack.settings import SlackSettings
from bots.slack.workspace import SLACK_FAILURES, failure_reason
from core.client import LLMClient, Timeouts, new_http_client
from core.errors import (
    AuthError,
    BadRequest,
    ConnectFailed,
    DeadlineExceeded,
    LLMError,
    StreamStalled,
)
from core.messages import ModelRequest, UserMessage
from core.protocols import protocol_for
from core.settings import SettingsError
from core.store import StoreError, open_store
from core.store.postgres import SCHEMA_VERSION as POSTGRES_SCHEMA

__all__ = ["CHECK_TIMEOUT", "SLACK_SCOPES", "Check", "Platform", "check_command", "run_checks"]

log = logging.getLogger("relaybot.check")

Platform = Literal["slack", "discord"]

CHECK_TIMEOUT = 10.0
"""Seconds each part may take: a part that does not answer by then fails."""
SLACK_SCOPES = (
    "app_mentions:read",
    "assistant:write",
    "channels:history",
    "chat:write",
    "commands",
    "files:read",
    "groups:history",
    "im:history",
    "mpim:history",
    "users:read",
)
"""The bot scopes both Slack app manifests in ``config/`` ask for (a test keeps them equal).
They are written here because ``config/`` is not installed with relaybot."""
GATEWAY_MESSAGE_CONTENT = 1 << 19
GATEWAY_MESSAGE_CONTENT_LIMITED = 1 << 18
"""Application flags: the Message Content intent, for a verified app and for one in fewer than
100 servers."""
SLACK_API = AsyncWebClient.BASE_URL
REINSTALL = "reinstall the app after adding them"


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    """One part's outcome: ``detail`` says what was found, ``fix`` (when it failed) what to
    change."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None

    def line(self) -> str:
        return f"✓ {self.detail}" if self.ok else f"✗ {self.detail} — {self.fix}"

    def as_json(self) -> dict[str, object]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "fix": self.fix}


def passed(name: str, detail: str) -> Check:
    return Check(name=name, ok=True, detail=detail)


def failed(name: str, detail: str, fix: str) -> Check:
    return Check(name=name, ok=False, detail=detail, fix=fix)


# --- the command -------------------------------------------------------------------------------


def check_command(
    config_path: str | None, *, platform: Platform | None, as_json: bool, out: TextIO
) -> int:
    """``relaybot check``: print every part's line (or one JSON object) and return the exit
    status: 0 when all pass, 1 when one fails, 2 when the settings cannot be read."""
    try:
        settings = load_settings(config_path)
    except SettingsError as error:
        fix = "change that value in the TOML file or the environment variable it names"
        _print([failed("settings", str(error), fix)], as_json=as_json, out=out)
        return 2
    checks = [passed("settings", "settings valid")]
    checks += asyncio.run(run_checks(settings, platform=platform))
    _print(checks, as_json=as_json, out=out)
    return 0 if all(check.ok for check in checks) else 1


def _print(checks: Sequence[Check], *, as_json: bool, out: TextIO) -> None:
    if as_json:
        ok = all(check.ok for check in checks)
        document = {"ok": ok, "checks": [check.as_json() for check in checks]}
        print(json.dumps(document, ensure_ascii=False), file=out)
        return
    for check in checks:
        print(check.line(), file=out)


@dataclass(frozen=True, slots=True)
class _Part:
    """A part to ask, and what its line says when it does not answer in time."""

    name: str
    what: str
    fix: str
    ask: Callable[[], Awaitable[list[Check]]]


async def run_checks(
    settings: Settings, *, platform: Platform | None, limit: float = CHECK_TIMEOUT
) -> list[Check]:
    """Every part ``settings`` name (only ``platform``'s when given), each bounded by
    ``limit`` seconds, in the module's order."""
    outcomes = await asyncio.gather(
        *(_bounded(part, limit) for part in _parts(settings, platform, limit))
    )
    return [check for checks in outcomes for check in checks]


def _parts(settings: Settings, platform: Platform | None, limit: float) -> list[_Part]:
    slack, discord = settings.slack, settings.discord
    parts = [_store_part(settings)]
    parts += _redis_parts(settings, platform, limit)
    parts += [
        _Part(
            "model",
            f"model gateway {settings.llm.resolved_base_url()}",
            "check llm.base_url and the network",
            lambda: check_model(settings, limit=limit),
        ),
    ]
    if platform == "slack" or (platform is None and slack.bot_token is not None):
        parts.append(
            _Part(
                "slack",
                f"Slack at {slack.api_url or SLACK_API}",
                "check slack.api_url and the network",
                lambda: check_slack(slack, limit=limit),
            )
        )
    if platform == "discord" or (platform is None and discord.bot_token is not None):
        parts.append(
            _Part(
                "discord",
                "Discord",
                "check discord.api_url and the network",
                lambda: check_discord(discord),
            )
        )
    if settings.tools.weather_enabled:
        parts.append(
            _Part(
                "weather",
                "Open-Meteo",
                _WEATHER_FIX,
                lambda: check_weather(settings.tools.weather_geocoding_url, limit=limit),
            )
        )
    return parts


def _store_part(settings: Settings) -> _Part:
    postgres = _postgres_target(settings.store.resolved_url())
    if postgres is None:
        return _Part(
            "store", "store", "check store.url and the disk", lambda: check_store(settings)
        )
    fix = f"is Postgres running at {postgres.address}? check store.url and the network"
    return _Part("store", f"store {postgres.name}", fix, lambda: check_store(settings))


def _redis_parts(settings: Settings, platform: Platform | None, limit: float) -> list[_Part]:
    """Redis when ``redis.url`` is set; without it, a line only where a process would refuse
    to start: Slack HTTP mode on a Postgres store (:func:`~bots.settings.fleet_problem`)."""
    url = settings.redis.url
    if url is None:
        problem = fleet_problem(settings) if _checks_slack_http(settings, platform) else None
        if problem is None:
            return []
        line = [failed("redis", "Slack HTTP mode on a Postgres store without redis.url", problem)]
        return [_Part("redis", "redis", problem, lambda: _already(line))]
    prefix = settings.redis.key_prefix
    return [
        _Part(
            "redis",
            f"Redis at {redacted_url(url)}",
            f"is Redis running there? {_REDIS_FIX}",
            lambda: check_redis(url, key_prefix=prefix, limit=limit),
        )
    ]


def _checks_slack_http(settings: Settings, platform: Platform | None) -> bool:
    """Whether Slack is checked, in HTTP mode (no app-level token: Socket Mode needs one)."""
    slack = settings.slack
    checked = platform == "slack" or (platform is None and slack.bot_token is not None)
    return checked and slack.app_token is None


async def _already(checks: list[Check]) -> list[Check]:
    return checks


async def _bounded(part: _Part, limit: float) -> list[Check]:
    """The part's checks; a failure no check foresaw is still one line, never a traceback
    (``-v`` logs it whole)."""
    try:
        async with asyncio.timeout(limit):
            return await part.ask()
    except TimeoutError:
        return [failed(part.name, f"{part.what}: no answer within {limit:g} s", part.fix)]
    except Exception as error:
        log.debug("checking %s failed", part.name, exc_info=True)
        return [failed(part.name, f"{part.what}: {type(error).__name__}", part.fix)]


# --- the store ---------------------------------------------------------------------------------


async def check_store(settings: Settings) -> list[Check]:
    """Open the store (its schema brought up to date), take a write, close it."""
    url = settings.store.resolved_url()
    postgres = _postgres_target(url)
    where = postgres.name if postgres else _store_name(url)
    try:
        store = await open_store(url, make_directories=settings.store.url is None)
    except ValueError as error:
        return [failed("store", f"store {where}: {error}", "fix store.url")]
    except StoreError as error:
        return [_store_failure(error, where, postgres)]
    try:
        await store.check_writes()
    except StoreError as error:
        return [_store_failure(error, where, postgres)]
    finally:
        await store.close()
    if postgres:
        return [passed("store", f"store {where} opens, schema version {POSTGRES_SCHEMA}")]
    return [passed("store", f"store {where} opens, schema current")]


_STORE_FIX = "point store.url at a writable SQLite file (its directory must be creatable)"


def _store_name(url: str) -> str:
    """SQLite's path, or only the scheme: another store's URL may hold a password."""
    scheme, _, rest = url.partition("://")
    if scheme.lower() == "sqlite":
        return f"sqlite {rest.removeprefix('/')}"
    return f"{scheme}://"


def _store_failure(error: StoreError, where: str, postgres: _Postgres | None) -> Check:
    if postgres is None:
        return failed("store", f"store {where}: {error}", _STORE_FIX)
    what, fix = _postgres_failure(error, postgres)
    return failed("store", f"store {where}: {what}", fix)


@dataclass(frozen=True, slots=True)
class _Postgres:
    """Where a Postgres store URL points, without its password (asyncpg's defaults filled in
    as far as the URL shows them)."""

    host: str
    port: int
    database: str
    user: str

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def name(self) -> str:
        return f"postgres {self.address}/{self.database}"


def _postgres_target(url: str) -> _Postgres | None:
    """The URL's host, port, database and user, when it names a Postgres store."""
    if url.partition("://")[0].lower() not in {"postgresql", "postgres"}:
        return None
    try:
        parts = urlsplit(url)
        port = parts.port or 5432
    except ValueError:
        return _Postgres(host="(unreadable URL)", port=5432, database="?", user="?")
    user = unquote(parts.username) if parts.username else "(your login name)"
    database = unquote(parts.path.lstrip("/")) or (unquote(parts.username or "") or "?")
    return _Postgres(host=parts.hostname or "localhost", port=port, database=database, user=user)


_POSTGRES_AUTH = {"28000", "28P01"}
"""SQLSTATEs of a refused login: invalid authorization (an unknown role, pg_hba.conf), and a
wrong password."""


def _postgres_failure(error: StoreError, target: _Postgres) -> tuple[str, str]:
    """What went wrong and its fix, from the server's SQLSTATE (or the socket's error) that
    the store's error was raised from: the store names neither user nor password."""
    reason = str(error).partition(": ")[2] or str(error)
    cause = error.__cause__
    code = getattr(cause, "sqlstate", None)
    server_says = _first_line(cause) if cause is not None and code else reason
    if code in _POSTGRES_AUTH:
        return (
            f"Postgres refused user {target.user} ({server_says})",
            f"check the user and password in store.url, and pg_hba.conf at {target.address}",
        )
    if code == "3D000":
        return (
            f"database {target.database} does not exist",
            f"create it (createdb -h {target.host} -p {target.port} {target.database}) "
            "or fix the database named in store.url",
        )
    if code == "42501":
        return (
            f"user {target.user} may not create relaybot's tables ({server_says})",
            f"grant {target.user} CREATE on the database and its schema, or use a user who has it",
        )
    if code == "25006":
        return server_says, "point store.url at the primary: this server takes no writes"
    if "written by a newer relaybot" in reason:  # the store's own refusal has no SQLSTATE
        return reason, "run the relaybot that wrote it, or point store.url at another database"
    if isinstance(cause, OSError | TimeoutError):
        return (
            reason,
            f"is Postgres running at {target.address}? check the host and port in store.url "
            "and the network",
        )
    return (
        reason,
        f"is Postgres running at {target.address}? does database {target.database} exist and "
        f"may user {target.user} create tables?",
    )


# --- Redis -------------------------------------------------------------------------------------


async def check_redis(url: str, *, key_prefix: str, limit: float) -> list[Check]:
    """PING, a key under ``key_prefix`` written, read and deleted, and Redis's ``TIME``: what
    the shared budgets and Stop presses do."""
    where = redacted_url(url)
    try:
        client: Redis = Redis.from_url(url, socket_connect_timeout=limit, socket_timeout=limit)
    except ValueError as error:
        return [failed("redis", f"bad Redis URL {where}: {error}", _REDIS_FIX)]
    try:
        await _redis_round_trip(client, key_prefix)
    except (RedisError, OSError) as error:
        return [_redis_failure(error, where)]
    finally:
        await client.aclose()
    detail = f"Redis at {where} answers: a key under {key_prefix!r} written and read, TIME read"
    return [passed("redis", detail)]


async def _redis_round_trip(client: Redis, key_prefix: str) -> None:
    await client.ping()
    key = f"{key_prefix}check:{uuid.uuid4().hex}"
    written = uuid.uuid4().hex.encode()
    await client.set(key, written, px=REDIS_KEY_TTL_MS)
    try:
        read = await client.get(key)
    finally:
        await client.delete(key)
    if read != written:
        raise RedisError(f"the key {key} read back {read!r}, not what was written")
    await client.time()


REDIS_KEY_TTL_MS = 10_000
"""The check's key lapses by itself if the check dies before deleting it."""
_REDIS_FIX = "check redis.url (RELAYBOT_REDIS__URL: redis://host:6379/0)"


def _redis_failure(error: BaseException, where: str) -> Check:
    """Redis's error in a line that names the URL without its password (Redis's own messages
    never hold it)."""
    match error:
        case AuthenticationError():
            return failed(
                "redis",
                f"Redis at {where} refused the login ({error})",
                "check the user and password in redis.url (redis://user:password@host:6379/0)",
            )
        case ReadOnlyError():
            return failed(
                "redis",
                f"Redis at {where} is a read-only replica",
                "point redis.url at the primary",
            )
        case RedisConnectionError() | RedisTimeoutError() | OSError():
            return failed(
                "redis",
                f"cannot connect to Redis at {where} ({_first_line(error)})",
                f"is Redis running there? {_REDIS_FIX}",
            )
    return failed("redis", f"Redis at {where}: {_first_line(error)}", _REDIS_FIX)


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


# --- the model gateway -------------------------------------------------------------------------


async def check_model(settings: Settings, *, limit: float) -> list[Check]:
    """A one-token request to the configured gateway and model."""
    async with model_endpoint(settings, announce=lambda line: None) as endpoint:
        if endpoint.offline:
            return [passed("model", "offline model (no OFOX_API_KEY or llm.base_url is set)")]
        where = f"model gateway {endpoint.base_url}"
        try:
            await _one_token(endpoint, limit=limit)
        except LLMError as error:
            return [_model_failure(error, where, endpoint.model)]
        return [passed("model", f"{where} answers {endpoint.model} ({endpoint.protocol})")]


async def _one_token(endpoint: ModelEndpoint, *, limit: float) -> None:
    request = ModelRequest(
        model=endpoint.model, messages=(UserMessage(text="Say OK."),), max_tokens=1
    )
    async with new_http_client(max_connections=2) as http:
        client = LLMClient(
            http=http,
            protocol=protocol_for(endpoint.protocol),
            base_url=endpoint.base_url,
            api_key=endpoint.api_key,
            timeouts=Timeouts(connect=limit, read_idle=limit, write=limit, total=limit),
        )
        async with client.stream(request) as events:
            async for _ in events:
                pass


def _model_failure(error: LLMError, where: str, model: str) -> Check:
    match error:
        case AuthError():
            return failed(
                "model",
                f"{where}: the gateway refused the key",
                "check OFOX_API_KEY / llm.api_key",
            )
        case BadRequest() if "model" in error.message.lower():
            return failed(
                "model",
                f"{where}: the gateway does not know the model {model!r}",
                "set llm.model (RELAYBOT_LLM__MODEL) to a model the gateway serves",
            )
        case BadRequest() if error.status == 404:
            return failed(
                "model",
                f"{where}: nothing answers there (HTTP 404)",
                "check llm.base_url (OpenAI-compatible base URLs usually end in /v1)",
            )
        case ConnectFailed():
            return failed("model", f"{where}: unreachable", "check llm.base_url and the network")
        case DeadlineExceeded() | StreamStalled():
            return failed("model", f"{where}: no answer in time", "check llm.base_url")
    return failed("model", f"{where}: {error}", "check llm.base_url, llm.model and the gateway")


# --- Slack -------------------------------------------------------------------------------------


async def check_slack(settings: SlackSettings, *, limit: float) -> list[Check]:
    """The bot token and its scopes, then how Slack reaches the bot."""
    if settings.bot_token is None:
        return [failed("slack token", "Slack bot token not set", "set SLACK_BOT_TOKEN (xoxb-…)")]
    base_url = settings.api_url or SLACK_API
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=limit)) as session:
        client = AsyncWebClient(
            token=settings.bot_token.get_secret_value(),
            base_url=base_url,
            session=session,
            timeout=int(limit),
        )
        checks = await _slack_token(client, base_url)
        if checks[0].ok:
            checks.append(await _slack_connection(client, settings, base_url))
    return checks


async def _slack_token(client: AsyncWebClient, base_url: str) -> list[Check]:
    """``auth.test``, and the scopes Slack says the token has."""
    try:
        response = await client.auth_test()
    except SlackApiError as error:
        return [
            failed(
                "slack token",
                f"Slack refused the bot token ({failure_reason(error)})",
                "check SLACK_BOT_TOKEN (OAuth & Permissions → Bot User OAuth Token, xoxb-…)",
            )
        ]
    except SLACK_FAILURES as error:
        return [_slack_unreachable("slack token", base_url, error)]
    team = response.get("team") or response.get("team_id") or "its workspace"
    token_ok = passed("slack token", f"Slack accepts the bot token (team {team})")
    return [token_ok, _slack_scopes(response.headers.get("x-oauth-scopes"))]


def _slack_scopes(header: str | None) -> Check:
    if header is None:
        return failed(
            "slack scopes",
            "Slack did not say the token's scopes",
            "check SLACK_BOT_TOKEN is the Bot User OAuth Token (xoxb-…)",
        )
    granted = {scope.strip() for scope in header.split(",")}
    missing = [scope for scope in SLACK_SCOPES if scope not in granted]
    if missing:
        return failed(
            "slack scopes",
            f"the Slack bot token lacks {', '.join(missing)}",
            f"add them under OAuth & Permissions → Scopes (as config/slack-app-manifest.yaml "
            f"has them), then {REINSTALL}",
        )
    return passed("slack scopes", "the Slack bot token has every scope the manifest asks for")


async def _slack_connection(
    client: AsyncWebClient, settings: SlackSettings, base_url: str
) -> Check:
    """Socket Mode's app-level token, asked of Slack; or HTTP mode's signing secret, which only
    Slack can verify (it signs every request with it)."""
    if settings.app_token is not None:
        try:
            await client.apps_connections_open(app_token=settings.app_token.get_secret_value())
        except SlackApiError as error:
            return failed(
                "slack app token",
                f"Slack refused the app-level token ({failure_reason(error)})",
                "check SLACK_APP_TOKEN (Basic Information → App-Level Tokens, xapp-…, "
                "with connections:write)",
            )
        except SLACK_FAILURES as error:
            return _slack_unreachable("slack app token", base_url, error)
        return passed("slack app token", "Slack accepts the app-level token (Socket Mode)")
    if settings.signing_secret is not None:
        return passed("slack signing secret", "Slack signing secret set (HTTP mode)")
    return failed(
        "slack app token",
        "Slack has no way to reach the bot",
        "set SLACK_APP_TOKEN (Socket Mode) or SLACK_SIGNING_SECRET (HTTP mode)",
    )


def _slack_unreachable(name: str, base_url: str, error: BaseException) -> Check:
    return failed(
        name,
        f"cannot reach Slack at {base_url} ({failure_reason(error)})",
        "check slack.api_url and the network",
    )


# --- Discord -----------------------------------------------------------------------------------


async def check_discord(settings: DiscordSettings) -> list[Check]:
    """Log in as the bot does, then read the application's flags and make the invite link."""
    if settings.bot_token is None:
        return [
            failed(
                "discord token",
                "Discord bot token not set",
                "set DISCORD_BOT_TOKEN (Developer Portal → your application → Bot)",
            )
        ]
    with discord_endpoints(settings):
        client = new_discord_client()
        try:
            return await _discord_checks(client, settings.bot_token.get_secret_value())
        finally:
            await client.close()


async def _discord_checks(client: discord.Client, token: str) -> list[Check]:
    try:
        await log_in(client, token)
    except DiscordUnavailable as error:
        return [_discord_failure(str(error))]
    logged_in = passed("discord token", f"Discord accepts the bot token ({client.user})")
    invite = passed("discord invite", f"invite: {invite_url(client.application_id or 0)}")
    return [logged_in, await _message_content(client), invite]


def _discord_failure(message: str) -> Check:
    """:func:`log_in`'s one line, split into what happened and the fix it names."""
    what, _, fix = message.partition(": ")
    if not fix:
        what, fix = message, "check DISCORD_BOT_TOKEN, discord.api_url and the network"
    return failed("discord token", what, fix)


async def _message_content(client: discord.Client) -> Check:
    """The intent as the application's flags say (``GET /applications/@me``)."""
    try:
        application = await client.http.request(Route("GET", "/applications/@me"))
    except discord.HTTPException as error:
        what = f"Discord did not say the application's flags (HTTP {error.status})"
        return failed("discord intent", what, "try again; check discord.api_url")
    flags = int(application.get("flags") or 0)
    if flags & GATEWAY_MESSAGE_CONTENT:
        return passed("discord intent", "the Discord bot's Message Content intent is on")
    if flags & GATEWAY_MESSAGE_CONTENT_LIMITED:
        return passed(
            "discord intent", "the Discord bot's Message Content intent is on (under 100 servers)"
        )
    return failed(
        "discord intent",
        "the Discord bot's Message Content intent is off",
        "turn on the Message Content intent in the Developer Portal → Bot",
    )


# --- Open-Meteo --------------------------------------------------------------------------------

_WEATHER_FIX = (
    "check tools.weather_geocoding_url and the network, or set tools.weather_enabled = false"
)


async def check_weather(geocoding_url: str, *, limit: float) -> list[Check]:
    """One geocoding request, as ``get_weather`` makes it."""
    url = f"{geocoding_url.rstrip('/')}/v1/search"
    params = {"name": "Berlin", "count": "1", "format": "json"}
    try:
        async with httpx2.AsyncClient(timeout=limit) as http:
            response = await http.get(url, params=params)
    except httpx2.RequestError as error:
        what = f"Open-Meteo at {geocoding_url}: unreachable ({type(error).__name__})"
        return [failed("weather", what, _WEATHER_FIX)]
    if response.status_code != 200:
        what = f"Open-Meteo at {geocoding_url} answered HTTP {response.status_code}"
        return [failed("weather", what, _WEATHER_FIX)]
    return [passed("weather", f"Open-Meteo answers at {geocoding_url}")]
