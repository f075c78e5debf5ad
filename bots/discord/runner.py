"""``relaybot discord``: the bot logged in, connected to the gateway, and running until a
signal.

:func:`discord_bot` builds the client with the configured endpoints, logs in (a refused token
is :class:`~bots.discord.client.DiscordUnavailable` at once) and opens the gateway connection
— or, given :class:`~bots.discord.client.Shards`, one per shard, their IDENTIFYs spaced
through Redis across processes when ``redis.url`` is set;
:func:`run_discord` prints the link that adds the bot to a server, waits for the session (with
``sync_commands``, registers the ``/relaybot`` commands globally then, in one line), and runs
until SIGINT or SIGTERM — or until Discord ends the connection for good (the Message
Content intent switched off, say), which is one line and exit status 1. On the way out,
answers being written end within ``[runtime] shutdown_grace`` — "Restarting — I'll continue in a
moment", answered again by the next start, or interrupted after a tool ran.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any

from bots.discord.bot import DiscordBot
from bots.discord.channels import DISCORD_FAILURES, failure_reason
from bots.discord.client import (
    Shards,
    bot_token,
    discord_endpoints,
    invite_url,
    log_in,
    new_client,
)
from bots.discord.identify import IdentifyGate, open_identify_gate
from bots.metrics_server import metrics_served
from bots.runtime import Runtime
from bots.settings import Settings
from bots.signals import until_stopped
from bots.tasks import cancel_and_wait

__all__ = ["discord_bot", "run_discord"]


@asynccontextmanager
async def discord_bot(
    runtime: Runtime,
    *,
    clock: Callable[[], float] = time.monotonic,
    shards: Shards | None = None,
    **client_options: Any,
) -> AsyncIterator[DiscordBot]:
    """The bot over a running runtime, logged in and connecting to the gateway (await
    :meth:`DiscordBot.ready`), with the configured endpoints; ``shards``: only those. On
    exit, answers still being written are stopped and the connection closed.
    ``client_options`` go to discord.py."""
    settings = runtime.settings.discord
    token = bot_token(settings)
    async with _identify_gate(runtime, shards) as gate:
        with discord_endpoints(settings):
            client = new_client(shards=shards, gate=gate, **client_options)
            bot = DiscordBot(runtime, client, clock=clock)
            try:
                await log_in(bot.client, token)
                bot.connect()
                yield bot
            finally:
                await bot.close()


async def _synced(bot: DiscordBot) -> str:
    """Register the ``/relaybot`` commands globally; the line saying how it went. A refusal
    is said and the bot runs on: the commands synced before stay."""
    try:
        names = await bot.commands.sync()
    except DISCORD_FAILURES as error:
        return f"could not sync the /relaybot commands: {failure_reason(error)}"
    return f"synced the {', '.join('/' + name for name in names)} commands for every server"


def _identify_gate(
    runtime: Runtime, shards: Shards | None
) -> AbstractAsyncContextManager[IdentifyGate | None]:
    """The IDENTIFY gate shared through Redis, for shards when ``redis.url`` is set; else
    none (discord.py spaces a process's own IDENTIFYs)."""
    redis = runtime.settings.redis
    if shards is None or redis.url is None:
        return nullcontext()
    spacing = runtime.settings.discord.identify_spacing
    return open_identify_gate(redis.url, key_prefix=redis.key_prefix, spacing=spacing)


async def run_discord(
    settings: Settings,
    *,
    announce: Callable[[str], None],
    metrics_port: int | None = None,
    shards: Shards | None = None,
    sync_commands: bool = False,
) -> int:
    """``relaybot discord``: run until SIGINT or SIGTERM (only ``shards``, when given).
    Returns the exit status. With ``metrics_port`` (0: any free port) ``GET /metrics`` is
    served there; with ``sync_commands`` the ``/relaybot`` commands are registered globally
    once connected (Discord rate-limits that call: only when asked)."""
    bot_token(settings.discord)  # a missing token stops us before anything starts
    if shards is not None:
        announce(str(shards))
    async with (
        Runtime.start(settings, announce=announce) as runtime,
        discord_bot(runtime, shards=shards) as bot,
        metrics_served(runtime.store, port=metrics_port, announce=announce),
    ):
        if (application := bot.client.application_id) is not None:
            announce(f"add the bot to a server: {invite_url(application)}")
        await bot.ready()
        servers = len(bot.client.guilds)
        announce(f"connected to Discord as {bot.client.user}, in {servers} server"
                 + ("" if servers == 1 else "s"))  # fmt: skip
        if sync_commands:
            announce(await _synced(bot))
        stopped = asyncio.create_task(until_stopped(), name="relaybot discord: until stopped")
        ended = asyncio.create_task(bot.disconnected(), name="relaybot discord: connection")
        try:
            await asyncio.wait({stopped, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(stopped, ended)
        if ended.done() and not ended.cancelled():
            ended.result()  # Discord ended the connection: DiscordUnavailable
    return 0
