"""``SharedConnection``: the one aiosqlite connection of a store file, used by one task at a time.

Every task of the process shares one connection, and an SQLite transaction belongs to the
connection, not to the task that began it: a statement another task sent while a transaction
was open would join it, and be rolled back with it. So every use holds one lock:

- ``async with connection.statement() as db:`` — one statement (atomic by itself) or reads.
- ``async with connection.transaction() as db:`` — ``BEGIN IMMEDIATE`` … ``COMMIT``; an
  exception in the block, cancellation included, rolls it back.

Callers take the lock in the order they asked, except ``urgent`` ones (lease renewals), which go
ahead of every caller that is not: when a thousand questions arrive at once, the writes queue
for seconds, and a renewal that waited behind them would let a running turn's lease lapse.

aiosqlite runs the statements it is handed in order on its own thread, and runs one even if the
task awaiting it is cancelled. ``ROLLBACK`` is handed over before the lock is released, so the
next holder's statements always run after it: a cancelled caller cannot leave a transaction open.

``sqlite3`` errors become :class:`~core.store.base.StoreError` naming the store.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import aiosqlite
from pydantic import ValidationError

from core.messages import Message
from core.store.base import StoreError
from core.store.codec import decode_message, explain

__all__ = ["SharedConnection", "Turnstile"]


class SharedConnection:
    """``db`` serialized by a lock, named ``name`` in errors ("sqlite store /path/to.db")."""

    def __init__(self, db: aiosqlite.Connection, *, name: str) -> None:
        self.name = name
        self._db = db
        self._lock = Turnstile()
        self._closed = False

    @asynccontextmanager
    async def statement(self, *, urgent: bool = False) -> AsyncIterator[aiosqlite.Connection]:
        """The connection, to this task alone while the block runs (``urgent``: ahead of the
        callers waiting that are not)."""
        self._check_open()
        async with self._lock.held(urgent=urgent):
            self._check_open()
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise StoreError(f"{self.name}: {exc}") from exc

    @asynccontextmanager
    async def transaction(self, *, urgent: bool = False) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction: committed when the block ends, rolled back if it raises."""
        async with self.statement(urgent=urgent) as db:
            try:
                await db.execute("BEGIN IMMEDIATE")
                yield db
                await db.execute("COMMIT")
            except BaseException:
                with suppress(sqlite3.Error):  # none is open if BEGIN or COMMIT failed
                    await db.execute("ROLLBACK")
                raise

    def decode(self, conversation: str, seq: int, body: str) -> Message:
        """A stored message; :class:`StoreError` naming it when it no longer reads back."""
        try:
            return decode_message(body)
        except ValidationError as exc:
            raise StoreError(
                f"{self.name}: message {seq} of conversation {conversation} cannot be read"
                f" ({explain(exc)})"
            ) from exc

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            async with self._lock.held(urgent=False):  # after whatever runs or waits now
                await self._db.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self.name}: used after close()")


class Turnstile:
    """An asyncio lock handed from holder to waiter in the order they asked, urgent waiters
    first. ``release`` hands it over directly (no newcomer slips in between); a waiter cancelled
    after it was handed the lock passes it on."""

    def __init__(self) -> None:
        self._held = False
        self._waiting: tuple[deque[asyncio.Future[None]], deque[asyncio.Future[None]]] = (
            deque(),  # urgent
            deque(),
        )

    @property
    def locked(self) -> bool:
        return self._held

    @asynccontextmanager
    async def held(self, *, urgent: bool) -> AsyncIterator[None]:
        """``async with turnstile.held(urgent=...):`` — acquired, and released on exit."""
        await self.acquire(urgent=urgent)
        try:
            yield
        finally:
            self.release()

    async def acquire(self, *, urgent: bool) -> None:
        if not self._held:
            self._held = True
            return
        queue = self._waiting[0 if urgent else 1]
        handed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(handed)
        try:
            await handed
        except asyncio.CancelledError:
            if handed.done() and not handed.cancelled():
                self.release()  # handed over, then cancelled before it ran: pass it on
            else:
                with suppress(ValueError):  # a release may have dropped it already
                    queue.remove(handed)
            raise

    def release(self) -> None:
        if not self._held:
            raise RuntimeError("release of a turnstile not held")
        for queue in self._waiting:
            while queue:
                handed = queue.popleft()
                if not handed.done():
                    handed.set_result(None)  # the lock stays held: it is the waiter's now
                    return
        self._held = False
