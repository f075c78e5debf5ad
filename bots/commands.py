"""The commands people give relaybot, the same on every platform (issue 16).

Platform-neutral: a platform parses its own payload into a :class:`Command` (:func:`parse`)
and an :class:`Invoker`, calls :meth:`Commands.run`, and shows the :class:`Answer`
(ephemeral where the platform allows):

    commands = Commands(store=runtime.store, models=runtime.models,
                        limits=runtime.settings.limits.usage_limits(),
                        admins=frozenset(settings.<platform>.command_admins),
                        stops=runtime.stops, worker=the platform's TurnWorker)
    answer = await commands.run(parse("model fast"), where=Where(platform="slack",
                                workspace="T1", channel="C1", thread=None),
                                invoker=Invoker(user="U1", admin=True))

Channel commands — ``help``, ``model``, ``prompt``, ``usage`` — work anywhere in a channel;
thread commands — ``new``, ``stop`` — need ``where.thread``. An unknown name gets the help.
Channel-wide changes (``model <name>``, ``prompt <text>``, ``prompt reset``) are for the
platform's admins (:attr:`Invoker.admin`) and the users named in ``admins``; anyone may look.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import urlsplit

from bots.replies import NOT_YOURS
from bots.stops import Stops
from core.limits import UsageLimits, check
from core.messages import ConversationKey
from core.models import ModelRegistry
from core.store.base import ConversationStore
from core.store.channels import UNCHANGED, Change, ChannelSettings, PromptTooLong
from core.store.journal import Turn
from core.store.usage import user_key

__all__ = ["NAMES", "Answer", "Command", "Commands", "Invoker", "Where", "help_text", "parse"]

_RESETS = frozenset({"reset", "default"})
"""``model reset`` / ``prompt reset``: back to the configured default."""


@dataclass(frozen=True, slots=True)
class Command:
    """One command as typed: its lower-cased name and the rest of the line."""

    name: str
    """The lower-cased first word; ``""`` for an empty command (it gets the help)."""
    argument: str
    """The rest, stripped (``""`` when none)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Where:
    """Where a command was used, in the parts of a :class:`~core.messages.ConversationKey`."""

    platform: str
    """``"slack"``, ``"discord"`` or ``"console"``."""
    workspace: str
    """The Slack team id, the Discord guild id, ``"local"`` in the console."""
    channel: str
    thread: str | None
    """The thread (conversation) the command was used in, if any."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Invoker:
    """Who used a command."""

    user: str
    """The platform user id."""
    admin: bool
    """A workspace/server admin as the platform says (Slack ``is_admin``, Discord Manage
    Server or administrator); in the console always ``True``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """What to show the invoker: short plain text (``code`` spans at most)."""

    text: str
    ephemeral: bool = True


def parse(text: str) -> Command:
    """``'  Model   fast '`` → ``Command('model', 'fast')``; a leading ``/`` or ``relaybot``
    (the slash command's name, a mention's text) is dropped."""
    rest = text.strip().removeprefix("/").lstrip()
    first, _, tail = rest.partition(" ")
    if first.lower() in {"relaybot", "@relaybot"}:
        rest = tail.strip()
        first, _, tail = rest.partition(" ")
    return Command(name=first.strip().lower(), argument=tail.strip())


class AnsweringWorker(Protocol):
    """The part of a :class:`~bots.turns.TurnWorker` ``stop`` reads: this process's answers."""

    def answering_in(self, key: ConversationKey) -> Turn | None: ...


@dataclass(frozen=True, slots=True)
class _Help:
    name: str
    usage: str
    what: str
    where: str


_HELP = (
    _Help("help", "help", "this list", "anywhere"),
    _Help("model", "model [<name>|reset]", "show or choose this channel's model", "channel"),
    _Help("prompt", "prompt [<text>|reset]", "show or set this channel's instructions", "channel"),
    _Help("usage", "usage", "your tokens today and this month, and the limits", "anywhere"),
    _Help("new", "new", "the next message starts a fresh conversation", "thread"),
    _Help("stop", "stop", "stop the answer being written", "thread"),
)


NAMES = frozenset(item.name for item in _HELP)
"""Every command's name: any other gets the help."""


def help_text() -> str:
    """The command list, one line each, naming where each works."""
    lines = [f"`{item.usage}`: {item.what} ({_WHERE[item.where]})" for item in _HELP]
    return "relaybot commands:\n" + "\n".join(lines)


_WHERE = {
    "anywhere": "anywhere",
    "channel": "in a channel; changing it is for admins",
    "thread": "in a thread",
}


class Commands:
    """Runs commands against the store, the configured models and the running answers."""

    def __init__(
        self,
        *,
        store: ConversationStore,
        models: ModelRegistry,
        limits: UsageLimits,
        admins: frozenset[str],
        stops: Stops,
        worker: AnsweringWorker | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._models = models
        self._limits = limits
        self._admins = admins
        self._stops = stops
        self._worker = worker
        self._clock = clock

    async def run(self, command: Command, *, where: Where, invoker: Invoker) -> Answer:
        """The answer to ``command``, used ``where`` by ``invoker``; changes made first."""
        match command.name:
            case "model":
                text = await self._model(command.argument, where, invoker)
            case "prompt":
                text = await self._prompt(command.argument, where, invoker)
            case "usage":
                text = await self._usage(where, invoker)
            case "new":
                text = await self._new(where)
            case "stop":
                text = await self._stop(where, invoker)
            case _:
                text = help_text()
        return Answer(text=text)

    # -- model ---------------------------------------------------------------------------

    async def _model(self, argument: str, where: Where, invoker: Invoker) -> str:
        if not argument:
            return await self._show_model(where)
        if not self._may_change(invoker):
            return _refusal("choose this channel's model")
        choice: str | None = None if argument.lower() in _RESETS else argument
        if choice is not None and choice not in self._models:
            return f"There is no model `{choice}`. {self._names()}"
        await self._set(where, invoker, model=choice)
        if choice is None:
            return f"This channel is back to the default model, `{self._models.default.name}`."
        return f"From the next message, this channel is answered by `{choice}`."

    async def _show_model(self, where: Where) -> str:
        settings = await self._settings(where)
        model = self._models.get(settings.model) if settings.model else None
        chosen = model or self._models.default
        endpoint = chosen.endpoint
        host = urlsplit(endpoint.base_url).hostname or endpoint.base_url or "an unnamed gateway"
        if endpoint.offline:
            host = "this machine, offline"
        line = f"This channel is answered by {chosen.name} ({endpoint.model} at {host})."
        if settings.model and model is None:
            line += f" Its chosen model `{settings.model}` is no longer configured."
        return f"{line}\n{self._names()}"

    def _names(self) -> str:
        names = ", ".join(f"`{name}`" for name in self._models.names())
        return f"Configured models: {names} (default `{self._models.default.name}`)."

    # -- prompt --------------------------------------------------------------------------

    async def _prompt(self, argument: str, where: Where, invoker: Invoker) -> str:
        if not argument:
            settings = await self._settings(where)
            if settings.prompt is None:
                return "This channel's instructions: none: relaybot's own."
            return f"This channel's instructions:\n{settings.prompt}"
        if not self._may_change(invoker):
            return _refusal("set this channel's instructions")
        reset = argument.lower() == "reset"
        try:
            await self._set(where, invoker, prompt=None if reset else argument)
        except PromptTooLong as error:
            return str(error)
        if reset:
            return "This channel's instructions are back to relaybot's own."
        return "From the next message, this channel is answered with these instructions."

    # -- usage ---------------------------------------------------------------------------

    async def _usage(self, where: Where, invoker: Invoker) -> str:
        now = self._clock()
        used = await self._store.usage(
            user_key(where.platform, where.workspace, invoker.user), now=now
        )
        lines = [f"Your tokens: {used.day:,} today, {used.month:,} this month."]
        limits = self._limits
        if invoker.user in limits.exempt or not limits.active:
            lines.append("You have no limit." if limits.active else "There are no limits.")
        else:
            lines.append(_limit_line("today", limits.daily_tokens, used.day_resets_at, now))
            lines.append(_limit_line("month", limits.monthly_tokens, used.month_resets_at, now))
            refusal = check(used, limits, invoker.user, now=now)
            if refusal is not None:
                lines.append(refusal.message)
        return "\n".join(lines)

    # -- thread commands -----------------------------------------------------------------

    async def _new(self, where: Where) -> str:
        key = _thread_key(where)
        if key is None:
            return "Use `new` in a thread: it starts that thread's conversation afresh."
        await self._store.break_conversation(key)
        return "The next message here starts a fresh conversation."

    async def _stop(self, where: Where, invoker: Invoker) -> str:
        key = _thread_key(where)
        if key is None:
            return "Use `stop` in the thread whose answer you want stopped."
        turn = self._worker.answering_in(key) if self._worker is not None else None
        if turn is None:
            turn = await self._store.unfinished(key)
        if turn is None:
            return "Nothing is being answered here."
        if turn.question.author_id != invoker.user and not self._may_change(invoker):
            return NOT_YOURS
        await self._stops.request(turn.id)
        return "Stopping the answer."

    # -- helpers -------------------------------------------------------------------------

    def _may_change(self, invoker: Invoker) -> bool:
        return invoker.admin or invoker.user in self._admins

    async def _settings(self, where: Where) -> ChannelSettings:
        return await self._store.channel_settings(where.platform, where.workspace, where.channel)

    async def _set(
        self, where: Where, invoker: Invoker, *, model: Change = UNCHANGED,
        prompt: Change = UNCHANGED,
    ) -> None:  # fmt: skip
        await self._store.set_channel_settings(
            where.platform, where.workspace, where.channel, model=model, prompt=prompt,
            by=invoker.user,
        )  # fmt: skip


def _thread_key(where: Where) -> ConversationKey | None:
    if where.thread is None:
        return None
    return ConversationKey(
        platform=where.platform, workspace=where.workspace, channel=where.channel,
        thread=where.thread,
    )  # fmt: skip


def _refusal(action: str) -> str:
    return (
        f"Only workspace admins and the users the bot's settings name may {action}."
        " Anyone may look: use the command without an argument."
    )


def _limit_line(span: str, limit: int | None, resets_at: float, now: float) -> str:
    """``Limit today: 50,000 tokens; resets at 00:00 UTC (2024-05-02).``"""
    if limit is None:
        return f"No limit {'for the day' if span == 'today' else 'this month'}."
    when = datetime.fromtimestamp(resets_at, UTC)
    label = "today" if span == "today" else "this month"
    del now
    return f"Limit {label}: {limit:,} tokens; resets {when:%Y-%m-%d} at {when:%H:%M} UTC."
