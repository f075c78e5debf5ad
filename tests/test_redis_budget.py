"""RedisBudget: the edit budget every process shares, against the real Redis (127.0.0.1:6379).

Two ``RedisBudget`` instances on two clients stand for two processes. Waiting goes through an
injected sleep the test wakes by hand, and a test gives a bucket its next token by writing it
(the rates are so slow that none arrives by itself), so nothing waits on the wall clock; the
one test that lets time run counts grants in Redis's own time. Without a Redis the tests fail,
unless ``RELAYBOT_TEST_NO_REDIS=1`` says to skip them.
"""

from __future__ import annotations

import asyncio
import math
import os
import uuid
from bisect import bisect_right
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack

import pytest
from redis.asyncio import Redis

from adapters.budget import Rate, TokenBucketBudget
from adapters.redis_budget import (
    BudgetUnavailable,
    RedisBudget,
    _Answer,
    _Waiter,
    open_redis_budget,
    redacted_url,
)
from bots.runtime import edit_budget
from bots.settings import load_settings

REDIS_URL = "redis://127.0.0.1:6379/0"
SLOW = Rate(per_second=0.001, burst=5)  # no token arrives by itself during a test
SCOPE = "slack.workspace:T1"
RATES = {"slack.workspace": SLOW, "discord.channel": Rate(per_second=0.001, burst=2),
         "discord.global": Rate(per_second=0.001, burst=1)}  # fmt: skip


class Sleeps:
    """An injectable sleep that sleeps until the test wakes it, recording what was asked."""

    def __init__(self) -> None:
        self.asked: list[float] = []
        self._wake = asyncio.Event()
        self._arrived = asyncio.Condition()

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        wake = self._wake
        async with self._arrived:
            self._arrived.notify_all()
        await wake.wait()

    async def until_asked(self, count: int) -> None:
        async with self._arrived:
            await self._arrived.wait_for(lambda: len(self.asked) >= count)

    def wake(self) -> None:
        self._wake.set()
        self._wake = asyncio.Event()


class Recording(RedisBudget):
    """A RedisBudget that notes Redis's time of each grant."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.grants: list[float] = []

    async def _attempt(self, waiter: _Waiter) -> _Answer:
        answer = await super()._attempt(waiter)
        if answer.took:
            self.grants.append(answer.at)
        return answer


@pytest.fixture
def prefix() -> str:
    return f"relaybot-test:{uuid.uuid4().hex}:"


@pytest.fixture
async def connect(prefix: str) -> AsyncIterator[Callable[[], Awaitable[Redis]]]:
    """Opens clients (one per "process"); the test's keys are deleted afterwards."""
    async with AsyncExitStack() as stack:

        async def open_client() -> Redis:
            client = Redis.from_url(REDIS_URL)
            stack.push_async_callback(client.aclose)
            try:
                await client.ping()
            except OSError as error:  # redis' ConnectionError is an OSError too
                if os.environ.get("RELAYBOT_TEST_NO_REDIS") == "1":
                    pytest.skip(f"no Redis at {REDIS_URL} (RELAYBOT_TEST_NO_REDIS=1)")
                pytest.fail(f"these tests need Redis at {REDIS_URL}: {error}")
            return client

        first = await open_client()
        yield open_client
        keys = [key async for key in first.scan_iter(match=f"{prefix}*")]
        if keys:
            await first.delete(*keys)


@pytest.fixture
async def redis(connect: Callable[[], Awaitable[Redis]]) -> Redis:
    return await connect()


async def put_tokens(redis: Redis, budget: RedisBudget, scope: str, tokens: float) -> None:
    """Set ``scope``'s bucket to ``tokens`` now (Redis's now)."""
    seconds, micros = await redis.time()
    await redis.hset(
        budget.bucket_key(scope), mapping={"tokens": tokens, "since": f"{seconds}.{micros:06d}"}
    )


def most_in_window(times: list[float], window: float) -> int:
    return max((bisect_right(times, t + window) - i for i, t in enumerate(times)), default=0)


def start(
    budget: RedisBudget, scopes: Sequence[str], names: list[str], name: str, *, urgent: bool = False
) -> asyncio.Task[None]:
    async def reply() -> None:
        await budget.acquire(scopes, urgent=urgent)
        names.append(name)

    return asyncio.create_task(reply(), name=name)


async def test_two_processes_never_exceed_the_rate_in_any_window(
    connect: Callable[[], Awaitable[Redis]], prefix: str
) -> None:
    rate = Rate(per_second=20, burst=5)
    budgets = [Recording(await connect(), {"slack.workspace": rate}, key_prefix=prefix)
               for _ in range(2)]  # fmt: skip
    wanted = 45

    async def reply(budget: RedisBudget) -> None:
        while sum(len(b.grants) for b in budgets) < wanted:
            await budget.acquire((SCOPE,))

    await asyncio.gather(*(reply(budget) for budget in budgets for _ in range(3)))

    times = sorted(t for budget in budgets for t in budget.grants)
    assert wanted <= len(times) <= wanted + 5  # the last ones were already waiting
    assert all(budget.grants for budget in budgets)  # both processes were served
    for window in (0.05, 0.1, 0.25, 0.5, 1.0):
        assert most_in_window(times, window) <= math.floor(
            rate.burst + rate.per_second * (window + 1e-5)
        )


async def test_two_processes_never_exceed_a_sliding_window(
    connect: Callable[[], Awaitable[Redis]], prefix: str
) -> None:
    rate = Rate.window(5, 0.25)
    budgets = [Recording(await connect(), {"slack.workspace": rate}, key_prefix=prefix)
               for _ in range(2)]  # fmt: skip
    wanted = 15

    async def reply(budget: RedisBudget) -> None:
        while sum(len(b.grants) for b in budgets) < wanted:
            await budget.acquire((SCOPE,))

    await asyncio.gather(*(reply(budget) for budget in budgets for _ in range(3)))

    times = sorted(t for budget in budgets for t in budget.grants)
    assert wanted <= len(times) <= wanted + 5
    assert all(budget.grants for budget in budgets)
    assert most_in_window(times, 0.25 - 1e-4) <= 5


async def test_a_sliding_window_is_a_sorted_set_paused_and_counted_alike(
    connect: Callable[[], Awaitable[Redis]], prefix: str, redis: Redis
) -> None:
    sleeps = Sleeps()
    rates = {**RATES, "slack.stream.start": Rate.window(3, 60)}
    a = RedisBudget(await connect(), rates, key_prefix=prefix, sleep=sleeps)
    b = RedisBudget(await connect(), rates, key_prefix=prefix)
    starts = "slack.stream.start:T1"
    assert a.bucket_key(starts) == f"{prefix}budget-window:{starts}"
    assert [await budget.try_acquire((starts,)) for budget in (a, b, a, b)] == [
        True, True, True, False
    ]  # fmt: skip
    assert await b.tokens(starts) == 0
    assert await redis.zcard(a.bucket_key(starts)) == 3
    assert 50_000 < await redis.pttl(a.bucket_key(starts)) <= 61_000  # its last call's lapse
    a.pause((starts,), 90)
    a.pause((starts,), 10)  # a shorter pause does not end a longer one
    names: list[str] = []
    waiting = start(a, (starts,), names, "a")
    await sleeps.until_asked(1)
    assert 80 < sleeps.asked[0] <= 90  # until the pause ends, by Redis's clock
    assert await b.tokens(starts) == 0
    assert await redis.zcard(a.bucket_key(starts)) == 3  # its last 3 calls: what decides
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    await a.aclose()


async def test_a_pause_blocks_every_process(
    connect: Callable[[], Awaitable[Redis]], prefix: str, redis: Redis
) -> None:
    sleeps_a, sleeps_b = Sleeps(), Sleeps()
    rates = {**RATES, "slack.workspace": Rate(per_second=1, burst=5)}
    a = RedisBudget(await connect(), rates, key_prefix=prefix, sleep=sleeps_a)
    b = RedisBudget(await connect(), rates, key_prefix=prefix, sleep=sleeps_b)
    a.pause((SCOPE, "discord.global"), 30)
    assert a.available(SCOPE) == 0
    names: list[str] = []
    waiting = [start(a, (SCOPE,), names, "a")]
    await sleeps_a.until_asked(1)  # a's take waited for its pause to reach Redis: b sees it
    waiting.append(start(b, (SCOPE,), names, "b"))
    await sleeps_b.until_asked(1)

    assert names == []
    for asked in (sleeps_a.asked[0], sleeps_b.asked[0]):
        assert 29 < asked <= 30  # until the pause ends, by Redis's clock
    assert await a.tokens(SCOPE) == 0
    assert b.available(SCOPE) == 0  # what b saw
    assert await b.tokens("slack.workspace:T2") == 5  # another workspace is not paused
    assert await b.tokens("discord.global") == 1  # only the first scope is paused
    assert (
        30_000 < await redis.pttl(a.bucket_key(SCOPE)) <= 35_000
    )  # empty until 29 s, full at 34 s
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)


async def test_try_acquire_takes_a_free_token_across_processes_or_nothing(
    connect: Callable[[], Awaitable[Redis]], prefix: str, redis: Redis
) -> None:
    a = RedisBudget(await connect(), RATES, key_prefix=prefix)
    b = RedisBudget(await connect(), RATES, key_prefix=prefix)
    await put_tokens(redis, a, SCOPE, 2)
    assert await a.try_acquire((SCOPE,)) is True
    assert await b.try_acquire((SCOPE,)) is True
    assert await a.try_acquire((SCOPE,)) is False  # both processes' takes counted
    assert await b.tokens(SCOPE) < 1  # the refusal took nothing


async def test_urgent_callers_go_first_across_processes(
    connect: Callable[[], Awaitable[Redis]], prefix: str, redis: Redis
) -> None:
    sleeps_a, sleeps_b = Sleeps(), Sleeps()
    a = RedisBudget(await connect(), RATES, key_prefix=prefix, sleep=sleeps_a)
    b = RedisBudget(await connect(), RATES, key_prefix=prefix, sleep=sleeps_b)
    await put_tokens(redis, a, SCOPE, 0)
    names: list[str] = []
    interim = start(a, (SCOPE,), names, "interim")
    await sleeps_a.until_asked(1)
    final = start(b, (SCOPE,), names, "final", urgent=True)
    await sleeps_b.until_asked(1)
    assert await redis.zcard(b.urgent_key(SCOPE)) == 1
    assert 0 < await redis.pttl(b.urgent_key(SCOPE)) <= 10_000

    await put_tokens(redis, a, SCOPE, 1)
    sleeps_a.wake()  # the interim edit asks first, and is told to wait for the final text
    await sleeps_a.until_asked(2)
    assert sleeps_a.asked[1] <= 1
    sleeps_b.wake()
    await final
    assert names == ["final"]
    assert await redis.zcard(b.urgent_key(SCOPE)) == 0

    await put_tokens(redis, a, SCOPE, 1)
    sleeps_a.wake()
    await interim
    assert names == ["final", "interim"]


async def test_a_cancelled_or_crashed_urgent_caller_releases_the_others(
    connect: Callable[[], Awaitable[Redis]], prefix: str, redis: Redis
) -> None:
    sleeps_a, sleeps_b = Sleeps(), Sleeps()
    a = RedisBudget(await connect(), RATES, key_prefix=prefix, sleep=sleeps_a)
    b = RedisBudget(await connect(), RATES, key_prefix=prefix, sleep=sleeps_b)
    await put_tokens(redis, a, SCOPE, 0)
    names: list[str] = []
    final = start(b, (SCOPE,), names, "final", urgent=True)
    await sleeps_b.until_asked(1)
    interim = start(a, (SCOPE,), names, "interim")
    await sleeps_a.until_asked(1)

    final.cancel()
    await asyncio.gather(final, return_exceptions=True)
    await b.aclose()  # its clean-up has landed
    assert await redis.zcard(b.urgent_key(SCOPE)) == 0
    seconds, _ = await redis.time()  # a crashed process's registration, lapsed
    await redis.zadd(b.urgent_key(SCOPE), {"crashed": seconds - 1})

    await put_tokens(redis, a, SCOPE, 1)
    sleeps_a.wake()
    await interim
    assert names == ["interim"]
    assert await a.tokens(SCOPE) < 1


@pytest.mark.parametrize("rate", [SLOW, Rate.window(5, 60)], ids=["bucket", "window"])
async def test_a_cancelled_caller_takes_nothing(
    connect: Callable[[], Awaitable[Redis]], prefix: str, rate: Rate
) -> None:
    rates = {**RATES, "slack.workspace": rate}
    budget = RedisBudget(await connect(), rates, key_prefix=prefix, sleep=Sleeps())
    granted = 0
    for turns in range(12):  # cancelled at every point of its life: before, during, after
        task = asyncio.create_task(budget.acquire((SCOPE,), urgent=turns % 2 == 0))
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        granted += not task.cancelled()
        await budget.aclose()
    assert await budget.tokens(SCOPE) == pytest.approx(5 - granted, abs=0.01)


async def test_no_channel_token_is_taken_while_the_global_one_is_missing(
    connect: Callable[[], Awaitable[Redis]], prefix: str, redis: Redis
) -> None:
    sleeps = Sleeps()
    budget = RedisBudget(await connect(), RATES, key_prefix=prefix, sleep=sleeps)
    await put_tokens(redis, budget, "discord.global", 0)
    names: list[str] = []
    waiter = start(budget, ("discord.channel:7", "discord.global"), names, "reply")
    await sleeps.until_asked(1)
    assert await budget.tokens("discord.channel:7") == 2
    assert not await redis.exists(budget.bucket_key("discord.channel:7"))

    await put_tokens(redis, budget, "discord.global", 1)
    sleeps.wake()
    await waiter
    assert await budget.tokens("discord.channel:7") == pytest.approx(1, abs=0.01)
    assert await budget.tokens("discord.global") == pytest.approx(0, abs=0.01)
    assert budget.available("discord.channel:7") == pytest.approx(1, abs=0.01)


async def test_idle_buckets_expire_and_unlimited_scopes_touch_nothing(
    connect: Callable[[], Awaitable[Redis]], prefix: str, redis: Redis
) -> None:
    budget = RedisBudget(
        await connect(), {"slack.workspace": Rate(per_second=2, burst=4)}, key_prefix=prefix
    )
    await budget.acquire(("console", "console:tty"))
    assert [key async for key in redis.scan_iter(match=f"{prefix}*")] == []
    assert budget.available("console") == math.inf

    await budget.acquire((SCOPE,))
    await budget.acquire((SCOPE,))
    # full again 1 s after the take (2 tokens at 2 a second), plus a second's margin
    assert 1_000 < await redis.pttl(budget.bucket_key(SCOPE)) <= 2_000


async def test_rates_override_a_kind_or_one_scope(
    connect: Callable[[], Awaitable[Redis]], prefix: str
) -> None:
    rates: Mapping[str, Rate] = {
        "slack.workspace": Rate.per(10, 60, burst=2),
        "slack.workspace:TBIG": Rate(per_second=10, burst=100),
    }
    budget = RedisBudget(await connect(), rates, key_prefix=prefix)
    assert await budget.tokens("slack.workspace:T1") == 2
    assert await budget.tokens("slack.workspace:TBIG") == 100
    assert await budget.tokens("discord.channel:1") == 1  # the default rate
    assert await budget.tokens("console") == math.inf


async def test_no_redis_is_a_clear_error_naming_the_url_without_its_password() -> None:
    with pytest.raises(BudgetUnavailable) as caught:
        async with open_redis_budget("redis://bot:hunter2@127.0.0.1:1/0"):
            pass
    message = str(caught.value)
    assert message.startswith("cannot reach Redis at redis://bot@127.0.0.1:1/0: ")
    assert "hunter2" not in message
    assert redacted_url("redis://:pw@host:6379") == "redis://host:6379"
    assert redacted_url("rediss://host:6380/1") == "rediss://host:6380/1"


async def test_the_runtime_shares_the_budget_through_redis_when_a_url_is_set(
    redis: Redis, prefix: str
) -> None:
    settings = load_settings(
        environ={"RELAYBOT_REDIS__URL": REDIS_URL, "RELAYBOT_REDIS__KEY_PREFIX": prefix}
    )
    async with edit_budget(settings) as budget:
        assert isinstance(budget, RedisBudget)
        await budget.acquire((SCOPE,))
        assert await redis.exists(budget.bucket_key(SCOPE))
    async with edit_budget(load_settings(environ={})) as budget:
        assert isinstance(budget, TokenBucketBudget)
