"""Token usage per user: the store contract run against every store, exact counts from two
stores adding at once on one SQLite file and on one Postgres database, pruning, and the UTC
periods the counters belong to."""

from __future__ import annotations

import asyncio
import calendar
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.store import ConversationStore, PostgresStore, SqliteStore, Usage, user_key
from core.store.usage import DAY, kept_since, periods
from tests.support import stores
from tests.support.clock import FakeTime
from tests.support.postgres import fresh_schema

clock, store = stores.clock, stores.store  # the contract fixtures, by the same names

ADA = user_key("slack", "T1", "U1")


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> float:
    return float(calendar.timegm((year, month, day, hour, minute, 0)))


MARCH_14 = utc(2025, 3, 14, 20, 48)


def test_a_user_key_is_platform_workspace_user() -> None:
    assert ADA == "slack:T1:U1"


# --- the periods ------------------------------------------------------------------------------


def test_the_periods_of_a_time_are_its_utc_day_and_calendar_month() -> None:
    period = periods(MARCH_14)
    assert (period.day, period.day_ends) == (utc(2025, 3, 14), utc(2025, 3, 15))
    assert (period.month, period.month_ends) == (utc(2025, 3, 1), utc(2025, 4, 1))


def test_the_last_second_of_a_year_ends_at_the_next_years_first() -> None:
    period = periods(utc(2025, 12, 31, 23, 59) + 59)
    assert (period.day, period.day_ends) == (utc(2025, 12, 31), utc(2026, 1, 1))
    assert (period.month, period.month_ends) == (utc(2025, 12, 1), utc(2026, 1, 1))
    assert periods(utc(2026, 1, 1)).month == utc(2026, 1, 1)


def test_prune_keeps_today_and_two_days_before_and_this_month_and_two_before() -> None:
    assert kept_since(MARCH_14) == (utc(2025, 3, 12), utc(2025, 1, 1))
    assert kept_since(utc(2025, 2, 1, 0, 30)) == (utc(2025, 1, 30), utc(2024, 12, 1))


# --- the store contract -----------------------------------------------------------------------


async def test_a_user_with_no_usage_has_zero_and_the_next_resets(
    store: ConversationStore,
) -> None:
    assert await store.usage(ADA, now=MARCH_14) == Usage(
        day=0, month=0, day_resets_at=utc(2025, 3, 15), month_resets_at=utc(2025, 4, 1)
    )


async def test_usage_adds_up_into_the_day_and_the_month(store: ConversationStore) -> None:
    await store.add_usage(ADA, 1200, at=MARCH_14)
    await store.add_usage(ADA, 34, at=MARCH_14 + 60)
    await store.add_usage(ADA, 0, at=MARCH_14 + 120)

    usage = await store.usage(ADA, now=MARCH_14 + 180)
    assert (usage.day, usage.month) == (1234, 1234)


async def test_a_new_utc_day_starts_at_zero_while_the_month_goes_on(
    store: ConversationStore,
) -> None:
    await store.add_usage(ADA, 500, at=utc(2025, 3, 14, 23, 59))
    await store.add_usage(ADA, 20, at=utc(2025, 3, 15, 0, 1))

    assert await store.usage(ADA, now=utc(2025, 3, 14, 23, 59)) == Usage(
        day=500, month=520, day_resets_at=utc(2025, 3, 15), month_resets_at=utc(2025, 4, 1)
    )
    assert await store.usage(ADA, now=utc(2025, 3, 15, 9)) == Usage(
        day=20, month=520, day_resets_at=utc(2025, 3, 16), month_resets_at=utc(2025, 4, 1)
    )
    assert await store.usage(ADA, now=utc(2025, 3, 16)) == Usage(
        day=0, month=520, day_resets_at=utc(2025, 3, 17), month_resets_at=utc(2025, 4, 1)
    )


async def test_a_new_month_starts_both_counters_at_zero(store: ConversationStore) -> None:
    await store.add_usage(ADA, 700, at=utc(2025, 3, 31, 23, 30))
    await store.add_usage(ADA, 7, at=utc(2025, 4, 1, 0, 30))

    usage = await store.usage(ADA, now=utc(2025, 4, 1, 1))
    assert (usage.day, usage.month) == (7, 7)
    assert usage.month_resets_at == utc(2025, 5, 1)


async def test_usage_is_counted_at_the_stores_time_by_default(
    store: ConversationStore, clock: FakeTime
) -> None:
    clock.now = MARCH_14
    await store.add_usage(ADA, 42)
    assert (await store.usage(ADA, now=MARCH_14)).day == 42
    assert (await store.usage(ADA, now=MARCH_14 + DAY)).day == 0


async def test_each_user_has_their_own_counters(store: ConversationStore) -> None:
    same_id_elsewhere = user_key("slack", "T2", "U1")
    await store.add_usage(ADA, 10, at=MARCH_14)
    await store.add_usage(same_id_elsewhere, 3, at=MARCH_14)

    assert (await store.usage(ADA, now=MARCH_14)).month == 10
    assert (await store.usage(same_id_elsewhere, now=MARCH_14)).month == 3
    assert (await store.usage(user_key("discord", "T1", "U1"), now=MARCH_14)).month == 0


async def test_negative_usage_is_refused(store: ConversationStore) -> None:
    with pytest.raises(ValueError, match="never negative"):
        await store.add_usage(ADA, -1, at=MARCH_14)
    assert (await store.usage(ADA, now=MARCH_14)).day == 0


async def test_concurrent_adds_on_one_store_are_exact(store: ConversationStore) -> None:
    await asyncio.gather(*(store.add_usage(ADA, n, at=MARCH_14) for n in range(1, 21)))
    usage = await store.usage(ADA, now=MARCH_14)
    assert (usage.day, usage.month) == (210, 210)


async def test_prune_deletes_old_days_and_months_and_keeps_recent_ones(
    store: ConversationStore, clock: FakeTime
) -> None:
    for day in range(1, 15):  # 1 token on each of March 1st to 14th
        await store.add_usage(ADA, 1, at=utc(2025, 3, day, 12))
    for month in (12, 11):  # and on December and November of the year before
        await store.add_usage(ADA, 100, at=utc(2024, month, 15))
    await store.add_usage(ADA, 10, at=utc(2025, 1, 15))

    clock.now = MARCH_14
    assert await store.prune(older_than=0.0) == 0  # no history: only usage goes

    async def day_count(day: int) -> int:
        return (await store.usage(ADA, now=utc(2025, 3, day, 12))).day

    assert [await day_count(day) for day in (10, 11, 12, 13, 14)] == [0, 0, 1, 1, 1]
    assert (await store.usage(ADA, now=MARCH_14)).month == 14  # this month's row stays
    assert (await store.usage(ADA, now=utc(2025, 1, 15))).month == 10  # two months before
    assert (await store.usage(ADA, now=utc(2024, 12, 15))).month == 0
    assert (await store.usage(ADA, now=utc(2024, 11, 15))).month == 0


# --- several stores on one file or database ---------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
async def two_stores(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[list[ConversationStore]]:
    """Two stores on one SQLite file or one Postgres schema: two worker processes' stores."""
    opened: list[ConversationStore] = []
    if request.param == "sqlite":
        for _ in range(2):
            opened.append(await SqliteStore.open(tmp_path / "relaybot.db"))
    else:
        url = await fresh_schema(request.getfixturevalue("postgres_database"))
        for _ in range(2):
            opened.append(await PostgresStore.open(url))
    yield opened
    for each in opened:
        await each.close()


async def test_twenty_concurrent_adds_from_two_stores_are_counted_exactly(
    two_stores: list[ConversationStore],
) -> None:
    adds = [
        two_stores[n % 2].add_usage(ADA, 1000 + n, at=MARCH_14 + n) for n in range(20)
    ]  # each its own turn's tokens, half through each store
    await asyncio.gather(*adds)

    expected = sum(1000 + n for n in range(20))
    for each in two_stores:
        usage = await each.usage(ADA, now=MARCH_14)
        assert (usage.day, usage.month) == (expected, expected)


async def test_two_stores_adding_at_their_own_time_share_the_counters(
    two_stores: list[ConversationStore],
) -> None:
    """No ``at``: each store counts at its time now (this machine's clock, or the server's)."""
    before = time.time()
    await asyncio.gather(*(two_stores[n % 2].add_usage(ADA, 5) for n in range(20)))
    after = time.time()
    if periods(before).day != periods(after).day:
        pytest.skip("a UTC day ended while the test ran")

    usage = await two_stores[1].usage(ADA, now=after)
    assert (usage.day, usage.month) == (100, 100)
