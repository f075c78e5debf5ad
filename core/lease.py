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
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from uuid import uuid4

from core.store.errors import StoreError
from core.store.journal import Lease, LeaseLost, TurnJournal

__all__ = ["dead_on_this_host", "keep_lease", "owner_id"]

log = logging.getLogger("relaybot.lease")


@asynccontextmanager
async def keep_lease(
    store: TurnJournal,
    lease: Lease,
    *,
    lease_seconds: float,
    on_lost: Callable[[], None],
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncIterator[None]:
    """Renew ``lease`` every ``lease_seconds / 3`` while the block runs.

    When the lease was taken over (:class:`LeaseLost`), ``on_lost()`` is called once and the
    renewals stop; the block goes on until its owner ends it. A store that fails to renew is
    tried again at the next interval: the lease may still be saved in time. The renewal task is
    cancelled and awaited when the block exits.
    """
    renewing = asyncio.create_task(
        _renew(store, lease, lease_seconds=lease_seconds, on_lost=on_lost, sleep=sleep),
        name=f"renew the lease of turn {lease.turn.id}",
    )
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
) -> None:
    while True:
        await sleep(lease_seconds / 3)
        try:
            lease = await store.renew(lease, lease_seconds=lease_seconds)
        except LeaseLost as lost:
            log.info("turn %d was taken over: %s", lease.turn.id, lost)
            on_lost()
            return
        except StoreError:
            log.exception("could not renew the lease of turn %d; trying again", lease.turn.id)


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
