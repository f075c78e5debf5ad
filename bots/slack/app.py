"""The Slack bot: slack-bolt's ``AsyncApp`` in, accepted turns and live replies out.

Who it answers:

- an ``app_mention`` in a channel: the conversation is the thread under that message (or the
  thread it was posted in);
- a direct message: each top-level DM starts a conversation answered in its thread, and
  replies in that thread continue it;
- with ``follow_ups`` (the default), a message in a channel thread the bot is part of (a
  message of it was accepted, or the store holds the thread) or under one of its own messages,
  without a new mention.

People's messages only: bots (itself included), edits, deletions and joins never start a turn
(:func:`bots.slack.messages.user_message`). ``allowed_channels`` / ``allowed_users`` restrict
where and whom it answers. A deleted message (``message_deleted``) is forgotten: its question
and answer leave the thread's history, and an answer to it being written stops.

How: the listener *accepts* a message before bolt acknowledges the event
(``process_before_response=True``): in one store transaction it claims
``slack:team:channel:ts``, saves Slack's raw text and queues a turn (the journal,
:mod:`core.store.journal`), then wakes the :class:`~bots.turns.TurnWorker`. The ``app_mention``
and ``message`` events of one message, and a re-delivered event, claim the same id: once. If
accepting fails the listener raises, bolt answers 500 (HTTP) or sends no acknowledgement
(Socket Mode), and Slack's retry brings the event back; the asker reads
:data:`~bots.replies.MEMORY_DOWN` in the thread meanwhile (once per message), and the failure
is logged once per kind. Everything that calls Slack comes
after, when the worker takes the turn (:class:`bots.slack.answers.SlackAnswers`: names, the
time zone, attachments, a thread read back) and streams it through a ``LiveReply`` on a
``SlackSurface``: the assistant status "is thinking…" in a DM where Slack allows it, else a
"Thinking…" placeholder, then the growing answer with a Stop button (its value: the turn id).
Stop cancels that answer (what was said is kept, marked stopped) when the asker or a
workspace admin presses it, on whichever process writes it (:mod:`bots.stops`); anyone else
gets an ephemeral note. A turn whose process died is finished by the next one (the worker's
recovery).

Two Web API clients share one HTTP session: the bot's own calls retry 429s in the client
(``AsyncRateLimitErrorRetryHandler``); the surface's client must not — ``LiveReply`` waits out
a reply's rate limit itself.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import httpx2
from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncRateLimitErrorRetryHandler,
    async_default_handlers,
)
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack_surface import STOP_ACTION
from bots.commands import Commands
from bots.downloads import Downloader
from bots.feedback import record as record_feedback
from bots.readiness import Readiness
from bots.replies import FEEDBACK_THANKS, MEMORY_DOWN, NOT_YOURS
from bots.runtime import Runtime, edit_rates
from bots.slack.answers import ASSISTANT_STATUS, FEEDBACK_ACTION, Asked, SlackAnswers
from bots.slack.commands import SHORTCUTS, SlackCommands
from bots.slack.messages import Deletion, SlackMessage, deletion, user_message
from bots.slack.settings import SlackSettings
from bots.slack.workspace import Workspace
from bots.store_faults import StoreFaults
from bots.tasks import TaskOwner
from bots.turns import TurnWorker, worker_timing
from core.messages import ConversationKey, UserMessage
from core.settings import SettingsError
from core.store import StoreError

__all__ = [
    "ASSISTANT_STATUS",
    "FILE_HOSTS",
    "SlackBot",
    "bot_token",
    "event_id",
    "file_downloader",
    "slack_bot",
]

log = logging.getLogger("relaybot.slack")

SLACK_API = AsyncWebClient.BASE_URL
FILE_HOSTS = ("files.slack.com", "slack-files.com")
"""Where Slack serves ``url_private``: the only hosts files are fetched from, with the bot
token (and the host of ``[slack] api_url`` when it is set)."""
CLAIM_TTL = 24 * 3600.0
"""Seconds a message stays claimed: Slack re-delivers an event for a few minutes at most."""
PLATFORM = "Slack"
NOTICED_LIMIT = 10_000
"""Messages remembered as told :data:`~bots.replies.MEMORY_DOWN` (the oldest are forgotten):
Slack re-delivers an event for minutes, so the last few thousand are plenty."""


class SlackBot:
    """The bolt app and the worker answering what it accepts. Build it with :func:`slack_bot`
    (which starts the worker)."""

    def __init__(
        self, runtime: Runtime, *, client: AsyncWebClient, surface_client: AsyncWebClient
    ) -> None:
        self._store = runtime.store
        self._stops = runtime.stops
        self._settings = runtime.settings.slack
        self.workspace = Workspace(client, cache_seconds=self._settings.user_cache_seconds)
        budget = runtime.budget
        self._answers = SlackAnswers(
            workspace=self.workspace, store=runtime.store, settings=self._settings,
            surface_client=surface_client, budget=budget,
            show_reasoning=runtime.settings.llm.show_reasoning,
            downloader=file_downloader(runtime), rates=edit_rates(runtime.settings),
        )  # fmt: skip
        self.worker = TurnWorker(
            store=runtime.store, engine=runtime.engine, platform=self._answers, budget=budget,
            timing=worker_timing(runtime.settings.store), name="slack", stops=runtime.stops,
            limits=runtime.settings.limits.usage_limits(),
        )  # fmt: skip
        self._grace = runtime.settings.runtime.shutdown_grace
        self._tasks = TaskOwner(log)  # Stop presses, commands
        commands = Commands(
            store=runtime.store, models=runtime.models,
            limits=runtime.settings.limits.usage_limits(),
            admins=frozenset(self._settings.command_admins), stops=runtime.stops,
            worker=self.worker,
        )  # fmt: skip
        self._commands = SlackCommands(
            commands, store=runtime.store, workspace=self.workspace, client=client,
            tasks=self._tasks,
        )  # fmt: skip
        self._faults = StoreFaults(log)
        self._noticed = _Once(limit=NOTICED_LIMIT)
        self.readiness = Readiness(
            runtime.store, gateway_url=runtime.endpoint.base_url, http=runtime.http
        )
        secret = self._settings.signing_secret
        self.app = AsyncApp(
            client=client,
            signing_secret=secret.get_secret_value() if secret is not None else "",
            process_before_response=True,
            # bolt names a logger after the app and copies its own logger's level and
            # filters onto it on every request: not "relaybot", the root of ours
            name="relaybot.slack.app",
            logger=_bolt_logger(),
        )
        self.app.event("app_mention")(self._on_message)
        self.app.event("message")(self._on_message)
        self.app.event("app_home_opened")(self._on_home_opened)
        self.app.event("agent_session_stopped")(self._on_session_stopped)
        self.app.action(FEEDBACK_ACTION)(self._on_feedback)
        self.app.command("/relaybot")(self._commands.on_slash)
        for callback_id in SHORTCUTS:
            self.app.shortcut(callback_id)(self._commands.on_shortcut)
        self._answers.on_stop = self._stopped_by_slack
        self.app.action(STOP_ACTION)(self._on_stop)
        self.app.error(self._on_error)

    @property
    def settings(self) -> SlackSettings:
        """The ``[slack]`` settings it runs with."""
        return self._settings

    @property
    def busy(self) -> int:
        """Threads being answered right now."""
        return self.worker.busy

    async def start(self) -> None:
        """Finish what a previous process left (the worker's recovery), then keep watching."""
        await self.worker.start()

    async def close(self) -> None:
        """Stop within ``[runtime] shutdown_grace``: answers being written end, or go back to
        the queue for the next start, saying so (:meth:`TurnWorker.shutdown`)."""
        await self._tasks.close()
        await self.worker.shutdown(self._grace)

    # --- listeners: accept before bolt acknowledges -----------------------------------------

    async def _on_message(
        self, body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        """Accept a message to answer (or forget a deleted one). A store that fails raises:
        the event is not acknowledged, and Slack sends it again — and a message the bot would
        answer is told :data:`~bots.replies.MEMORY_DOWN` in its thread, once however often it
        comes. The failure is logged once per kind (:class:`~bots.store_faults.StoreFaults`)."""
        team = context.team_id or str(body.get("team_id") or "")
        if (gone := deletion(event)) is not None:
            await self._forget(team, gone)
            return
        message = user_message(event, team=team, bot_user_id=context.bot_user_id)
        if message is None or not self._may_answer(message):
            return
        if await self._commands.heard(message, bot_user_id=context.bot_user_id):
            return  # "@relaybot new" / "@relaybot stop": a command, not a question
        mine = context.bot_user_id is not None and message.parent_user == context.bot_user_id
        await self._accept(message, addressed=message.mentions_bot or message.direct or mine)

    async def _accept(self, message: SlackMessage, *, addressed: bool) -> None:
        """The message as a queued turn, if the bot is part of its thread (``addressed``, or
        the store knows the thread), and the worker woken."""
        key = ConversationKey(
            platform="slack", workspace=message.team, channel=message.channel,
            thread=message.thread,
        )  # fmt: skip
        known = False
        try:
            known = await self._store.known(key)
            if not (addressed or known):
                return  # a thread the bot is not part of
            turn = await self._store.accept(
                event_id=event_id(message), key=key, order=message.ts,
                question=UserMessage(text=message.text, author_id=message.user),  # no name yet
                platform=PLATFORM, claim_ttl=CLAIM_TTL,
            )  # fmt: skip
        except StoreError as error:
            await self._memory_down(message, error, tell=addressed or known)
            raise
        self._faults.worked()
        if turn is None:
            return  # accepted already (the other event of this message, or a retry)
        asked = Asked(
            files=message.files, files_left_out=message.files_left_out, direct=message.direct,
            new_thread=not known,
        )  # fmt: skip
        self._answers.asked(turn, asked)
        self.worker.wake(key)

    async def _memory_down(self, message: SlackMessage, error: StoreError, *, tell: bool) -> None:
        """Log the store's failure; tell the asker in the thread, once per message (both of
        its events, and every re-delivery, share its id). A message of a thread the bot may
        not be part of (the store could not say) is told nothing."""
        self._faults.failed(error, f"accepting {event_id(message)}")
        if tell and self._noticed.first(event_id(message)):
            await self.workspace.say(message.channel, message.thread, MEMORY_DOWN)

    async def _forget(self, team: str, gone: Deletion) -> None:
        key = ConversationKey(
            platform="slack", workspace=team, channel=gone.channel, thread=gone.thread
        )
        try:
            await self._store.forget_message(key, gone.ts)
        except StoreError as error:
            self._faults.failed(error, f"forgetting deleted message {gone.ts} of {key}")
            raise
        if (turn_id := self._answers.answering(key, gone.ts)) is not None:
            self.worker.stop(turn_id)  # its answer stops at once, not at the next write

    async def _on_home_opened(self, event: dict[str, Any]) -> None:
        """Someone opened the bot's messages tab: offer the suggested prompts there."""
        channel = str(event.get("channel") or "")
        if event.get("tab") == "messages" and channel:
            await self.workspace.suggest(channel, self._settings.suggested_prompts)

    async def _on_session_stopped(
        self, body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        """Slack's own Stop, on an agent session: the thread's answer stops as by the Stop
        button (by the asker or an admin, on whichever process writes it)."""
        team = context.team_id or str(body.get("team_id") or "")
        key = ConversationKey(
            platform="slack", workspace=team, channel=str(event.get("channel") or ""),
            thread=str(event.get("thread_ts") or ""),
        )  # fmt: skip
        presser = str(event.get("user") or "")
        turn = self.worker.answering_in(key)
        if turn is None:
            try:
                turn = await self._store.unfinished(key)
            except StoreError as error:
                log.info("Slack's Stop in %s ignored: %s", key, error)
                return
        if turn is not None:
            self._tasks.spawn(self._stop(turn.id, presser), name=f"slack stop {turn.id}")

    def _stopped_by_slack(self, turn_id: int) -> None:
        """A native stream answered ``stopped_by_user``: Slack's Stop was pressed, and its
        ``agent_session_stopped`` says by whom; until it comes, nothing more is appended."""
        log.info("Slack stopped the stream of turn %d", turn_id)

    async def _on_feedback(
        self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]
    ) -> None:
        """A 👍/👎 under an answer: stored with the turn (once per person; pressing the other
        changes the vote), and thanked for with a note only the presser sees."""
        await ack()
        user = str((body.get("user") or {}).get("id") or "")
        vote, _, turn_id = str(action.get("value") or "").partition(":")
        if vote not in ("good", "bad") or not turn_id.isdigit() or not user:
            return
        try:
            await record_feedback(self._store, int(turn_id), user, vote == "good")
        except StoreError as error:
            log.warning("feedback on turn %s not stored: %s", turn_id, error)
            return
        container = body.get("container") or {}
        channel = str(container.get("channel_id") or "")
        thread = str(container.get("thread_ts") or container.get("message_ts") or "")
        if channel:
            await self.workspace.whisper(channel, user, thread, FEEDBACK_THANKS)

    async def _on_error(self, error: Exception) -> None:
        """bolt's error handler: a store failure was logged already (once per kind, not a
        traceback per event); anything else is logged here. bolt answers 500 either way."""
        if not isinstance(error, StoreError):
            log.error("a Slack listener failed: %s", error, exc_info=error)

    def _may_answer(self, message: SlackMessage) -> bool:
        settings = self._settings
        if settings.allowed_users and message.user not in settings.allowed_users:
            return False
        if message.direct:
            return settings.direct_messages
        if settings.allowed_channels and message.channel not in settings.allowed_channels:
            return False
        return message.mentions_bot or (settings.follow_ups and message.in_thread)

    async def _on_stop(self, ack: AsyncAck, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        presser = str((body.get("user") or {}).get("id") or "")
        value = str(action.get("value") or "")
        if value.isdigit():
            self._tasks.spawn(self._stop(int(value), presser), name=f"slack stop {value}")

    async def _stop(self, turn_id: int, presser: str) -> None:
        """A Stop press: by the asker or an admin, it is requested of whichever process
        writes the answer (:mod:`bots.stops`), this one or another."""
        turn = self.worker.answering(turn_id)
        if turn is None:  # another worker may write it: the journal knows its asker
            try:
                turn = await self._store.turn(turn_id)
            except StoreError as error:
                log.info("Stop of turn %d ignored: %s", turn_id, error)
                return
            if turn.state not in ("queued", "running"):
                return  # it has finished already
        if presser != turn.question.author_id and not (await self.workspace.person(presser)).admin:
            key = turn.key
            await self.workspace.whisper(key.channel, presser, key.thread, NOT_YOURS)
            return
        log.info("%s stopped turn %d in %s", presser, turn_id, turn.key)
        await self._stops.request(turn_id)


def file_downloader(runtime: Runtime) -> Downloader:
    """The downloader of people's files: Slack's file hosts (and the configured API's host)
    only, with the bot token, over the runtime's HTTP client (which follows no redirect)."""
    settings = runtime.settings.slack
    hosts = set(FILE_HOSTS)
    plain: set[str] = set()
    if settings.api_url:
        url = httpx2.URL(settings.api_url)
        hosts.add(url.host)
        if url.scheme == "http":
            plain.add(url.host)
    token = settings.bot_token.get_secret_value() if settings.bot_token is not None else None
    return Downloader(
        settings=runtime.settings.attachments, allowed_hosts=hosts, token=token,
        token_hosts=hosts, http_hosts=plain, http=runtime.http,
    )  # fmt: skip


def event_id(message: SlackMessage) -> str:
    """The id a message is claimed under: both events of one message, and every re-delivery
    of them, share it."""
    return f"slack:{message.team}:{message.channel}:{message.ts}"


class _Once:
    """Ids seen lately, the oldest forgotten past ``limit``: "once per id", in bounded memory."""

    def __init__(self, *, limit: int) -> None:
        self._limit = limit
        self._seen: dict[str, None] = {}  # insertion-ordered: the oldest first

    def first(self, id_: str) -> bool:
        """True the first time ``id_`` is seen (since it was forgotten), else False."""
        if id_ in self._seen:
            return False
        self._seen[id_] = None
        if len(self._seen) > self._limit:
            del self._seen[next(iter(self._seen))]
        return True


@asynccontextmanager
async def slack_bot(runtime: Runtime, *, http: bool) -> AsyncIterator[SlackBot]:
    """The bot over a running runtime, with its Web API clients; ``http`` says Slack will
    reach it over HTTP (which needs the signing secret). Its worker has started: turns a
    previous process left are being finished. On exit, answers still being written are
    stopped and the clients closed."""
    settings = runtime.settings.slack
    token = bot_token(settings, http=http)
    base_url = settings.api_url or SLACK_API
    web_log = logging.getLogger("relaybot.slack.web")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        client = AsyncWebClient(
            token=token, base_url=base_url, session=session, logger=web_log,
            retry_handlers=[*async_default_handlers(), AsyncRateLimitErrorRetryHandler(2)],
        )  # fmt: skip
        surface_client = AsyncWebClient(
            token=token, base_url=base_url, session=session, logger=web_log,
            retry_handlers=async_default_handlers(),
        )  # fmt: skip
        bot = SlackBot(runtime, client=client, surface_client=surface_client)
        try:
            await bot.start()
            yield bot
        finally:
            await bot.close()


def bot_token(settings: SlackSettings, *, http: bool) -> str:
    """The bot token, once the tokens the mode needs are known to be set (``SettingsError``
    naming the missing one if not)."""
    if settings.bot_token is None:
        raise SettingsError("relaybot slack needs the bot token: set SLACK_BOT_TOKEN (xoxb-...)")
    if http and settings.signing_secret is None:
        raise SettingsError("HTTP mode needs the app's signing secret: set SLACK_SIGNING_SECRET")
    if not http and settings.app_token is None:
        raise SettingsError(
            "Socket Mode needs the app-level token: set SLACK_APP_TOKEN (xapp-...), "
            "or run with --http and SLACK_SIGNING_SECRET"
        )
    return settings.bot_token.get_secret_value()


_CLIENT_GIVEN = "As you gave `client` as well"
_WITH_A_BODY = ("Invalid request signature detected", "A global middleware (")
"""How bolt's log lines that hold a whole request body begin (bolt 1.30)."""
_BODY_LOGGERS = ("slack_bolt.RequestVerification",)
"""bolt's own loggers that log a body. bolt copies the app logger's filters into one of its
loggers only when that logger has none yet, so the filter is set on them directly too."""


class _BoltLogFilter(logging.Filter):
    """What relaybot keeps out of bolt's log:

    - the warning that SLACK_BOT_TOKEN goes unused whenever it is set and a client is given:
      the client holds that very token, so the warning only misleads;
    - a request's body, which bolt logs whole at INFO when a signature fails: anyone can send
      a megabyte of it, as often as they like. The HTTP server checks signatures before bolt
      and logs its refusals itself; a body shows only at DEBUG, for a logger enabled for it.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.msg if isinstance(record.msg, str) else ""
        if message.startswith(_CLIENT_GIVEN):
            return False
        if not message.startswith(_WITH_A_BODY):
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def _bolt_logger() -> logging.Logger:
    logger = logging.getLogger("relaybot.slack.bolt")
    for each in (logger, *map(logging.getLogger, _BODY_LOGGERS)):
        if not any(isinstance(f, _BoltLogFilter) for f in each.filters):
            each.addFilter(_BoltLogFilter())
    return logger
