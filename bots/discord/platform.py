"""``DiscordPlatform``: where a Discord turn's answer is shown — the worker's
:class:`~bots.turns.Platform` for Discord.

A turn is accepted before its thread exists (:mod:`bots.discord.bot` keys a mention in a
channel by the message's id, which the thread opened from it takes), so the place of a turn
is found from its key and its question's id (``Turn.order``) when the worker gets to it:

- a DM: the DM channel;
- a thread that exists (in discord.py's cache, else fetched: one archived before the bot
  started): the thread, unarchived first when the turn is prepared;
- the first message of a mention in a text channel with no thread yet: :meth:`prepare` opens
  one from the message, named after the question; where Discord refuses (or the channel
  cannot have threads) the answer is inline, in the channel, as a reply to the question.
  Recovery, which shows notices without preparing, never opens a thread.

:meth:`prepare` refuses a question longer than ``discord.max_input_chars`` with
:data:`~bots.replies.TOO_LONG`, a reply to it where it was asked (the worker then drops the
question from the history, so no later turn reads it), before any file is downloaded.
Otherwise the bot shows as typing in the place until the reply's first message is posted (or
the turn ends), and meanwhile reads the question's files (:mod:`bots.discord.files`): a file
that was not read is told in one short line before the answer, its note given to the model.
The reply's Stop button carries the turn's id, so a press on it stops the turn in whichever
process receives it (:mod:`bots.discord.stop`); no View is kept per message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import discord

from adapters.budget import EditBudget
from adapters.discord_surface import DiscordSurface
from adapters.live import LiveReply
from adapters.surface import MessageRef, Surface
from bots.discord.channels import (
    Channel,
    fetch_thread,
    keep_typing,
    open_thread,
    say,
    unarchive,
)
from bots.discord.files import MessageFiles, skipped_notice
from bots.discord.messages import thread_name
from bots.discord.settings import DiscordSettings
from bots.replies import ONLY_A_MENTION, ONLY_FILES, TOO_LONG
from bots.tasks import TaskOwner, cancel_and_wait
from core.store import Lease, Turn

__all__ = ["DM", "NEW_THREAD", "DiscordPlatform"]

log = logging.getLogger("relaybot.discord")

DM = "dm"
"""The workspace part of a DM conversation's key."""
NEW_THREAD = "A question for relaybot"
"""A thread's name when the question has no words."""


@dataclass(frozen=True, slots=True)
class _Place:
    """Where a turn's reply goes; ``reply_to``: the question it replies to (inline)."""

    channel: Channel
    reply_to: int | None = None


class DiscordPlatform:
    """Discord for :class:`~bots.turns.TurnWorker` (see the module docstring).
    ``stop_view(turn_id)`` is the Stop button a message shows while that turn's answer streams
    (:meth:`bots.discord.stop.StopButtons.view`)."""

    def __init__(
        self,
        client: discord.Client,
        *,
        budget: EditBudget,
        settings: DiscordSettings,
        files: MessageFiles,
        show_reasoning: bool,
        stop_view: Callable[[int], discord.ui.View],
    ) -> None:
        self._client = client
        self._files = files
        self._budget = budget
        self._settings = settings
        self._show_reasoning = show_reasoning
        self._stop_view = stop_view
        self._places: dict[int, _Place] = {}  # prepared turns, until finished
        self._typing: dict[int, asyncio.Task[None]] = {}
        self._tasks = TaskOwner(log)

    async def prepare(self, lease: Lease) -> Lease | str:
        turn = lease.turn
        text, limit = turn.question.text, self._settings.max_input_chars
        if len(text) > limit:
            place = await self._find(turn)
            self._places[turn.id] = _Place(place.channel, reply_to=_asked(turn))
            return TOO_LONG.format(length=len(text), limit=limit)
        place = await self._find(turn, open_thread=True)
        if isinstance(place.channel, discord.Thread):
            await unarchive(place.channel)
        self._places[turn.id] = place
        self._typing[turn.id] = self._tasks.spawn(
            keep_typing(place.channel), name=f"discord typing {turn.key} turn {turn.id}"
        )
        lease, read = await self._files.read(lease, _asked(turn))
        if (notice := skipped_notice(read)) is not None:
            reply_to = place.reply_to
            asked = None if reply_to is None else place.channel.get_partial_message(reply_to)
            await say(place.channel, notice, reply_to=asked)
        return lease

    async def surface(self, turn: Turn) -> DiscordSurface:
        place = self._places.get(turn.id) or await self._find(turn)

        def stop_view() -> discord.ui.View:
            return self._stop_view(turn.id)

        reply_to = place.reply_to
        return DiscordSurface(
            place.channel, stop_view=stop_view, edit_interval=self._settings.edit_interval,
            reply_to=None if reply_to is None else place.channel.get_partial_message(reply_to),
        )  # fmt: skip

    def reply(
        self,
        turn: Turn,
        surface: Surface,
        *,
        on_gone: Callable[[], None],
        on_posted: Callable[[tuple[MessageRef, ...]], Awaitable[None]],
    ) -> LiveReply:
        async def posted(refs: tuple[MessageRef, ...]) -> None:
            await self._stop_typing(turn.id)  # the first message is there
            await on_posted(refs)

        return LiveReply(
            surface, self._budget, placeholder=None, show_reasoning=self._show_reasoning,
            on_gone=on_gone, on_posted=posted, name=f"discord {turn.key} turn {turn.id}",
        )  # fmt: skip

    async def finished(self, turn: Turn) -> None:
        self._places.pop(turn.id, None)
        self._files.drop(_asked(turn))  # refused, or failed before its files were read
        await self._stop_typing(turn.id)

    async def close(self) -> None:
        """Stop every typing indicator."""
        await self._tasks.close()

    async def _stop_typing(self, turn_id: int) -> None:
        if (typing := self._typing.pop(turn_id, None)) is not None:
            await cancel_and_wait(typing)

    async def _find(self, turn: Turn, *, open_thread: bool = False) -> _Place:
        """The turn's place (see the module docstring); a thread is opened only when
        ``open_thread``."""
        key, client = turn.key, self._client
        if key.workspace == DM:
            private = discord.ChannelType.private
            return _Place(client.get_partial_messageable(int(key.channel), type=private))
        thread_id, asked = int(key.thread), _asked(turn)
        cached = client.get_channel(thread_id)
        if isinstance(cached, discord.Thread):
            return _Place(cached)
        parent = client.get_channel(int(key.channel))
        if open_thread and thread_id == asked and isinstance(parent, discord.TextChannel):
            opened = await self._open_thread(parent, turn)
            if opened is not None:
                return _Place(opened)
        if (fetched := await fetch_thread(client, thread_id)) is not None:
            return _Place(fetched)
        guild = int(key.workspace)
        if thread_id != asked:  # a thread that is gone: writing to it says so
            return _Place(client.get_partial_messageable(thread_id, guild_id=guild))
        if isinstance(parent, discord.TextChannel | discord.VoiceChannel):
            return _Place(parent, reply_to=asked)
        return _Place(client.get_partial_messageable(int(key.channel), guild_id=guild), asked)

    async def _open_thread(self, channel: discord.TextChannel, turn: Turn) -> discord.Thread | None:
        question = turn.question
        words = "" if question.text in (ONLY_A_MENTION, ONLY_FILES) else question.text
        files = ", ".join(attached.name for attached in question.attachments)
        name = thread_name(words, fallback=files or NEW_THREAD)
        return await open_thread(channel.get_partial_message(_asked(turn)), name)


def _asked(turn: Turn) -> int:
    """The id of the turn's question: its order is the message's snowflake, zero-padded."""
    return int(turn.order)
