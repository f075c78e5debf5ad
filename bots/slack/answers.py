"""Slack as the turn worker's platform: a taken turn made ready, and where its answer shows.

The listener accepts a message with Slack's raw text before acknowledging the event; what
needs Slack's Web API comes here, once the worker has taken the turn (:meth:`SlackAnswers.prepare`):

- the asker's name and time zone and the mentioned people's names (``users.info``, cached), and
  the raw text in plain words, saved as the turn's question (``store.revise_question``) — once:
  a question accepted with no ``author_name`` has not been revised yet;
- a message too long: a notice instead of an answer. Length comes first, before any name is
  looked up, and a message's mentions cost 50 lookups at most: the rest read as ``@unknown``;
- the message's files, downloaded with the bot token (:class:`~bots.downloads.Downloader`:
  Slack's file hosts only) and saved with the question — images, texts, and a note for each
  file that was skipped, which the asker also reads in the thread
  (:data:`FILES_SKIPPED`). A message of files alone is answered about them. A mention whose
  event left its files out (:attr:`~bots.slack.messages.SlackMessage.files_left_out`) has its
  message read back for them;
- a thread the bot is called into mid-way: read back from ``conversations.replies`` before its
  first turn — the thread was unknown when the message was accepted, and the turn's history
  is its question alone (so not after its messages were deleted, nor for a second message
  accepted meanwhile) — without the bot's own placeholder, notices or an answer still being
  written;
- in a DM, the assistant status "is thinking…" where Slack allows it (then no placeholder).

What the listener learned of a message that the journal does not keep (its attachments, whether
it is a DM, whether its thread was new) waits here in memory, by turn id, until the worker is
done with the turn. A turn recovered after a restart has none of it: its text is answered.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from adapters.budget import EditBudget, Rate
from adapters.live import LiveReply
from adapters.reply_mix import ReplyMix
from adapters.slack_stream import SlackStream
from adapters.slack_surface import SlackSurface
from adapters.stream_reply import Reply, StreamingRefused, StreamReply
from adapters.surface import MessageRef, Surface
from bots import replies
from bots.downloads import Downloader, RemoteFile
from bots.replies import ONLY_A_MENTION, ONLY_FILES, THINKING, TOO_LONG
from bots.slack.messages import (
    UNKNOWN,
    authors,
    mentioned_users,
    plain_text,
    remote_files,
    thread_history,
)
from bots.slack.settings import SlackSettings
from bots.slack.workspace import Identity, Workspace
from core.messages import Attachment, ConversationKey, FileNote, UserMessage
from core.store import ConversationStore, Lease, Turn

__all__ = [
    "ASSISTANT_STATUS",
    "FEEDBACK_ACTION",
    "FILES_SKIPPED",
    "Asked",
    "SlackAnswers",
    "feedback_blocks",
]

log = logging.getLogger("relaybot.slack")

ASSISTANT_STATUS = "is thinking…"
FILES_SKIPPED = "I couldn't read everything you attached. {notes}"
"""Told in the thread, before the answer, when files were skipped: ``notes`` are their notes
(``"a.zip" was skipped: relaybot cannot read this type of file.``), which the model reads too."""
NOTICES = (*(getattr(replies, name) for name in replies.__all__), FILES_SKIPPED)
"""Everything the bot posts that is not an answer: never read back as one."""
MAX_WAITING = 10_000
"""Accepted turns whose listener facts are kept at most (the oldest are dropped: their turns
are then answered as recovered ones)."""


FEEDBACK_ACTION = "relaybot_feedback"


def feedback_blocks(turn_id: int) -> list[dict[str, Any]]:
    """Slack's 👍/👎 feedback buttons, shown under a finished answer; each button's value
    names the turn and the vote (``good:12``, ``bad:12``)."""

    def button(label: str, value: str, accessible: str) -> dict[str, Any]:
        text = {"type": "plain_text", "text": label}
        return {"text": text, "value": f"{value}:{turn_id}", "accessibility_label": accessible}

    element = {
        "type": "feedback_buttons", "action_id": FEEDBACK_ACTION,
        "positive_button": button("Good answer", "good", "Mark this answer as good"),
        "negative_button": button("Bad answer", "bad", "Mark this answer as bad"),
    }  # fmt: skip
    return [{"type": "context_actions", "elements": [element]}]


TITLE_LENGTH = 60
"""The longest thread title taken from a question (Slack shows a line of it)."""


def _title(turn: Turn) -> str:
    """A DM thread's title: its first question, its first line, cut at a word."""
    line = turn.question.text.strip().splitlines()[0] if turn.question.text.strip() else ""
    if len(line) <= TITLE_LENGTH:
        return line or "New conversation"
    cut = line.rfind(" ", 0, TITLE_LENGTH)
    return line[: cut if cut > TITLE_LENGTH // 2 else TITLE_LENGTH - 1] + "…"


@dataclass(frozen=True, slots=True, kw_only=True)
class Asked:
    """What the listener learned of an accepted message that the journal does not keep."""

    files: tuple[RemoteFile, ...] = ()
    files_left_out: bool = False
    """The event said the message has files but did not list them: read it back for them."""
    direct: bool = False
    new_thread: bool = True
    """The thread was not known when the message was accepted (not known: it may be)."""


class SlackAnswers:
    """The worker's :class:`~bots.turns.Platform` for Slack (see the module docstring)."""

    def __init__(
        self,
        *,
        workspace: Workspace,
        store: ConversationStore,
        settings: SlackSettings,
        surface_client: AsyncWebClient,
        budget: EditBudget,
        show_reasoning: bool,
        downloader: Downloader,
        rates: Mapping[str, Rate] | None = None,
    ) -> None:
        self._workspace = workspace
        self._downloader = downloader
        self._store = store
        self._settings = settings
        self._surface_client = surface_client
        self._budget = budget
        self._show_reasoning = show_reasoning
        self._asked: dict[int, Asked] = {}
        self._status_shown: set[int] = set()
        self._answering: dict[tuple[str, str], int] = {}  # (thread, message ts) -> turn id
        self._no_streaming: set[str] = set()  # workspaces where Slack refused native streaming
        self._native: dict[int, bool] = {}  # turn id -> streams natively (its start paid)
        self._mix = ReplyMix(budget, rates)
        self._live: dict[int, str] = {}  # turn id -> the budget scope its answer spends from
        self.on_stop: Callable[[int], None] = lambda turn_id: None
        """What Slack's own Stop on a native stream does (the bot's Stop path, by turn id)."""

    def asked(self, turn: Turn, asked: Asked) -> None:
        """Keep what the listener learned of ``turn`` until the worker is done with it."""
        if len(self._asked) >= MAX_WAITING:
            del self._asked[next(iter(self._asked))]
        self._asked[turn.id] = asked

    def answering(self, key: ConversationKey, ts: str) -> int | None:
        """The turn answering the message ``ts`` of the thread, while it is being answered."""
        return self._answering.get((str(key), ts))

    # --- the Platform protocol ---------------------------------------------------------------

    async def prepare(self, lease: Lease) -> Lease | str:
        turn = lease.turn
        key = turn.key
        self._answering[(str(key), turn.order)] = turn.id
        asked = self._asked.get(turn.id) or Asked(direct=key.channel.startswith("D"))
        me = await self._workspace.identity()
        asker = await self._workspace.person(turn.question.author_id or "")
        if turn.question.author_name is None:  # as accepted: Slack's markup, no names yet
            lease, notice = await self._revised(lease, asked, me, asker_name=asker.name)
            if notice is not None:
                return notice
        if asked.new_thread and key.thread != turn.order and await self._first(lease):
            await self._rebuild(lease, me)
        if asked.direct and key.thread == turn.order:  # a DM's first message: name the thread
            await self._workspace.set_title(key.channel, key.thread, _title(lease.turn))
        if asked.direct and await self._workspace.set_status(
            key.channel, key.thread, ASSISTANT_STATUS, loading=self._settings.loading_messages
        ):
            self._status_shown.add(turn.id)
        self._native[turn.id] = await self._streams(turn)
        return replace(lease, turn=replace(lease.turn, timezone=asker.timezone))

    async def surface(self, turn: Turn) -> SlackSurface:
        key = turn.key
        return SlackSurface(
            self._surface_client, channel=key.channel, thread_ts=key.thread, team=key.workspace,
            stop_value=str(turn.id), answer_blocks=feedback_blocks(turn.id),
            edit_interval=self._settings.edit_interval,
        )  # fmt: skip

    def reply(
        self,
        turn: Turn,
        surface: Surface,
        *,
        on_gone: Callable[[], None],
        on_posted: Callable[[tuple[MessageRef, ...]], Awaitable[None]],
    ) -> Reply:
        def edited() -> LiveReply:
            return LiveReply(
                surface, self._budget,
                placeholder=None if turn.id in self._status_shown else THINKING,
                show_reasoning=self._show_reasoning, on_gone=on_gone, on_posted=on_posted,
                name=f"slack {turn.key} turn {turn.id}",
            )  # fmt: skip

        key = turn.key
        if not self._native.pop(turn.id, False):  # recovered deliveries are edited
            self._counted(turn, f"slack.workspace:{key.workspace}")
            return edited()
        self._counted(turn, f"slack.stream.append:{key.workspace}")
        direct = key.channel.startswith("D")
        stream = SlackStream(
            self._surface_client, channel=key.channel, thread_ts=key.thread, team=key.workspace,
            recipient=None if direct else (turn.question.author_id or "", key.workspace),
            append_interval=self._settings.edit_interval,
        )  # fmt: skip
        return StreamReply(
            stream, self._budget, blocks=feedback_blocks(turn.id), on_gone=on_gone,
            on_stop=lambda: self.on_stop(turn.id), on_posted=on_posted, fallback=edited,
            on_refused=lambda refused: self._refused(key.workspace, refused), start_paid=True,
            name=f"slack {turn.key} turn {turn.id} (streamed)",
        )  # fmt: skip

    def _counted(self, turn: Turn, scope: str) -> None:
        """The answer is live, spending from ``scope``, until the turn is finished."""
        if (was := self._live.pop(turn.id, None)) is not None:
            self._mix.ended(was)
        self._live[turn.id] = scope
        self._mix.began(scope)

    async def _streams(self, turn: Turn) -> bool:
        """Whether the turn's answer streams natively (``[slack] streaming``): ``native`` where
        Slack allows it; ``auto`` in DMs, while :class:`~adapters.reply_mix.ReplyMix` finds the
        workspace's append budget no more crowded per answer than its ``chat.update`` budget
        and a start is free — taken now, for this answer (a burst of answers edits instead of
        queueing behind Slack's 20 starts a minute, and two answers never count on one
        start)."""
        mode, team = self._settings.streaming, turn.key.workspace
        if mode == "edit" or team in self._no_streaming:
            return False
        start = (f"slack.stream.start:{team}",)
        if mode == "native":
            await self._budget.acquire(start)
            return True
        return turn.key.channel.startswith("D") and await self._mix.streams(
            start=start, append=f"slack.stream.append:{team}", edit=f"slack.workspace:{team}"
        )

    def _refused(self, team: str, refused: StreamingRefused) -> None:
        if team not in self._no_streaming:
            self._no_streaming.add(team)
            log.warning("Slack refused native streaming in %s (%s): answers there are edited "
                        "messages from now on", team, refused.code)  # fmt: skip

    async def finished(self, turn: Turn) -> None:
        self._asked.pop(turn.id, None)
        self._native.pop(turn.id, None)
        if (scope := self._live.pop(turn.id, None)) is not None:
            self._mix.ended(scope)
        self._status_shown.discard(turn.id)
        self._answering.pop((str(turn.key), turn.order), None)

    # --- preparing -----------------------------------------------------------------------------

    async def _revised(
        self, lease: Lease, asked: Asked, me: Identity, *, asker_name: str
    ) -> tuple[Lease, str | None]:
        """The question in plain words, saved; or a notice to show instead of an answer (the
        worker then drops the question: nothing to save). The length is checked before any name
        is looked up, with every mention as ``@unknown``: a message made of thousands of
        mentions is refused without a single ``users.info`` call."""
        question = lease.turn.question
        limit = self._settings.max_input_chars
        if (length := len(_plain(question.text, me, names={}))) > limit:
            return lease, TOO_LONG.format(length=length, limit=limit)
        text = _plain(question.text, me, names=await self._names(question, me, asker_name))
        if len(text) > limit:
            return lease, TOO_LONG.format(length=len(text), limit=limit)
        attachments = await self._attachments(lease.turn, asked)
        revised = UserMessage(
            text=text or (ONLY_FILES if attachments else ONLY_A_MENTION),
            author_id=question.author_id, author_name=asker_name, attachments=attachments,
        )  # fmt: skip
        return await self._store.revise_question(lease, revised), None

    async def _attachments(self, turn: Turn, asked: Asked) -> tuple[Attachment, ...]:
        """The message's files as the question carries them; the asker is told, in one short
        notice, which were skipped and why."""
        key = turn.key
        files = asked.files
        if not files and asked.files_left_out:
            message = await self._workspace.message(key.channel, key.thread, turn.order)
            files = remote_files((message or {}).get("files"))
        if not files:
            return ()
        attachments = await self._downloader.fetch_all(files)
        if notes := [a.note for a in attachments if isinstance(a, FileNote)]:
            notice = FILES_SKIPPED.format(notes=" ".join(notes))
            await self._workspace.say(key.channel, key.thread, notice)
        return attachments

    async def _names(self, question: UserMessage, me: Identity, asker_name: str) -> dict[str, str]:
        """Names of the people ``question`` mentions. The asker's is known already and the bot's
        mention is removed: neither takes one of the lookups (at most
        :data:`~bots.slack.workspace.NAMES_AT_ONCE`)."""
        asker = question.author_id or ""
        others = (u for u in mentioned_users(question.text) if u not in (me.user_id, asker))
        known = {asker: asker_name} if asker else {}
        return await self._workspace.names(others) | known

    async def _first(self, lease: Lease) -> bool:
        """Nothing of the thread is stored before the turn's question: it is the thread's first
        accepted message (a second one accepted meanwhile reads the first's question here)."""
        return len(await self._store.history(lease)) == 1

    async def _rebuild(self, lease: Lease, me: Identity) -> None:
        """The store has nothing of a thread the bot was called into: read it back from Slack,
        before the thread's first turn."""
        key = lease.turn.key
        thread = await self._workspace.thread(key.channel, key.thread)
        names = await self._workspace.names(authors(thread) - {me.user_id or ""})
        history = thread_history(
            thread, before=lease.turn.order, bot_user_id=me.user_id, bot_id=me.bot_id,
            names=names, notices=NOTICES,
        )  # fmt: skip
        if history:
            await self._store.append(key, history)
            log.info("rebuilt %d messages of %s from Slack", len(history), key)


def _plain(text: str, me: Identity, *, names: Mapping[str, str]) -> str:
    """Slack's markup as the model reads it: the bot's mention removed, a person not in
    ``names`` as ``@unknown``."""
    return plain_text(text, bot_user_id=me.user_id, names=names, unknown=UNKNOWN)
