"""Attached images in the stores, run against every store: kept apart from the messages' JSON,
once by hash, put back on load, under a size cap and the retention of ``prune``; then the
schema migrations that add the blob table."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import sqlite3
from pathlib import Path

import asyncpg
import pytest

from core.messages import (
    AssistantMessage,
    ConversationKey,
    FileNote,
    FileText,
    ImageContent,
    Message,
    UserMessage,
)
from core.settings import StoreSettings
from core.store import (
    BLOB_MAX_BYTES,
    ConversationStore,
    Lease,
    MemoryStore,
    PostgresStore,
    SqliteStore,
    Turn,
    open_store,
)
from tests.support import stores
from tests.support.clock import FakeTime
from tests.support.postgres import fresh_schema
from tests.support.stores import StoreOpener

KEY = ConversationKey(platform="slack", workspace="T1", channel="C1", thread="1700000000.000100")
OTHER = ConversationKey(platform="discord", workspace="G1", channel="42", thread="4242")
LEASE = 30.0
SIZE = 1000
"""Bytes of each test image: a cap of ``2 * SIZE`` keeps two."""

clock, store, open_each = stores.clock, stores.store, stores.open_each  # the contract fixtures


def image(seed: int, *, size: int = SIZE, name: str = "") -> ImageContent:
    """An image of ``size`` bytes (not a real PNG: a store keeps bytes, it does not read them)."""
    raw = hashlib.sha256(str(seed).encode()).digest() * (size // 32 + 1)
    raw = raw[:size]
    return ImageContent(
        name=name or f"shot-{seed}.png",
        media_type="image/png",
        sha256=hashlib.sha256(raw).hexdigest(),
        width=640,
        height=480,
        description="an image, 640x480 PNG",
        data=base64.b64encode(raw).decode("ascii"),
    )


def gone(picture: ImageContent) -> ImageContent:
    """The image as a store gives it back when its bytes are no longer kept."""
    return picture.model_copy(update={"data": None})


def asking(text: str, *pictures: ImageContent) -> UserMessage:
    note = FileNote(name="movie.mp4", note="movie.mp4 was skipped: a video")
    return UserMessage(text=text, author_id="U1", attachments=(*pictures, note))


async def accept(
    store: ConversationStore, order: str, question: UserMessage, *, key: ConversationKey = KEY
) -> Turn:
    turn = await store.accept(
        event_id=f"{key}/{order}", key=key, order=order, question=question, platform="Slack",
        claim_ttl=600,
    )  # fmt: skip
    assert turn is not None
    return turn


async def take(store: ConversationStore, key: ConversationKey = KEY) -> Lease:
    lease = await store.take(key, owner="A", lease_seconds=LEASE)
    assert lease is not None
    return lease


async def finish(store: ConversationStore, lease: Lease, text: str = "A cat.") -> None:
    answer = AssistantMessage(text=text, finish_reason="stop")
    await store.answered(lease, messages=[answer], text=text, finish_reason="stop")
    await store.delivered(lease.turn.id, ["ts1"])


# --- what the tables hold ---------------------------------------------------------------------


async def stored_json(store: ConversationStore) -> list[str]:
    """Every message's JSON and every turn's question, as the store holds them."""
    match store:
        case MemoryStore():
            bodies = [kept.body for thread in store._conversations.values() for kept in thread]
            return bodies + [turn.question.model_dump_json() for turn in store._turns.values()]
        case SqliteStore():
            async with store._connection.statement() as db:
                rows = await db.execute_fetchall(
                    "SELECT body FROM messages UNION ALL SELECT question FROM turns"
                )
            return [row[0] for row in rows]
        case PostgresStore():
            async with store._pool.connection() as db:
                rows = await db.fetch(
                    "SELECT body FROM messages UNION ALL SELECT question FROM turns"
                )
            return [row[0] for row in rows]
    raise AssertionError(f"no raw view of {store!r}")


async def stored_blobs(store: ConversationStore) -> dict[str, bytes]:
    """The blob table: each kept image's bytes by hash."""
    match store:
        case MemoryStore():
            return {sha256: kept.data for sha256, kept in store._blobs.items()}
        case SqliteStore():
            async with store._connection.statement() as db:
                rows = await db.execute_fetchall("SELECT sha256, data, size FROM blobs")
        case PostgresStore():
            async with store._pool.connection() as db:
                rows = await db.fetch("SELECT sha256, data, size FROM blobs")
        case _:
            raise AssertionError(f"no raw view of {store!r}")
    assert all(len(data) == size for _, data, size in rows)
    return {sha256: bytes(data) for sha256, data, _ in rows}


async def forget_blob(store: ConversationStore, sha256: str) -> None:
    """Delete one blob behind the store's back (as another worker's eviction would)."""
    match store:
        case MemoryStore():
            del store._blobs[sha256]
        case SqliteStore():
            async with store._connection.statement() as db:
                await db.execute("DELETE FROM blobs WHERE sha256 = ?", (sha256,))
        case PostgresStore():
            async with store._pool.connection() as db:
                await db.execute("DELETE FROM blobs WHERE sha256 = $1", sha256)


def raw(picture: ImageContent) -> bytes:
    assert picture.data is not None
    return base64.b64decode(picture.data)


# --- round trips ------------------------------------------------------------------------------


async def test_an_accepted_image_reaches_the_history_with_its_data(
    store: ConversationStore,
) -> None:
    question = asking("What is in this?", image(1))
    await accept(store, "1", question)
    lease = await take(store)
    assert await store.history(lease) == [question]
    await finish(store, lease)
    assert await store.load(KEY) == [
        question,
        AssistantMessage(text="A cat.", finish_reason="stop"),
    ]


async def test_a_follow_up_still_sees_the_earlier_image(store: ConversationStore) -> None:
    first = asking("What is in this?", image(1))
    await accept(store, "1", first)
    await finish(store, await take(store))
    follow_up = UserMessage(text="What colour was it?", author_id="U1")
    await accept(store, "2", follow_up)
    history = await store.history(await take(store))
    assert history[0] == first
    assert history[-1] == follow_up


async def test_appended_answered_and_revised_images_round_trip(store: ConversationStore) -> None:
    rebuilt = asking("from the platform", image(1))
    await store.append(KEY, [rebuilt])
    await accept(store, "1", UserMessage(text="raw <@U2>", author_id="U1"))
    lease = await take(store)
    revised = asking("named @Grace", image(2))
    lease = await store.revise_question(lease, revised)
    assert lease.turn.question == asking("named @Grace", gone(image(2)))  # the turn as saved
    later = asking("a tool's picture", image(3))
    await store.answered(lease, messages=[later], text="ok", finish_reason="stop")
    assert await store.load(KEY) == [rebuilt, revised, later]


async def test_no_stored_json_holds_an_images_data(store: ConversationStore) -> None:
    pictures = [image(1), image(2), image(3)]
    await store.append(KEY, [asking("appended", pictures[0])])
    turn = await accept(store, "1", asking("accepted", pictures[1]))
    assert turn.question == asking("accepted", gone(pictures[1]))
    lease = await take(store)
    await store.answered(
        lease, messages=[asking("answered", pictures[2])], text="ok", finish_reason="stop"
    )

    saved = await stored_json(store)
    assert len(saved) == 4  # three messages and a turn's question
    for text in saved:
        assert '"data":null' in text
        for picture in pictures:
            assert picture.data is not None
            assert picture.data[:40] not in text
    assert await stored_blobs(store) == {picture.sha256: raw(picture) for picture in pictures}


async def test_the_same_image_in_two_messages_is_kept_once(
    store: ConversationStore, clock: FakeTime
) -> None:
    picture = image(1)
    await accept(store, "1", asking("here", picture))
    clock.now += 10
    await accept(store, "1", asking("and here", picture, image(1, name="again.png")), key=OTHER)
    assert await stored_blobs(store) == {picture.sha256: raw(picture)}
    assert (await store.load(OTHER))[0] == asking("and here", picture, image(1, name="again.png"))


async def test_messages_without_images_are_untouched(store: ConversationStore) -> None:
    text = FileText(name="a.py", text="<file a.py>print()</file>", description="a Python file")
    message = UserMessage(text="look", author_id="U1", attachments=(text,))
    await store.append(KEY, [message])
    assert await store.load(KEY) == [message]
    assert await stored_blobs(store) == {}


# --- images no longer kept --------------------------------------------------------------------


async def test_a_missing_blob_loads_as_an_image_without_data(store: ConversationStore) -> None:
    kept, lost = image(1), image(2)
    await accept(store, "1", asking("two", kept, lost))
    await forget_blob(store, lost.sha256)
    assert (await store.history(await take(store)))[0] == asking("two", kept, gone(lost))
    assert await store.load(KEY) == [asking("two", kept, gone(lost))]


@pytest.mark.parametrize(
    ("spoiled", "why"),
    [
        ({"sha256": "0" * 64}, "do not hash to its sha256"),
        ({"data": "not base64!"}, "not base64"),
    ],
)
async def test_an_image_whose_bytes_cannot_be_checked_is_saved_without_them(
    store: ConversationStore,
    caplog: pytest.LogCaptureFixture,
    spoiled: dict[str, str],
    why: str,
) -> None:
    """Its message is kept (text, other files, other images) and answered as if the image had
    expired; the log says so, naming the file, never its bytes."""
    bad = image(1, name="odd.png").model_copy(update=spoiled)
    good = image(2)
    caplog.set_level(logging.WARNING, logger="relaybot.store")
    turn = await accept(store, "1", asking("two", bad, good))
    assert turn.question == asking("two", gone(bad), gone(good))
    assert await store.history(await take(store)) == [asking("two", gone(bad), good)]
    assert await stored_blobs(store) == {good.sha256: raw(good)}
    [record] = caplog.records
    assert "'odd.png'" in record.getMessage()
    assert why in record.getMessage()
    assert "not base64!" not in record.getMessage()
    assert (good.data or "")[:40] not in caplog.text


# --- the size cap ------------------------------------------------------------------------------


async def test_past_the_cap_the_least_recently_used_images_go(
    open_each: StoreOpener, clock: FakeTime
) -> None:
    store = await open_each(blob_max_bytes=2 * SIZE + SIZE // 2)  # room for two
    first, second, third = image(1), image(2), image(3)
    await store.append(KEY, [asking("one", first)])
    clock.now += 10
    await store.append(OTHER, [asking("two", second)])
    clock.now += 10
    assert await store.load(KEY) == [asking("one", first)]  # first is used again: second is LRU
    clock.now += 10
    await store.append(KEY, [asking("three", third)])

    assert set(await stored_blobs(store)) == {first.sha256, third.sha256}
    assert await store.load(OTHER) == [asking("two", gone(second))]
    assert await store.load(KEY) == [asking("one", first), asking("three", third)]


async def test_an_image_sent_again_is_used_again(open_each: StoreOpener, clock: FakeTime) -> None:
    store = await open_each(blob_max_bytes=2 * SIZE)
    first, second, third = image(1), image(2), image(3)
    await store.append(KEY, [asking("one", first)])
    clock.now += 10
    await store.append(KEY, [asking("two", second)])
    clock.now += 10
    await store.append(OTHER, [asking("one again", first)])
    clock.now += 10
    await store.append(OTHER, [asking("three", third)])
    assert set(await stored_blobs(store)) == {first.sha256, third.sha256}


async def test_a_cap_of_zero_keeps_no_image(open_each: StoreOpener) -> None:
    store = await open_each(blob_max_bytes=0)
    await accept(store, "1", asking("look", image(1)))
    assert await store.history(await take(store)) == [asking("look", gone(image(1)))]
    assert await stored_blobs(store) == {}


async def test_an_image_larger_than_the_cap_is_not_kept_and_others_stay(
    open_each: StoreOpener, clock: FakeTime
) -> None:
    store = await open_each(blob_max_bytes=2 * SIZE)
    small, huge = image(1), image(2, size=3 * SIZE)
    await store.append(KEY, [asking("small", small)])
    clock.now += 10
    await store.append(KEY, [asking("huge", huge)])
    assert await store.load(KEY) == [asking("small", small), asking("huge", gone(huge))]


async def test_a_negative_cap_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="blob_max_bytes cannot be negative"):
        MemoryStore(blob_max_bytes=-1)
    with pytest.raises(ValueError, match="blob_max_bytes cannot be negative"):
        await SqliteStore.open(tmp_path / "relaybot.db", blob_max_bytes=-1)
    assert not (tmp_path / "relaybot.db").exists()


# --- retention --------------------------------------------------------------------------------


async def test_prune_deletes_images_last_used_before_older_than(
    store: ConversationStore, clock: FakeTime
) -> None:
    start = clock.now
    old, recent = image(1), image(2)
    await accept(store, "1", asking("old", old))
    await finish(store, await take(store))
    clock.now = start + 100
    await store.append(OTHER, [asking("recent", recent)])

    await store.prune(older_than=start + 50)
    assert set(await stored_blobs(store)) == {recent.sha256}
    assert await store.load(KEY) == []  # the turn went too
    assert await store.load(OTHER) == [asking("recent", recent)]


async def test_an_image_read_again_outlives_its_retention(
    store: ConversationStore, clock: FakeTime
) -> None:
    """Retention is by last use: an image a turn still reads stays."""
    start = clock.now
    picture = image(1)
    await store.append(KEY, [asking("old", picture)])
    clock.now = start + 100
    assert await store.load(KEY) == [asking("old", picture)]  # used now
    clock.now = start + 150
    await store.prune(older_than=start + 50)  # the message goes; the image was used at +100
    assert set(await stored_blobs(store)) == {picture.sha256}
    await store.prune(older_than=start + 120)
    assert await stored_blobs(store) == {}


async def test_prune_keeps_a_running_turns_messages_but_not_its_stale_image(
    store: ConversationStore, clock: FakeTime
) -> None:
    """An image nothing used for the retention period goes, even from a message that stays;
    its turn then reads that the image is gone."""
    start = clock.now
    picture = image(1)
    await accept(store, "1", asking("look", picture))
    clock.now = start + 1000
    await store.prune(older_than=start + 500)
    assert await store.history(await take(store)) == [asking("look", gone(picture))]


# --- settings and open_store ------------------------------------------------------------------


def test_the_setting_defaults_to_the_stores_cap() -> None:
    assert StoreSettings().blob_max_bytes == BLOB_MAX_BYTES == 1024**3
    assert StoreSettings(blob_max_bytes=0).blob_max_bytes == 0
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        StoreSettings(blob_max_bytes=-1)


async def test_open_store_passes_the_cap(tmp_path: Path) -> None:
    for url in ("memory://", f"sqlite:///{tmp_path / 'relaybot.db'}"):
        opened = await open_store(url, blob_max_bytes=0)
        try:
            await opened.append(KEY, [asking("look", image(1))])
            assert await opened.load(KEY) == [asking("look", gone(image(1)))]
        finally:
            await opened.close()


# --- Postgres: workers at once ----------------------------------------------------------------


async def test_workers_storing_and_reading_images_at_once_keep_each_once(
    postgres_database: str,
) -> None:
    url = await fresh_schema(postgres_database)
    workers = [await PostgresStore.open(url, blob_max_bytes=3 * SIZE) for _ in range(4)]
    try:
        pictures = [image(n) for n in range(6)]
        keys = [
            ConversationKey(platform="slack", workspace="T1", channel="C1", thread=str(n))
            for n in range(12)
        ]

        async def write_and_read(n: int) -> list[Message]:
            worker = workers[n % 4]
            # two images in opposite orders, so that writers would lock rows crosswise
            two = (pictures[n % 6], pictures[(n + 1) % 6])
            await worker.append(keys[n], [asking(str(n), *(two if n % 2 else two[::-1]))])
            return await worker.load(keys[(n + 5) % 12])

        await asyncio.gather(*(write_and_read(n) for n in range(12)))
        kept = await stored_blobs(workers[0])
        assert len(kept) <= 3
        assert all(hashlib.sha256(data).hexdigest() == sha256 for sha256, data in kept.items())
    finally:
        for worker in workers:
            await worker.close()


# --- older schemas gain the blob table --------------------------------------------------------


async def test_a_version_4_sqlite_file_gains_blobs_and_keeps_its_threads(tmp_path: Path) -> None:
    path = tmp_path / "relaybot.db"
    opened = await SqliteStore.open(path)
    await opened.append(KEY, [UserMessage(text="kept", author_id="U1")])
    await opened.close()
    with sqlite3.connect(path) as db:  # as relaybot before attachments left it
        db.execute("DROP TABLE blobs")
        db.execute("PRAGMA user_version = 4")

    again = await SqliteStore.open(path)
    try:
        await again.append(KEY, [asking("look", image(1))])
        assert await again.load(KEY) == [
            UserMessage(text="kept", author_id="U1"),
            asking("look", image(1)),
        ]
    finally:
        await again.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchall() == [(5,)]


async def test_a_version_3_postgres_schema_gains_blobs_and_keeps_its_threads(
    postgres_database: str,
) -> None:
    url = await fresh_schema(postgres_database)
    opened = await PostgresStore.open(url)
    await opened.append(KEY, [UserMessage(text="kept", author_id="U1")])
    await opened.close()
    connection = await asyncpg.connect(url)
    try:  # as relaybot before attachments left it
        await connection.execute("DROP TABLE blobs")
        await connection.execute("DELETE FROM relaybot_schema WHERE version = 4")
    finally:
        await connection.close()

    again = await PostgresStore.open(url)
    try:
        await again.append(KEY, [asking("look", image(1))])
        assert await again.load(KEY) == [
            UserMessage(text="kept", author_id="U1"),
            asking("look", image(1)),
        ]
    finally:
        await again.close()
    connection = await asyncpg.connect(url)
    try:
        versions = await connection.fetch("SELECT version FROM relaybot_schema ORDER BY version")
    finally:
        await connection.close()
    assert [row["version"] for row in versions] == [1, 2, 3, 4]
