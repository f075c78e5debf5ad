"""The Discord bot: discord.py's gateway events in, conversation turns and live replies out.

Who it answers, and where the conversation lives (its ``ConversationKey``):

- a mention in a server text channel: a public thread is opened from that message, named
  after the question, and the answer and the conversation live there —
  ``("discord", guild, channel, thread)``. Where the bot may not open threads (or the channel
  cannot have them: a voice channel's chat) it answers inline, as a reply, and that one
  exchange is its own conversation, keyed by the question's id in the thread part: many
  people may ask at once in one channel;
- a message in a thread the bot opened (``owner_id`` is the bot, so this holds after a restart
  too), mention or not; a mention in any other thread or forum post, answered in place — the
  thread is the conversation either way. An archived thread is unarchived first;
- a direct message: the DM channel is one conversation until ``reset`` or an idle gap
  (:mod:`bots.discord.sessions`).

People's messages only: bots (itself included), webhooks and system messages never start a
turn, and edits are not listened to. ``allowed_guilds`` / ``allowed_channels`` (a thread
counts as its parent) / ``allowed_roles`` restrict where and whom it answers. Each message is
claimed once in the store (``discord:<message id>``).

How: the event handler only looks at the message and starts a task (``TaskOwner``). The task
turns the text into plain words (:mod:`bots.discord.messages`), refuses an over-long one
politely, opens the thread, and streams the turn through a ``LiveReply`` on a
``DiscordSurface``: the bot shows as typing until the first words (or tool status) appear,
then one message grows with a Stop button (:mod:`bots.discord.stop`) that goes away at the
end. Stop, or the thread being deleted, cancels the turn. Every send pings no one.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from contextlib import aclosing
from typing import Any

import discord

from adapters.discord_surface import DiscordSurface
from adapters.live import LiveReply
from bots.discord.channels import Channel, keep_typing, open_thread, say, the_channel, unarchive
from bots.discord.client import DiscordUnavailable, stay_connected
from bots.discord.messages import Names, plain_text, thread_name
from bots.discord.sessions import DirectSessions
from bots.discord.stop import StopButton
from bots.replies import BROKEN, NEW_CONVERSATION, ONLY_A_MENTION, TOO_LONG
from bots.runtime import Runtime, edit_budget
from bots.tasks import TaskOwner, cancel_and_wait, running_task
from core.engine import TurnRequest
from core.events import EngineEvent, TextDelta, ToolStarted, TurnFailed, TurnFinished
from core.messages import ConversationKey

__all__ = ["DiscordBot"]

log = logging.getLogger("relaybot.discord")

CLAIM_TTL = 24 * 3600.0
PLATFORM = "Discord"
PERSON_MESSAGES = frozenset({discord.MessageType.default, discord.MessageType.reply})
RESET = "reset"
NEW_THREAD = "A question for relaybot"
_SHOWN = (TextDelta, ToolStarted, TurnFinished, TurnFailed)
"""Events after which the reply shows something: the typing indicator stops."""


class DiscordBot:
    """The client's event handlers and the turns they run. Build it with
    :func:`bots.discord.runner.discord_bot`."""

    def __init__(
        self,
        runtime: Runtime,
        client: discord.Client,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._runtime = runtime
        self._settings = runtime.settings.discord
        self.client = client
        self._budget = edit_budget(runtime.settings)
        self._tasks = TaskOwner(log)
        self._sessions = DirectSessions(
            idle_seconds=self._settings.dm_idle_hours * 3600, clock=clock
        )
        self._connection: asyncio.Task[None] | None = None

        async def on_message(message: discord.Message) -> None:
            self._on_message(message)

        client.event(on_message)

    @property
    def busy(self) -> int:
        """Messages being handled right now (answers being written among them)."""
        return len(self._tasks)

    # --- the connection -------------------------------------------------------------------

    def connect(self) -> None:
        """Open the gateway connection, held by a task of its own until :meth:`close` (see
        :meth:`ready` and :meth:`disconnected`)."""
        self._connection = asyncio.create_task(
            stay_connected(self.client), name="discord gateway connection"
        )

    async def ready(self) -> None:
        """Wait until the gateway session is ready; raise what ended the connection if it
        ended first (``DiscordUnavailable``)."""
        connection = self._connected()
        waiter = asyncio.create_task(self.client.wait_until_ready(), name="discord ready")
        try:
            await asyncio.wait({waiter, connection}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(waiter)
        if connection.done():
            connection.result()
            raise DiscordUnavailable("the gateway connection ended before it was ready")

    async def disconnected(self) -> None:
        """Wait for the connection to end: raises ``DiscordUnavailable`` if Discord ended it."""
        await asyncio.shield(self._connected())

    def _connected(self) -> asyncio.Task[None]:
        if self._connection is None:
            raise RuntimeError("connect() first")
        return self._connection

    async def close(self) -> None:
        """Stop every answer still being written (each ends with "Stopped."), then close the
        connection."""
        await self._tasks.close()
        await self.client.close()
        if self._connection is not None:
            await cancel_and_wait(self._connection)

    # --- the event handler: look, start a task, return ------------------------------------

    def _on_message(self, message: discord.Message) -> None:
        me = self.client.user
        if me is None or message.author.bot or message.author.id == me.id:
            return
        if message.webhook_id is not None or message.type not in PERSON_MESSAGES:
            return
        if not self._may_answer(message):
            return
        self._tasks.spawn(
            self._handle(message), name=f"discord message {message.channel.id}/{message.id}"
        )

    def _may_answer(self, message: discord.Message) -> bool:
        settings = self._settings
        if message.guild is None:
            return settings.direct_messages and not settings.allowed_roles
        if settings.allowed_guilds and message.guild.id not in settings.allowed_guilds:
            return False
        channel = message.channel
        places = {channel.id, getattr(channel, "parent_id", None)}
        if settings.allowed_channels and not places & set(settings.allowed_channels):
            return False
        roles = {role.id for role in getattr(message.author, "roles", ())}
        return not settings.allowed_roles or bool(roles & set(settings.allowed_roles))

    def _mentions_me(self, message: discord.Message) -> bool:
        """The bot's user (a reply to the bot that pings it counts), or its managed role
        (people pick either from the menu)."""
        me = self.client.user
        role = message.guild.self_role if message.guild is not None else None
        return (me is not None and any(user.id == me.id for user in message.mentions)) or (
            role is not None and role.id in message.raw_role_mentions
        )

    # --- a message ------------------------------------------------------------------------

    async def _handle(self, message: discord.Message) -> None:
        channel = await the_channel(self.client, message)
        if channel is None:
            return
        addressed = message.guild is None or self._mentions_me(message)
        if isinstance(channel, discord.Thread):
            me = self.client.user
            if not (addressed or (me is not None and channel.owner_id == me.id)):
                return
        elif not addressed:
            return
        if not await self._runtime.store.claim(f"discord:{message.id}", CLAIM_TTL):
            return  # answered (or being answered) already
        try:
            prepared = await self._prepare(message, channel)
        except Exception:
            log.exception("could not prepare an answer to message %s", message.id)
            await say(channel, BROKEN, reply_to=message)
            return
        if prepared is not None:
            await self._answer(message, *prepared)

    async def _prepare(
        self, message: discord.Message, channel: Channel
    ) -> tuple[TurnRequest, Channel, discord.Message | None] | None:
        """The turn, where to answer and what to reply to; ``None`` when the message was
        answered with a notice."""
        text = self._plain_text(message)
        limit = self._settings.max_input_chars
        if len(text) > limit:
            await say(channel, TOO_LONG.format(length=len(text), limit=limit), reply_to=message)
            return None
        if message.attachments:
            names = ", ".join(a.filename for a in message.attachments)
            text += f"\n\n(Attached, but you cannot read them: {names}.)"
        reply_to: discord.Message | None = None
        if message.guild is None:
            if text.strip().lower() == RESET:
                self._sessions.reset(channel.id)
                await say(channel, NEW_CONVERSATION)
                return None
            key = _key("dm", channel.id, self._sessions.conversation(channel.id, message.id))
        elif isinstance(channel, discord.Thread):
            await unarchive(channel)
            key = _key(message.guild.id, channel.parent_id, channel.id)
        else:
            thread = None
            if isinstance(channel, discord.TextChannel):
                name = thread_name(text, fallback=NEW_THREAD)
                thread = await open_thread(message, name)
            if thread is not None:
                key, channel = _key(message.guild.id, channel.id, thread.id), thread
            else:  # inline: this exchange is a conversation of its own
                key, reply_to = _key(message.guild.id, channel.id, message.id), message
        request = TurnRequest(
            key=key,
            user_id=str(message.author.id),
            user_name=message.author.display_name,
            text=text.strip() or ONLY_A_MENTION,
            platform=PLATFORM,
        )
        return request, channel, reply_to

    def _plain_text(self, message: discord.Message) -> str:
        guild = message.guild
        users = {user.id: user.display_name for user in message.mentions}
        roles = {role.id: role.name for role in message.role_mentions}
        channels: dict[int, str] = {}
        for channel_id in message.raw_channel_mentions:
            found = guild.get_channel_or_thread(channel_id) if guild is not None else None
            if found is not None:
                channels[channel_id] = found.name
        me = self.client.user
        role = guild.self_role if guild is not None else None
        return plain_text(
            message.content,
            bot_id=me.id if me is not None else 0,
            bot_role_id=role.id if role is not None else None,
            names=Names(users=users, roles=roles, channels=channels),
        )

    async def _answer(
        self,
        message: discord.Message,
        request: TurnRequest,
        channel: Channel,
        reply_to: discord.Message | None,
    ) -> None:
        """Stream the turn; Stop (or losing the channel) cancels this task."""
        task = running_task()
        turn_id = uuid.uuid4().hex

        def stop() -> None:  # the Stop button, or the thread is gone
            task.cancel()

        def stop_view() -> StopButton:
            return StopButton(turn_id=turn_id, asker=message.author.id, on_stop=stop)

        surface = DiscordSurface(
            channel, stop_view=stop_view, edit_interval=self._settings.edit_interval,
            reply_to=None if reply_to is None else channel.get_partial_message(reply_to.id),
        )  # fmt: skip
        reply = LiveReply(
            surface, self._budget, placeholder=None,
            show_reasoning=self._runtime.settings.llm.show_reasoning,
            on_gone=stop, name=f"discord {request.key}",
        )  # fmt: skip
        typing = self._tasks.spawn(keep_typing(channel), name=f"discord typing {request.key}")
        try:
            async with reply, aclosing(self._runtime.engine.run_turn(request)) as events:
                async for event in events:
                    _stop_typing_at(event, typing)
                    reply.feed(event)
        finally:
            await cancel_and_wait(typing)


def _key(workspace: object, channel: object, thread: object) -> ConversationKey:
    return ConversationKey(
        platform="discord", workspace=str(workspace), channel=str(channel), thread=str(thread)
    )


def _stop_typing_at(event: EngineEvent, typing: asyncio.Task[Any]) -> None:
    if isinstance(event, _SHOWN) and not typing.done():
        typing.cancel()
