"""How relaybot connects to Discord: the discord.py client, its intents and endpoints, the
invite URL, and logging in — with every way that can fail said in one line.

- :data:`CLIENT_CLASS` is the client of one process that runs the whole bot. A bot in many
  servers runs :class:`Shards` split over processes (``relaybot discord --shard-count N
  --shards 0,1``): :class:`ShardedClient`, discord.py's ``AutoShardedClient`` whose
  IDENTIFYs wait for an :class:`~bots.discord.identify.IdentifyGate` shared through Redis.
- :func:`intents`: servers, server messages, DMs and message content. Message content is
  privileged: switch on Developer Portal → the application → Bot → Privileged Gateway
  Intents → Message Content Intent, or Discord closes the gateway (4014), which
  :func:`stay_connected` reports as :data:`NO_MESSAGE_CONTENT`.
- :data:`PERMISSIONS`, :func:`invite_url`: exactly what the bot uses — View Channels, Send
  Messages, Send Messages in Threads, Create Public Threads, and Read Message History (an
  inline answer is a reply to the question, which Discord allows only with it). No Manage
  Threads: a thread that is archived but not locked is unarchived with Send Messages in
  Threads alone; no Embed Links: answers are sent with embeds suppressed.
- :func:`discord_endpoints`: ``discord.api_url`` and ``discord.gateway_url``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import discord
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route
from discord.voice_client import VoiceClient

from bots.discord.identify import IdentifyGate, IdentifyGateUnavailable
from bots.discord.settings import DiscordSettings
from core.settings import SettingsError

__all__ = [
    "CLIENT_CLASS",
    "NO_MESSAGE_CONTENT",
    "PERMISSIONS",
    "DiscordUnavailable",
    "ShardedClient",
    "Shards",
    "bot_token",
    "discord_endpoints",
    "intents",
    "invite_url",
    "log_in",
    "new_client",
    "stay_connected",
]

log = logging.getLogger("relaybot.discord")

CLIENT_CLASS: type[discord.Client] = discord.Client
"""The discord.py client of a process that runs the whole bot (no :class:`Shards`)."""
PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    create_public_threads=True,
    read_message_history=True,
)
"""What the invite asks for (see the module docstring for why each, and why no more)."""
MAX_RATELIMIT_WAIT = 30.0
"""Longest wait for a rate limit discord.py sits out inside one call (its minimum): past it
the call fails and ``LiveReply`` waits, then sends the newest text."""
NO_MESSAGE_CONTENT = (
    "Discord refused the Message Content intent: switch it on in the Developer Portal → your "
    "application → Bot → Privileged Gateway Intents → Message Content Intent, then start again"
)


class DiscordUnavailable(Exception):
    """Discord cannot be used: a refused token or intent, or no connection. One line, no
    token."""


def intents() -> discord.Intents:
    """Servers and their channels and threads, messages in them and in DMs, with their text."""
    wanted = discord.Intents.none()
    wanted.guilds = True
    wanted.guild_messages = True
    wanted.dm_messages = True
    wanted.message_content = True
    return wanted


@dataclass(frozen=True, kw_only=True)
class Shards:
    """The shards this process runs (``ids``) of all the bot's (``count``). Discord sends a
    guild's events to shard ``(guild_id >> 22) % count``, and every DM to shard 0."""

    count: int
    ids: tuple[int, ...]

    @classmethod
    def chosen(cls, count: int | None, ids: str | None) -> Shards | None:
        """The shards ``--shard-count`` and ``--shards`` ("0,1") name: None for neither
        (one unsharded client), all of them for a count alone; ``SettingsError`` saying
        what is wrong with any other choice."""
        if count is None:
            if ids is not None:
                raise SettingsError("--shards needs --shard-count: how many shards in all")
            return None
        if count < 1:
            raise SettingsError(f"--shard-count must be at least 1 (got {count})")
        if ids is None:
            return cls(count=count, ids=tuple(range(count)))
        try:
            chosen = tuple(int(part) for part in ids.split(","))
        except ValueError:
            raise SettingsError(f"--shards takes shard numbers such as 0,1 (got {ids!r})") from None
        if len(set(chosen)) != len(chosen):
            raise SettingsError(f"--shards names a shard twice ({ids})")
        if outside := [i for i in chosen if not 0 <= i < count]:
            raise SettingsError(
                f"--shards {ids}: shard {outside[0]} is not one of 0..{count - 1} "
                f"(--shard-count {count})"
            )
        return cls(count=count, ids=chosen)

    def __str__(self) -> str:
        return f"shards {','.join(map(str, self.ids))} of {self.count}"


class ShardedClient(discord.AutoShardedClient):
    """discord.py's ``AutoShardedClient`` whose IDENTIFYs wait for ``gate``, shared by every
    process of the bot, in the bucket ``shard_id % max_concurrency``. Without a gate, or when
    its Redis fails (one log line), discord.py spaces them itself, within this process."""

    def __init__(self, *, gate: IdentifyGate | None, **options: Any) -> None:
        super().__init__(**options)
        self._gate = gate
        self._max_concurrency: int | None = None

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        if self._gate is not None:
            try:
                await self._gate.take((shard_id or 0) % await self._concurrency())
                return
            except IdentifyGateUnavailable as error:
                log.warning("shard %s identifies with this process's spacing: %s", shard_id, error)
        await super().before_identify_hook(shard_id, initial=initial)

    async def _concurrency(self) -> int:
        """Discord's ``max_concurrency`` (IDENTIFY buckets), asked once; 1 if it cannot be."""
        if self._max_concurrency is None:
            try:
                limits = await self.fetch_session_start_limits()
                self._max_concurrency = max(1, limits.max_concurrency)
            except (discord.HTTPException, aiohttp.ClientError, OSError, TimeoutError):
                self._max_concurrency = 1  # one bucket: the slowest, never too fast
        return self._max_concurrency


def new_client(
    *, shards: Shards | None = None, gate: IdentifyGate | None = None, **options: Any
) -> discord.Client:
    """A :data:`CLIENT_CLASS` — or, for ``shards``, a :class:`ShardedClient` running those,
    its IDENTIFYs through ``gate`` — with relaybot's intents and mentions off by default;
    ``options`` are discord.py's (tests shorten ``guild_ready_timeout``)."""
    VoiceClient.warn_nacl = VoiceClient.warn_dave = False  # relaybot has no voice: no warning
    options.setdefault("max_ratelimit_timeout", MAX_RATELIMIT_WAIT)
    options |= {"intents": intents(), "allowed_mentions": discord.AllowedMentions.none()}
    if shards is None:
        return CLIENT_CLASS(**options)
    return ShardedClient(gate=gate, shard_count=shards.count, shard_ids=list(shards.ids), **options)


def invite_url(application_id: int) -> str:
    """The link that adds the bot to a server with exactly :data:`PERMISSIONS`."""
    return discord.utils.oauth_url(application_id, permissions=PERMISSIONS, scopes=("bot",))


def bot_token(settings: DiscordSettings) -> str:
    """The bot token, or ``SettingsError`` saying where to put it."""
    if settings.bot_token is None:
        raise SettingsError("relaybot discord needs the bot token: set DISCORD_BOT_TOKEN")
    return settings.bot_token.get_secret_value()


@contextmanager
def discord_endpoints(settings: DiscordSettings) -> Iterator[None]:
    """Send discord.py's REST calls to ``settings.api_url`` and its gateway connection to
    ``settings.gateway_url`` while the block runs (Discord's own when unset), then restore
    what was there.

    This is the one place relaybot touches them, because discord.py offers no per-client
    option: the REST base is the class attribute ``discord.http.Route.BASE``, read by every
    request, interaction callbacks included; and a plain ``Client`` connects to the class
    attribute ``DiscordWebSocket.DEFAULT_GATEWAY`` without asking Discord (an
    ``AutoShardedClient`` asks ``GET /gateway/bot``, which then goes to ``api_url``). Both are
    process-wide, so one process talks to one Discord.
    """
    saved = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    if settings.api_url is not None:
        Route.BASE = settings.api_url.rstrip("/")
    if settings.gateway_url is not None:
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.gateway_url)
    try:
        yield
    finally:
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = saved


async def log_in(client: discord.Client, token: str) -> None:
    """Log in over REST (the bot user and its application), or :class:`DiscordUnavailable`."""
    try:
        await client.login(token)
    except discord.LoginFailure:
        raise DiscordUnavailable(
            "Discord rejected the bot token: check DISCORD_BOT_TOKEN (Developer Portal → your "
            "application → Bot → Reset Token)"
        ) from None
    except discord.HTTPException as error:
        raise DiscordUnavailable(f"Discord refused to log in (HTTP {error.status})") from None
    except (aiohttp.ClientError, OSError, TimeoutError) as error:
        raise DiscordUnavailable(
            f"cannot reach Discord at {Route.BASE} ({type(error).__name__})"
        ) from None


async def stay_connected(client: discord.Client) -> None:
    """Hold the gateway connection (discord.py reconnects and resumes by itself) until the
    client is closed; a connection Discord will not allow raises :class:`DiscordUnavailable`."""
    try:
        await client.connect(reconnect=True)
    except discord.PrivilegedIntentsRequired:
        raise DiscordUnavailable(NO_MESSAGE_CONTENT) from None
    except discord.ConnectionClosed as error:
        raise DiscordUnavailable(
            f"Discord closed the gateway connection (code {error.code})"
        ) from None
    except discord.GatewayNotFound:
        raise DiscordUnavailable("Discord's gateway cannot be found") from None
