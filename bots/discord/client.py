"""How relaybot connects to Discord: the discord.py client, its intents and endpoints, the
invite URL, and logging in — with every way that can fail said in one line.

- :data:`CLIENT_CLASS` is the one place the client class is named: a bot in many servers
  switches it to ``discord.AutoShardedClient`` and nothing else changes.
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
from typing import Any

import aiohttp
import discord
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route
from discord.voice_client import VoiceClient

from bots.discord.settings import DiscordSettings
from core.settings import SettingsError

__all__ = [
    "CLIENT_CLASS",
    "NO_MESSAGE_CONTENT",
    "PERMISSIONS",
    "DiscordUnavailable",
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
"""The discord.py client the bot runs on; ``discord.AutoShardedClient`` works the same."""
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


def new_client(**options: Any) -> discord.Client:
    """A :data:`CLIENT_CLASS` with relaybot's intents and mentions off by default; ``options``
    are discord.py's (tests shorten ``guild_ready_timeout``)."""
    VoiceClient.warn_nacl = VoiceClient.warn_dave = False  # relaybot has no voice: no warning
    options.setdefault("max_ratelimit_timeout", MAX_RATELIMIT_WAIT)
    return CLIENT_CLASS(
        intents=intents(), allowed_mentions=discord.AllowedMentions.none(), **options
    )


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
