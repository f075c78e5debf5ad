"""The Stop button under a Discord answer while it streams.

``StopButton`` is a discord.py ``View`` holding one red button whose ``custom_id`` is
``relaybot:stop:<turn id>``. The surface makes a fresh one for each message that shows it
(``DiscordSurface(stop_view=...)``) and stops it when the message's final edit takes the
button away; discord.py routes a press on that message to it. The asker, or a member with
Manage Messages in the channel (Discord resolves the presser's permissions into the press),
stops the answer: the press is acknowledged and ``on_stop`` runs. Anyone else gets a note only
they can see, and the answer goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import discord

from bots.discord.channels import acknowledge, whisper
from bots.replies import NOT_YOURS

__all__ = ["STOP_PREFIX", "StopButton"]

log = logging.getLogger("relaybot.discord")

STOP_PREFIX = "relaybot:stop:"


class StopButton(discord.ui.View):
    """The Stop button of one turn; ``on_stop`` cancels it."""

    def __init__(self, *, turn_id: str, asker: int, on_stop: Callable[[], None]) -> None:
        super().__init__(timeout=None)  # it lives as long as its message streams
        self.asker = asker
        self.on_stop = on_stop
        self.add_item(_Button(custom_id=STOP_PREFIX + turn_id))

    def may_stop(self, interaction: discord.Interaction) -> bool:
        return interaction.user.id == self.asker or interaction.permissions.manage_messages

    async def pressed(self, interaction: discord.Interaction) -> None:
        if not self.may_stop(interaction):
            await whisper(interaction, NOT_YOURS)
            return
        await acknowledge(interaction)
        log.info("%s stopped an answer in %s", interaction.user.id, interaction.channel_id)
        self.on_stop()


class _Button(discord.ui.Button[StopButton]):
    def __init__(self, *, custom_id: str) -> None:
        super().__init__(label="Stop", style=discord.ButtonStyle.danger, custom_id=custom_id)

    async def callback(self, interaction: discord.Interaction) -> None:
        view = self.view  # discord.py sets it when the button is added to its StopButton
        if view is None:
            raise RuntimeError("a Stop button outside its StopButton view")
        await view.pressed(interaction)
