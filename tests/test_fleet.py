"""Fleet mode: three ``relaybot slack --http`` processes behind one address, on one Postgres
store and one Redis, against a loopback Slack with Slack's rate limits.

Each worker is a real process as the README runs it, with its own store pool, its own Redis
clients and its own event loop; Slack's side sends events and Stop presses to whichever worker
the test picks, as a load balancer would. The gateway answers each question by its text
(``Re: <question>``), so a reply shows which question it answers, and each request shows the
history it was asked with. Slack's windows are shortened (``SCALE``) and the edit budgets set
to match, with a margin for the time a call takes to reach Slack.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import aiohttp
import pytest

from adapters.live import STOPPED
from bots.slack.server import EVENTS_PATH
from tests.conftest import REDIS_URL, Spawn
from tests.fakes.llm_gateway import FakeGateway, RecordedRequest, Reply, Stream
from tests.fakes.open_meteo import FakeOpenMeteo
from tests.fakes.slack_api import BOT_ID, FakeSlack, Message
from tests.fakes.streams import openai_chunks
from tests.support.postgres import fresh_schema
from tests.support.waiting import until
from tests.test_slack_bot import (
    ADA,
    CHANNEL,
    SECRET,
    TOKEN,
    WAIT,
    actions,
    block_actions,
    mention,
    signature,
    status_of,
)
from tests.test_slack_crash import Slack, serving, settings

SCALE = 0.05
"""Slack's windows shortened twentyfold: chat.update's 50 a minute become 50 per 3 s."""
BUDGETS = {
    "RELAYBOT_EDIT_BUDGET__SLACK_WORKSPACE": {"count": 40, "seconds": 60 * SCALE, "burst": 5},
    "RELAYBOT_EDIT_BUDGET__SLACK_CHANNEL": {"count": 7, "seconds": 10 * SCALE, "burst": 2},
}
"""Five calls under Slack's limit per window: a call granted at the window's end may reach Slack
a moment later, in the next one."""
LEASE = 2.0
STALLED = "count slowly"
"""The question whose first answer stalls after its first words (until released or cut)."""


def reply_to(asked: Counter[str]) -> Callable[[RecordedRequest], Reply]:
    """The gateway's answers: ``Re: <the last question>``; the first answer to
    :data:`STALLED` stalls after its first words."""

    def respond(request: RecordedRequest) -> Reply:
        question = str(request.json["messages"][-1]["content"])
        asked[question] += 1
        text = f"Re: {question}"
        if question == STALLED and asked[question] == 1:
            return Stream.stalled(openai_chunks("Counting: one two three"), after=4)
        return Stream(openai_chunks(text, pieces=3), delay_between=0.1)  # posted, then edited

    return respond


@dataclass
class Worker:
    process: asyncio.subprocess.Process
    url: str
    log: asyncio.Task[bytes]


class Fleet:
    """Three workers, the fakes they share, and Slack's side of the wire."""

    def __init__(self, slack: Slack, gateway: FakeGateway, asked: Counter[str]) -> None:
        self.slack, self.gateway, self.asked = slack, gateway, asked
        self.workers: list[Worker] = []

    @property
    def api(self) -> FakeSlack:
        return self.slack.api

    def replies(self, thread_ts: str, *, channel: str = CHANNEL) -> list[Message]:
        return [m for m in self.api.thread(channel, thread_ts) if m.bot_id == BOT_ID]

    async def ask(
        self, worker: int, text: str, *, channel: str = CHANNEL, thread_ts: str | None = None
    ) -> str:
        """A user's mention of the bot in ``channel`` (in ``thread_ts``, or starting a
        thread), sent to ``worker``; its ts, once the worker acknowledged it."""
        ts = self.api.seed_message(channel, ADA, f"<@UBOT> {text}", thread_ts=thread_ts)
        event = mention(ts, f"<@UBOT> {text}", thread_ts=thread_ts) | {"channel": channel}
        assert await self.slack.send(self.workers[worker].url, event) == 200
        return ts

    async def press_stop(self, worker: int, user: str, reply: Message) -> int:
        """``user`` presses ``reply``'s Stop button; Slack sends the press to ``worker``."""
        body = urlencode({"payload": json.dumps(block_actions(user, reply))})
        now = str(int(time.time()))
        headers = {"Content-Type": "application/x-www-form-urlencoded",
                   "X-Slack-Request-Timestamp": now,
                   "X-Slack-Signature": signature(SECRET, now, body)}  # fmt: skip
        url = self.workers[worker].url + EVENTS_PATH
        async with self.slack.http.post(url, data=body, headers=headers) as response:
            return response.status


@pytest.fixture
async def fleet_settings(postgres_database: str, redis_prefix: str) -> dict[str, str]:
    """What every worker of one fleet shares: a fresh Postgres schema and a Redis prefix."""
    return {
        "RELAYBOT_STORE__URL": await fresh_schema(postgres_database),
        "RELAYBOT_STORE__LEASE_SECONDS": str(LEASE),
        "RELAYBOT_REDIS__URL": REDIS_URL,
        "RELAYBOT_REDIS__KEY_PREFIX": redis_prefix,
        "RELAYBOT_SLACK__EDIT_INTERVAL": "0.1",
        "RELAYBOT_LLM__READ_INTERVAL": "0",  # reads kept up with fast edits
        **{name: json.dumps(rate) for name, rate in BUDGETS.items()},
    }


@asynccontextmanager
async def fleet(
    spawn: Spawn, tmp_path: Path, shared: Mapping[str, str], *, workers: int = 3
) -> AsyncIterator[Fleet]:
    """``workers`` processes serving one Slack workspace, started together."""
    asked: Counter[str] = Counter()
    async with AsyncExitStack() as stack:
        api = await stack.enter_async_context(FakeSlack(token=TOKEN, time_scale=SCALE))
        gateway = await stack.enter_async_context(FakeGateway(respond=reply_to(asked)))
        weather = await stack.enter_async_context(FakeOpenMeteo())
        http = await stack.enter_async_context(aiohttp.ClientSession())
        environ = settings(api, gateway, weather, tmp_path / "unused.db") | dict(shared)
        team = Fleet(Slack(api, http), gateway, asked)
        for process, url in await asyncio.gather(
            *(serving(spawn, environ) for _ in range(workers))
        ):
            assert process.stderr is not None
            team.workers.append(Worker(process, url, asyncio.create_task(process.stderr.read())))
        try:
            yield team
        finally:
            gateway.release_stalls()
            for worker in team.workers:
                if worker.process.returncode is None:
                    worker.process.terminate()
            for worker in team.workers:
                await asyncio.wait_for(worker.process.wait(), WAIT)
                await worker.log


# --- 200 mentions over 50 threads --------------------------------------------------------------

THREADS, PER_THREAD = 50, 4
CHANNELS = [f"C{n}" for n in range(1, 11)]
"""The threads' channels, five threads each: Slack's per-channel limit on posts is not what
holds the answers back, its per-workspace limit on edits is."""


def question(thread: int, n: int) -> str:
    return f"thread {thread} question {n}"


@pytest.mark.timeout(150)
async def test_two_hundred_mentions_over_three_workers_are_each_answered_once_in_order(
    spawn: Spawn, tmp_path: Path, fleet_settings: dict[str, str]
) -> None:
    async with fleet(spawn, tmp_path, fleet_settings) as team:
        sent = iter(range(THREADS * PER_THREAD))  # the n-th message goes to worker n % 3

        async def converse(thread: int) -> str:
            """One thread's questions, each sent once the previous was acknowledged, to the
            next worker in turn: a thread's follow-ups land on different workers."""
            channel = CHANNELS[thread % len(CHANNELS)]
            root = await team.ask(next(sent) % 3, question(thread, 0), channel=channel)
            for n in range(1, PER_THREAD):
                await team.ask(next(sent) % 3, question(thread, n), channel=channel, thread_ts=root)
            return root

        roots = await asyncio.gather(*(converse(t) for t in range(THREADS)))

        def thread_replies(thread: int) -> list[Message]:
            return team.replies(roots[thread], channel=CHANNELS[thread % len(CHANNELS)])

        def answered() -> bool:
            return all(len(thread_replies(t)) == PER_THREAD
                       and not any(actions(m.blocks) for m in thread_replies(t))
                       for t in range(THREADS))  # fmt: skip

        await until(answered, "every question answered", within=120)
        await asyncio.gather(*(team.slack.idle(worker.url) for worker in team.workers))

    for thread in range(THREADS):
        shown = [m.markdown for m in thread_replies(thread)]
        assert shown == [f"Re: {question(thread, n)}" for n in range(PER_THREAD)]
    assert set(team.asked.values()) == {1}, "each question went to the model once"
    assert len(team.asked) == THREADS * PER_THREAD
    for request in team.gateway.requests:  # each asked with its thread's history, in order
        messages = request.json["messages"][1:]
        thread, n = map(int, messages[-1]["content"].removeprefix("thread ").split(" question "))
        expected = []
        for k in range(n):
            expected += [("user", question(thread, k)), ("assistant", f"Re: {question(thread, k)}")]
        assert [(m["role"], m["content"]) for m in messages] == [
            *expected,
            ("user", question(thread, n)),
        ]
    assert team.api.rate_limited("chat.update") == 0, "the workers share one edit budget"
    logs = [(await worker.log).decode() for worker in team.workers]
    assert all("turn finished" in log for log in logs), "every worker answered some"


# --- Stop and a worker's death -----------------------------------------------------------------


async def streaming(team: Fleet, worker: int) -> tuple[str, Message]:
    """:data:`STALLED` asked of ``worker``; its ts and its reply, once the first words show."""
    asked = await team.ask(worker, STALLED)
    await until(lambda: [m.markdown for m in team.replies(asked)] == ["Counting: on"],
                "the first words", within=WAIT)  # fmt: skip
    (reply,) = team.replies(asked)
    return asked, reply


async def test_stop_pressed_on_another_worker_stops_the_answer(
    spawn: Spawn, tmp_path: Path, fleet_settings: dict[str, str]
) -> None:
    async with fleet(spawn, tmp_path, fleet_settings, workers=2) as team:
        asked, reply = await streaming(team, 0)
        assert await team.press_stop(1, ADA, reply) == 200

        def stopped() -> bool:
            (shown,) = team.replies(asked)
            return not actions(shown.blocks) and STOPPED in status_of(shown.blocks)

        await until(stopped, "the answer stopped", within=WAIT)
        await team.slack.idle(team.workers[0].url)
    assert team.asked[STALLED] == 1
    assert [m.markdown for m in team.replies(asked)] == ["Counting: on"]


async def test_a_worker_killed_mid_answer_leaves_its_turn_to_another(
    spawn: Spawn, tmp_path: Path, fleet_settings: dict[str, str]
) -> None:
    async with fleet(spawn, tmp_path, fleet_settings) as team:
        asked, cut = await streaming(team, 0)
        team.workers[0].process.kill()
        await asyncio.wait_for(team.workers[0].process.wait(), WAIT)

        def finished() -> bool:
            shown = team.replies(asked)
            return [m.markdown for m in shown] == [f"Re: {STALLED}"] and not actions(
                shown[0].blocks
            )

        await until(finished, "the answer, written again by another worker", within=WAIT)
        assert team.replies(asked)[0].ts == cut.ts, "in the cut answer's message"
    assert team.asked[STALLED] == 2
