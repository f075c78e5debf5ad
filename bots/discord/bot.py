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
counts as its parent) / ``allowed_roles`` restrict where and whom it answers.

How: the event handler only looks at the message and starts a task (``TaskOwner``). The task
turns the text into plain words (:mod:`bots.discord.messages`) and *accepts* it in the store's
turn journal at once — claim ``discord:<message id>``, the question, a queued turn, in one
transaction; Discord never sends a message twice, so nothing earlier may be lost — then wakes
the :class:`~bots.turns.TurnWorker`. Files the message carries are downloaded and read when its
turn is prepared, not here (:mod:`bots.discord.files`); a message of files alone is a question
about them. A mention in a channel is keyed by its message id before
any thread exists (the thread opened from a message takes its id). The worker answers a
thread's turns one at a time, in message order, through its platform
(:mod:`bots.discord.platform`): it opens or unarchives the thread, refuses an over-long
question, shows the bot typing until the first words (or tool status) appear, then one message
grows with a Stop button (:mod:`bots.discord.stop`) that goes away at the end. Stop, or the
thread being deleted, ends that answer; the thread's next turn still runs. A press on any
relaybot Stop button reaches this client's :class:`~bots.discord.stop.StopButtons`, whichever
process wrote the answer: the stop is requested of the one writing it (:mod:`bots.stops`).
A deleted question is forgotten: its turn and answer leave the history, and a turn still
waiting is not answered.
``reset`` in a DM answers at once and is no turn. The ``/relaybot`` commands are
:mod:`bots.discord.commands`. After a crash, another start finishes what
the journal holds (:mod:`bots.turns`). Every send pings no one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import discord

from bots.commands import Commands
from bots.discord.channels import Channel, fetch_thread, say, the_channel
from bots.discord.client import DiscordUnavailable, stay_connected
from bots.discord.commands import SlashCommands
from bots.discord.files import MessageFiles, pending, remote_files
from bots.discord.messages import Names, plain_text
from bots.discord.platform import DM, DiscordPlatform
from bots.discord.sessions import DirectSessions
from bots.discord.stop import StopButtons
from bots.replies import BROKEN, MEMORY_DOWN, NEW_CONVERSATION, ONLY_A_MENTION, ONLY_FILES
from bots.runtime import Runtime
from bots.store_faults import StoreFaults
from bots.tasks import TaskOwner, cancel_and_wait
from bots.turns import TurnWorker, worker_timing
from core.messages import ConversationKey, UserMessage
from core.store import StoreError, Turn, discord_order

__all__ = ["DiscordBot"]

log = logging.getLogger("relaybot.discord")

CLAIM_TTL = 24 * 3600.0
PLATFORM = "Discord"
PERSON_MESSAGES = frozenset({discord.MessageType.default, discord.MessageType.reply})
RESET = "reset"


class DiscordBot:
    """The client's event handlers, and the worker that answers the turns they accept. Build
    it with :func:`bots.discord.runner.discord_bot`."""

    def __init__(
        self,
        runtime: Runtime,
        client: discord.Client,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        settings = runtime.settings
        self._store = runtime.store
        self._settings = settings.discord
        self.client = client
        self._tasks = TaskOwner(log)
        self._faults = StoreFaults(log)
        self._sessions = DirectSessions(
            idle_seconds=self._settings.dm_idle_hours * 3600, clock=clock
        )
        self._connection: asyncio.Task[None] | None = None
        budget = runtime.budget
        self._files = MessageFiles(
            settings=settings.attachments, api_url=self._settings.api_url, journal=runtime.store,
        )  # fmt: skip
        self._platform = DiscordPlatform(
            client, budget=budget, settings=self._settings, files=self._files,
            show_reasoning=settings.llm.show_reasoning, stop_view=self._stop_view,
        )  # fmt: skip
        self._grace = runtime.settings.runtime.shutdown_grace
        self._worker = TurnWorker(
            store=runtime.store, engine=runtime.engine, platform=self._platform, budget=budget,
            timing=worker_timing(settings.store), name="discord", stops=runtime.stops,
            limits=settings.limits.usage_limits(),
        )  # fmt: skip
        self._stop_buttons = StopButtons(
            answers=self._worker, journal=runtime.store, stops=runtime.stops, tasks=self._tasks
        )
        self._stop_buttons.register(client)
        self.commands = SlashCommands(
            Commands(
                store=runtime.store, models=runtime.models, limits=settings.limits.usage_limits(),
                admins=frozenset(self._settings.command_admins), stops=runtime.stops,
                worker=self._worker,
            ),
            client=client, sessions=self._sessions,
        )  # fmt: skip
        """``/relaybot``: registered on the client; synced with Discord only when asked."""
        self._started = False

        async def on_message(message: discord.Message) -> None:
            self._on_message(message)

        async def on_raw_message_delete(payload: discord.RawMessageDeleteEvent) -> None:
            self._on_delete(payload)

        client.event(on_message)
        client.event(on_raw_message_delete)

    @property
    def busy(self) -> int:
        """Messages being accepted and threads being answered right now."""
        return len(self._tasks) + self._worker.busy

    # --- the connection -------------------------------------------------------------------

    def connect(self) -> None:
        """Open the gateway connection, held by a task of its own until :meth:`close` (see
        :meth:`ready` and :meth:`disconnected`)."""
        self._connection = asyncio.create_task(
            stay_connected(self.client), name="discord gateway connection"
        )

    async def ready(self) -> None:
        """Wait until the gateway session is ready, then start the worker: it finishes what a
        previous process left in the journal. Raise what ended the connection if it ended
        first (``DiscordUnavailable``)."""
        connection = self._connected()
        waiter = asyncio.create_task(self.client.wait_until_ready(), name="discord ready")
        try:
            await asyncio.wait({waiter, connection}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(waiter)
        if connection.done():
            connection.result()
            raise DiscordUnavailable("the gateway connection ended before it was ready")
        if not self._started:
            self._started = True
            await self._worker.start()

    async def disconnected(self) -> None:
        """Wait for the connection to end: raises ``DiscordUnavailable`` if Discord ended it."""
        await asyncio.shield(self._connected())

    def _connected(self) -> asyncio.Task[None]:
        if self._connection is None:
            raise RuntimeError("connect() first")
        return self._connection

    async def close(self) -> None:
        """Stop within ``[runtime] shutdown_grace`` (:meth:`TurnWorker.shutdown`: answers
        being written end, or go back to the queue for the next start, saying so; messages
        that arrive meanwhile are accepted and left queued), then close the connection."""
        await self._tasks.close()
        await self._worker.shutdown(self._grace)
        await self._platform.close()
        await self._files.aclose()
        await self.client.close()
        if self._connection is not None:
            await cancel_and_wait(self._connection)

    def _stop_view(self, turn_id: int) -> discord.ui.View:
        """The Stop button a message of the turn's answer shows while it streams."""
        return self._stop_buttons.view(turn_id)

    # --- the event handlers: look, start a task, return -----------------------------------

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

    def _on_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        self._tasks.spawn(
            self._forget(payload),
            name=f"discord deleted {payload.channel_id}/{payload.message_id}",
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
        """Accept a message the bot answers, and wake the worker. A store that fails to accept
        it gets :data:`~bots.replies.MEMORY_DOWN` where the message was, logged once per kind:
        Discord never sends a message again (discord.py cannot ask it to), so that notice is
        all the asker gets — they ask again once the store is back."""
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
        try:
            turn = await self._accept(message, channel)
        except StoreError as error:
            self._faults.failed(error, f"accepting discord message {message.id}")
            await say(channel, MEMORY_DOWN, reply_to=message)
            return
        except Exception:
            log.exception("could not accept message %s", message.id)
            await say(channel, BROKEN, reply_to=message)
            return
        self._faults.worked()
        if turn is not None:
            self._worker.wake(turn.key)

    async def _accept(self, message: discord.Message, channel: Channel) -> Turn | None:
        """The message as a queued turn of the journal, its files noted for the worker;
        ``None`` when it was accepted already or is no question (``reset`` in a DM, answered
        here)."""
        text = self._plain_text(message).strip()
        files = remote_files(message.attachments)
        event_id = f"discord:{message.id}"
        if message.guild is None and not files and text.lower() == RESET:
            if await self._store.claim(event_id, CLAIM_TTL):
                self._sessions.reset(channel.id)
                await say(channel, NEW_CONVERSATION)
            return None
        question = UserMessage(
            text=text or (ONLY_FILES if files else ONLY_A_MENTION),
            author_id=str(message.author.id),
            author_name=message.author.display_name,
            attachments=pending(files),
        )
        self._files.expect(message.id, files)  # before: the worker may take it at once
        turn = None
        try:
            turn = await self._store.accept(
                event_id=event_id, key=self._key(message, channel),
                order=discord_order(message.id), question=question, platform=PLATFORM,
                claim_ttl=CLAIM_TTL,
            )  # fmt: skip
        finally:
            if turn is None:  # accepted before, or not at all: no turn will read them
                self._files.drop(message.id)
        return turn

    def _key(self, message: discord.Message, channel: Channel) -> ConversationKey:
        """The message's conversation: a DM's current one; the thread it was written in; or,
        for a mention in a channel, the thread about to be opened from it — which takes the
        message's id — or the inline exchange, keyed alike."""
        if message.guild is None:
            return _key(DM, channel.id, self._sessions.conversation(channel.id, message.id))
        if isinstance(channel, discord.Thread):
            return _key(message.guild.id, channel.parent_id, channel.id)
        return _key(message.guild.id, channel.id, message.id)

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

    # --- a deleted message ----------------------------------------------------------------

    async def _forget(self, payload: discord.RawMessageDeleteEvent) -> None:
        """A deleted question leaves the history; its turn, if still to answer, ends unseen."""
        key = await self._key_of_deleted(payload)
        if key is None:
            return
        try:
            await self._store.forget_message(key, discord_order(payload.message_id))
        except StoreError:
            log.exception("could not forget deleted message %s", payload.message_id)

    async def _key_of_deleted(
        self, payload: discord.RawMessageDeleteEvent
    ) -> ConversationKey | None:
        channel_id, message_id = payload.channel_id, payload.message_id
        if payload.guild_id is None:
            session = self._sessions.current(channel_id)
            return None if session is None else _key(DM, channel_id, session)
        channel = self.client.get_channel(channel_id) or await fetch_thread(self.client, channel_id)
        if isinstance(channel, discord.Thread):
            return _key(payload.guild_id, channel.parent_id, channel.id)
        if channel is None:
            return None
        return _key(payload.guild_id, channel_id, message_id)


def _key(workspace: object, channel: object, thread: object) -> ConversationKey:
    return ConversationKey(
        platform="discord", workspace=str(workspace), channel=str(channel), thread=str(thread)
    )
