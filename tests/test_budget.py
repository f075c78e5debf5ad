"""EditBudget: shared token buckets, on a fake clock (no wall-clock sleeps)."""

from __future__ import annotations

import asyncio
import math
from bisect import bisect_right
from collections.abc import Sequence

import pytest

from adapters.budget import DEFAULT_RATES, EditBudget, Rate, TokenBucketBudget
from tests.support.clock import FakeClock, settle

SLACK = ("slack.workspace:T1",)
STEP = 60 / 45  # seconds between two Slack tokens at the default rate


class Replies:
    """Tasks that each acquire ``edits`` times, recording (time, reply) per grant."""

    def __init__(self, budget: EditBudget, clock: FakeClock) -> None:
        self.budget, self.clock = budget, clock
        self.grants: list[tuple[float, str]] = []
        self.tasks: list[asyncio.Task[None]] = []

    def start(
        self, name: str, scopes: Sequence[str], *, edits: int = 1, urgent: bool = False
    ) -> asyncio.Task[None]:
        async def reply() -> None:
            for _ in range(edits):
                await self.budget.acquire(scopes, urgent=urgent)
                self.grants.append((self.clock.now(), name))
                await asyncio.sleep(0)  # the edit itself: others run meanwhile

        self.tasks.append(asyncio.create_task(reply(), name=f"reply {name}"))
        return self.tasks[-1]

    @property
    def times(self) -> list[float]:
        return [time for time, _ in self.grants]

    @property
    def names(self) -> list[str]:
        return [name for _, name in self.grants]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def most_in_window(times: list[float], window: float) -> int:
    """The most grants any closed window of ``window`` seconds holds."""
    return max((bisect_right(times, t + window) - i for i, t in enumerate(times)), default=0)


def test_rate_per_and_validation() -> None:
    assert Rate.per(45, 60, burst=5) == Rate(per_second=0.75, burst=5)
    assert Rate.per(3, 5).burst == 1
    assert Rate.window(20, 60) == Rate(per_second=1 / 3, burst=20, sliding=True)
    assert Rate.window(20, 60).seconds == pytest.approx(60)
    bad_rates: list[dict[str, float | bool]] = [
        {"per_second": 0, "burst": 1},
        {"per_second": 1, "burst": 0.5},
        {"per_second": 1, "burst": 2.5, "sliding": True},
    ]
    for bad in bad_rates:
        with pytest.raises(ValueError, match="must be"):
            Rate(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "limit", "window"),
    [
        ("slack.workspace", 50, 60),
        ("slack.channel", 10, 10),
        ("discord.channel", 5, 5),
        ("discord.global", 50, 1),
    ],
)
def test_defaults_never_exceed_the_platform_limit_in_any_window(
    kind: str, limit: int, window: float
) -> None:
    rate = DEFAULT_RATES[kind]
    assert rate.burst + rate.per_second * window <= limit


@pytest.mark.parametrize("kind", ["slack.stream.start", "slack.stream.stop"])
def test_slacks_tier_2_is_a_sliding_window_one_short_of_its_limit(kind: str) -> None:
    rate = DEFAULT_RATES[kind]
    assert rate.sliding
    assert rate.burst == 19
    assert rate.seconds == pytest.approx(61)  # a second for the calls in flight at its edges


async def test_a_sliding_window_grants_its_count_at_once_then_as_calls_lapse(
    clock: FakeClock,
) -> None:
    """As Slack counts: a quiet minute's 3 calls at once; the next when the first lapses."""
    scope = ("slack.stream.start:T1",)
    budget = TokenBucketBudget({"slack.stream.start": Rate.window(3, 60)}, clock=clock)
    replies = Replies(budget, clock)
    replies.start("a", scope, edits=2)
    await clock.advance(10)
    replies.start("b", scope, edits=3)
    await clock.advance(200)
    assert replies.times == pytest.approx([0, 0, 10, 60, 60])
    assert most_in_window(replies.times, 60 - 1e-6) == 3
    assert await budget.try_acquire(scope) is True  # 60 + 60 has passed: the window is quiet
    assert budget.available(scope[0]) == 2
    await replies.stop()


async def test_a_paused_window_lets_one_call_through_when_the_pause_ends(
    clock: FakeClock,
) -> None:
    scope = ("slack.stream.start:T1",)
    budget = TokenBucketBudget({"slack.stream.start": Rate.window(3, 60)}, clock=clock)
    budget.pause(scope, 30)
    budget.pause(scope, 5)  # a shorter pause does not end a longer one
    assert budget.available(scope[0]) == 0
    replies = Replies(budget, clock)
    replies.start("a", scope, edits=3)
    await clock.advance(100)
    assert replies.times == pytest.approx([30, 50, 70])  # then at the window's rate
    await clock.advance(200)  # the window empties and its scope is dropped on a sweep
    assert budget.available(scope[0]) == 3
    await replies.stop()


async def test_a_burst_at_once_then_the_sustained_rate(clock: FakeClock) -> None:
    replies = Replies(TokenBucketBudget(clock=clock), clock)
    replies.start("a", SLACK, edits=8)
    await clock.advance(10)
    assert replies.times == pytest.approx([0, 0, 0, 0, 0, STEP, 2 * STEP, 3 * STEP])
    await replies.stop()


async def test_try_acquire_takes_a_free_token_at_once_or_nothing(clock: FakeClock) -> None:
    budget = TokenBucketBudget({"slack.stream.start": Rate.per(18, 60, burst=2)}, clock=clock)
    start = ("slack.stream.start:T1",)
    assert [await budget.try_acquire(start) for _ in range(3)] == [True, True, False]
    assert budget.available(start[0]) == pytest.approx(0)  # the refusal took nothing
    waiting = asyncio.create_task(budget.acquire(start))
    await clock.advance(60 / 18 - 0.01)
    assert not waiting.done()
    await clock.advance(0.01)  # the waiter's token is due: it goes before a later try
    assert waiting.done()
    assert await budget.try_acquire(start) is False
    await clock.advance(60 / 18)
    assert await budget.try_acquire(start) is True
    assert await budget.try_acquire(("no.rate:here",)) is True


async def test_fifty_replies_share_one_workspace_in_turn_and_within_the_rate(
    clock: FakeClock,
) -> None:
    budget = TokenBucketBudget(clock=clock)
    replies = Replies(budget, clock)
    for n in range(50):
        replies.start(f"r{n}", SLACK, edits=3)
    for _ in range(60):
        await clock.advance(1)

    rate = DEFAULT_RATES["slack.workspace"]
    for window in (1, 5, 30, 60):
        assert most_in_window(replies.times, window) <= rate.burst + rate.per_second * window
    assert len(replies.grants) == 5 + 45  # the 45th sustained token is due at 60 s
    assert replies.names == [f"r{n}" for n in range(50)][: len(replies.grants)]
    await clock.advance(STEP * 3)
    assert replies.names[49:52] == ["r49", "r0", "r1"]  # each reply's next edit waits its turn
    await replies.stop()


async def test_the_global_bucket_is_shared_by_two_channels(clock: FakeClock) -> None:
    budget = TokenBucketBudget(
        {"discord.channel": Rate(per_second=10, burst=10), "discord.global": Rate.per(1, 1)},
        clock=clock,
    )
    replies = Replies(budget, clock)
    for channel in ("1", "2"):
        for n in range(3):
            replies.start(
                f"{channel}.{n}", (f"discord.channel:{channel}", "discord.global"), edits=5
            )
    for _ in range(20):
        await clock.advance(0.5)

    assert replies.times == pytest.approx(list(range(11)))  # one a second, all channels together
    from_first = sum(name.startswith("1.") for name in replies.names)
    assert from_first in (5, 6)  # the channels take turns at the global bucket
    await replies.stop()


async def test_no_channel_token_is_held_while_waiting_for_the_global_one(clock: FakeClock) -> None:
    rates = {"discord.global": Rate.per(1, 1), "discord.channel": Rate.per(3, 5, burst=2)}
    budget = TokenBucketBudget(rates, clock=clock)
    await budget.acquire(("discord.global",))
    waiter = asyncio.create_task(budget.acquire(("discord.channel:7", "discord.global")))
    await clock.advance(0.5)
    assert not waiter.done()
    assert budget.available("discord.channel:7") == 2
    await clock.advance(0.5)
    assert waiter.done()
    assert budget.available("discord.channel:7") == pytest.approx(1)
    assert budget.available("discord.global") == pytest.approx(0)


async def test_pause_blocks_the_first_scope_then_refills_from_empty(clock: FakeClock) -> None:
    budget = TokenBucketBudget(clock=clock)
    budget.pause(("slack.workspace:T1",), 10)
    budget.pause(("discord.channel:7", "discord.global"), 3)
    assert budget.available("slack.workspace:T1") == 0
    assert budget.available("slack.workspace:T2") == 5  # another workspace is not paused
    assert budget.available("discord.global") == 10  # only the first scope is paused

    replies = Replies(budget, clock)
    replies.start("a", SLACK, edits=3)
    replies.start("other", ("slack.workspace:T2",))
    await clock.advance(9.9)
    assert replies.grants == [(0, "other")]
    await clock.advance(15)
    assert replies.times == pytest.approx([0, 10, 10 + STEP, 10 + 2 * STEP])
    await replies.stop()


async def test_a_shorter_pause_does_not_end_a_longer_one(clock: FakeClock) -> None:
    budget = TokenBucketBudget(clock=clock)
    budget.pause(SLACK, 10)
    budget.pause(SLACK, 1)
    waiter = asyncio.create_task(budget.acquire(SLACK))
    await clock.advance(9.9)
    assert not waiter.done()
    await clock.advance(0.1)
    assert waiter.done()


async def test_a_cancelled_waiter_takes_nothing_and_holds_nobody_up(clock: FakeClock) -> None:
    budget = TokenBucketBudget(clock=clock)
    for _ in range(5):
        await budget.acquire(SLACK)
    replies = Replies(budget, clock)
    head, queued, _ = (replies.start(name, SLACK) for name in ("head", "queued", "last"))
    await clock.advance(1)
    head.cancel()  # asleep until the next token
    queued.cancel()  # waiting for its turn
    await settle()
    await clock.advance(STEP - 1)
    assert replies.names == ["last"]
    assert replies.times == pytest.approx([STEP])
    await clock.advance(STEP)
    assert budget.available(SLACK[0]) == pytest.approx(1)  # the cancelled ones took nothing
    assert budget._lines == {}
    await replies.stop()


async def test_scopes_without_a_rate_never_wait(clock: FakeClock) -> None:
    budget = TokenBucketBudget(clock=clock)
    many = asyncio.gather(*(budget.acquire(("console",)) for _ in range(1000)))
    await settle()
    assert many.done()
    assert budget.available("console:tty") == math.inf
    budget.pause(("console",), 10)  # nothing to pause
    await budget.acquire(("console", "console:tty"))


async def test_rates_override_a_kind_or_one_scope(clock: FakeClock) -> None:
    budget = TokenBucketBudget(
        {
            "slack.workspace": Rate.per(10, 60, burst=2),
            "slack.workspace:TBIG": Rate(per_second=10, burst=100),
            "console": Rate.per(1, 1),
        },
        clock=clock,
    )
    assert budget.available("slack.workspace:T1") == 2
    assert budget.available("slack.workspace:TBIG") == 100
    assert budget.available("console") == 1
    assert budget.available("discord.channel:1") == DEFAULT_RATES["discord.channel"].burst


async def test_idle_full_buckets_are_dropped(clock: FakeClock) -> None:
    budget = TokenBucketBudget({"discord.channel": Rate.per(3, 5, burst=2)}, clock=clock)
    for channel in range(100):
        await budget.acquire((f"discord.channel:{channel}",))
    budget.pause(("discord.channel:paused",), 120)
    assert len(budget._buckets) == 101
    await clock.advance(61)
    await budget.acquire(("discord.channel:new",))
    assert sorted(budget._buckets) == ["discord.channel:new", "discord.channel:paused"]
    assert budget.available("discord.channel:0") == 2


async def test_urgent_callers_go_ahead_of_those_already_waiting(clock: FakeClock) -> None:
    budget = TokenBucketBudget(clock=clock)
    for _ in range(5):
        await budget.acquire(SLACK)
    replies = Replies(budget, clock)
    for n in range(3):
        replies.start(f"interim{n}", SLACK)
    await clock.advance(0.1)
    replies.start("final0", SLACK, urgent=True)
    replies.start("final1", SLACK, urgent=True)
    await clock.advance(STEP * 5)

    assert replies.names == ["final0", "final1", "interim0", "interim1", "interim2"]
    assert replies.times == pytest.approx([STEP * n for n in range(1, 6)])  # still the rate
    assert budget._urgent == {}
    await replies.stop()


async def test_urgent_callers_hold_up_only_the_scopes_they_wait_on(clock: FakeClock) -> None:
    rates = {"discord.channel": Rate.per(1, 1), "discord.global": Rate(per_second=100, burst=100)}
    budget = TokenBucketBudget(rates, clock=clock)
    await budget.acquire(("discord.channel:1", "discord.global"))
    replies = Replies(budget, clock)
    replies.start("busy channel, final", ("discord.channel:1", "discord.global"), urgent=True)
    replies.start("busy channel, interim", ("discord.channel:1", "discord.global"))
    replies.start("quiet channel", ("discord.channel:2", "discord.global"))
    await clock.advance(2.5)
    assert replies.names == ["quiet channel", "busy channel, final", "busy channel, interim"]
    await replies.stop()


async def test_a_cancelled_urgent_caller_releases_the_others(clock: FakeClock) -> None:
    budget = TokenBucketBudget(clock=clock)
    budget.pause(SLACK, 30)
    replies = Replies(budget, clock)
    urgent = replies.start("final", SLACK, urgent=True)
    replies.start("interim", SLACK)
    await clock.advance(1)
    urgent.cancel()
    await clock.advance(30)
    assert replies.names == ["interim"]
    assert budget._urgent == {}
    await replies.stop()
