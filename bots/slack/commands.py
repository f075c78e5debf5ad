"""relaybot's commands on Slack: the ``/relaybot`` slash command and ``@relaybot new|stop``.

The commands themselves are platform-neutral (:mod:`bots.commands`); this module reads Slack's
payloads into a :class:`~bots.commands.Command`, a :class:`~bots.commands.Where` and an
:class:`~bots.commands.Invoker` (its ``admin`` flag from ``users.info``, cached by the
:class:`~bots.slack.workspace.Workspace`), and shows the answer to the invoker alone.

- ``/relaybot <subcommand>`` — the channel commands (``help``, ``model``, ``prompt``,
  ``usage``). Slack does not allow slash commands in threads, so ``where.thread`` is ``None``.
  The listener acknowledges at once and the command runs in a task this module owns: a store
  or ``users.info`` that is slow must not make Slack tell the user the command failed (it
  gives an app 3 seconds). The answer goes to the command's ``response_url`` as an ephemeral
  message: unlike ``chat.postEphemeral``, it works in every channel and DM the command can be
  used in, including those the bot is not a member of.
- ``@relaybot new`` / ``@relaybot stop`` — the thread commands, said as a mention whose words
  are exactly ``new`` or ``stop``. Such a message is a command, never a question: it is not
  accepted as a turn. Its ``app_mention`` and ``message`` events, and Slack's re-deliveries,
  share one claim in the store (the id a turn would be claimed under), so it runs once on
  whichever worker gets it first. The answer is a ``chat.postEphemeral`` to the invoker, in
  the thread (at the channel's top level for a mention that starts no thread: Slack shows an
  ephemeral message in a thread only when the thread already exists).
- the message shortcuts "Stop answer" and "New conversation" (a message's ⋮ menu): ``stop``
  and ``new`` for the thread of the message they were used on, answered as the slash command
  is.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bots.commands import Answer, Command, Commands, Invoker, Where, parse
from bots.replies import MEMORY_DOWN
from bots.slack.messages import SlackMessage, plain_text
from bots.slack.workspace import SLACK_FAILURES, Workspace, failure_reason
from bots.tasks import TaskOwner
from core.metrics import PLATFORM_CALLS
from core.store import ConversationStore, StoreError

__all__ = [
    "PLATFORM",
    "SHORTCUTS",
    "SLASH_COMMAND",
    "THREAD_COMMANDS",
    "SlackCommands",
    "thread_command",
]

log = logging.getLogger("relaybot.slack")

PLATFORM: Final = "slack"
"""``Where.platform``: the platform part of Slack's conversation keys."""
SLASH_COMMAND: Final = "/relaybot"
"""The slash command, as the app manifests declare it."""
THREAD_COMMANDS: Final = frozenset({"new", "stop"})
"""What a mention may say, alone, to be a command instead of a question."""
SHORTCUTS: Final = {"relaybot_stop": "stop", "relaybot_new": "new"}
"""The message shortcuts' callback ids (as the manifests declare them) and their commands."""
CLAIM_TTL: Final = 24 * 3600.0
"""Seconds a command's message stays claimed: Slack re-delivers an event for minutes."""


def thread_command(message: SlackMessage, *, bot_user_id: str | None) -> Command | None:
    """The thread command ``message`` gives — a mention of the bot whose words are exactly
    ``new`` or ``stop``, in any case — or ``None`` for anything else (a question)."""
    if not message.mentions_bot:
        return None
    words = plain_text(message.text, bot_user_id=bot_user_id, names={}).strip().lower()
    if words not in THREAD_COMMANDS:
        return None
    return Command(name=words, argument="")


class SlackCommands:
    """The Slack side of :class:`~bots.commands.Commands`: payloads in, ephemeral notes out.
    Its tasks belong to ``tasks`` (the bot's, cancelled when the bot closes)."""

    def __init__(
        self,
        commands: Commands,
        *,
        store: ConversationStore,
        workspace: Workspace,
        client: AsyncWebClient,
        tasks: TaskOwner,
    ) -> None:
        self._commands = commands
        self._store = store
        self._workspace = workspace
        self._client = client
        self._tasks = tasks

    # --- /relaybot ----------------------------------------------------------------------------

    async def on_slash(self, ack: AsyncAck, command: dict[str, Any], respond: AsyncRespond) -> None:
        """bolt's listener for ``/relaybot``: acknowledged at once, answered from a task."""
        await ack()
        user = str(command.get("user_id") or "")
        where = Where(
            platform=PLATFORM, workspace=str(command.get("team_id") or ""),
            channel=str(command.get("channel_id") or ""), thread=None,
        )  # fmt: skip
        if not (user and where.channel):
            return
        parsed = parse(str(command.get("text") or ""))
        self._tasks.spawn(
            self._slash(parsed, where, user, respond), name=f"slack command {parsed.name}"
        )

    async def _slash(
        self, command: Command, where: Where, user: str, respond: AsyncRespond
    ) -> None:
        answer = await self._run(command, where, user)
        try:
            sent = await respond(text=answer.text, response_type="ephemeral")
        except SLACK_FAILURES as error:
            log.warning("could not answer /relaybot in %s: %s", where.channel, type(error).__name__)
            return
        if sent.status_code != 200:
            log.warning(
                "Slack refused the answer to /relaybot in %s: HTTP %d (%s)",
                where.channel, sent.status_code, sent.body[:200],
            )  # fmt: skip

    # --- the message shortcuts ----------------------------------------------------------------

    async def on_shortcut(
        self, ack: AsyncAck, shortcut: dict[str, Any], respond: AsyncRespond
    ) -> None:
        """bolt's listener for the message shortcuts "Stop answer" and "New conversation":
        the thread of the message they were used on, answered privately from a task."""
        await ack()
        name = SHORTCUTS.get(str(shortcut.get("callback_id") or ""))
        user = str((shortcut.get("user") or {}).get("id") or "")
        channel = str((shortcut.get("channel") or {}).get("id") or "")
        message = shortcut.get("message") or {}
        thread = str(message.get("thread_ts") or message.get("ts") or "")
        if name is None or not (user and channel and thread):
            return
        team = str((shortcut.get("team") or {}).get("id") or "")
        where = Where(platform=PLATFORM, workspace=team, channel=channel, thread=thread)
        self._tasks.spawn(
            self._slash(Command(name=name, argument=""), where, user, respond),
            name=f"slack shortcut {name}",
        )

    # --- @relaybot new | stop -----------------------------------------------------------------

    async def heard(self, message: SlackMessage, *, bot_user_id: str | None) -> bool:
        """True when ``message`` is a thread command (then it is run, once, and must not be
        accepted as a turn). The claim is taken before bolt acknowledges the event: a store
        that fails raises, and Slack sends the event again."""
        command = thread_command(message, bot_user_id=bot_user_id)
        if command is None:
            return False
        claim = f"slack:{message.team}:{message.channel}:{message.ts}"
        try:
            first = await self._store.claim(claim, CLAIM_TTL)
        except StoreError as error:  # logged here: bolt's error handler skips a StoreError
            log.warning("could not claim the command %s: %s", claim, error)
            raise
        if not first:
            return True  # the other event of this message, or a re-delivery
        thread = message.thread_ts if message.in_thread else None
        where = Where(platform=PLATFORM, workspace=message.team, channel=message.channel,
                      thread=thread)  # fmt: skip
        self._tasks.spawn(
            self._in_thread(command, where, message.user), name=f"slack command {command.name}"
        )
        return True

    async def _in_thread(self, command: Command, where: Where, user: str) -> None:
        answer = await self._run(command, where, user)
        await self._whisper(where.channel, user, where.thread, answer.text)

    async def _whisper(self, channel: str, user: str, thread: str | None, text: str) -> None:
        """A note only ``user`` sees, in ``thread`` or at the channel's top level."""
        try:
            await self._client.chat_postEphemeral(
                channel=channel, user=user, text=text, thread_ts=thread
            )
        except SLACK_FAILURES as error:
            _count("error")
            log.warning("could not answer a command in %s: %s", channel, failure_reason(error))
            return
        _count("ok")

    # --- both ---------------------------------------------------------------------------------

    async def _run(self, command: Command, where: Where, user: str) -> Answer:
        """The command's answer; a store that fails is logged and told as :data:`MEMORY_DOWN`."""
        person = await self._workspace.person(user)
        invoker = Invoker(user=user, admin=person.admin)
        try:
            return await self._commands.run(command, where=where, invoker=invoker)
        except StoreError as error:
            log.warning("command %r in %s failed: %s", command.name, where.channel, error)
            return Answer(text=MEMORY_DOWN)


def _count(result: str) -> None:
    """Counted as the workspace and the surfaces count their calls (``relaybot_platform_calls``)."""
    PLATFORM_CALLS.labels(platform="slack", method="chat.postEphemeral", result=result).inc()
