"""The Slack bot under pressure, against a loopback Slack with Slack's rate limits: a burst of
mentions in one channel, a hundred messages in one thread, and a SIGTERM with answers in flight.

Slack's windows are shortened (``SCALE``) and relaybot's budgets set to match, so a minute of
Slack's limits passes in seconds; the ratios between them are Slack's. Nothing here asserts how
long anything took: the bounds are generous waits for an outcome.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest

from bots.replies import INTERRUPTED, RESTARTING
from tests import test_slack_bot
from tests.conftest import Spawn
from tests.fakes.llm_gateway import FakeGateway, Stream
from tests.fakes.open_meteo import FakeOpenMeteo
from tests.fakes.slack_api import FakeSlack, Message
from tests.fakes.streams import openai_chunks
from tests.support.waiting import until
from tests.test_slack_bot import (
    ADA,
    CHANNEL,
    TOKEN,
    WAIT,
    Harness,
    actions,
    answer,
    mention,
    message,
    status_of,
)
from tests.test_slack_crash import Slack, serving, settings

start = test_slack_bot.start  # its fixture, by the same name

SCALE = 0.05
"""Slack's windows shortened twentyfold: chat.update's 50 a minute become 50 per 3 s."""
BUDGETS = {
    "edit_budget__slack_workspace": json.dumps({"count": 45, "seconds": 60 * SCALE, "burst": 5}),
    "edit_budget__slack_channel": json.dumps({"count": 8, "seconds": 10 * SCALE, "burst": 2}),
}
"""relaybot's defaults, on the same shortened windows."""


def budget_environ() -> dict[str, str]:
    return {f"RELAYBOT_{name.upper()}": value for name, value in BUDGETS.items()}


@pytest.fixture
async def busy(start: Callable[..., Awaitable[Harness]]) -> Harness:
    return await start(slack_time_scale=SCALE, slack__edit_interval="0.05", **BUDGETS)


def gave_up(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "gave up" in r.getMessage()]


def answered_once(bot: Harness, thread: str, text: str) -> bool:
    shown = bot.replies(CHANNEL, thread)
    return len(shown) == 1 and shown[0].markdown == text and not actions(shown[0].blocks)


async def test_forty_mentions_in_one_channel_within_a_second_are_each_answered_once(
    busy: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    count = 40
    busy.gateway.enqueue(*(answer("Here is the answer to it.", pieces=4) for _ in range(count)))
    asked = [busy.slack.seed_message(CHANNEL, ADA, f"<@UBOT> question {n}") for n in range(count)]
    statuses = await asyncio.gather(
        *(busy.send(mention(ts, f"<@UBOT> question {n}")) for n, ts in enumerate(asked))
    )
    assert statuses == [200] * count
    await busy.until(
        lambda: (
            all(answered_once(busy, ts, "Here is the answer to it.") for ts in asked)
            and busy.bot.busy == 0
        ),
        "every mention answered",
    )
    assert len(busy.gateway.requests) == count
    assert busy.slack.rate_limited("chat.postMessage") + busy.slack.rate_limited("chat.update") < 5
    assert gave_up(caplog) == []


async def test_a_hundred_messages_in_one_thread_are_each_answered_once_in_order(
    busy: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    count = 100
    busy.gateway.enqueue(*(answer(f"Answer {n}.") for n in range(count)))
    parent = busy.slack.seed_message(CHANNEL, ADA, "<@UBOT> answer 0")
    assert await busy.send(mention(parent, "<@UBOT> answer 0")) == 200
    follow_ups = [busy.slack.seed_message(CHANNEL, ADA, f"answer {n}", thread_ts=parent)
                  for n in range(1, count)]  # fmt: skip
    statuses = await asyncio.gather(
        *(busy.send(message(ts, f"answer {n}", thread_ts=parent))
          for n, ts in enumerate(follow_ups, start=1))
    )  # fmt: skip
    assert statuses == [200] * (count - 1)

    def done() -> bool:
        shown = busy.replies(CHANNEL, parent)
        return len(shown) == count and busy.finished(CHANNEL, parent)

    await busy.until(done, "every message answered")
    assert [m.markdown for m in busy.replies(CHANNEL, parent)] == [
        f"Answer {n}." for n in range(count)
    ]
    assert len(busy.gateway.requests) == count
    assert gave_up(caplog) == []


# --- SIGTERM with answers in flight -------------------------------------------------------------

IN_FLIGHT = 60


def shown_as(reply: Message) -> str:
    """What a reply shows once its process is gone: the answer, or one of the notices."""
    if actions(reply.blocks):
        return "a live Stop button"
    status = status_of(reply.blocks)
    if RESTARTING in status:
        return "restarting"
    if INTERRUPTED in status:
        return "interrupted"
    return reply.markdown


async def stopped_mid_answer(
    spawn: Spawn, tmp_path: Path, *, grace: str | None
) -> tuple[list[str], str, Counter[str]]:
    """Sixty answers streaming from a ``relaybot slack --http`` process, then SIGTERM: what
    its log said and its replies show once it has exited, and then a second process started
    on the same store finishes every answer. ``grace`` overrides ``runtime.shutdown_grace``."""
    async with (
        FakeSlack(token=TOKEN, time_scale=SCALE) as api, FakeGateway() as gateway,
        FakeOpenMeteo() as weather, aiohttp.ClientSession() as http,
    ):  # fmt: skip
        slack = Slack(api, http)
        environ = settings(api, gateway, weather, tmp_path / "r.db") | budget_environ()
        environ |= {"RELAYBOT_SLACK__EDIT_INTERVAL": "0.1",
                    "RELAYBOT_LLM__MAX_CONCURRENT_REQUESTS": str(IN_FLIGHT)}  # fmt: skip
        if grace is not None:
            environ["RELAYBOT_RUNTIME__SHUTDOWN_GRACE"] = grace
        gateway.enqueue(*(Stream.stalled(openai_chunks("Counting: one two three"), after=4)
                          for _ in range(IN_FLIGHT)))  # fmt: skip
        first, url = await serving(spawn, environ)
        assert first.stderr is not None
        log = asyncio.create_task(first.stderr.read())  # drained, so the process never blocks
        asked = [api.seed_message(CHANNEL, ADA, f"<@UBOT> count {n}") for n in range(IN_FLIGHT)]
        for n, ts in enumerate(asked):
            assert await slack.send(url, mention(ts, f"<@UBOT> count {n}")) == 200
        await until(
            lambda: all([m.markdown for m in slack.replies(ts)] == ["Counting: on"]
                        for ts in asked),
            "every answer streaming",
            within=WAIT * 2,
        )  # fmt: skip

        first.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(first.wait(), WAIT * 2) == 0
        after_exit = Counter(shown_as(m) for ts in asked for m in slack.replies(ts))
        gateway.release_stalls()

        gateway.enqueue(*(answer("One, two, three.") for _ in range(IN_FLIGHT)))
        second, url = await serving(spawn, environ)
        await until(
            lambda: all([shown_as(m) for m in slack.replies(ts)] == ["One, two, three."]
                        for ts in asked),
            "every answer finished by the next process, in its first message",
            within=WAIT * 2,
        )  # fmt: skip
        second.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(second.wait(), WAIT) == 0
        return asked, (await log).decode(), after_exit


async def test_sigterm_with_sixty_answers_in_flight_leaves_none_with_a_stop_button(
    spawn: Spawn, tmp_path: Path
) -> None:
    _, log, after_exit = await stopped_mid_answer(spawn, tmp_path, grace=None)  # 8 s
    assert after_exit == {"restarting": IN_FLIGHT}
    assert "not shown whole" not in log


async def test_sigterm_at_slacks_own_ratio_leaves_the_rest_to_the_next_start(
    spawn: Spawn, tmp_path: Path
) -> None:
    """With the grace shortened as much as Slack's windows (8 s against chat.update's 50 a
    minute), Slack's budget allows a few notices before the process exits: the others still
    show their partial answer, and the next start writes each one again in its message."""
    _, log, after_exit = await stopped_mid_answer(spawn, tmp_path, grace=str(8 * SCALE))
    assert sum(after_exit.values()) == IN_FLIGHT
    assert set(after_exit) <= {"restarting", "a live Stop button"}
    if after_exit["a live Stop button"]:
        assert f"{after_exit['a live Stop button']} replies were not shown whole" in log
