"""The fake Slack's per-method rate limits, as a real slack_sdk client meets them.

The windows run on a :class:`FakeTime` the test moves, so a window passes at once; the client
has no ``AsyncRateLimitErrorRetryHandler``, so every ``429`` reaches the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack_api import SLACK_LIMITS, FakeSlack, Limit, error
from tests.support.clock import FakeTime

TOKEN = "xoxb-test"
PAST = 1.01
"""Moving the clock a window's length times this leaves float rounding no say."""


@dataclass(frozen=True)
class Answer:
    """What a call came back with: its HTTP status, its Slack error and ``Retry-After``."""

    status: int = 200
    error: str | None = None
    retry_after: int | None = None


OK = Answer()


@pytest.fixture
def time() -> FakeTime:
    return FakeTime()


@pytest.fixture
async def slack(time: FakeTime) -> AsyncIterator[FakeSlack]:
    async with FakeSlack(token=TOKEN, time_scale=0.05, clock=time) as fake:
        yield fake


@pytest.fixture
async def client(slack: FakeSlack) -> AsyncIterator[AsyncWebClient]:
    async with aiohttp.ClientSession() as session:
        yield AsyncWebClient(token=TOKEN, base_url=slack.api_url, session=session)


async def call(client: AsyncWebClient, method: str, **args: Any) -> Answer:
    try:
        response = await client.api_call(method, json=args)
    except SlackApiError as refused:
        answer = refused.response
        after = answer.headers.get("Retry-After")
        return Answer(answer.status_code, answer["error"], None if after is None else int(after))
    return Answer(response.status_code)


async def updates(client: AsyncWebClient, n: int, ts: str, channel: str = "C1") -> list[Answer]:
    """``n`` edits of the message ``ts``, one after the other, its text the edit's number."""
    edit = {"channel": channel, "ts": ts}
    return [await call(client, "chat.update", **edit, text=f"edit {i}") for i in range(n)]


async def posts(client: AsyncWebClient, n: int, channel: str, thread_ts: str) -> list[Answer]:
    """``n`` replies in the thread of ``thread_ts``, one after the other."""
    reply = {"channel": channel, "thread_ts": thread_ts, "text": "Hi"}
    return [await call(client, "chat.postMessage", **reply) for _ in range(n)]


async def post(client: AsyncWebClient, channel: str = "C1") -> str:
    """A message of the bot's to edit (posting spends no ``chat.update``)."""
    return str((await client.chat_postMessage(channel=channel, text="Hi"))["ts"])


def limit(slack: FakeSlack, method: str) -> Limit:
    found = slack.limit(method)
    assert found is not None
    return found


# --- the limits ---------------------------------------------------------------------------------


async def test_the_windows_are_slacks_scaled() -> None:
    async with FakeSlack(token=TOKEN, time_scale=0.25) as slack:
        assert slack.limit("chat.update") == Limit(50, 15.0)
        assert slack.limit("chat.postMessage") == Limit(10, 2.5, per="channel")
        assert slack.limit("users.info") == Limit(100, 15.0)
        assert slack.limit("auth.test") is None
    assert SLACK_LIMITS["chat.update"] == Limit(calls=50, seconds=60, per="team")
    with pytest.raises(ValueError, match="time_scale"):
        FakeSlack(time_scale=0)


async def test_an_update_past_the_limit_is_429_and_changes_nothing(
    slack: FakeSlack, client: AsyncWebClient, time: FakeTime
) -> None:
    first, second = await post(client, "C1"), await post(client, "C2")
    assert limit(slack, "chat.update") == Limit(50, 60 * 0.05)
    # One window per workspace: edits in two channels share it.
    answers = await updates(client, 25, first, "C1") + await updates(client, 25, second, "C2")
    assert answers == [OK] * 50
    assert await updates(client, 1, first) == [Answer(429, "ratelimited", 3)]
    assert [m.text for m in slack.thread("C1", first)] == ["edit 24"]
    assert slack.calls[-1].error == "ratelimited"
    time.now += 2.5  # half a second before the first edit leaves: Retry-After is rounded up
    assert await updates(client, 1, first) == [Answer(429, "ratelimited", 1)]
    counted = [slack.rate_limited(), slack.rate_limited("chat.update"), slack.rate_limited("x")]
    assert counted == [2, 2, 0]


async def test_post_message_is_limited_per_channel(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    assert limit(slack, "chat.postMessage") == Limit(10, 10 * 0.05, per="channel")
    here, there = slack.seed_message("C1", "U1", "here"), slack.seed_message("C2", "U1", "there")
    assert await posts(client, 11, "C1", here) == [OK] * 10 + [Answer(429, "ratelimited", 1)]
    assert await posts(client, 10, "C2", there) == [OK] * 10
    assert [len(slack.thread("C1", here)), len(slack.thread("C2", there))] == [11, 11]


async def test_the_window_slides(slack: FakeSlack, client: AsyncWebClient, time: FakeTime) -> None:
    seconds = limit(slack, "chat.update").seconds
    ts = await post(client)
    assert await updates(client, 25, ts) == [OK] * 25
    time.now += seconds / 2
    assert await updates(client, 26, ts) == [OK] * 25 + [Answer(429, "ratelimited", 2)]
    time.now += seconds / 2 * PAST  # the first 25 have left the window, the next 25 not yet
    assert await updates(client, 26, ts) == [OK] * 25 + [Answer(429, "ratelimited", 2)]
    time.now += seconds * PAST
    assert await updates(client, 50, ts) == [OK] * 50


async def test_a_refused_call_is_not_counted_and_an_error_is(
    slack: FakeSlack, client: AsyncWebClient, time: FakeTime
) -> None:
    seconds = limit(slack, "chat.update").seconds
    ts = await post(client)
    assert await updates(client, 50, "1.000001") == [Answer(200, "message_not_found")] * 50
    time.now += seconds / 2
    assert await updates(client, 5, ts) == [Answer(429, "ratelimited", 2)] * 5
    time.now += seconds / 2 * PAST  # the 50 errors have left; the 5 refusals never came in
    assert await updates(client, 51, ts) == [OK] * 50 + [Answer(429, "ratelimited", 3)]


async def test_a_scripted_fault_comes_before_the_limit_and_is_not_counted(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    ts = await post(client)
    slack.fail("chat.update", error("msg_too_long"))
    too_long, refused = Answer(200, "msg_too_long"), Answer(429, "ratelimited", 3)
    assert await updates(client, 52, ts) == [too_long] + [OK] * 50 + [refused]
    slack.fail("chat.update", error("internal_error"))  # the window is full: still answered
    assert await updates(client, 1, ts) == [Answer(200, "internal_error")]


@pytest.mark.parametrize("limits", [None, {}])
async def test_no_limits(limits: dict[str, Limit] | None, time: FakeTime) -> None:
    async with (
        FakeSlack(token=TOKEN, limits=limits, clock=time) as slack,
        aiohttp.ClientSession() as session,
    ):
        client = AsyncWebClient(token=TOKEN, base_url=slack.api_url, session=session)
        assert await posts(client, 20, "C1", slack.seed_message("C1", "U1", "hi")) == [OK] * 20
        assert await updates(client, 60, await post(client)) == [OK] * 60
        assert (slack.limit("chat.update"), slack.rate_limited()) == (None, 0)
