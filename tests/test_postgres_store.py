"""What only a shared database can show: several stores (a fleet's worker processes, each its
own pool of connections) on one Postgres database at once. The contract itself runs against
Postgres in tests/test_journal.py and tests/test_store.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import pytest

from core.messages import AssistantMessage, ConversationKey, UserMessage
from core.store import (
    LeaseLost,
    PostgresStore,
    StoreError,
    Turn,
    open_store,
    validate_store_url,
)
from tests.support.clock import FakeTime
from tests.support.postgres import fresh_schema

KEYS = [
    ConversationKey(platform="slack", workspace="T1", channel="C1", thread=f"17000000{n}.000100")
    for n in range(3)
]
LEASE = 30.0

Opener = Callable[..., Awaitable[PostgresStore]]


@pytest.fixture
async def url(postgres_database: str) -> str:
    """A new, empty schema of the run's database: a database no store has opened yet."""
    return await fresh_schema(postgres_database)


@pytest.fixture
async def open_postgres(url: str) -> AsyncIterator[Opener]:
    """``await open_postgres(clock=...)``: another store on the same database, closed after
    the test (each is one worker of a fleet, with its own pool)."""
    stores: list[PostgresStore] = []

    async def open_(*, clock: Callable[[], float] | None = None) -> PostgresStore:
        store = await PostgresStore.open(url, clock=clock)
        stores.append(store)
        return store

    yield open_
    for store in stores:
        await store.close()


def question(text: str) -> UserMessage:
    return UserMessage(text=text, author_id="U1")


async def accept(store: PostgresStore, key: ConversationKey, order: str) -> Turn:
    turn = await store.accept(
        event_id=f"{key}/{order}",
        key=key,
        order=order,
        question=question(f"question {order}"),
        platform="Slack",
        claim_ttl=600,
    )
    assert turn is not None
    return turn


# --- claims -----------------------------------------------------------------------------------


async def test_eight_claimers_on_their_own_connections_claim_each_event_once(
    open_postgres: Opener,
) -> None:
    workers = [await open_postgres() for _ in range(8)]
    events = [f"slack:Ev{n}" for n in range(25)]
    for event in events:
        claimed = await asyncio.gather(*(worker.claim(event, ttl=60) for worker in workers))
        assert sorted(claimed) == [False] * 7 + [True], event


async def test_eight_workers_accepting_one_event_make_one_turn(open_postgres: Opener) -> None:
    workers = [await open_postgres() for _ in range(8)]
    for n in range(10):
        accepted = await asyncio.gather(
            *(
                worker.accept(
                    event_id=f"slack:Ev{n}",
                    key=KEYS[0],
                    order=f"{n:06d}",
                    question=question(f"{n}"),
                    platform="Slack",
                    claim_ttl=60,
                )
                for worker in workers
            )
        )
        assert len([turn for turn in accepted if turn is not None]) == 1
    assert len(await workers[0].load(KEYS[0])) == 10


async def test_an_expired_claim_is_claimed_again_by_the_database_clock(
    open_postgres: Opener,
) -> None:
    early, late = FakeTime(1_000.0), FakeTime(1_061.0)
    first, second = await open_postgres(clock=early), await open_postgres(clock=late)
    assert await first.claim("slack:Ev1", ttl=60)
    assert not await first.claim("slack:Ev1", ttl=60)
    assert await second.claim("slack:Ev1", ttl=60)  # 61 s later: expired


# --- order and leases across workers ------------------------------------------------------------


async def test_three_workers_take_each_threads_turns_one_at_a_time_in_order(
    open_postgres: Opener,
) -> None:
    workers = [await open_postgres() for _ in range(3)]
    orders = [f"{n:06d}" for n in range(12)]
    for position, order in enumerate(reversed(orders)):  # accepted out of platform order
        await accept(workers[position % 3], KEYS[position % len(KEYS)], order)
    expected = {
        str(key): sorted(order for p, order in enumerate(reversed(orders)) if p % 3 == i)
        for i, key in enumerate(KEYS)
    }
    taken: dict[str, list[str]] = {str(key): [] for key in KEYS}
    running: dict[str, str] = {}
    overlaps: list[str] = []

    async def work(worker: PostgresStore, name: str) -> None:
        while sum(map(len, taken.values())) < len(orders):
            for key in KEYS:
                lease = await worker.take(key, owner=name, lease_seconds=LEASE)
                if lease is None:
                    await asyncio.sleep(0)
                    continue
                if str(key) in running:
                    overlaps.append(f"{lease.turn.order} while {running[str(key)]}")
                running[str(key)] = lease.turn.order
                taken[str(key)].append(lease.turn.order)
                history = await worker.history(lease)
                text = f"answer {lease.turn.order} after {len(history)} messages"
                reply = AssistantMessage(text=text, finish_reason="stop")
                await worker.answered(lease, messages=[reply], text=text, finish_reason="stop")
                del running[str(key)]  # before it is delivered: the next may be taken then
                await worker.delivered(lease.turn.id, [f"{lease.turn.order}.5"])

    await asyncio.gather(*(work(worker, f"W{n}") for n, worker in enumerate(workers)))
    assert overlaps == []
    assert taken == expected
    for key in KEYS:  # each answer read every earlier question and answer of its thread
        loaded = await workers[0].load(key)
        answers = [message.text for message in loaded if isinstance(message, AssistantMessage)]
        assert answers == [
            f"answer {order} after {2 * n + 1} messages"
            for n, order in enumerate(expected[str(key)])
        ]


async def test_a_lease_taken_over_fences_out_its_old_owner_whose_clock_says_it_holds_it(
    open_postgres: Opener,
) -> None:
    slow, fast = FakeTime(1_000.0), FakeTime(1_000.0)
    a, b = await open_postgres(clock=slow), await open_postgres(clock=fast)
    await accept(a, KEYS[0], "000001")
    old = await a.take(KEYS[0], owner="A", lease_seconds=LEASE)
    assert old is not None
    assert old.expires_at == 1_030.0
    fast.now = 1_031.0  # by B's clock the lease expired; by A's it has 30 s left
    (stranded,) = await b.stranded()
    new = await b.take_over(stranded.id, owner="B", lease_seconds=LEASE)
    assert new is not None
    assert new.fence == old.fence + 1

    reply = [AssistantMessage(text="late", finish_reason="stop")]
    writes: list[Callable[[], Awaitable[object]]] = [
        lambda: a.renew(old, lease_seconds=LEASE),
        lambda: a.history(old),
        lambda: a.revise_question(old, question("changed")),
        lambda: a.tool_started(old, "call-1"),
        lambda: a.save_refs(old, ["1700000009.000100"]),
        lambda: a.answered(old, messages=reply, text="late", finish_reason="stop"),
        lambda: a.failed(old, messages=reply, error="late"),
        lambda: a.release(old),
    ]
    for write in writes:
        with pytest.raises(LeaseLost, match=f"turn {old.turn.id} is no longer leased to A"):
            await write()
    now = await b.turn(old.turn.id)
    assert (now.state, now.owner, now.fence, now.refs, now.tool_started) == (
        "running", "B", new.fence, (), False,
    )  # fmt: skip
    assert await b.history(new) == [question("question 000001")]


async def test_the_servers_clock_leases_when_no_clock_is_given(open_postgres: Opener) -> None:
    a, b = await open_postgres(), await open_postgres()
    turn = await accept(a, KEYS[0], "000001")
    assert abs(turn.accepted_at - time.time()) < 300  # the server's now(), in epoch seconds
    old = await a.take(KEYS[0], owner="A", lease_seconds=LEASE)
    assert old is not None
    assert old.expires_at == pytest.approx(turn.accepted_at + LEASE, abs=60)
    assert await b.stranded() == []  # the lease is live by the server's clock
    assert await b.take_over(turn.id, owner="B", lease_seconds=LEASE) is None
    new = await b.take_over(turn.id, owner="B", lease_seconds=LEASE, force=True)  # A is dead
    assert new is not None
    with pytest.raises(LeaseLost):
        await a.answered(old, messages=[], text="late", finish_reason="stop")


# --- schema -----------------------------------------------------------------------------------


async def test_four_workers_starting_at_once_make_one_schema(
    url: str, open_postgres: Opener
) -> None:
    stores = await asyncio.gather(*(open_postgres() for _ in range(4)))
    await accept(stores[0], KEYS[0], "000001")
    assert len(await stores[3].load(KEYS[0])) == 1
    await open_postgres()  # a later start finds it current
    connection = await asyncpg.connect(url)
    try:
        versions = await connection.fetch(
            "SELECT version, COUNT(*) FROM relaybot_schema GROUP BY version ORDER BY version"
        )
    finally:
        await connection.close()
    assert [tuple(row) for row in versions] == [(1, 1), (2, 1), (3, 1), (4, 1)]


async def test_a_database_of_a_newer_relaybot_is_refused(url: str, open_postgres: Opener) -> None:
    await open_postgres()
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("INSERT INTO relaybot_schema (version) VALUES (7)")
    finally:
        await connection.close()
    with pytest.raises(StoreError, match="written by a newer relaybot \\(schema version 7"):
        await open_postgres()


# --- URLs and errors --------------------------------------------------------------------------


async def test_a_postgresql_url_opens_a_postgres_store(url: str) -> None:
    for scheme in ("postgresql", "postgres"):
        spelled = scheme + url.removeprefix("postgresql")
        assert validate_store_url(spelled) == spelled
        store = await open_store(spelled)
        try:
            assert isinstance(store, PostgresStore)
            await store.check_writes()
            assert await store.load(KEYS[0]) == []
        finally:
            await store.close()


async def test_a_server_that_refuses_is_named_without_the_password() -> None:
    with pytest.raises(StoreError) as caught:
        await open_store("postgresql://bot:hunter2@127.0.0.1:1/relaybot")
    assert str(caught.value) == (
        "postgres store 127.0.0.1:1/relaybot: cannot connect (connection refused)"
    )


async def test_a_missing_database_is_a_store_error(postgres_database: str) -> None:
    missing = postgres_database.rpartition("/")[0] + "/relaybot_no_such_database"
    with pytest.raises(StoreError, match='relaybot_no_such_database: cannot connect \\(database "'):
        await open_store(missing)


async def test_a_closed_store_says_so(open_postgres: Opener) -> None:
    store = await open_postgres()
    await store.close()
    with pytest.raises(StoreError, match=r"postgres store 127\.0\.0\.1:5432/\w+: used after close"):
        await store.load(KEYS[0])
