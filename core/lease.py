"""Holding a turn's lease: renewing it while the turn runs, and who the holder is.

A worker that took a turn (:meth:`~core.store.journal.TurnJournal.take`) keeps its lease alive
with :func:`keep_lease` for as long as it works on the turn; when another worker takes the turn
over, ``on_lost`` tells it to stop. Worker ids (:func:`owner_id`) name a host and a process, so
a worker can tell that a lease's owner on its own machine is gone (:func:`dead_on_this_host`)
without waiting for the lease to expire.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from uuid import uuid4

from core.store.errors import StoreError
from core.store.journal import Lease, LeaseLost, TurnJournal

__all__ = ["dead_on_this_host", "keep_lease", "owner_id", "taken_over"]

log = logging.getLogger("relaybot.lease")


@asynccontextmanager
async def keep_lease(
    store: TurnJournal,
    lease: Lease,
    *,
    lease_seconds: float,
    on_lost: Callable[[], None],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    monotonic: Callable[[], float] = time.monotonic,
) -> AsyncIterator[None]:
    """Renew ``lease`` every ``lease_seconds / 3`` while the block runs.

    ``on_lost()`` is called once, and the renewals stop, when the lease is no longer surely
    ours: another worker took it over (:class:`LeaseLost`), or it went unrenewed for two
    thirds of its length — a renewal that ran a third of a lease late (the process paused, its
    loop blocked) or a store that kept failing (a failed renewal is tried again every ninth of
    a lease until then). The last third is the margin in which another worker may not yet take
    it, so the owner has time to stop sending. The store's fencing token refuses the old
    owner's writes; ``on_lost`` is how it stops its platform edits, which nothing can fence.
    The block goes on until its owner ends it. The renewal task is cancelled and awaited when
    the block exits.
    """
    renewing = asyncio.create_task(
        _renew(
            store, lease, lease_seconds=lease_seconds, on_lost=on_lost, sleep=sleep,
            monotonic=monotonic,
        ),
        name=f"renew the lease of turn {lease.turn.id}",
    )  # fmt: skip
    try:
        yield
    finally:
        renewing.cancel()
        await asyncio.wait([renewing])
        if not renewing.cancelled() and (error := renewing.exception()) is not None:
            log.error("renewing the lease of turn %d failed", lease.turn.id, exc_info=error)


async def _renew(
    store: TurnJournal,
    lease: Lease,
    *,
    lease_seconds: float,
    on_lost: Callable[[], None],
    sleep: Callable[[float], Awaitable[None]],
    monotonic: Callable[[], float],
) -> None:
    unsure_after = lease_seconds * 2 / 3
    renewed_at = monotonic()  # the lease was taken or renewed no later than this
    interval = lease_seconds / 3
    while True:
        await sleep(interval)
        attempt = monotonic()
        if attempt - renewed_at >= unsure_after:
            log.warning(
                "turn %d: the lease went unrenewed for %.1f s of its %g s; the turn stops and "
                "is left to the journal's recovery", lease.turn.id, attempt - renewed_at,
                lease_seconds,
            )  # fmt: skip
            on_lost()
            return
        try:
            lease = await store.renew(lease, lease_seconds=lease_seconds)
        except LeaseLost as lost:
            if await taken_over(store, lease):
                log.info("turn %d was taken over: %s", lease.turn.id, lost)
                on_lost()
            return  # else it ended under this lease: nothing is left to renew
        except StoreError:
            log.exception("could not renew the lease of turn %d; trying again", lease.turn.id)
            interval = max(0.0, min(lease_seconds / 9, renewed_at + unsure_after - monotonic()))
        else:
            renewed_at, interval = attempt, lease_seconds / 3


async def taken_over(store: TurnJournal, lease: Lease) -> bool:
    """After :class:`LeaseLost`: whether another worker holds the turn now (its fence moved
    on), as opposed to the turn having ended under this very lease (failed, or delivered),
    which leaves its owner free to finish showing it. A store that cannot tell says taken."""
    try:
        turn = await store.turn(lease.turn.id)
    except StoreError:
        return True
    return turn.fence != lease.fence


def owner_id() -> str:
    """A new worker id for this process: ``host:pid:nonce``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:8]}"


def dead_on_this_host(owner: str, *, me: str) -> bool:
    """``owner`` (an :func:`owner_id`) is a process of this host that is gone: its pid is not
    alive, or it is our pid under another id (a previous process whose pid was reused). False
    for another host's owner, a live one, or an id that is not an :func:`owner_id`."""
    host, _, pid_and_nonce = owner.partition(":")
    pid_text, colon, _ = pid_and_nonce.partition(":")
    if host != socket.gethostname() or not colon or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid <= 0:  # 0 would signal our process group
        return False
    if pid == os.getpid():
        return owner != me
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # PermissionError: alive, someone else's
        return False
    return False
