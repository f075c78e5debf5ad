"""``SharedConnection``: the one aiosqlite connection of a store file, used by one task at a time.

Every task of the process shares one connection, and an SQLite transaction belongs to the
connection, not to the task that began it: a statement another task sent while a transaction
was open would join it, and be rolled back with it. So every use holds one asyncio lock:

- ``async with connection.statement() as db:`` — one statement (atomic by itself) or reads.
- ``async with connection.transaction() as db:`` — ``BEGIN IMMEDIATE`` … ``COMMIT``; an
  exception in the block, cancellation included, rolls it back.

aiosqlite runs the statements it is handed in order on its own thread, and runs one even if the
task awaiting it is cancelled. ``ROLLBACK`` is handed over before the lock is released, so the
next holder's statements always run after it: a cancelled caller cannot leave a transaction open.

``sqlite3`` errors become :class:`~core.store.base.StoreError` naming the store.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import aiosqlite
from pydantic import ValidationError

from core.messages import Message
from core.store.base import StoreError
from core.store.codec import decode_message, explain

__all__ = ["SharedConnection"]


class SharedConnection:
    """``db`` serialized by a lock, named ``name`` in errors ("sqlite store /path/to.db")."""

    def __init__(self, db: aiosqlite.Connection, *, name: str) -> None:
        self.name = name
        self._db = db
        self._lock = asyncio.Lock()
        self._closed = False

    @asynccontextmanager
    async def statement(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection, to this task alone while the block runs."""
        self._check_open()
        async with self._lock:
            self._check_open()
            try:
                yield self._db
            except sqlite3.Error as exc:
                raise StoreError(f"{self.name}: {exc}") from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction: committed when the block ends, rolled back if it raises."""
        async with self.statement() as db:
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
            async with self._lock:  # after whatever is running now
                await self._db.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self.name}: used after close()")
