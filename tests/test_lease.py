"""Keeping a turn's lease while it runs, and telling a dead owner on this host."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys

import pytest

from core.lease import dead_on_this_host, keep_lease, owner_id
from core.messages import ConversationKey, UserMessage
from core.store.errors import StoreError
from core.store.journal import Lease
from core.store.memory import MemoryStore
from tests.support.clock import FakeClock

KEY = ConversationKey(platform="slack", workspace="T1", channel="C1", thread="1700000000.000100")
LEASE = 30.0  # renewed every 10 s
START = 1_000.0


async def taken(store: MemoryStore) -> Lease:
    await store.accept(
        event_id="slack:T1:C1:1", key=KEY, order="1", question=UserMessage(text="hi"),
        platform="Slack", claim_ttl=60,
    )  # fmt: skip
    lease = await store.take(KEY, owner="worker-1", lease_seconds=LEASE)
    assert lease is not None
    return lease


async def expiry(store: MemoryStore, lease: Lease) -> float | None:
    return (await store.turn(lease.turn.id)).lease_expires_at


def renewing_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("renew the lease")]


async def test_the_lease_is_renewed_every_third_of_its_length() -> None:
    clock = FakeClock(START)
    store = MemoryStore(clock=clock.now)
    lease = await taken(store)
    lost: list[None] = []
    async with keep_lease(store, lease, lease_seconds=LEASE, on_lost=lambda: lost.append(None),
                          sleep=clock.sleep):  # fmt: skip
        await clock.advance(9.9)
        assert await expiry(store, lease) == START + 30
        await clock.advance(0.1)
        assert await expiry(store, lease) == START + 40
        await clock.advance(10)
        assert await expiry(store, lease) == START + 50
        await clock.advance(100)  # long past the first expiry: still held
        assert await expiry(store, lease) == START + 150
        assert await store.stranded() == []
    assert lost == []


async def test_a_lease_taken_over_is_reported_once_and_no_longer_renewed() -> None:
    clock = FakeClock(START)
    store = MemoryStore(clock=clock.now)
    lease = await taken(store)
    lost: list[None] = []
    async with keep_lease(store, lease, lease_seconds=LEASE, on_lost=lambda: lost.append(None),
                          sleep=clock.sleep):  # fmt: skip
        await clock.advance(5)
        other = await store.take_over(
            lease.turn.id, owner="worker-2", lease_seconds=LEASE, force=True
        )
        assert other is not None
        await clock.advance(5)
        assert lost == [None]
        assert renewing_tasks() == []  # the renewals stopped
        await clock.advance(100)
        assert lost == [None]
        turn = await store.turn(lease.turn.id)
        assert (turn.owner, turn.lease_expires_at) == ("worker-2", START + 5 + LEASE)


async def test_a_turn_ended_under_the_lease_is_not_reported_lost() -> None:
    """The turn failed under this very lease while its reply is still being shown: the
    renewal stops, and the owner is not told to stop (it is not another worker's)."""
    clock = FakeClock(START)
    store = MemoryStore(clock=clock.now)
    lease = await taken(store)
    lost: list[None] = []
    async with keep_lease(store, lease, lease_seconds=LEASE, on_lost=lambda: lost.append(None),
                          sleep=clock.sleep):  # fmt: skip
        await store.failed(lease, messages=[], error="The model is unavailable.")
        await clock.advance(10)
        assert renewing_tasks() == []
    assert lost == []


class Flaky(MemoryStore):
    """A store whose next ``failures`` renewals fail."""

    failures = 0

    async def renew(self, lease: Lease, *, lease_seconds: float) -> Lease:
        if self.failures:
            self.failures -= 1
            raise StoreError("database is locked")
        return await super().renew(lease, lease_seconds=lease_seconds)


async def test_a_failed_renewal_is_tried_again_every_ninth_of_a_lease() -> None:
    clock = FakeClock(START)
    store = Flaky(clock=clock.now)
    store.failures = 2
    lease = await taken(store)
    lost: list[None] = []
    async with keep_lease(store, lease, lease_seconds=LEASE, on_lost=lambda: lost.append(None),
                          sleep=clock.sleep, monotonic=clock.now):  # fmt: skip
        await clock.advance(10)
        assert await expiry(store, lease) == START + 30  # the first renewal failed
        await clock.advance(10 / 3)
        assert await expiry(store, lease) == START + 30  # and the second
        await clock.advance(10 / 3)
        assert await expiry(store, lease) == pytest.approx(START + 50 - 10 / 3)  # saved in time
        await clock.advance(10)
        assert await expiry(store, lease) == pytest.approx(START + 60 - 10 / 3)  # back to thirds
    assert lost == []


async def test_a_lease_unrenewed_for_two_thirds_of_it_is_given_up() -> None:
    """The store keeps failing: the owner stops with a third of the lease left, before
    another worker may take the turn."""
    clock = FakeClock(START)
    store = Flaky(clock=clock.now)
    store.failures = 100
    lease = await taken(store)
    lost: list[None] = []
    async with keep_lease(store, lease, lease_seconds=LEASE, on_lost=lambda: lost.append(None),
                          sleep=clock.sleep, monotonic=clock.now):  # fmt: skip
        await clock.advance(19.9)
        assert lost == []
        await clock.advance(0.1)
        assert lost == [None]
        assert renewing_tasks() == []
        assert store.failures == 100 - 3  # tried at 10, 13.3 and 16.7 s
        assert await expiry(store, lease) == START + LEASE  # still ours, for 10 s more


async def test_a_renewal_a_third_of_a_lease_late_gives_the_lease_up() -> None:
    """The renewal's sleep ended late (a paused process, a blocked loop): the lease may be
    gone by the time it could be renewed, so the owner stops rather than renews."""
    clock = FakeClock(START)
    store = MemoryStore(clock=clock.now)
    lease = await taken(store)
    lost: list[None] = []
    late = FakeClock(START)  # the renewal's sleep, which the test holds back

    async def sleep(seconds: float) -> None:
        await late.sleep(seconds)

    async with keep_lease(store, lease, lease_seconds=LEASE, on_lost=lambda: lost.append(None),
                          sleep=sleep, monotonic=clock.now):  # fmt: skip
        await clock.advance(19.9)  # no renewal woke: 9.9 s late, still in time
        await late.advance(10)
        assert (lost, await expiry(store, lease)) == ([], START + 19.9 + LEASE)
        await clock.advance(20)  # 10 s late this time
        await late.advance(10)
        assert lost == [None]
        assert await expiry(store, lease) == START + 19.9 + LEASE  # not renewed


async def test_leaving_the_block_cancels_the_renewals() -> None:
    clock = FakeClock(START)
    store = MemoryStore(clock=clock.now)
    lease = await taken(store)
    async with keep_lease(store, lease, lease_seconds=LEASE, on_lost=lambda: None,
                          sleep=clock.sleep):  # fmt: skip
        await clock.advance(10)
        assert len(renewing_tasks()) == 1
    assert renewing_tasks() == []
    await clock.advance(100)
    assert await expiry(store, lease) == START + 40


def test_owner_ids_name_this_host_and_process_and_differ() -> None:
    one, two = owner_id(), owner_id()
    assert one.startswith(f"{socket.gethostname()}:{os.getpid()}:")
    assert one != two


def test_an_owner_whose_process_exited_is_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    assert child.wait(timeout=30) == 0  # exited and reaped: its pid names nobody now
    me = owner_id()
    assert dead_on_this_host(f"{socket.gethostname()}:{child.pid}:0a1b2c3d", me=me)


def test_our_pid_under_another_id_is_a_previous_process() -> None:
    me = owner_id()
    host, pid, _ = me.split(":")
    assert dead_on_this_host(f"{host}:{pid}:ffffffff", me=me)
    assert not dead_on_this_host(me, me=me)


def test_a_live_process_another_host_or_a_foreign_id_is_not_known_dead() -> None:
    me = owner_id()
    host = socket.gethostname()
    assert not dead_on_this_host(f"{host}:{os.getppid()}:0a1b2c3d", me=me)  # alive
    assert not dead_on_this_host(f"{host}:1:0a1b2c3d", me=me)  # init: alive (maybe not ours)
    assert not dead_on_this_host(f"not-{host}:999999999:0a1b2c3d", me=me)
    for foreign in ["worker-1", f"{host}:abc:0a1b2c3d", f"{host}:0:0a1b2c3d", f"{host}:-5:x",
                    f"{host}:123", ""]:  # fmt: skip
        assert not dead_on_this_host(foreign, me=me), foreign
