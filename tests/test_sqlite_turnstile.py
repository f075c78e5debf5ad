"""The SQLite store's one connection is taken in the order callers asked, lease renewals first:
a burst of writes must not hold a renewal back until the lease lapses."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from core.messages import ConversationKey, UserMessage
from core.store.sqlite import SqliteStore
from core.store.sqlite_access import Turnstile

KEY = ConversationKey(platform="slack", workspace="T1", channel="C1", thread="1700000000.000100")


async def test_waiters_go_in_order_urgent_ones_first() -> None:
    gate = Turnstile()
    order: list[str] = []
    await gate.acquire(urgent=False)

    async def take(name: str, *, urgent: bool) -> None:
        await gate.acquire(urgent=urgent)
        order.append(name)
        gate.release()

    tasks = []
    for name, urgent in [("a", False), ("b", False), ("r1", True), ("c", False), ("r2", True)]:
        tasks.append(asyncio.create_task(take(name, urgent=urgent)))
        await asyncio.sleep(0)  # each waits before the next asks
    gate.release()
    await asyncio.gather(*tasks)
    assert order == ["r1", "r2", "a", "b", "c"]
    assert not gate.locked


async def test_a_waiter_cancelled_after_it_was_handed_the_lock_passes_it_on() -> None:
    gate = Turnstile()
    await gate.acquire(urgent=False)
    first = asyncio.create_task(gate.acquire(urgent=False))
    second = asyncio.create_task(gate.acquire(urgent=False))
    await asyncio.sleep(0)
    gate.release()  # handed to ``first``, which has not run yet
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await second  # got it from ``first``
    assert gate.locked
    gate.release()
    assert not gate.locked


async def test_a_waiter_cancelled_while_waiting_leaves_the_line() -> None:
    gate = Turnstile()
    await gate.acquire(urgent=False)
    gone = asyncio.create_task(gate.acquire(urgent=True))
    await asyncio.sleep(0)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    gate.release()
    assert not gate.locked
    with pytest.raises(RuntimeError, match="not held"):
        gate.release()


async def test_a_renewal_goes_ahead_of_a_burst_of_queued_writes(tmp_path: Path) -> None:
    """Fifty questions queued behind a held connection; a lease renewal asked after them is
    written before any of them."""
    store = await SqliteStore.open(tmp_path / "turnstile.db")
    try:
        await store.accept(
            event_id="e0", key=KEY, order="000000000001", claim_ttl=600, platform="a test",
            question=UserMessage(text="first", author_id="U1", author_name="ada"),
        )  # fmt: skip
        lease = await store.take(KEY, owner="w", lease_seconds=30)
        assert lease is not None
        done: list[str] = []
        held = store._connection._lock  # the test holds the connection itself
        await held.acquire(urgent=False)

        question = UserMessage(text="q", author_id="U1", author_name="ada")

        async def ask(i: int) -> None:
            other = ConversationKey(platform="slack", workspace="T1", channel="C1", thread=str(i))
            await store.accept(
                event_id=f"e{i}", key=other, order="000000000001", claim_ttl=600,
                platform="a test", question=question,
            )  # fmt: skip
            done.append(f"accept {i}")

        async def renew() -> None:
            await store.renew(lease, lease_seconds=30)
            done.append("renew")

        burst = [asyncio.create_task(ask(i)) for i in range(1, 51)]
        await asyncio.sleep(0)
        renewal = asyncio.create_task(renew())
        await asyncio.sleep(0)
        held.release()
        await asyncio.gather(renewal, *burst)
        assert done[0] == "renew"
        assert len(done) == 51
    finally:
        await store.close()
