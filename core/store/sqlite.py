"""``SqliteStore``: the embedded default — one file, WAL, schema versioned, survives restarts.

Schema version 1 (kept in ``PRAGMA user_version``; migrations run when the store opens):

- ``messages(conversation, seq, body, created_at)`` — one row per message: the conversation
  key's string form, a sequence number from 1 within the conversation, the message as JSON.
- ``claims(event_id, expires_at)`` — platform events already taken; expired rows are pruned
  as new claims arrive.

Opening checks the file and fails with a one-line :class:`StoreError` when it cannot be used:
a directory, a file this process may not read and write, a file that is not a SQLite database,
a database of another program, or one written by a newer relaybot (a higher schema version).
A stored message that no longer reads back is a ``StoreError`` naming it, never a gap.

Every write is a single SQL statement, so it is atomic without an explicit transaction and a
cancelled caller cannot leave one half-done. Turns are serialized within this process only
(:class:`~core.store.locks.KeyedLock`); several processes may share the file for history and
claims, but one conversation should be served by one process.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from pathlib import Path

import aiosqlite
from pydantic import ValidationError

from core.messages import ConversationKey, Message
from core.store.base import StoreError
from core.store.codec import decode_message, encode_message, explain
from core.store.locks import KeyedLock

__all__ = ["SCHEMA_VERSION", "SqliteStore"]

MEMORY = ":memory:"

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: messages and claims
        """
        CREATE TABLE messages (
            conversation TEXT NOT NULL,
            seq INTEGER NOT NULL,
            body TEXT NOT NULL,
            created_at REAL NOT NULL,
            PRIMARY KEY (conversation, seq)
        )
        """,
        """
        CREATE TABLE claims (
            event_id TEXT PRIMARY KEY,
            expires_at REAL NOT NULL
        ) WITHOUT ROWID
        """,
        "CREATE INDEX claims_by_expiry ON claims (expires_at)",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)

_LOAD = "SELECT seq, body FROM messages WHERE conversation = ? ORDER BY seq"

# One statement: numbers the batch after the conversation's last message and inserts it whole.
_APPEND = """
    INSERT INTO messages (conversation, seq, body, created_at)
    SELECT :conversation, last.seq + item.key + 1, item.value, :now
    FROM (SELECT COALESCE(MAX(seq), 0) AS seq FROM messages WHERE conversation = :conversation)
        AS last,
        json_each(:bodies) AS item
"""

# Inserts a new claim or renews an expired one; changes no row while the claim is live.
_CLAIM = """
    INSERT INTO claims (event_id, expires_at) VALUES (:event_id, :expires_at)
    ON CONFLICT (event_id) DO UPDATE SET expires_at = excluded.expires_at
    WHERE claims.expires_at <= :now
"""
_PRUNE_CLAIMS = "DELETE FROM claims WHERE expires_at <= ?"


class SqliteStore:
    """A :class:`~core.store.base.ConversationStore` in one SQLite file.

    Made by ``await SqliteStore.open(path)``; ``path`` may be ``":memory:"`` (gone on close).
    ``clock`` gives the time (seconds) that claims expire by and messages are stamped with.
    """

    def __init__(self, db: aiosqlite.Connection, *, name: str, clock: Callable[[], float]) -> None:
        """Use :meth:`open`, which checks the file and brings its schema up to date."""
        self._db = db
        self._name = name
        self._clock = clock
        self._locks = KeyedLock()
        self._closed = False

    @classmethod
    async def open(
        cls, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time
    ) -> SqliteStore:
        """Open (or create, with its parent directories) the store file at ``path``.

        Raises :class:`StoreError` when the file cannot be used as a store.
        """
        target = _resolve(path)
        name = f"sqlite store {target}"
        if isinstance(target, Path):
            await asyncio.to_thread(_check_location, target, name)
        try:
            db = await aiosqlite.connect(target, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"{name}: cannot open it ({exc})") from exc
        try:
            await _prepare(db, name)
        except BaseException:
            await db.close()
            raise
        return cls(db, name=name, clock=clock)

    def __repr__(self) -> str:
        return f"<{self._name}>"

    async def load(self, key: ConversationKey) -> list[Message]:
        conversation = str(key)
        with self._mapped_errors():
            rows = await self._db.execute_fetchall(_LOAD, (conversation,))
        return [self._decode(conversation, seq, body) for seq, body in rows]

    async def append(self, key: ConversationKey, messages: Sequence[Message]) -> None:
        bodies = [encode_message(message) for message in messages]  # all, before any is written
        if not bodies:
            return
        parameters = {
            "conversation": str(key),
            "bodies": json.dumps(bodies, ensure_ascii=False),
            "now": self._clock(),
        }
        with self._mapped_errors():
            await self._db.execute(_APPEND, parameters)

    def turn_lock(self, key: ConversationKey) -> AbstractAsyncContextManager[None]:
        return self._locks.hold(str(key))

    async def claim(self, event_id: str, ttl: float) -> bool:
        if ttl <= 0:
            raise ValueError(f"a claim needs a positive ttl, not {ttl}")
        now = self._clock()
        parameters = {"event_id": event_id, "expires_at": now + ttl, "now": now}
        with self._mapped_errors():
            async with self._db.execute(_CLAIM, parameters) as cursor:
                claimed = cursor.rowcount == 1
            await self._db.execute(_PRUNE_CLAIMS, (now,))
        return claimed

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._db.close()

    def _decode(self, conversation: str, seq: int, body: str) -> Message:
        try:
            return decode_message(body)
        except ValidationError as exc:
            raise StoreError(
                f"{self._name}: message {seq} of conversation {conversation} cannot be read"
                f" ({explain(exc)})"
            ) from exc

    @contextmanager
    def _mapped_errors(self) -> Iterator[None]:
        if self._closed:
            raise StoreError(f"{self._name}: used after close()")
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"{self._name}: {exc}") from exc


def _resolve(path: str | os.PathLike[str]) -> str | Path:
    return MEMORY if str(path) == MEMORY else Path(path).expanduser().absolute()


def _check_location(path: Path, name: str) -> None:
    """Blocking: the path can hold a store file (its directory is made if missing)."""
    if path.is_dir():
        raise StoreError(f"{name}: is a directory, not a file")
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise StoreError(f"{name}: this process may not read and write it (check permissions)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        nearest = next(parent for parent in path.parents if parent.exists())
        why = f"{nearest} is a file" if not nearest.is_dir() else exc.strerror
        raise StoreError(f"{name}: cannot create its directory ({why})") from exc


async def _prepare(db: aiosqlite.Connection, name: str) -> None:
    """Check that the file is a store this code can read, then bring its schema up to date."""
    try:
        await db.execute("PRAGMA busy_timeout = 5000")  # another process may hold the file
        version = await _schema_version(db, name)  # the first read: fails on a non-database
        if version == 0:
            await _check_no_foreign_tables(db, name)
        await db.execute("PRAGMA journal_mode = WAL")
        await db.execute("PRAGMA synchronous = NORMAL")  # durable across crashes with WAL
        if version < SCHEMA_VERSION:
            await _migrate(db, name)
    except sqlite3.Error as exc:
        raise StoreError(f"{name}: {_describe(exc)}") from exc


async def _schema_version(db: aiosqlite.Connection, name: str) -> int:
    async with db.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    version = int(row[0]) if row else 0
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{name}: written by a newer relaybot (schema version {version}, this one knows"
            f" up to {SCHEMA_VERSION}); upgrade relaybot or use another file"
        )
    return version


async def _check_no_foreign_tables(db: aiosqlite.Connection, name: str) -> None:
    tables = [
        row[0]
        for row in await db.execute_fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        )
    ]
    if tables:
        listed = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
        raise StoreError(f"{name}: a SQLite database of another program (tables: {listed})")


async def _migrate(db: aiosqlite.Connection, name: str) -> None:
    """Apply the missing migrations in one transaction (rolled back if any fails)."""
    await db.execute("BEGIN IMMEDIATE")
    try:
        version = await _schema_version(db, name)  # another process may have migrated by now
        for statements in _MIGRATIONS[version:]:
            for statement in statements:
                await db.execute(statement)
        await db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        await db.execute("COMMIT")
    except BaseException:
        await db.execute("ROLLBACK")
        raise


def _describe(error: sqlite3.Error) -> str:
    text = str(error)
    if text == "file is not a database":
        return "not a SQLite database (or damaged beyond reading)"
    return text
