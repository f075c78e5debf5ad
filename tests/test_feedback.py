"""Feedback on answers: the store contract run against every store, the older schemas that
gain it, the counting helper a platform's button calls, and ``relaybot feedback`` as a user
runs it (a real process on a real SQLite file)."""

from __future__ import annotations

import asyncio
import calendar
import json
import logging
import os
import sqlite3
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from bots.feedback import parse_period, record, summary
from core.messages import AssistantMessage, ConversationKey, UserMessage
from core.metrics import REGISTRY
from core.store import (
    ConversationStore,
    Feedback,
    FeedbackTotals,
    MemoryStore,
    PostgresStore,
    SqliteStore,
    StoreError,
    Turn,
)
from tests.support import stores
from tests.support.clock import FakeTime
from tests.support.postgres import fresh_schema

KEY = ConversationKey(platform="slack", workspace="T1", channel="D1", thread="1700000000.000100")
DAY = 86400.0

clock, store = stores.clock, stores.store  # the contract fixtures, by the same names


async def accept(store: ConversationStore, order: str) -> Turn:
    turn = await store.accept(
        event_id=f"slack:T1:D1:{order}",
        key=KEY,
        order=order,
        question=UserMessage(text=f"question {order}", author_id="U1", author_name="Ada"),
        platform="Slack",
        claim_ttl=600,
    )
    assert turn is not None
    return turn


async def answered_turn(store: ConversationStore, order: str) -> Turn:
    """A turn accepted, answered and delivered: what a feedback button sits under."""
    turn = await accept(store, order)
    lease = await store.take(KEY, owner="A", lease_seconds=30)
    assert lease is not None
    assert lease.turn.id == turn.id
    text = f"answer {order}"
    reply = AssistantMessage(text=text, finish_reason="stop")
    await store.answered(lease, messages=[reply], text=text, finish_reason="stop")
    await store.delivered(turn.id, [f"{order}.5"])
    return turn


# --- the store contract -----------------------------------------------------------------------


async def test_a_first_vote_is_new_and_a_second_press_changes_it(
    store: ConversationStore, clock: FakeTime
) -> None:
    turn = await answered_turn(store, "1700000001.000100")
    clock.now = 1000.0
    assert await store.record_feedback(turn.id, "U1", True) is True
    assert await store.feedback_of(turn.id) == [
        Feedback(turn_id=turn.id, user="U1", positive=True, at=1000.0)
    ]

    clock.now = 1060.0
    assert await store.record_feedback(turn.id, "U1", False) is False  # changed their mind
    clock.now = 1070.0
    assert await store.record_feedback(turn.id, "U2", True) is True
    assert await store.feedback_of(turn.id) == [
        Feedback(turn_id=turn.id, user="U1", positive=False, at=1060.0),
        Feedback(turn_id=turn.id, user="U2", positive=True, at=1070.0),
    ]
    assert await store.feedback_totals(0.0) == FeedbackTotals(positive=1, negative=1, turns=1)


async def test_pressing_the_same_button_again_is_not_a_second_vote(
    store: ConversationStore,
) -> None:
    turn = await answered_turn(store, "1700000001.000100")
    assert await store.record_feedback(turn.id, "U1", True) is True
    assert await store.record_feedback(turn.id, "U1", True) is False
    assert await store.feedback_totals(0.0) == FeedbackTotals(positive=1, negative=0, turns=1)


async def test_a_vote_on_no_turn_is_an_error_and_stores_nothing(store: ConversationStore) -> None:
    with pytest.raises(StoreError, match="there is no turn 999 to record feedback on"):
        await store.record_feedback(999, "U1", True)
    assert await store.feedback_of(999) == []
    assert await store.feedback_totals(0.0) == FeedbackTotals()


async def test_totals_count_the_votes_cast_since_a_time(
    store: ConversationStore, clock: FakeTime
) -> None:
    first = await answered_turn(store, "1700000001.000100")
    second = await answered_turn(store, "1700000002.000100")
    third = await answered_turn(store, "1700000003.000100")
    clock.now = 10 * DAY
    await store.record_feedback(first.id, "U1", False)  # cast long ago
    clock.now = 20 * DAY
    await store.record_feedback(second.id, "U1", True)
    await store.record_feedback(second.id, "U2", True)
    await store.record_feedback(third.id, "U2", False)
    clock.now = 21 * DAY
    await store.record_feedback(first.id, "U3", True)  # a recent vote on an old answer

    assert await store.feedback_totals(0.0) == FeedbackTotals(positive=3, negative=2, turns=3)
    assert await store.feedback_totals(20 * DAY) == FeedbackTotals(positive=3, negative=1, turns=3)
    assert await store.feedback_totals(21 * DAY) == FeedbackTotals(positive=1, negative=0, turns=1)
    assert await store.feedback_totals(22 * DAY) == FeedbackTotals()


async def test_a_changed_vote_counts_once_as_it_is_now(
    store: ConversationStore, clock: FakeTime
) -> None:
    turn = await answered_turn(store, "1700000001.000100")
    clock.now = 10 * DAY
    await store.record_feedback(turn.id, "U1", True)
    clock.now = 20 * DAY
    await store.record_feedback(turn.id, "U1", False)
    assert await store.feedback_totals(0.0) == FeedbackTotals(positive=0, negative=1, turns=1)
    # A changed vote is timed by its last press: it is in the period of that press.
    assert await store.feedback_totals(15 * DAY) == FeedbackTotals(positive=0, negative=1, turns=1)


async def test_concurrent_first_presses_make_one_new_vote(store: ConversationStore) -> None:
    turn = await answered_turn(store, "1700000001.000100")
    news = await asyncio.gather(
        *(store.record_feedback(turn.id, "U1", index % 2 == 0) for index in range(6))
    )
    assert sorted(news) == [False] * 5 + [True]
    assert len(await store.feedback_of(turn.id)) == 1


async def test_pruning_a_turn_deletes_its_votes(store: ConversationStore, clock: FakeTime) -> None:
    clock.now = 1 * DAY
    old = await answered_turn(store, "1700000001.000100")
    clock.now = 30 * DAY
    recent = await answered_turn(store, "1700000002.000100")
    await store.record_feedback(old.id, "U1", True)
    await store.record_feedback(recent.id, "U1", False)

    await store.prune(older_than=10 * DAY)

    assert await store.feedback_of(old.id) == []
    assert [vote.positive for vote in await store.feedback_of(recent.id)] == [False]
    assert await store.feedback_totals(0.0) == FeedbackTotals(positive=0, negative=1, turns=1)
    with pytest.raises(StoreError, match=f"there is no turn {old.id}"):
        await store.record_feedback(old.id, "U2", True)


async def test_a_turn_not_ended_keeps_its_votes_through_a_prune(
    store: ConversationStore, clock: FakeTime
) -> None:
    clock.now = 1 * DAY
    turn = await accept(store, "1700000001.000100")  # still queued: never pruned
    await store.record_feedback(turn.id, "U1", True)
    await store.prune(older_than=10 * DAY)
    assert len(await store.feedback_of(turn.id)) == 1


# --- older schemas gain feedback --------------------------------------------------------------


async def test_a_version_2_sqlite_file_gains_feedback_and_keeps_its_turns(tmp_path: Path) -> None:
    path = tmp_path / "relaybot.db"
    opened = await SqliteStore.open(path)
    turn = await answered_turn(opened, "1700000001.000100")
    await opened.close()
    with sqlite3.connect(path) as db:  # as relaybot before feedback left it
        db.execute("DROP TABLE feedback")
        db.execute("DROP TABLE channel_settings")  # and what came after it
        db.execute("DROP TABLE token_usage")
        db.execute("DROP TABLE blobs")
        db.execute("PRAGMA user_version = 2")

    again = await SqliteStore.open(path)
    try:
        assert (await again.turn(turn.id)).state == "delivered"
        assert await again.record_feedback(turn.id, "U1", True) is True
    finally:
        await again.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchall() == [(5,)]


async def test_a_version_1_postgres_schema_gains_feedback_and_keeps_its_turns(
    postgres_database: str,
) -> None:
    url = await fresh_schema(postgres_database)
    opened = await PostgresStore.open(url)
    turn = await answered_turn(opened, "1700000001.000100")
    await opened.close()
    connection = await asyncpg.connect(url)
    try:  # as relaybot before feedback left it
        await connection.execute("DROP TABLE feedback, channel_settings, token_usage, blobs")
        await connection.execute("DELETE FROM relaybot_schema WHERE version >= 2")
    finally:
        await connection.close()

    again = await PostgresStore.open(url)
    try:
        assert (await again.turn(turn.id)).state == "delivered"
        assert await again.record_feedback(turn.id, "U1", False) is True
    finally:
        await again.close()
    connection = await asyncpg.connect(url)
    try:
        versions = await connection.fetch("SELECT version FROM relaybot_schema ORDER BY version")
    finally:
        await connection.close()
    assert [row["version"] for row in versions] == [1, 2, 3, 4]


# --- the helper a button calls ----------------------------------------------------------------


def counted(rating: str) -> float:
    return REGISTRY.get_sample_value("relaybot_feedback_total", {"rating": rating}) or 0.0


async def test_record_counts_new_votes_and_logs_without_the_user(
    caplog: pytest.LogCaptureFixture,
) -> None:
    memory = MemoryStore()
    turn = await answered_turn(memory, "1700000001.000100")
    positive, negative = counted("positive"), counted("negative")
    with caplog.at_level(logging.INFO, logger="relaybot.feedback"):
        assert await record(memory, turn.id, "U0SECRETUSER", True) is True
        assert await record(memory, turn.id, "U0SECRETUSER", False) is False
        assert await record(memory, turn.id, "U0OTHERUSER", False) is True

    assert (counted("positive") - positive, counted("negative") - negative) == (1.0, 1.0)
    assert [record.getMessage() for record in caplog.records] == [
        f"feedback on turn {turn.id}: positive (new)",
        f"feedback on turn {turn.id}: negative (changed)",
        f"feedback on turn {turn.id}: negative (new)",
    ]
    assert "U0" not in caplog.text


async def test_record_on_no_turn_counts_nothing() -> None:
    before = counted("positive")
    with pytest.raises(StoreError):
        await record(MemoryStore(), 7, "U1", True)
    assert counted("positive") == before


# --- relaybot feedback ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("24h", 86400), ("7d", 604800), ("90d", 7776000), (" 7D ", 604800)],
)
def test_periods(text: str, seconds: float) -> None:
    assert parse_period(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "d", "0d", "-1d", "1.5h", "7w", "7 d", "7days"])
def test_a_bad_period_says_how_to_write_one(text: str) -> None:
    with pytest.raises(ValueError, match="is not a period: write a whole number and m, h or d"):
        parse_period(text)


def test_the_summary_line() -> None:
    since = 1796032800.0  # 2026-11-30 10:00 UTC
    totals = FeedbackTotals(positive=12, negative=3, turns=14)
    assert summary(totals, since) == "👍 12  👎 3  on 14 answers since 2026-11-30 10:00 UTC"
    one = FeedbackTotals(positive=1, negative=0, turns=1)
    assert summary(one, since) == "👍 1  👎 0  on 1 answer since 2026-11-30 10:00 UTC"


async def relaybot(*args: str, store_url: str) -> tuple[int, str, str]:
    """``python -m bots`` with only ``store_url`` configured (no other ``RELAYBOT_`` variable)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAYBOT_")}
    env["RELAYBOT_STORE__URL"] = store_url
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def voted_file(tmp_path: Path) -> str:
    """A store file with votes cast 40 days, 3 days and 1 hour ago (by the real clock, as
    the command reads it): 👍👎 on one answer long ago, then 👍👍 and 👎 on two recent ones."""
    now = time.time()
    times = FakeTime()
    path = tmp_path / "relaybot.db"
    opened = await SqliteStore.open(path, clock=times)
    turns = [await answered_turn(opened, f"170000000{n}.000100") for n in range(3)]
    for at, turn, user, positive in [
        (now - 40 * DAY, turns[0], "U1", True),
        (now - 40 * DAY, turns[0], "U2", False),
        (now - 3 * DAY, turns[1], "U1", True),
        (now - 3 * DAY, turns[1], "U2", True),
        (now - 3600, turns[2], "U1", False),
    ]:
        times.now = at
        await opened.record_feedback(turn.id, user, positive)
    await opened.close()
    return f"sqlite:///{path}"


async def test_feedback_prints_the_totals_of_the_last_7_days(voted_file: str) -> None:
    status, out, err = await relaybot("feedback", store_url=voted_file)
    assert (status, err) == (0, "")
    assert out.startswith("👍 2  👎 1  on 2 answers since 20")
    assert out.endswith(" UTC\n")
    assert out.count("\n") == 1


async def test_feedback_since_a_period_as_json(voted_file: str) -> None:
    status, out, err = await relaybot("feedback", "--since", "24h", "--json", store_url=voted_file)
    assert (status, err) == (0, "")
    printed = json.loads(out)
    assert {k: printed[k] for k in ("positive", "negative", "turns")} == {
        "positive": 0,
        "negative": 1,
        "turns": 1,
    }
    since = calendar.timegm(time.strptime(printed["since"], "%Y-%m-%dT%H:%M:%SZ"))
    assert time.time() - 2 * DAY < since < time.time()

    status, out, _ = await relaybot("feedback", "--since", "90d", "--json", store_url=voted_file)
    assert status == 0
    assert json.loads(out)["positive"] == 3


async def test_a_bad_since_is_a_usage_error(voted_file: str) -> None:
    status, out, err = await relaybot("feedback", "--since", "week", store_url=voted_file)
    assert (status, out) == (2, "")
    assert err.startswith("usage: relaybot feedback")
    assert err.splitlines()[-1] == (
        "relaybot feedback: error: argument --since: 'week' is not a period:"
        " write a whole number and m, h or d (7d, 24h)"
    )


async def test_a_store_that_cannot_be_opened_is_one_line(tmp_path: Path) -> None:
    status, out, err = await relaybot(
        "feedback", store_url=f"sqlite:///{tmp_path / 'missing' / 'relaybot.db'}"
    )
    assert (status, out) == (1, "")
    assert err.startswith("relaybot: ")
    assert err.count("\n") == 1
    assert "does not exist" in err
