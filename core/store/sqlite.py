"""``SqliteStore``: the embedded default — one file, WAL, schema versioned, survives restarts.

Schema version 5 (kept in ``PRAGMA user_version``; migrations run when the store opens, and a
file of an earlier version keeps every row):

- ``messages(conversation, seq, body, created_at, turn)`` — one row per message: the
  conversation key's string form, a sequence number from 1 within the conversation, the message
  as JSON, when it was stored, and the ``turns.id`` it belongs to — ``NULL`` for messages stored
  before the journal existed or by ``append`` (a thread rebuilt from the platform).
- ``claims(event_id, expires_at)`` — platform events already taken; expired rows are pruned
  as new claims arrive.
- ``turns(id, conversation, ord, event_id, state, question, platform, timezone, accepted_at,
  owner, fence, lease_expires_at, tool_started, refs, final_text, finish_reason, error,
  updated_at)`` — the turn journal (:mod:`core.store.journal`, implemented in
  :mod:`core.store.sqlite_journal`): one row per accepted message, ``question`` and ``refs`` as
  JSON. ``id`` is ``AUTOINCREMENT``, so the id of a pruned turn is never given to another.
- ``feedback(turn, user_id, positive, voted_at)`` — one vote per user per turn (the key), 1
  for positive; implemented in :mod:`core.store.sqlite_feedback`. Not a foreign key (this
  connection does not enforce them): ``prune`` deletes a turn's votes with it.
- ``channel_settings(platform, workspace, channel, model, prompt, updated_by, updated_at)`` —
  a channel's own model and prompt (``NULL``: the default), one row per channel ever set;
  implemented in :mod:`core.store.sqlite_channels`.
- ``token_usage(user_key, period, starts_at, tokens)`` — a user's tokens per UTC day
  (``period`` ``'day'``) and calendar month (``'month'``), ``starts_at`` the period's first
  second; implemented in :mod:`core.store.sqlite_channels`, old periods deleted by ``prune``.
- ``blobs(sha256, size, stored_at, last_used_at, data)`` — the images of user messages, once
  by the sha256 of their bytes, kept apart from the messages' JSON (:mod:`core.store.blobs`),
  under the store's ``blob_max_bytes`` and the retention of ``prune``; implemented in
  :mod:`core.store.sqlite_blobs`.

Opening checks the file and fails with a one-line :class:`StoreError` when it cannot be used:
a directory, a file this process may not read and write, a file that is not a SQLite database,
a database of another program, or one written by a newer relaybot (a higher schema version).
Several processes may open a new file at the same instant: the checks and the migration run in
one write transaction, which re-reads the version once it holds the file. A stored message
that no longer reads back is a ``StoreError`` naming it, never a gap.

Writes are one SQL statement or one ``BEGIN IMMEDIATE`` transaction, on one connection that
the tasks of the process take in turn (:class:`~core.store.sqlite_access.SharedConnection`), so a
cancelled caller cannot leave a write half-done. The journal's leases serialize the turns of a
conversation, among the tasks of a process and among processes sharing the file alike.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from pathlib import Path

import aiosqlite

from core.messages import ConversationBreak, ConversationKey, Message
from core.store.base import StoreError
from core.store.blobs import BLOB_MAX_BYTES, set_apart
from core.store.codec import encode_message
from core.store.sqlite_access import SharedConnection
from core.store.sqlite_blobs import keep_blobs, with_images
from core.store.sqlite_channels import SqliteChannels, SqliteUsage
from core.store.sqlite_feedback import SqliteFeedback
from core.store.sqlite_journal import APPEND, CLAIM, LOAD, PRUNE_CLAIMS, SqliteJournal

__all__ = ["SCHEMA_VERSION", "SqliteStore"]

_LAST_TURN = """
    SELECT id FROM turns WHERE conversation = :conversation ORDER BY ord DESC, id DESC LIMIT 1
"""

MEMORY = ":memory:"
BUSY_TIMEOUT = 5.0
"""Seconds a statement waits for another process that holds the file."""
WRITE_CHECK_ROOM = 64 * 1024
"""Bytes a write check writes and takes back: more than accepting a message needs (each of its
rows and index entries may split a page), so a file that passes has room for one."""
_WRITE_CHECK = """
    INSERT INTO messages (conversation, seq, body, created_at)
    VALUES ('relaybot:write-check', 0, zeroblob(:room), :now)
"""
_WRITE_CHECK_TAKEN_BACK = "DELETE FROM messages WHERE conversation = 'relaybot:write-check'"

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
    (  # 2: the turn journal
        """
        CREATE TABLE turns (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            conversation TEXT NOT NULL,
            ord TEXT NOT NULL,
            event_id TEXT NOT NULL,
            state TEXT NOT NULL
                CHECK (state IN ('queued', 'running', 'answered', 'delivered', 'failed')),
            question TEXT NOT NULL,
            platform TEXT NOT NULL,
            timezone TEXT,
            accepted_at REAL NOT NULL,
            owner TEXT,
            fence INTEGER NOT NULL DEFAULT 0,
            lease_expires_at REAL,
            tool_started INTEGER NOT NULL DEFAULT 0,
            refs TEXT NOT NULL DEFAULT '[]',
            final_text TEXT,
            finish_reason TEXT,
            error TEXT,
            updated_at REAL NOT NULL
        )
        """,
        "CREATE INDEX turns_by_thread ON turns (conversation, state, ord, id)",
        "CREATE INDEX turns_by_state ON turns (state, accepted_at)",  # stranded, prune
        "ALTER TABLE messages ADD COLUMN turn INTEGER",
        "CREATE INDEX messages_by_turn ON messages (turn) WHERE turn IS NOT NULL",
    ),
    (  # 3: feedback on answers
        """
        CREATE TABLE feedback (
            turn INTEGER NOT NULL,
            user_id TEXT NOT NULL,
            positive INTEGER NOT NULL CHECK (positive IN (0, 1)),
            voted_at REAL NOT NULL,
            PRIMARY KEY (turn, user_id)
        ) WITHOUT ROWID
        """,
        "CREATE INDEX feedback_by_time ON feedback (voted_at)",
    ),
    (  # 4: channel settings and token usage
        """
        CREATE TABLE channel_settings (
            platform TEXT NOT NULL,
            workspace TEXT NOT NULL,
            channel TEXT NOT NULL,
            model TEXT,
            prompt TEXT,
            updated_by TEXT NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (platform, workspace, channel)
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE token_usage (
            user_key TEXT NOT NULL,
            period TEXT NOT NULL CHECK (period IN ('day', 'month')),
            starts_at INTEGER NOT NULL,
            tokens INTEGER NOT NULL,
            PRIMARY KEY (user_key, period, starts_at)
        ) WITHOUT ROWID
        """,
        "CREATE INDEX token_usage_by_start ON token_usage (period, starts_at)",  # prune
    ),
    (  # 5: images, kept apart from messages (a rowid table: its rows are large)
        """
        CREATE TABLE blobs (
            sha256 TEXT PRIMARY KEY,
            size INTEGER NOT NULL,
            stored_at REAL NOT NULL,
            last_used_at REAL NOT NULL,
            data BLOB NOT NULL
        )
        """,
        "CREATE INDEX blobs_by_use ON blobs (last_used_at, stored_at, sha256, size)",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)


class SqliteStore(SqliteJournal, SqliteFeedback, SqliteChannels, SqliteUsage):
    """A :class:`~core.store.base.ConversationStore` in one SQLite file.

    Made by ``await SqliteStore.open(path)``; ``path`` may be ``":memory:"`` (gone on close).
    ``clock`` gives the time (seconds) that claims and leases expire by and messages are
    stamped with; ``blob_max_bytes`` caps the bytes of the images kept
    (:mod:`core.store.blobs`).
    """

    def __init__(
        self,
        db: aiosqlite.Connection,
        *,
        name: str,
        clock: Callable[[], float],
        blob_max_bytes: int = BLOB_MAX_BYTES,
    ) -> None:
        """Use :meth:`open`, which checks the file and brings its schema up to date."""
        self._connection = SharedConnection(db, name=name)
        self._clock = clock
        self._blob_max_bytes = blob_max_bytes

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        blob_max_bytes: int = BLOB_MAX_BYTES,
    ) -> SqliteStore:
        """Open (or create, with its parent directories) the store file at ``path``.

        Raises :class:`StoreError` when the file cannot be used as a store, ``ValueError``
        for a negative ``blob_max_bytes``.
        """
        if blob_max_bytes < 0:
            raise ValueError(f"blob_max_bytes cannot be negative, not {blob_max_bytes}")
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
        return cls(db, name=name, clock=clock, blob_max_bytes=blob_max_bytes)

    def __repr__(self) -> str:
        return f"<{self._connection.name}>"

    async def load(self, key: ConversationKey) -> list[Message]:
        conversation = str(key)
        async with self._connection.statement() as db:
            rows = await db.execute_fetchall(LOAD, {"conversation": conversation})
            messages = [self._connection.decode(conversation, seq, body) for seq, body in rows]
            return await with_images(db, messages, now=self._clock())

    async def append(self, key: ConversationKey, messages: Sequence[Message]) -> None:
        stripped, blobs = set_apart(messages)
        bodies = [encode_message(message) for message in stripped]  # all, before any is written
        if not bodies:
            return
        now = self._clock()
        parameters = {
            "conversation": str(key),
            "turn": None,
            "bodies": json.dumps(bodies, ensure_ascii=False),
            "now": now,
        }
        async with self._connection.transaction() as db:
            await db.execute(APPEND, parameters)
            await keep_blobs(db, blobs, now=now, cap=self._blob_max_bytes)

    async def break_conversation(self, key: ConversationKey) -> None:
        parameters = {
            "conversation": str(key),
            "bodies": json.dumps([encode_message(ConversationBreak())]),
            "now": self._clock(),
        }
        async with self._connection.transaction() as db:
            rows = list(await db.execute_fetchall(_LAST_TURN, parameters))
            await db.execute(APPEND, parameters | {"turn": rows[0][0] if rows else None})

    async def claim(self, event_id: str, ttl: float) -> bool:
        if ttl <= 0:
            raise ValueError(f"a claim needs a positive ttl, not {ttl}")
        now = self._clock()
        parameters = {"event_id": event_id, "expires_at": now + ttl, "now": now}
        async with self._connection.statement() as db:
            async with db.execute(CLAIM, parameters) as cursor:
                claimed = cursor.rowcount == 1
            await db.execute(PRUNE_CLAIMS, (now,))
        return claimed

    async def prune(self, *, older_than: float) -> int:
        """The journal's prune (blobs last used before ``older_than`` included), then the usage
        counters of periods long gone (their own
        retention, by the store's clock: :mod:`core.store.usage`)."""
        deleted = await super().prune(older_than=older_than)
        await self.prune_usage()
        return deleted

    async def check_writes(self) -> None:
        """A row that needs new pages, written and deleted in one committed transaction: it
        fails where an accept would — at the file's size limit (``max_page_count``, a full
        disk), on a read-only or damaged file — and no row of it is ever seen. The pages it
        frees stay in the file for the next writes."""
        parameters = {"room": WRITE_CHECK_ROOM, "now": self._clock()}
        async with self._connection.transaction() as db:
            await db.execute(_WRITE_CHECK, parameters)
            await db.execute(_WRITE_CHECK_TAKEN_BACK)

    async def close(self) -> None:
        await self._connection.close()


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
    """Check that the file is a store this code can read, then bring its schema up to date.

    The first look (version and tables, read together in one snapshot) refuses a foreign or
    newer file before anything is written to it; the migration then runs in one write
    transaction that looks again, since another process may have set the file up meanwhile.
    """
    try:
        await db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        version = await _check_version(db, name)  # the first read: fails on a non-database
        await _use_wal(db)
        await db.execute("PRAGMA synchronous = NORMAL")  # durable across crashes with WAL
        if version < SCHEMA_VERSION:
            await _migrate(db, name)
    except sqlite3.Error as exc:
        raise StoreError(f"{name}: {_describe(exc)}") from exc


async def _check_version(db: aiosqlite.Connection, name: str) -> int:
    """The schema version, read in one snapshot with the tables it vouches for (a process
    migrating the file writes both in one transaction)."""
    await db.execute("BEGIN")
    try:
        version = await _look(db, name)
    except BaseException:
        with suppress(sqlite3.Error):
            await db.execute("ROLLBACK")
        raise
    await db.execute("COMMIT")  # a read: ends the snapshot
    return version


async def _use_wal(db: aiosqlite.Connection) -> None:
    """``PRAGMA journal_mode = WAL``. While another process switches the file's mode, SQLite
    answers "database is locked" at once, without waiting ``busy_timeout``: so wait here, as
    long."""
    deadline = time.monotonic() + BUSY_TIMEOUT
    delay = 0.002
    while True:
        try:
            await db.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode != sqlite3.SQLITE_BUSY or time.monotonic() > deadline:
                raise
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)


async def _migrate(db: aiosqlite.Connection, name: str) -> None:
    """Apply the missing migrations in one transaction (rolled back if any fails)."""
    await db.execute("BEGIN IMMEDIATE")
    try:
        version = await _look(db, name)  # another process may have set the file up by now
        for statements in _MIGRATIONS[version:]:
            for statement in statements:
                await db.execute(statement)
        await db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        await db.execute("COMMIT")
    except BaseException:
        with suppress(sqlite3.Error):
            await db.execute("ROLLBACK")
        raise


async def _look(db: aiosqlite.Connection, name: str) -> int:
    """The schema version, if this code can read the file: not newer, not another program's."""
    async with db.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    version = int(row[0]) if row else 0
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{name}: written by a newer relaybot (schema version {version}, this one knows"
            f" up to {SCHEMA_VERSION}); upgrade relaybot or use another file"
        )
    if version == 0:
        tables = [
            row[0]
            for row in await db.execute_fetchall(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        if tables:
            listed = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
            raise StoreError(f"{name}: a SQLite database of another program (tables: {listed})")
    return version


def _describe(error: sqlite3.Error) -> str:
    text = str(error)
    if text == "file is not a database":
        return "not a SQLite database (or damaged beyond reading)"
    return text
