"""The Slack bot: slack-bolt's ``AsyncApp`` in, conversation turns and live replies out.

Who it answers:

- an ``app_mention`` in a channel: the conversation is the thread under that message (or the
  thread it was posted in);
- a direct message: each top-level DM starts a conversation answered in its thread, and
  replies in that thread continue it;
- with ``follow_ups`` (the default), a message in a channel thread the bot has answered in (the
  store holds the thread) or under one of its own messages, without a new mention.

People's messages only: bots (itself included), edits, deletions and joins never start a turn
(:func:`bots.slack.messages.user_message`). ``allowed_channels`` / ``allowed_users`` restrict
where and whom it answers. One message gets one answer: the ``app_mention`` and ``message``
events of one message, and a re-delivered event, claim the same ``slack:team:channel:ts`` in
the store, once.

How: the listeners only read the payload and start a task (``TaskOwner``), so bolt answers
Slack at once (``process_before_response=True``: bolt neither fires its own unowned task nor
polls for the ack). The task reads names and the time zone (``users.info``, cached), rebuilds a
thread's history from ``conversations.replies`` when the store has none of it (both through
:class:`bots.slack.workspace.Workspace`), and streams the turn through a ``LiveReply`` on a
``SlackSurface``: the assistant status "is thinking…" in a DM where Slack allows it, else a
"Thinking…" placeholder, then the growing answer with a Stop button. Stop cancels the turn
(what was said is kept, marked stopped) when the asker or a workspace admin presses it;
anyone else gets an ephemeral note.

Two Web API clients share one HTTP session: the bot's own calls retry 429s in the client
(``AsyncRateLimitErrorRetryHandler``); the surface's client must not — ``LiveReply`` waits out
a reply's rate limit itself.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from slack_bolt.async_app import AsyncApp, AsyncBoltContext
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncRateLimitErrorRetryHandler,
    async_default_handlers,
)
from slack_sdk.web.async_client import AsyncWebClient

from adapters.live import LiveReply
from adapters.slack_surface import STOP_ACTION, SlackSurface
from bots.replies import BROKEN, NOT_YOURS, ONLY_A_MENTION, THINKING, TOO_LONG
from bots.runtime import Runtime, edit_budget
from bots.slack.messages import (
    SlackMessage,
    authors,
    mentioned_users,
    plain_text,
    thread_history,
    user_message,
)
from bots.slack.settings import SlackSettings
from bots.slack.workspace import Workspace
from bots.tasks import TaskOwner, running_task
from core.engine import TurnRequest
from core.messages import ConversationKey
from core.settings import SettingsError

__all__ = ["SlackBot", "bot_token", "slack_bot"]

log = logging.getLogger("relaybot.slack")

SLACK_API = AsyncWebClient.BASE_URL
CLAIM_TTL = 24 * 3600.0
"""Seconds a message stays claimed: Slack re-delivers an event for a few minutes at most."""
PLATFORM = "Slack"
ASSISTANT_STATUS = "is thinking…"
FILES_NOTE = "I can't read attachments yet, so I'm answering the text of your message."
FILES_ONLY = "I can't read attachments yet. Tell me in words what you need, and I'll help."


@dataclass(frozen=True, slots=True)
class _Me:
    """The bot as Slack names it in events."""

    user_id: str | None
    bot_id: str | None


@dataclass(frozen=True, slots=True)
class _RunningTurn:
    """An answer being written, as the Stop button finds it."""

    task: asyncio.Task[Any]
    asker: str
    channel: str
    thread_ts: str


class SlackBot:
    """The bolt app and the turns it runs. Build it with :func:`slack_bot`."""

    def __init__(
        self, runtime: Runtime, *, client: AsyncWebClient, surface_client: AsyncWebClient
    ) -> None:
        self._runtime = runtime
        self._settings = runtime.settings.slack
        self._surface_client = surface_client
        self.workspace = Workspace(client, cache_seconds=self._settings.user_cache_seconds)
        self._budget = edit_budget(runtime.settings)
        self._tasks = TaskOwner(log)
        self._turns: dict[str, _RunningTurn] = {}
        secret = self._settings.signing_secret
        self.app = AsyncApp(
            client=client,
            signing_secret=secret.get_secret_value() if secret is not None else "",
            process_before_response=True,
            name="relaybot",
            logger=_bolt_logger(),
        )
        self.app.event("app_mention")(self._on_message)
        self.app.event("message")(self._on_message)
        self.app.action(STOP_ACTION)(self._on_stop)

    @property
    def busy(self) -> int:
        """Messages being handled right now (answers being written among them)."""
        return len(self._tasks)

    async def close(self) -> None:
        """Stop every answer still being written (each ends with "Stopped.")."""
        await self._tasks.close()

    # --- listeners: read the payload, start a task, return (bolt then acknowledges) -------

    async def _on_message(
        self, body: dict[str, Any], event: dict[str, Any], context: AsyncBoltContext
    ) -> None:
        team = context.team_id or str(body.get("team_id") or "")
        message = user_message(event, team=team, bot_user_id=context.bot_user_id)
        if message is None or not self._may_answer(message):
            return
        me = _Me(context.bot_user_id, context.bot_id)
        self._tasks.spawn(
            self._handle(message, me), name=f"slack message {message.channel}/{message.ts}"
        )

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
        turn_id = str(action.get("value") or "")
        self._tasks.spawn(self._stop(turn_id, presser), name=f"slack stop {turn_id}")

    # --- a message ------------------------------------------------------------------------

    async def _handle(self, message: SlackMessage, me: _Me) -> None:
        store = self._runtime.store
        key = ConversationKey(
            platform="slack", workspace=message.team, channel=message.channel,
            thread=message.thread,
        )  # fmt: skip
        known = bool(await store.load(key))
        addressed = message.mentions_bot or message.direct
        if not (addressed or known or message.parent_user == me.user_id):
            return  # a thread the bot is not part of
        claim = f"slack:{message.team}:{message.channel}:{message.ts}"
        if not await store.claim(claim, CLAIM_TTL):
            return  # answered (or being answered) already
        try:
            request = await self._request(message, me, key, rebuild=not known)
        except Exception:
            log.exception("could not prepare an answer to %s", claim)
            await self.workspace.say(message.channel, message.thread, BROKEN)
            return
        if request is not None:
            await self._answer(message, request)

    async def _request(
        self, message: SlackMessage, me: _Me, key: ConversationKey, *, rebuild: bool
    ) -> TurnRequest | None:
        """The turn to run, or ``None`` when the message was answered with a notice."""
        asker = await self.workspace.person(message.user)
        names = await self.workspace.names(set(mentioned_users(message.text)) - {me.user_id})
        text = plain_text(message.text, bot_user_id=me.user_id, names=names)
        limit = self._settings.max_input_chars
        if len(text) > limit:
            notice = TOO_LONG.format(length=len(text), limit=limit)
            await self.workspace.say(message.channel, message.thread, notice)
            return None
        if message.files:
            if not text:
                await self.workspace.say(message.channel, message.thread, FILES_ONLY)
                return None
            await self.workspace.say(message.channel, message.thread, FILES_NOTE)
            text += f"\n\n(Attached, but you cannot read them: {', '.join(message.files)}.)"
        if rebuild and message.in_thread:
            await self._rebuild(message, me, key)
        return TurnRequest(
            key=key,
            user_id=message.user,
            user_name=asker.name,
            text=text or ONLY_A_MENTION,
            platform=PLATFORM,
            timezone=asker.timezone,
        )

    async def _rebuild(self, message: SlackMessage, me: _Me, key: ConversationKey) -> None:
        """The store has nothing of a thread the bot was called into: read it back from Slack,
        once (a second message arriving meanwhile does not read it again)."""
        store = self._runtime.store
        if not await store.claim(f"slack-history:{key}", CLAIM_TTL):
            return
        replies = await self.workspace.thread(message.channel, message.thread)
        names = await self.workspace.names(authors(replies) - {me.user_id or ""})
        history = thread_history(
            replies, before=message.ts, bot_user_id=me.user_id, bot_id=me.bot_id, names=names
        )
        if history:
            await store.append(key, history)
            log.info("rebuilt %d messages of %s from Slack", len(history), key)

    async def _answer(self, message: SlackMessage, request: TurnRequest) -> None:
        """Stream the turn into the thread; Stop (or losing the thread) cancels this task."""
        task = running_task()
        turn_id = uuid.uuid4().hex

        def lost() -> None:  # the thread can no longer be written to
            task.cancel()

        self._turns[turn_id] = _RunningTurn(task, message.user, message.channel, message.thread)
        try:
            status = message.direct and await self.workspace.set_status(
                message.channel, message.thread, ASSISTANT_STATUS
            )
            surface = SlackSurface(
                self._surface_client, channel=message.channel, thread_ts=message.thread,
                team=message.team, stop_value=turn_id, edit_interval=self._settings.edit_interval,
            )  # fmt: skip
            reply = LiveReply(
                surface, self._budget, placeholder=None if status else THINKING,
                show_reasoning=self._runtime.settings.llm.show_reasoning,
                on_gone=lost, name=f"slack {request.key}",
            )  # fmt: skip
            engine = self._runtime.engine
            async with reply, aclosing(engine.run_turn(request)) as events:
                async for event in events:
                    reply.feed(event)
        finally:
            del self._turns[turn_id]

    async def _stop(self, turn_id: str, presser: str) -> None:
        turn = self._turns.get(turn_id)
        if turn is None:
            return  # it has finished already
        if presser != turn.asker and not (await self.workspace.person(presser)).admin:
            await self.workspace.whisper(turn.channel, presser, turn.thread_ts, NOT_YOURS)
            return
        log.info("%s stopped the answer in %s/%s", presser, turn.channel, turn.thread_ts)
        turn.task.cancel()
        await asyncio.wait({turn.task})  # its owner logs how it ended


@asynccontextmanager
async def slack_bot(runtime: Runtime, *, http: bool) -> AsyncIterator[SlackBot]:
    """The bot over a running runtime, with its Web API clients; ``http`` says Slack will
    reach it over HTTP (which needs the signing secret). On exit, answers still being
    written are stopped and the clients closed."""
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


class _ClientGivenFilter(logging.Filter):
    """bolt warns that SLACK_BOT_TOKEN goes unused whenever it is set and a client is given;
    the client holds that very token, so the warning only misleads."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("As you gave `client` as well")


def _bolt_logger() -> logging.Logger:
    logger = logging.getLogger("relaybot.slack.bolt")
    if not any(isinstance(f, _ClientGivenFilter) for f in logger.filters):
        logger.addFilter(_ClientGivenFilter())
    return logger
