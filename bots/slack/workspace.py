"""The Slack workspace as the bot sees it: its own Web API calls, apart from a reply's.

Who the bot is (``auth.test``, once), who a member is (``users.info``, cached: name, time
zone, admin flag), a thread or one message read back
(``conversations.replies``), the assistant status under a thread, a short notice, a note only
one person sees (``chat.postEphemeral``), and whether Slack accepts the bot token
(``auth.test``). A call that fails is logged — with Slack's error code, never the token — and
gives a harmless default; only :meth:`Workspace.check` raises. (A reply's own calls are the
surface's: ``adapters/slack_surface.py``.)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bots.slack.settings import SuggestedPrompt
from core.metrics import PLATFORM_CALLS
from core.settings import SettingsError

__all__ = [
    "NAMES_AT_ONCE",
    "SLACK_FAILURES",
    "Identity",
    "Person",
    "SlackUnreachable",
    "Workspace",
    "failure_reason",
]

log = logging.getLogger("relaybot.slack")

REPLIES_LIMIT = 200
"""Messages read back from a thread (one page; non-Marketplace apps get at most 15)."""
NAMES_AT_ONCE = 50
"""People :meth:`Workspace.names` looks up at most in one call (a message, a thread read back):
a message mentioning thousands must not spend the workspace's ``users.info`` budget, which the
Stop button's admin check needs too."""
SLACK_FAILURES = (SlackClientError, aiohttp.ClientError, TimeoutError)
_NO_STATUS = frozenset(
    {"missing_scope", "not_allowed_token_type", "unknown_method", "invalid_auth", "not_authed"}
)
"""``assistant.threads.setStatus`` errors that will not change: stop trying."""


class SlackUnreachable(Exception):
    """Slack's Web API cannot be reached (network, DNS, a proxy). One line, no token."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Person:
    """What the bot knows of a workspace member (``users.info``)."""

    id: str
    name: str
    timezone: str | None = None
    admin: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Identity:
    """The bot as Slack names it in events: its user id and its bot id (``None`` if unknown)."""

    user_id: str | None = None
    bot_id: str | None = None


class Workspace:
    """The bot's own Web API calls — a reply's calls are the surface's. A call that fails is
    logged here and gives a harmless default: the user's id for a name, an empty thread, no
    status."""

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        cache_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        max_people: int = 10_000,
    ) -> None:
        self._client = client
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._max_people = max_people
        self._people: dict[str, tuple[float, Person]] = {}  # id -> (expiry, person)
        self._status_works = True
        self._me: Identity | None = None

    async def identity(self) -> Identity:
        """Who the bot is (``auth.test``), asked once; unknown (logged) while Slack cannot say."""
        if self._me is not None:
            return self._me
        try:
            response = await _counted("auth.test", self._client.auth_test())
        except SLACK_FAILURES as error:
            log.warning("auth.test failed: %s", failure_reason(error))
            return Identity()
        user_id, bot_id = response.get("user_id"), response.get("bot_id")
        self._me = Identity(
            user_id=str(user_id) if user_id else None, bot_id=str(bot_id) if bot_id else None
        )
        return self._me

    async def person(self, user_id: str) -> Person:
        """Name, time zone and admin flag, cached for ``cache_seconds``."""
        now = self._clock()
        cached = self._people.get(user_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            response = await _counted("users.info", self._client.users_info(user=user_id))
        except SLACK_FAILURES as error:
            log.warning("users.info %s failed: %s", user_id, failure_reason(error))
            return cached[1] if cached is not None else Person(id=user_id, name=user_id)
        person = _person(user_id, response.get("user") or {})
        if len(self._people) >= self._max_people:
            self._people = {k: v for k, v in self._people.items() if v[0] > now}
        self._people[user_id] = (now + self._cache_seconds, person)
        return person

    async def names(self, user_ids: Iterable[str]) -> dict[str, str]:
        """Display names of the first :data:`NAMES_AT_ONCE` distinct ``user_ids``; the rest
        are left out (their mentions read as unknown)."""
        wanted = islice(dict.fromkeys(user_ids), NAMES_AT_ONCE)
        people = await asyncio.gather(*(self.person(user) for user in wanted))
        return {person.id: person.name for person in people}

    async def thread(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """The thread's messages, oldest first (one page)."""
        try:
            response = await _counted(
                "conversations.replies",
                self._client.conversations_replies(
                    channel=channel, ts=thread_ts, limit=REPLIES_LIMIT
                ),
            )
        except SLACK_FAILURES as error:
            log.warning(
                "conversations.replies %s/%s failed: %s", channel, thread_ts, failure_reason(error)
            )
            return []
        return [m for m in response.get("messages") or () if isinstance(m, dict)]

    async def message(self, channel: str, thread_ts: str, ts: str) -> dict[str, Any] | None:
        """The message ``ts`` of the thread ``thread_ts`` (its files included), read back with
        one call; ``None`` when Slack cannot say. Slack puts a thread's parent first whatever
        the range, so the message is picked out by its ts."""
        try:
            response = await _counted(
                "conversations.replies",
                self._client.conversations_replies(
                    channel=channel, ts=thread_ts, oldest=ts, latest=ts, inclusive=True, limit=2
                ),
            )
        except SLACK_FAILURES as error:
            log.warning(
                "conversations.replies %s/%s failed: %s", channel, ts, failure_reason(error)
            )
            return None
        messages = response.get("messages") or ()
        return next((m for m in messages if isinstance(m, dict) and m.get("ts") == ts), None)

    async def set_status(
        self, channel: str, thread_ts: str, status: str, *, loading: Sequence[str] = ()
    ) -> bool:
        """Show the assistant status under a thread (with ``loading``: Slack rotates those
        messages until the answer's first words); False where Slack does not allow it."""
        if not self._status_works:
            return False
        try:
            await _counted(
                "assistant.threads.setStatus",
                self._client.assistant_threads_setStatus(
                    channel_id=channel, thread_ts=thread_ts, status=status,
                    loading_messages=list(loading) or None,
                ),
            )  # fmt: skip
        except SLACK_FAILURES as error:
            log.info("no assistant status in %s: %s", channel, failure_reason(error))
            self._status_works = failure_reason(error) not in _NO_STATUS
            return False
        return True

    async def set_title(self, channel: str, thread_ts: str, title: str) -> None:
        """Name a DM thread (Slack lists an agent's conversations by it)."""
        try:
            await _counted(
                "assistant.threads.setTitle",
                self._client.assistant_threads_setTitle(
                    channel_id=channel, thread_ts=thread_ts, title=title
                ),
            )
        except SLACK_FAILURES as error:
            log.info("no thread title in %s: %s", channel, failure_reason(error))

    async def suggest(self, channel: str, prompts: Sequence[SuggestedPrompt]) -> bool:
        """Offer ``prompts`` in the bot's messages tab (``channel``: the user's DM with the
        bot); False where Slack refuses (an app not set up as an agent, say)."""
        if not prompts:
            return False
        try:
            await _counted(
                "assistant.threads.setSuggestedPrompts",
                self._client.assistant_threads_setSuggestedPrompts(
                    channel_id=channel,
                    prompts=[{"title": p.title, "message": p.message} for p in prompts],
                ),
            )
        except SLACK_FAILURES as error:
            log.info("no suggested prompts in %s: %s", channel, failure_reason(error))
            return False
        return True

    async def say(self, channel: str, thread_ts: str, text: str) -> None:
        """A short notice in a thread."""
        try:
            await _counted(
                "chat.postMessage",
                self._client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=text),
            )
        except SLACK_FAILURES as error:
            log.warning("could not post a notice in %s: %s", channel, failure_reason(error))

    async def whisper(self, channel: str, user: str, thread_ts: str, text: str) -> None:
        """A note only ``user`` sees."""
        try:
            await _counted(
                "chat.postEphemeral",
                self._client.chat_postEphemeral(
                    channel=channel, user=user, thread_ts=thread_ts, text=text
                ),
            )
        except SLACK_FAILURES as error:
            log.warning("could not whisper to %s in %s: %s", user, channel, failure_reason(error))

    async def check(self) -> str:
        """The bot's user id, if Slack accepts its token: ``SettingsError`` if it does not,
        :class:`SlackUnreachable` if Slack cannot be asked."""
        try:
            response = await _counted("auth.test", self._client.auth_test())
        except SlackApiError as error:
            raise SettingsError(f"Slack refused the bot token ({failure_reason(error)})") from None
        except SLACK_FAILURES as error:
            url = self._client.base_url
            raise SlackUnreachable(
                f"cannot reach Slack at {url} ({failure_reason(error)})"
            ) from None
        return str(response.get("user_id") or "")


async def _counted(method: str, call: Awaitable[AsyncSlackResponse]) -> AsyncSlackResponse:
    """Await one Web API call, counted by method and result as the surfaces count theirs
    (``relaybot_platform_calls``); its failure propagates unchanged."""
    try:
        response = await call
    except SLACK_FAILURES as error:
        PLATFORM_CALLS.labels(platform="slack", method=method, result=_result(error)).inc()
        raise
    PLATFORM_CALLS.labels(platform="slack", method=method, result="ok").inc()
    return response


def _result(error: BaseException) -> str:
    if isinstance(error, SlackApiError) and (
        error.response.status_code == 429 or error.response.get("error") == "ratelimited"
    ):
        return "rate_limited"
    return "error"


def _person(user_id: str, user: dict[str, Any]) -> Person:
    profile = user.get("profile") or {}
    name = (
        profile.get("display_name")
        or profile.get("real_name")
        or user.get("real_name")
        or user.get("name")
        or user_id
    )
    admin = bool(user.get("is_admin") or user.get("is_owner") or user.get("is_primary_owner"))
    return Person(id=user_id, name=str(name), timezone=user.get("tz") or None, admin=admin)


def failure_reason(error: BaseException) -> str:
    """Slack's error code, or the kind of failure — never the token."""
    if isinstance(error, SlackApiError):
        return str(error.response.get("error") or f"HTTP {error.response.status_code}")
    return type(error).__name__
