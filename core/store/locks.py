"""``KeyedLock``: one lock per key, granted in arrival order, forgotten when nobody holds it.

Both in-process stores serialize the turns of a conversation with it. The lock of a key lives
only while some task holds it or waits for it (a reference count), so a bot that sees
millions of threads keeps no lock object for an idle one.

It is FIFO because :class:`asyncio.Lock` is: a waiter queues in the order it called
``acquire`` and a release wakes the oldest one; a task arriving between that wake-up and the
waiter's resumption queues behind it rather than barging in. Cancelling a waiter takes it out
of the queue without disturbing the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

__all__ = ["KeyedLock"]


@dataclass(slots=True)
class _Entry:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # tasks holding or waiting for the lock


class KeyedLock:
    """``async with locks.hold(key):`` — one holder per key at a time, in arrival order."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def __len__(self) -> int:
        """How many keys are held or waited for right now (idle keys are forgotten)."""
        return len(self._entries)

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._entries[key]
