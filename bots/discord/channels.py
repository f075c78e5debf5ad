"""The Discord bot's own calls, apart from a reply's: opening a thread, finding or unarchiving
one, a short notice, the typing indicator, and answering a button press.

Each call that fails is logged — with the HTTP status and Discord's error code, never the
token — and gives a harmless outcome: no thread (the bot answers inline), no notice, no
typing. Nothing here raises Discord's errors. (A reply's own calls, and their errors, are the
surface's: ``adapters/discord_surface.py``.)
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import aiohttp
import discord

from adapters.discord_surface import MessageChannel

__all__ = [
    "DISCORD_FAILURES",
    "TYPING_EVERY",
    "Channel",
    "acknowledge",
    "failure_reason",
    "fetch_thread",
    "keep_typing",
    "open_thread",
    "say",
    "the_channel",
    "unarchive",
    "whisper",
]

log = logging.getLogger("relaybot.discord")

DISCORD_FAILURES = (discord.HTTPException, aiohttp.ClientError, OSError, TimeoutError)
TYPING_EVERY = 8.0
"""Seconds between typing calls: Discord shows "is typing…" for about 10 s after each."""


class Channel(MessageChannel, Protocol):
    """Where the bot answers: a text channel, thread, DM or voice channel chat."""

    def typing(self) -> discord.context_managers.Typing: ...


def failure_reason(error: BaseException) -> str:
    """The HTTP status and Discord's error code, or the kind of failure — never the token."""
    if isinstance(error, discord.HTTPException):
        return f"HTTP {error.status}" + (f", Discord code {error.code}" if error.code else "")
    return type(error).__name__


async def the_channel(client: discord.Client, message: discord.Message) -> Channel | None:
    """Where ``message`` was written. A server thread discord.py has not seen (one archived
    before the bot started) comes as a bare ``PartialMessageable``: it is fetched, so its
    owner and parent are known. ``None`` when it cannot be (or is no place to answer)."""
    channel = message.channel
    if isinstance(channel, discord.GroupChannel):
        return None  # a group DM: bots are not in them
    if not (isinstance(channel, discord.PartialMessageable) and message.guild is not None):
        return channel
    try:
        fetched = await client.fetch_channel(channel.id)
    except DISCORD_FAILURES as error:
        log.warning("cannot read channel %s: %s", channel.id, failure_reason(error))
        return None
    return fetched if isinstance(fetched, discord.Thread | discord.TextChannel) else None


async def fetch_thread(client: discord.Client, thread_id: int) -> discord.Thread | None:
    """The thread ``thread_id`` when discord.py has not seen it (archived before the bot
    started); ``None`` when there is no such thread (an inline exchange, a deleted thread) or
    it cannot be read."""
    try:
        found = await client.fetch_channel(thread_id)
    except discord.NotFound:
        return None
    except DISCORD_FAILURES as error:
        log.warning("cannot read thread %s: %s", thread_id, failure_reason(error))
        return None
    return found if isinstance(found, discord.Thread) else None


async def open_thread(
    message: discord.Message | discord.PartialMessage, name: str
) -> discord.Thread | None:
    """A public thread started from ``message``, or ``None`` when Discord refuses (the bot may
    not create threads there, or the channel cannot have them): the bot answers inline."""
    try:
        return await message.create_thread(name=name)
    except DISCORD_FAILURES as error:
        level = logging.INFO if isinstance(error, discord.Forbidden) else logging.WARNING
        log.log(level, "no thread for message %s (%s): answering inline",
                message.id, failure_reason(error))  # fmt: skip
        return None


async def unarchive(thread: discord.Thread) -> None:
    """Make an archived thread writable again (not a locked one: only moderators may)."""
    if not thread.archived or thread.locked:
        return
    try:
        await thread.edit(archived=False)
    except DISCORD_FAILURES as error:
        log.warning("cannot unarchive thread %s: %s", thread.id, failure_reason(error))


async def say(
    channel: Channel,
    text: str,
    *,
    reply_to: discord.Message | discord.PartialMessage | None = None,
) -> None:
    """A short notice, pinging no one; a reply to ``reply_to`` when given."""
    options: dict[str, Any] = {}
    if reply_to is not None:
        options["reference"] = reply_to.to_reference(fail_if_not_exists=False)
    try:
        await channel.send(text, allowed_mentions=discord.AllowedMentions.none(), **options)
    except DISCORD_FAILURES as error:
        log.warning("could not post a notice: %s", failure_reason(error))


async def keep_typing(channel: Channel) -> None:
    """Show the bot typing in ``channel`` until cancelled."""
    while True:
        try:
            await channel.typing()
        except DISCORD_FAILURES as error:
            log.info("no typing indicator: %s", failure_reason(error))
            return
        await asyncio.sleep(TYPING_EVERY)


async def acknowledge(interaction: discord.Interaction) -> None:
    """Tell Discord a button press was handled, changing nothing on screen."""
    try:
        await interaction.response.defer()
    except DISCORD_FAILURES as error:
        log.warning("could not acknowledge a button press: %s", failure_reason(error))


async def whisper(interaction: discord.Interaction, text: str) -> None:
    """Answer a button press with a note only the presser sees."""
    try:
        await interaction.response.send_message(
            text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
        )
    except DISCORD_FAILURES as error:
        log.warning("could not answer a button press: %s", failure_reason(error))
