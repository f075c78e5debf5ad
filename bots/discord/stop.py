"""The Stop button under a Discord answer while it streams — pressed in any process.

Every relaybot Stop button is the same red "Stop" button, its ``custom_id``
``relaybot:stop:<turn id>``. Discord sends a press to the process holding that server's shard,
which need not be the one writing the answer: after a crash the journal lets any process
finish a turn (:mod:`bots.turns`), and a restart forgets whatever discord.py kept per message.
So the button is a discord.py ``DynamicItem``: the client learns its template once
(:meth:`StopButtons.register`) and discord.py builds a :class:`StopButton` from the
``custom_id`` of any press — this process's answers, another's, old ones alike.

Nothing is kept per message: a View holding only dynamic items is not stored by discord.py
when its message is sent or edited (it only notes the item's template), so memory stays
bounded however many answers were written. :meth:`StopButtons.view` is the View a message
shows while its answer streams.

A press on an answer this process writes is decided at once: the asker, or a member with
Manage Messages in the channel (Discord resolves the presser's permissions into the press),
stops it; anyone else gets :data:`~bots.replies.NOT_YOURS`, a note only they can see. Any other
press is acknowledged first — Discord wants an answer within 3 s and the store may be slower —
and then the journal says whose turn it is; a turn no longer queued or running has finished,
and the press does nothing. A stop is requested through :mod:`bots.stops`, of whichever
process writes the answer.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Coroutine
from typing import Any, ClassVar, Protocol

import discord

from bots.discord.channels import DISCORD_FAILURES, acknowledge, failure_reason, whisper
from bots.replies import NOT_YOURS
from bots.stops import Stops
from bots.tasks import TaskOwner
from core.store import StoreError, Turn

__all__ = ["STOP_PREFIX", "STOP_TEMPLATE", "Answers", "Journal", "StopButton", "StopButtons"]

log = logging.getLogger("relaybot.discord")

STOP_PREFIX = "relaybot:stop:"
STOP_TEMPLATE = r"relaybot:stop:(?P<turn>[0-9]+)"
UNFINISHED = frozenset({"queued", "running"})
"""The states of a turn whose answer a Stop can still end."""


class Answers(Protocol):
    """The answers this process writes: a :class:`~bots.turns.TurnWorker`."""

    def answering(self, turn_id: int) -> Turn | None: ...

    def stop(self, turn_id: int) -> bool: ...


class Journal(Protocol):
    """Where every process's turns are recorded: the store."""

    async def turn(self, turn_id: int) -> Turn: ...


class StopButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=STOP_TEMPLATE
):
    """The Stop button of one turn. discord.py makes one from each press's ``custom_id`` and
    calls :meth:`callback`; the class it uses is the one :class:`StopButtons` binds to itself,
    so the press reaches that client's bot."""

    buttons: ClassVar[StopButtons | None] = None

    def __init__(self, turn_id: int) -> None:
        super().__init__(
            discord.ui.Button(
                label="Stop", style=discord.ButtonStyle.danger, custom_id=f"{STOP_PREFIX}{turn_id}"
            )
        )
        self.turn_id = turn_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[Any],
        item: discord.ui.Item[Any],
        match: re.Match[str],
        /,
    ) -> StopButton:
        return cls(int(match["turn"]))

    async def callback(self, interaction: discord.Interaction[Any]) -> None:
        if self.buttons is None:
            raise RuntimeError("a Stop button of no bot: make it with StopButtons.view()")
        await self.buttons.pressed(interaction, self.turn_id)


class StopButtons:
    """The Stop buttons of one client: the View each streaming message shows, and what a
    press on any of them does (see the module docstring)."""

    def __init__(
        self, *, answers: Answers, journal: Journal, stops: Stops, tasks: TaskOwner
    ) -> None:
        self._answers = answers
        self._journal = journal
        self._stops = stops
        self._tasks = tasks
        self.item: type[StopButton] = _bound_to(self)

    def register(self, client: discord.Client) -> None:
        """Route every press on a relaybot Stop button the client receives here."""
        client.add_dynamic_items(self.item)

    def view(self, turn_id: int) -> discord.ui.View:
        """What a message shows while the turn's answer streams: the red Stop button."""
        view = discord.ui.View(timeout=None)  # a press is routed by its custom_id, not by it
        view.add_item(self.item(turn_id))
        return view

    async def pressed(self, interaction: discord.Interaction[Any], turn_id: int) -> None:
        """Answer a press within Discord's 3 s, then stop the turn if the presser may."""
        turn = self._answers.answering(turn_id)
        if turn is None:
            await acknowledge(interaction)  # before the journal is read
            self._spawn(self._from_journal(interaction, turn_id), turn_id)
        elif not _may_stop(interaction, turn):
            await whisper(interaction, NOT_YOURS)
        else:
            await acknowledge(interaction)
            self._spawn(self._request(interaction, turn), turn_id)

    async def _from_journal(self, interaction: discord.Interaction[Any], turn_id: int) -> None:
        """A press on an answer another process writes (or nobody does any more)."""
        try:
            turn = await self._journal.turn(turn_id)
        except StoreError as error:
            log.info("Stop of turn %d ignored: %s", turn_id, error)
            return
        if turn.state not in UNFINISHED:
            return  # the answer has finished: the press was its last word
        if not _may_stop(interaction, turn):
            await _whisper_later(interaction, NOT_YOURS)
            return
        await self._request(interaction, turn)

    async def _request(self, interaction: discord.Interaction[Any], turn: Turn) -> None:
        log.info("%s stopped turn %d in %s", interaction.user.id, turn.id, turn.key)
        await self._stops.request(turn.id)

    def _spawn(self, work: Coroutine[Any, Any, None], turn_id: int) -> None:
        try:
            self._tasks.spawn(work, name=f"discord stop {turn_id}")
        except RuntimeError:  # shutting down: what this process writes stops here
            self._answers.stop(turn_id)


def _may_stop(interaction: discord.Interaction[Any], turn: Turn) -> bool:
    """The asker, or a member allowed to manage the channel's messages."""
    asker = turn.question.author_id
    return str(interaction.user.id) == asker or interaction.permissions.manage_messages


async def _whisper_later(interaction: discord.Interaction[Any], text: str) -> None:
    """A note only the presser sees, after the press was acknowledged."""
    try:
        await interaction.followup.send(
            text, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
        )
    except DISCORD_FAILURES as error:
        log.warning("could not answer a button press: %s", failure_reason(error))


def _bound_to(buttons: StopButtons) -> type[StopButton]:
    """A :class:`StopButton` class whose presses reach ``buttons``: discord.py builds dynamic
    items from their class alone, one class per client."""

    class BoundStopButton(StopButton, template=STOP_TEMPLATE):
        pass

    BoundStopButton.buttons = buttons
    return BoundStopButton
