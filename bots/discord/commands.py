"""``/relaybot``: relaybot's commands as Discord application commands.

One command group, ``/relaybot``, with a sub-command per command of :mod:`bots.commands`:
``help``, ``model [name]``, ``prompt [text]`` (``reset`` as the text puts the default back),
``usage``, ``new`` and ``stop``. Discord's client offers them from the ``/`` menu with their
options typed, so nothing is parsed from free text here: each sub-command becomes the line
:func:`~bots.commands.parse` reads, run by :class:`~bots.commands.Commands`, and its answer is
a reply only the user sees (an interaction reply, ephemeral).

Where a command applies is the conversation key the bot gives messages there
(:meth:`bots.discord.bot.DiscordBot._key`): in a thread or forum post, the guild, its parent
channel and the thread — so ``model`` and ``prompt`` in a thread change its channel, and
``new`` and ``stop`` act on that thread; in a text channel, the channel (no thread: ``new``
and ``stop`` say where they work); in a DM, the DM channel and its current conversation. In a
DM, ``new`` starts a new conversation as ``reset`` does there (:mod:`bots.discord.sessions`).
Changing a channel's model or prompt is for members with Manage Server or Administrator —
Discord resolves the user's permissions into the interaction — and the users
``discord.command_admins`` names.

Registering the commands with Discord (:meth:`SlashCommands.sync`) is a separate, rate-limited
call: ``relaybot discord --sync-commands`` makes it once, globally, at start; a test syncs
them to its guild. Without it Discord keeps whatever was synced last.
"""

from __future__ import annotations

import logging
from typing import Any

import discord
from discord import app_commands

from adapters.discord_surface import MAX_LENGTH
from adapters.text import split_message
from bots.commands import Answer, Commands, Invoker, Where, parse
from bots.discord.channels import DISCORD_FAILURES, failure_reason
from bots.discord.platform import DM
from bots.discord.sessions import DirectSessions
from bots.replies import BROKEN, MEMORY_DOWN, NEW_CONVERSATION
from core.store import StoreError

__all__ = ["GROUP", "SlashCommands"]

log = logging.getLogger("relaybot.discord")

GROUP = "relaybot"
"""The command group's name: ``/relaybot model``."""
PLATFORM = "discord"
Interaction = discord.Interaction[Any]


class SlashCommands:
    """The ``/relaybot`` commands of one client: its ``CommandTree`` (a client has one) and
    what each sub-command does (see the module docstring)."""

    def __init__(
        self, commands: Commands, *, client: discord.Client, sessions: DirectSessions
    ) -> None:
        self._commands = commands
        self._sessions = sessions
        self.tree: app_commands.CommandTree[discord.Client] = app_commands.CommandTree(client)
        self.tree.add_command(_group(self.run))
        self.tree.error(_on_error)

    async def sync(self, *, guild: int | None = None) -> list[str]:
        """Register the commands with Discord: globally, or in ``guild`` only (which shows them
        there at once; a test's way). The registered commands' names. Raises
        ``discord.HTTPException`` when Discord refuses."""
        place = None if guild is None else discord.Object(guild)
        if place is not None:
            self.tree.copy_global_to(guild=place)
        synced = await self.tree.sync(guild=place)
        return [command.name for command in synced]

    async def run(self, interaction: Interaction, name: str, argument: str) -> None:
        """Run ``name argument`` where the interaction was used, and reply to the user."""
        where = _where(interaction, self._sessions)
        invoker = _invoker(interaction)
        if name == "new" and where.workspace == DM:  # a DM's conversation is its session
            self._sessions.reset(int(where.channel))
            await _reply(interaction, Answer(text=NEW_CONVERSATION))
            return
        try:
            answer = await self._commands.run(
                parse(f"{name} {argument}"), where=where, invoker=invoker
            )
        except StoreError as error:
            log.warning("/%s %s in %s failed: %s", GROUP, name, where.channel, error)
            answer = Answer(text=MEMORY_DOWN)
        except Exception:
            log.exception("/%s %s in %s failed", GROUP, name, where.channel)
            answer = Answer(text=BROKEN)
        else:
            log.info("%s used /%s %s in %s", invoker.user, GROUP, name, where.channel)
        await _reply(interaction, answer)


def _group(run: Any) -> app_commands.Group:
    """``/relaybot`` and its sub-commands, each handing its name and text to ``run``."""
    group = app_commands.Group(name=GROUP, description="Steer relaybot in this channel or thread")

    @group.command(name="help", description="What each /relaybot command does")
    async def help_(interaction: Interaction) -> None:
        await run(interaction, "help", "")

    @group.command(name="model", description="Show or choose the model answering this channel")
    @app_commands.describe(name="A configured model's name, or reset for the default")
    async def model(interaction: Interaction, name: str | None = None) -> None:
        await run(interaction, "model", name or "")

    @group.command(name="prompt", description="Show or set this channel's instructions")
    @app_commands.describe(text="The instructions, or reset for relaybot's own")
    async def prompt(interaction: Interaction, text: str | None = None) -> None:
        await run(interaction, "prompt", text or "")

    @group.command(name="usage", description="Your tokens today and this month, and the limits")
    async def usage(interaction: Interaction) -> None:
        await run(interaction, "usage", "")

    @group.command(name="new", description="Start this thread's conversation afresh")
    async def new(interaction: Interaction) -> None:
        await run(interaction, "new", "")

    @group.command(name="stop", description="Stop the answer being written in this thread")
    async def stop(interaction: Interaction) -> None:
        await run(interaction, "stop", "")

    return group


def _where(interaction: Interaction, sessions: DirectSessions) -> Where:
    """The place's parts of its conversation key, as the bot keys messages there."""
    channel_id = interaction.channel_id or 0
    if interaction.guild_id is None:
        session = sessions.current(channel_id)
        return Where(platform=PLATFORM, workspace=DM, channel=str(channel_id), thread=session)
    guild = str(interaction.guild_id)
    channel = interaction.channel
    if isinstance(channel, discord.Thread):
        return Where(platform=PLATFORM, workspace=guild, channel=str(channel.parent_id),
                     thread=str(channel.id))  # fmt: skip
    return Where(platform=PLATFORM, workspace=guild, channel=str(channel_id), thread=None)


def _invoker(interaction: Interaction) -> Invoker:
    """The user, an admin when Discord says they may manage the server."""
    permissions = interaction.permissions
    admin = permissions.administrator or permissions.manage_guild
    return Invoker(user=str(interaction.user.id), admin=admin)


async def _reply(interaction: Interaction, answer: Answer) -> None:
    """The answer as the interaction's reply (a long one continues in follow-ups), pinging
    no one."""
    first, *rest = split_message(answer.text, MAX_LENGTH)
    quiet = discord.AllowedMentions.none()
    try:
        await interaction.response.send_message(
            first, ephemeral=answer.ephemeral, allowed_mentions=quiet
        )
        for piece in rest:
            await interaction.followup.send(piece, ephemeral=answer.ephemeral,
                                            allowed_mentions=quiet)  # fmt: skip
    except DISCORD_FAILURES as error:
        log.warning("could not answer /%s: %s", GROUP, failure_reason(error))


async def _on_error(interaction: Interaction, error: app_commands.AppCommandError) -> None:
    """A command Discord sent that this process does not know (synced by a newer version,
    say): logged, and the user told."""
    log.warning("/%s could not be run: %s", GROUP, error)
    if not interaction.response.is_done():
        await _reply(interaction, Answer(text=BROKEN))
