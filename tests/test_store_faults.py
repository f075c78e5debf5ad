"""A store that fails is seen: the asker is told, the operator reads why once, and ``/ready``
says so until the fault clears — then every message comes through, answered once.

Real parts throughout: the Slack bot over HTTP on loopback with the fake Slack and the fake
gateway (the harness of ``tests/test_slack_bot.py``), over a real SQLite file whose size is
capped with ``PRAGMA max_page_count`` — a full disk, as SQLite sees one; the Discord bot over
the loopback Discord (``tests/test_discord_bot.py``). Readiness runs on a fake clock.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx2
import pytest

from bots.readiness import Readiness
from bots.replies import MEMORY_DOWN
from bots.slack.server import HEALTH_PATH, READY_PATH
from core.engine import NO_HISTORY
from core.messages import ConversationKey
from core.store import MemoryStore, SqliteStore, StoreError, Turn
from tests import test_discord_bot, test_slack_bot
from tests.conftest import Closing
from tests.fakes.fake_discord import CHANNEL as DISCORD_CHANNEL
from tests.fakes.llm_gateway import FakeGateway
from tests.fakes.slack_api import TEAM
from tests.support.clock import FakeTime
from tests.test_slack_bot import ADA, CHANNEL, Harness, answer, mention, message, status_of

start, bot = test_slack_bot.start, test_slack_bot.bot  # its fixtures, by the same names
discord_start = test_discord_bot.start

FAILED = 3
"""Messages sent once the database is full: each must be told, once, and answered later."""
AT_MOST = 300
"""Messages sent to fill the database, at most (it fills after a dozen or so)."""
ROOMY = 1_000_000
"""Pages: space freed."""
FULL = "database or disk is full"
LONG = "<@UBOT> " + "Tell me more. " * 200
"""A question longer than a page: each accept needs new pages, so the file fills in a few (and
few answers are edited in: Slack allows 50 ``chat.update`` a minute)."""


# --- helpers -----------------------------------------------------------------------------------


async def cap(store: SqliteStore, pages: int | None = None) -> None:
    """Limit the store's file to ``pages`` pages (by default its size now): a full disk, as
    SQLite sees one. The limit belongs to a connection, so it is set on the store's own."""
    async with store._connection.statement() as db:
        if pages is None:
            ((pages,),) = await db.execute_fetchall("PRAGMA page_count")
        await db.execute(f"PRAGMA max_page_count = {pages}")


async def count(store: SqliteStore, sql: str, *parameters: object) -> int:
    async with store._connection.statement() as db:
        ((found,),) = await db.execute_fetchall(sql, parameters)
    return int(found)


def retry(n: int) -> dict[str, str]:
    """The headers of Slack's ``n``-th re-delivery of an event it saw fail."""
    return {"X-Slack-Retry-Num": str(n), "X-Slack-Retry-Reason": "http_error"}


async def fill(store: SqliteStore) -> StoreError:
    """Claim events until the file is full; the error that says so."""
    for n in range(AT_MOST):
        try:
            await store.claim(f"filler {n:04d} " + "x" * 200, ttl=60)
        except StoreError as error:
            return error
    raise AssertionError("the file never filled")


def on_fake_clock(bot: Harness) -> FakeTime:
    """The bot's readiness, on a clock the test moves: a verdict is kept 2 s of it."""
    clock = FakeTime()
    endpoint = bot.runtime.endpoint
    bot.bot.readiness = Readiness(
        bot.runtime.store, gateway_url=endpoint.base_url, http=bot.runtime.http, clock=clock
    )
    return clock


async def get(bot: Harness, path: str) -> tuple[int, Any]:
    async with bot.http.get(bot.url + path) as response:
        return response.status, await response.json()


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def records(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == level and text in r.getMessage()]


def bot_texts(bot: Harness, channel: str, ts: str) -> list[str]:
    return [m.markdown or m.text for m in bot.replies(channel, ts)]


@pytest.fixture(autouse=True)
def debug_logs(caplog: pytest.LogCaptureFixture) -> None:
    """The bots' own loggers at DEBUG (not ``relaybot`` itself: bolt, named after the app,
    resets that logger's level to its own at every request)."""
    for name in ("relaybot.slack", "relaybot.discord"):
        caplog.set_level(logging.DEBUG, logger=name)


# --- a full database ---------------------------------------------------------------------------


async def test_a_full_database_tells_each_message_once_and_answers_each_once_space_is_freed(
    closing: Closing,
    start: Callable[..., Awaitable[Harness]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = await closing(SqliteStore.open(tmp_path / "relaybot.db"))
    bot = await start(store=store)
    clock = on_fake_clock(bot)
    bot.gateway.enqueue(*(answer(f"Answer {n}.") for n in range(AT_MOST)))
    assert await get(bot, READY_PATH) == (200, {"ready": True, "store": "ok", "gateway": "ok"})
    await cap(store)

    accepted: list[tuple[str, str]] = []
    failed: list[tuple[dict[str, Any], str]] = []  # (event, its Slack event id)
    for n in range(AT_MOST):
        channel = f"C{100 + n}"  # a channel each: no message meets Slack's per-channel limit
        ts = bot.slack.seed_message(channel, ADA, LONG)
        event = mention(ts, LONG) | {"channel": channel}
        status = await bot.send(event, event_id=f"Ev{n}")
        await bot.settled()
        if status == 200:
            accepted.append((channel, ts))
            continue
        assert status == 500
        failed.append((event, f"Ev{n}"))
        if len(failed) == FAILED:
            break
    assert accepted, "the database took messages before it filled"
    assert len(failed) == FAILED, "the database filled"

    for event, event_id in failed:  # Slack sends each again: still full
        assert await bot.send(event, event_id=event_id, **retry(1)) == 500
    for event, _ in failed:
        channel, ts = event["channel"], event["ts"]
        assert bot_texts(bot, channel, ts) == [MEMORY_DOWN], "told once, in its thread"
        key = ConversationKey(platform="slack", workspace=TEAM, channel=channel, thread=ts)
        claim = f"slack:{TEAM}:{channel}:{ts}"
        assert await count(store, "SELECT count(*) FROM claims WHERE event_id = ?", claim) == 0
        assert await count(store, "SELECT count(*) FROM turns WHERE event_id = ?", claim) == 0
        assert await count(store, "SELECT count(*) FROM messages WHERE conversation = ?",
                           str(key)) == 0  # fmt: skip
    clock.now += 2
    assert await get(bot, READY_PATH) == (503, {"ready": False, "store": FULL, "gateway": "ok"})
    assert await get(bot, HEALTH_PATH) == (200, {"ok": True, "busy": 0})

    (logged,) = [r for r in caplog.records
                 if r.name.startswith("relaybot.slack") and r.levelno >= logging.ERROR]  # fmt: skip
    assert logged.getMessage().startswith("the store failed accepting slack:")
    assert logged.exc_info is not None, "the first failure of its kind, with its traceback"
    counted = records(caplog, logging.DEBUG, "the store failed accepting")
    assert [r.getMessage().rsplit(", ", 1)[1] for r in counted] == [
        f"{n} times)" for n in range(2, 2 * FAILED + 1)
    ]

    await cap(store, ROOMY)  # space freed
    clock.now += 2
    assert await get(bot, READY_PATH) == (200, {"ready": True, "store": "ok", "gateway": "ok"})
    answered = len(bot.gateway.requests)
    for event, event_id in failed:
        assert await bot.send(event, event_id=event_id, **retry(2)) == 200
        assert await bot.answer(event["channel"], event["ts"])
        assert await bot.send(event, event_id=event_id, **retry(3)) == 200
    await bot.settled()
    for event, _ in failed:
        notice, reply = bot_texts(bot, event["channel"], event["ts"])
        assert (notice, reply.startswith("Answer ")) == (MEMORY_DOWN, True), "answered once"
    assert len(bot.gateway.requests) == answered + FAILED
    assert len(records(caplog, logging.INFO, "the store works again")) == 1


async def test_the_sqlite_write_check_fails_on_a_full_database_and_leaves_nothing(
    closing: Closing, tmp_path: Path
) -> None:
    store = await closing(SqliteStore.open(tmp_path / "relaybot.db"))
    await store.check_writes()
    await cap(store)
    assert FULL in str(await fill(store))
    with pytest.raises(StoreError, match=FULL):
        await store.check_writes()

    await cap(store, ROOMY)
    await store.check_writes()
    assert await count(store, "SELECT count(*) FROM messages") == 0


async def test_the_memory_store_takes_writes_until_it_is_closed() -> None:
    store = MemoryStore()
    await store.check_writes()
    await store.close()
    with pytest.raises(StoreError, match="used after close"):
        await store.check_writes()


# --- an unreadable row -------------------------------------------------------------------------


def damage(path: Path, key: ConversationKey, seq: int) -> None:
    """Cut a stored message's JSON short, in the file itself (another connection)."""
    with sqlite3.connect(path) as db:
        changed = db.execute(
            "UPDATE messages SET body = substr(body, 1, 10) WHERE conversation = ? AND seq = ?",
            (str(key), seq),
        ).rowcount
    assert changed == 1


async def test_an_unreadable_message_gets_its_thread_a_short_error_and_others_are_answered(
    closing: Closing,
    start: Callable[..., Awaitable[Harness]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "relaybot.db"
    store = await closing(SqliteStore.open(path))
    bot = await start(store=store)
    bot.gateway.enqueue(answer("Hi Ada."), answer("Elsewhere, fine."))
    asked = bot.slack.seed_message(CHANNEL, ADA, "<@UBOT> hi")
    await bot.send(mention(asked, "<@UBOT> hi"))
    assert await bot.answer(CHANNEL, asked) == "Hi Ada."
    key = ConversationKey(platform="slack", workspace=TEAM, channel=CHANNEL, thread=asked)
    await asyncio.to_thread(damage, path, key, 2)  # the answer

    again = bot.slack.seed_message(CHANNEL, ADA, "and now?", thread_ts=asked)
    assert await bot.send(message(again, "and now?", thread_ts=asked)) == 200
    await bot.until(lambda: len(bot.replies(CHANNEL, asked)) == 2 and bot.bot.busy == 0, "2")
    error = bot.replies(CHANNEL, asked)[1]
    assert NO_HISTORY in status_of(error.blocks)
    assert len(bot.gateway.requests) == 1, "no model call without the history"
    (logged,) = records(caplog, logging.ERROR, "could not read the history of turn")
    assert logged.exc_info is not None

    other = bot.slack.seed_message(CHANNEL, ADA, "<@UBOT> another thread")
    await bot.send(mention(other, "<@UBOT> another thread"))
    assert await bot.answer(CHANNEL, other) == "Elsewhere, fine."


# --- readiness ---------------------------------------------------------------------------------


async def test_ready_is_503_while_the_gateway_is_unreachable_and_health_stays_200(
    start: Callable[..., Awaitable[Harness]],
) -> None:
    bot = await start(llm__base_url=f"http://127.0.0.1:{closed_port()}/v1")
    ready = {"ready": False, "store": "ok", "gateway": "unreachable (ConnectError)"}
    assert await get(bot, READY_PATH) == (503, ready)
    assert await get(bot, HEALTH_PATH) == (200, {"ok": True, "busy": 0})


async def test_ready_is_200_when_both_are_fine_and_the_probe_carries_no_key(bot: Harness) -> None:
    assert await get(bot, READY_PATH) == (200, {"ready": True, "store": "ok", "gateway": "ok"})
    assert await get(bot, HEALTH_PATH) == (200, {"ok": True, "busy": 0})
    (probe,) = bot.gateway.requests
    assert (probe.method, probe.path) == ("GET", "/v1")
    assert "authorization" not in probe.headers
    assert "sk-test" not in str(probe.headers)


class CheckedStore(MemoryStore):
    """A memory store whose write check fails with ``fault`` while it is set, and is counted."""

    def __init__(self) -> None:
        super().__init__()
        self.fault: str | None = None
        self.checks = 0

    async def check_writes(self) -> None:
        self.checks += 1
        if self.fault is not None:
            raise StoreError(f"memory store: {self.fault}")


async def test_a_verdict_is_kept_cache_seconds_and_a_cleared_fault_is_ready_again(
    gateway: FakeGateway, http: httpx2.AsyncClient
) -> None:
    store, clock = CheckedStore(), FakeTime()
    readiness = Readiness(
        store, gateway_url=gateway.url + "/v1", http=http, cache_seconds=2.0, clock=clock
    )
    store.fault = "the disk is full"
    verdicts = await asyncio.gather(*(readiness.check() for _ in range(5)))
    assert {v.as_json()["store"] for v in verdicts} == {"the disk is full"}
    store.fault = None
    clock.now += 1.9
    assert not (await readiness.check()).ready, "kept"
    assert (store.checks, len(gateway.requests)) == (1, 1)

    clock.now += 0.1
    assert (await readiness.check()).ready
    assert (store.checks, len(gateway.requests)) == (2, 2)


# --- Discord -----------------------------------------------------------------------------------


async def test_a_discord_message_the_store_cannot_accept_gets_the_notice_where_it_was(
    discord_start: Callable[..., Awaitable[test_discord_bot.Harness]],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bot = await discord_start()

    async def full(**kwargs: Any) -> Turn | None:
        raise StoreError("memory store: the disk is full")

    monkeypatch.setattr(bot.runtime.store, "accept", full)
    asked = [
        await bot.ask(DISCORD_CHANNEL, test_discord_bot.mention(text)) for text in ("hi", "hello?")
    ]
    await bot.until(lambda: len(bot.replies(DISCORD_CHANNEL)) == 2 and bot.bot.busy == 0, "2")
    notices = bot.replies(DISCORD_CHANNEL)
    assert [m.content for m in notices] == [MEMORY_DOWN, MEMORY_DOWN]
    assert [str((m.reference or {}).get("message_id")) for m in notices] == [
        str(m.id) for m in asked
    ]
    assert bot.fake.thread(asked[0].id) is None
    assert bot.gateway.requests == []
    (logged,) = records(caplog, logging.ERROR, "the store failed accepting discord message")
    assert logged.exc_info is not None
    assert len(records(caplog, logging.DEBUG, "the store failed accepting discord message")) == 1

    monkeypatch.undo()  # the store is back
    bot.gateway.enqueue(test_discord_bot.answer("Here now."))
    again = await bot.ask(DISCORD_CHANNEL, test_discord_bot.mention("now?"))
    await bot.until(lambda: bot.fake.thread(again.id) is not None, "a thread")
    assert await bot.answer(again.id) == "Here now."
    assert len(records(caplog, logging.INFO, "the store works again (2 failures")) == 1
