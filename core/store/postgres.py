"""``PostgresStore``: the system of record of a fleet — every worker process shares one database.

Schema version 4 (one row per applied migration in ``relaybot_schema``):

- ``messages(seq, conversation, body, created_at, turn)`` — one row per message: ``seq`` (an
  identity) orders the messages of a conversation as they were stored (``append`` holds the
  thread's advisory lock, so a batch is never interleaved with another); ``turn`` is the
  ``turns.id`` it belongs to, ``NULL`` for messages stored by ``append``.
- ``claims(event_id, expires_at)`` — platform events already taken; expired rows are pruned
  as new claims arrive.
- ``turns(...)`` — the turn journal, the columns of the SQLite store's
  (:mod:`core.store.sqlite`), ``refs`` as ``text[]``; implemented in
  :mod:`core.store.postgres_journal`.
- ``feedback(turn, user_id, positive, voted_at)`` — one vote per user per turn (the key), a
  foreign key of ``turns`` deleted with its turn; implemented in
  :mod:`core.store.postgres_feedback`.
- ``channel_settings(...)`` and ``token_usage(...)`` — a channel's own model and prompt, and a
  user's tokens per UTC day and calendar month: the columns of the SQLite store's; implemented
  in :mod:`core.store.postgres_channels`, old usage periods deleted by ``prune``.
- ``blobs(sha256, size, stored_at, last_used_at, data)`` — the images of user messages, once
  by hash, ``data`` as ``bytea``, under ``blob_max_bytes`` and the retention of ``prune``
  (:mod:`core.store.blobs`); implemented in :mod:`core.store.postgres_blobs`.

Times are seconds since the epoch (``float8``), from the server's ``now()`` — workers' clocks
differ — unless the store is given a ``clock`` (tests). Orders and keys compare bytewise
(``COLLATE "C"``), as SQLite compares them, whatever the database's collation.

Migrations run when the store opens, in one transaction holding
``pg_advisory_xact_lock(MIGRATION_LOCK)``: several processes may start on a new database at
once, and the lock (released at commit, so it cannot leak through the pool as a session lock
would) lets one of them migrate while the others wait and then find the schema current.
A database written by a newer relaybot is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from urllib.parse import urlsplit

import asyncpg

from core.messages import ConversationBreak, ConversationKey, Message
from core.store.base import StoreError
from core.store.blobs import BLOB_MAX_BYTES, set_apart
from core.store.codec import encode_message
from core.store.postgres_access import NOW, Pool, Query, describe, execute, fetch, fetchval
from core.store.postgres_blobs import keep_blobs, with_images
from core.store.postgres_channels import PostgresChannels, PostgresUsage
from core.store.postgres_feedback import PostgresFeedback
from core.store.postgres_journal import (
    APPEND,
    CLAIM,
    LOAD,
    LOCK_THREAD,
    PRUNE_CLAIMS,
    PostgresJournal,
)

__all__ = ["MIGRATION_LOCK", "SCHEMA_VERSION", "PostgresStore"]

MIGRATION_LOCK = 0x72656C6179626F74  # "relaybot"
CONNECT_TIMEOUT = 10.0
POOL_SIZE = (1, 10)
"""The pool's fewest and most connections: a worker's concurrent turns share them."""

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: messages, claims and the turn journal
        """
        CREATE TABLE turns (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            conversation text COLLATE "C" NOT NULL,
            ord text COLLATE "C" NOT NULL,
            event_id text NOT NULL,
            state text NOT NULL
                CHECK (state IN ('queued', 'running', 'answered', 'delivered', 'failed')),
            question text NOT NULL,
            platform text NOT NULL,
            timezone text,
            accepted_at float8 NOT NULL,
            owner text,
            fence bigint NOT NULL DEFAULT 0,
            lease_expires_at float8,
            tool_started boolean NOT NULL DEFAULT false,
            refs text[] NOT NULL DEFAULT '{}',
            final_text text,
            finish_reason text,
            error text,
            updated_at float8 NOT NULL
        )
        """,
        "CREATE INDEX turns_by_thread ON turns (conversation, state, ord, id)",
        "CREATE INDEX turns_by_state ON turns (state, accepted_at)",  # stranded, prune
        """
        CREATE TABLE messages (
            seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            conversation text COLLATE "C" NOT NULL,
            body text NOT NULL,
            created_at float8 NOT NULL,
            turn bigint
        )
        """,
        "CREATE INDEX messages_by_conversation ON messages (conversation, seq)",
        "CREATE INDEX messages_by_turn ON messages (turn) WHERE turn IS NOT NULL",
        """
        CREATE TABLE claims (
            event_id text PRIMARY KEY,
            expires_at float8 NOT NULL
        )
        """,
        "CREATE INDEX claims_by_expiry ON claims (expires_at)",
    ),
    (  # 2: feedback on answers
        """
        CREATE TABLE feedback (
            turn bigint NOT NULL REFERENCES turns (id) ON DELETE CASCADE,
            user_id text NOT NULL,
            positive boolean NOT NULL,
            voted_at float8 NOT NULL,
            PRIMARY KEY (turn, user_id)
        )
        """,
        "CREATE INDEX feedback_by_time ON feedback (voted_at)",
    ),
    (  # 3: channel settings and token usage
        """
        CREATE TABLE channel_settings (
            platform text NOT NULL,
            workspace text NOT NULL,
            channel text NOT NULL,
            model text,
            prompt text,
            updated_by text NOT NULL,
            updated_at float8 NOT NULL,
            PRIMARY KEY (platform, workspace, channel)
        )
        """,
        """
        CREATE TABLE token_usage (
            user_key text NOT NULL,
            period text NOT NULL CHECK (period IN ('day', 'month')),
            starts_at bigint NOT NULL,
            tokens bigint NOT NULL,
            PRIMARY KEY (user_key, period, starts_at)
        )
        """,
        "CREATE INDEX token_usage_by_start ON token_usage (period, starts_at)",  # prune
    ),
    (  # 4: images, kept apart from messages
        """
        CREATE TABLE blobs (
            sha256 text COLLATE "C" PRIMARY KEY,
            size bigint NOT NULL,
            stored_at float8 NOT NULL,
            last_used_at float8 NOT NULL,
            data bytea NOT NULL
        )
        """,
        "CREATE INDEX blobs_by_use ON blobs (last_used_at, stored_at, sha256, size)",
    ),
)
SCHEMA_VERSION = len(_MIGRATIONS)
_LAST_TURN = Query("""
    SELECT id FROM turns WHERE conversation = :conversation ORDER BY ord DESC, id DESC LIMIT 1
""")

_SCHEMA_TABLE = """
    CREATE TABLE IF NOT EXISTS relaybot_schema (
        version integer PRIMARY KEY,
        applied_at timestamptz NOT NULL DEFAULT now()
    )
"""
_WRITE_CHECK = Query(f"""
    INSERT INTO messages (conversation, body, created_at)
    VALUES ('relaybot:write-check', repeat('x', 65536), {NOW})
""")
_WRITE_CHECK_TAKEN_BACK = "DELETE FROM messages WHERE conversation = 'relaybot:write-check'"


class PostgresStore(PostgresJournal, PostgresFeedback, PostgresChannels, PostgresUsage):
    """A :class:`~core.store.base.ConversationStore` in a Postgres database.

    Made by ``await PostgresStore.open(url)``; ``clock`` (a test's) replaces the server's
    ``now()`` as the time claims and leases expire by and messages are stamped with;
    ``blob_max_bytes`` caps the bytes of the images kept (:mod:`core.store.blobs`).
    """

    def __init__(
        self,
        pool: Pool,
        *,
        clock: Callable[[], float] | None,
        blob_max_bytes: int = BLOB_MAX_BYTES,
    ) -> None:
        """Use :meth:`open`, which connects and brings the schema up to date."""
        self._pool = pool
        self._clock = clock
        self._blob_max_bytes = blob_max_bytes

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        clock: Callable[[], float] | None = None,
        pool_size: tuple[int, int] = POOL_SIZE,
        blob_max_bytes: int = BLOB_MAX_BYTES,
    ) -> PostgresStore:
        """Connect to the database ``url`` names (``postgresql://user@host:5432/db``).

        Raises :class:`StoreError` when it cannot be reached or used as a store, ``ValueError``
        for a negative ``blob_max_bytes``.
        """
        if blob_max_bytes < 0:
            raise ValueError(f"blob_max_bytes cannot be negative, not {blob_max_bytes}")
        name = f"postgres store {_where(url)}"
        try:
            pool = await asyncpg.create_pool(
                url,
                min_size=pool_size[0],
                max_size=pool_size[1],
                timeout=CONNECT_TIMEOUT,
            )
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            raise StoreError(f"{name}: cannot connect ({describe(exc)})") from exc
        except ValueError as exc:  # asyncpg's parse of the URL
            raise StoreError(f"{name}: the URL cannot be used ({type(exc).__name__})") from exc
        store = cls(Pool(pool, name=name), clock=clock, blob_max_bytes=blob_max_bytes)
        try:
            await store._migrate()
        except BaseException:
            await store.close()
            raise
        return store

    def __repr__(self) -> str:
        return f"<{self._pool.name}>"

    async def load(self, key: ConversationKey) -> list[Message]:
        conversation = str(key)
        async with self._pool.connection() as db:
            rows = await fetch(db, LOAD, {"conversation": conversation})
            messages = [self._pool.decode(conversation, seq, body) for seq, body in rows]
            return await with_images(db, messages, now=self._now())

    async def append(self, key: ConversationKey, messages: Sequence[Message]) -> None:
        stripped, blobs = set_apart(messages)
        bodies = [encode_message(message) for message in stripped]  # all, before any is written
        if not bodies:
            return
        now = self._now()
        parameters = {"conversation": str(key), "turn": None, "bodies": bodies, "now": now}
        async with self._pool.transaction() as db:  # one batch at a time in the thread
            await execute(db, LOCK_THREAD, parameters)
            await execute(db, APPEND, parameters)
            await keep_blobs(db, blobs, now=now, cap=self._blob_max_bytes)

    async def break_conversation(self, key: ConversationKey) -> None:
        parameters = {
            "conversation": str(key),
            "bodies": [encode_message(ConversationBreak())],
            "now": self._now(),
        }
        async with self._pool.transaction() as db:  # the thread's last turn, then after it
            await execute(db, LOCK_THREAD, parameters)
            turn = await fetchval(db, _LAST_TURN, parameters)
            await execute(db, APPEND, parameters | {"turn": turn})

    async def claim(self, event_id: str, ttl: float) -> bool:
        if ttl <= 0:
            raise ValueError(f"a claim needs a positive ttl, not {ttl}")
        parameters = {"event_id": event_id, "ttl": ttl, "now": self._now()}
        async with self._pool.transaction() as db:
            claimed = await fetchval(db, CLAIM, parameters) is not None
            await execute(db, PRUNE_CLAIMS, parameters)
        return claimed

    async def prune(self, *, older_than: float) -> int:
        """The journal's prune (blobs last used before ``older_than`` included), then the usage
        counters of periods long gone (their own
        retention, by the store's time: :mod:`core.store.usage`)."""
        deleted = await super().prune(older_than=older_than)
        await self.prune_usage()
        return deleted

    async def check_writes(self) -> None:
        """A row written and deleted in one committed transaction: it fails where an accept
        would — a lost server, a read-only database or standby, a full disk at commit."""
        async with self._pool.transaction() as db:
            await execute(db, _WRITE_CHECK, {"now": self._now()})
            await db.execute(_WRITE_CHECK_TAKEN_BACK)

    async def close(self) -> None:
        await self._pool.close()

    async def _migrate(self) -> None:
        """Apply the missing migrations in one transaction that holds the migration lock."""
        async with self._pool.transaction() as db:
            await db.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await db.execute(_SCHEMA_TABLE)
            version = await db.fetchval("SELECT COALESCE(MAX(version), 0) FROM relaybot_schema")
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self._pool.name}: written by a newer relaybot (schema version {version},"
                    f" this one knows up to {SCHEMA_VERSION}); upgrade relaybot"
                )
            for number, statements in enumerate(_MIGRATIONS[version:], start=version + 1):
                for statement in statements:
                    await db.execute(statement)
                await db.execute("INSERT INTO relaybot_schema (version) VALUES ($1)", number)


def _where(url: str) -> str:
    """``host:port/database`` of a URL, without its user and password."""
    try:
        parts = urlsplit(url)
        port = parts.port or 5432
    except ValueError:
        return "(unreadable URL)"
    where = f"{parts.hostname or 'localhost'}:{port}"
    database = parts.path.lstrip("/")
    return f"{where}/{database}" if database else where
