"""The turn journal in Postgres: :class:`PostgresJournal`, the journal half of
``PostgresStore`` — the SQL of :mod:`core.store.sqlite_journal`, ported.

Several processes share the database, so what one SQLite file got from its single writer is
said here explicitly:

- A write under a lease is fenced: it changes the row only ``WHERE id = :id AND fence =
  :fence`` (and the turn is in a state the lease allows). Postgres re-checks that condition
  on the newest version of a row another transaction changed meanwhile, so a worker whose
  lease was taken over changes nothing and gets :class:`~core.store.journal.LeaseLost`,
  whatever its own clock says.
- A turn becomes ``running`` (:meth:`take`, :meth:`take_over` of a queued turn) only while
  its transaction holds the thread's advisory lock (``pg_advisory_xact_lock`` on the
  conversation's hash, released at commit): the next taker's statement starts after it and
  sees its turn running, so the turns of a thread run one at a time even when a message
  ordered earlier is accepted while they are taken.
- The images of the messages a transaction saves go to the blob table in that transaction
  (:mod:`core.store.postgres_blobs`, which says how blob writers keep out of each other's way).
- Claims are ``INSERT … ON CONFLICT (event_id) DO UPDATE … WHERE claims.expires_at <= now``:
  of claimers racing on one event, Postgres lets exactly one insert (or renew) the row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, cast

from pydantic import ValidationError

from core.messages import ConversationKey, Message, UserMessage
from core.store.base import StoreError
from core.store.blobs import set_apart
from core.store.codec import decode_message, encode_message, explain
from core.store.journal import Lease, LeaseLost, Turn, TurnState, nobody_is_dead
from core.store.postgres_access import (
    NOW,
    Pool,
    Query,
    execute,
    fetch,
    fetchrow,
    fetchval,
    rowcount,
)
from core.store.postgres_blobs import keep_blobs, prune_blobs, with_images

__all__ = [
    "APPEND",
    "CLAIM",
    "LOAD",
    "LOCK_THREAD",
    "PRUNE_CLAIMS",
    "THREAD_LOCK",
    "PostgresJournal",
]

THREAD_LOCK = 0x7265  # the class of the advisory locks of threads (pg_advisory_xact_lock(a, b))

# Messages of no turn first, then by the order of their turn, then as stored.
LOAD = Query("""
    SELECT m.seq, m.body FROM messages AS m LEFT JOIN turns AS t ON t.id = m.turn
    WHERE m.conversation = :conversation
    ORDER BY m.turn IS NOT NULL, t.ord, t.id, m.seq
""")
# The same, up to and including one turn (:ord, :id).
_HISTORY = Query("""
    SELECT m.seq, m.body FROM messages AS m LEFT JOIN turns AS t ON t.id = m.turn
    WHERE m.conversation = :conversation
        AND (m.turn IS NULL OR t.ord < :ord OR (t.ord = :ord AND t.id <= :id))
    ORDER BY m.turn IS NOT NULL, t.ord, t.id, m.seq
""")
# The batch in its order; ``seq`` (an identity) numbers messages as they are stored.
APPEND = Query(f"""
    INSERT INTO messages (conversation, body, created_at, turn)
    SELECT :conversation, item.body, {NOW}, :turn::bigint
    FROM unnest(:bodies::text[]) WITH ORDINALITY AS item(body, n)
    ORDER BY item.n
""")
# Inserts a new claim or renews an expired one; no row while the claim is live.
CLAIM = Query(f"""
    INSERT INTO claims (event_id, expires_at) VALUES (:event_id, {NOW} + :ttl::float8)
    ON CONFLICT (event_id) DO UPDATE SET expires_at = excluded.expires_at
    WHERE claims.expires_at <= {NOW}
    RETURNING true
""")
# A few expired claims at a time, skipping those another transaction holds (no waits, no
# deadlocks between workers pruning at once).
PRUNE_CLAIMS = Query(f"""
    DELETE FROM claims WHERE event_id IN (
        SELECT event_id FROM claims WHERE expires_at <= {NOW}
        ORDER BY expires_at LIMIT 100 FOR UPDATE SKIP LOCKED
    )
""")

_COLUMNS = """
    id, conversation, ord, event_id, state, question, platform, timezone, accepted_at, owner,
    fence, lease_expires_at, tool_started, refs, final_text, finish_reason, error
"""
_INSERT_TURN = Query(f"""
    INSERT INTO turns (conversation, ord, event_id, state, question, platform, timezone,
        accepted_at, updated_at)
    VALUES (:conversation, :ord, :event_id, 'queued', :question, :platform, :timezone,
        {NOW}, {NOW})
    RETURNING {_COLUMNS}
""")
_TURN = Query(f"SELECT {_COLUMNS} FROM turns WHERE id = :id")
_UNFINISHED_IN = Query(f"""
    SELECT {_COLUMNS} FROM turns WHERE conversation = :conversation AND state = 'running'
    LIMIT 1
""")
LOCK_THREAD = Query(f"SELECT pg_advisory_xact_lock({THREAD_LOCK}, hashtext(:conversation))")
_LOCK_THREAD_OF_TURN = Query(
    f"SELECT pg_advisory_xact_lock({THREAD_LOCK}, hashtext(conversation)) FROM turns WHERE id = :id"
)
# The thread of turns.conversation: its earliest queued turn, and whether a turn of it holds
# the thread: one running, or answered and not yet delivered (under a live lease or an expired
# one: either holds it, so that answers appear in their questions' order).
_FIRST_QUEUED = """(
    SELECT q.id FROM turns AS q WHERE q.conversation = turns.conversation AND q.state = 'queued'
    ORDER BY q.ord, q.id LIMIT 1
)"""
_RUNNING_IN_THREAD = """EXISTS (
    SELECT 1 FROM turns AS r WHERE r.conversation = turns.conversation
        AND r.state IN ('running', 'answered')
)"""
_LEASE = f"""owner = :owner, fence = fence + 1,
    lease_expires_at = {NOW} + :lease_seconds::float8, updated_at = {NOW}"""
_TAKE = Query(f"""
    UPDATE turns SET state = 'running', {_LEASE}
    WHERE conversation = :conversation AND state = 'queued' AND id = {_FIRST_QUEUED}
        AND NOT {_RUNNING_IN_THREAD}
    RETURNING {_COLUMNS}
""")
_TAKE_OVER = Query(f"""
    UPDATE turns SET state = CASE WHEN state = 'queued' THEN 'running' ELSE state END, {_LEASE}
    WHERE id = :id AND (
        (state = 'queued' AND id = {_FIRST_QUEUED} AND NOT {_RUNNING_IN_THREAD})
        OR (state IN ('running', 'answered')
            AND (:force::boolean OR lease_expires_at IS NULL OR lease_expires_at <= {NOW}))
    )
    RETURNING {_COLUMNS}
""")
# The writes of a lease: a running turn's, or (renew, save_refs) a delivery lease's.
_RUNNING = "id = :id AND fence = :fence AND state = 'running'"
_LEASED = """id = :id AND fence = :fence AND (
    state = 'running' OR (state = 'answered' AND lease_expires_at IS NOT NULL)
)"""
_RENEW = Query(f"""
    UPDATE turns SET lease_expires_at = {NOW} + :lease_seconds::float8, updated_at = {NOW}
    WHERE {_LEASED}
    RETURNING {_COLUMNS}
""")
_FENCE = Query("SELECT fence FROM turns WHERE id = :id")
_TOOL_STARTED = Query(f"UPDATE turns SET tool_started = true, updated_at = {NOW} WHERE {_RUNNING}")
_REVISE_QUESTION = Query(
    f"UPDATE turns SET question = :question, updated_at = {NOW} WHERE {_RUNNING}"
)
# The turn's question is its first message.
_REVISE_QUESTION_MESSAGE = Query("""
    UPDATE messages SET body = :question
    WHERE seq = (SELECT MIN(seq) FROM messages WHERE conversation = :conversation AND turn = :id)
""")
_SAVE_REFS = Query(f"UPDATE turns SET refs = :refs::text[], updated_at = {NOW} WHERE {_LEASED}")
# answered keeps the lease, as the worker's delivery lease; failed ends it.
_END = Query(f"""
    UPDATE turns SET state = :state, final_text = :text, finish_reason = :finish_reason,
        error = :error,
        lease_expires_at = CASE WHEN :state = 'answered' THEN lease_expires_at END,
        updated_at = {NOW}
    WHERE {_RUNNING}
""")
_RELEASE = Query(f"""
    UPDATE turns SET state = 'queued', owner = NULL, lease_expires_at = NULL, updated_at = {NOW}
    WHERE {_RUNNING} AND NOT tool_started
""")
_IS_RUNNING = Query(f"SELECT 1 FROM turns WHERE {_RUNNING}")
_DELIVERED = Query(f"""
    UPDATE turns SET state = 'delivered', refs = :refs::text[], lease_expires_at = NULL,
        updated_at = {NOW}
    WHERE id = :id AND state = 'answered'
""")
_STATE = Query("SELECT state FROM turns WHERE id = :id")
_UNFINISHED = Query(f"""
    SELECT {_COLUMNS}, lease_expires_at IS NOT NULL AND lease_expires_at > {NOW} AS live
    FROM turns WHERE state IN ('running', 'answered')
""")
_STRANDED_QUEUED = Query(f"""
    SELECT {_COLUMNS} FROM turns
    WHERE state = 'queued' AND id = {_FIRST_QUEUED} AND NOT {_RUNNING_IN_THREAD}
""")
_BACKLOG = Query("SELECT COUNT(*), MIN(accepted_at) FROM turns WHERE state = 'queued'")
_KNOWN = Query("""
    SELECT EXISTS (SELECT 1 FROM turns WHERE conversation = :conversation)
        OR EXISTS (SELECT 1 FROM messages WHERE conversation = :conversation)
""")
_FORGET_MESSAGES = Query("""
    DELETE FROM messages WHERE turn IN (
        SELECT id FROM turns WHERE conversation = :conversation AND ord = :ord
    )
""")
_FORGET_TURNS = Query(f"""
    UPDATE turns SET state = 'failed', error = 'deleted', lease_expires_at = NULL,
        updated_at = {NOW}
    WHERE conversation = :conversation AND ord = :ord AND state IN ('queued', 'running')
""")
_ENDED_BEFORE = "state IN ('delivered', 'failed') AND accepted_at < :older_than::float8"
_PRUNE_MESSAGES = Query(f"""
    DELETE FROM messages WHERE (turn IS NULL AND created_at < :older_than::float8)
        OR turn IN (SELECT id FROM turns WHERE {_ENDED_BEFORE})
""")
_PRUNE_TURNS = Query(f"DELETE FROM turns WHERE {_ENDED_BEFORE}")


class PostgresJournal:
    """The :class:`~core.store.journal.TurnJournal` of a database; ``PostgresStore`` sets the
    pool, the clock (``None``: the server's ``now()``) and the cap on the images kept."""

    _pool: Pool
    _clock: Callable[[], float] | None
    _blob_max_bytes: int

    async def accept(
        self,
        *,
        event_id: str,
        key: ConversationKey,
        order: str,
        question: UserMessage,
        platform: str,
        timezone: str | None = None,
        claim_ttl: float,
    ) -> Turn | None:
        if claim_ttl <= 0:
            raise ValueError(f"a claim needs a positive ttl, not {claim_ttl}")
        (saved,), blobs = set_apart([question])
        body = encode_message(saved)  # before anything is written
        now = self._now()
        turn = {
            "conversation": str(key), "ord": order, "event_id": event_id, "question": body,
            "platform": platform, "timezone": timezone, "ttl": claim_ttl, "now": now,
        }  # fmt: skip
        async with self._pool.transaction() as db:
            if await fetchval(db, CLAIM, turn) is None:
                return None  # claimed already: the transaction wrote nothing
            await execute(db, PRUNE_CLAIMS, turn)
            accepted = self._turn(await fetchrow(db, _INSERT_TURN, turn))
            message = {**turn, "turn": accepted.id, "bodies": [body]}
            await execute(db, APPEND, message)
            await keep_blobs(db, blobs, now=now, cap=self._blob_max_bytes)
        return accepted

    async def known(self, key: ConversationKey) -> bool:
        async with self._pool.connection() as db:
            return bool(await fetchval(db, _KNOWN, {"conversation": str(key)}))

    async def take(self, key: ConversationKey, *, owner: str, lease_seconds: float) -> Lease | None:
        parameters = {"conversation": str(key), **self._lease(owner, lease_seconds)}
        async with self._pool.transaction() as db:
            await execute(db, LOCK_THREAD, parameters)
            row = await fetchrow(db, _TAKE, parameters)
        return None if row is None else self._leased(row, owner)

    async def take_over(
        self, turn_id: int, *, owner: str, lease_seconds: float, force: bool = False
    ) -> Lease | None:
        parameters = {"id": turn_id, "force": force, **self._lease(owner, lease_seconds)}
        async with self._pool.transaction() as db:
            await execute(db, _LOCK_THREAD_OF_TURN, parameters)
            row = await fetchrow(db, _TAKE_OVER, parameters)
        return None if row is None else self._leased(row, owner)

    async def renew(self, lease: Lease, *, lease_seconds: float) -> Lease:
        parameters = {**_fence(lease), **self._lease(lease.owner, lease_seconds)}
        async with self._pool.connection() as db:
            row = await fetchrow(db, _RENEW, parameters)
        if row is None:
            raise self._lost(lease, "renew")
        return self._leased(row, lease.owner)

    async def history(self, lease: Lease) -> list[Message]:
        conversation = str(lease.turn.key)
        parameters = {"conversation": conversation, "ord": lease.turn.order, "id": lease.turn.id}
        async with self._pool.transaction() as db:
            if await fetchval(db, _FENCE, parameters) != lease.fence:
                raise self._lost(lease, "read the history")
            rows = await fetch(db, _HISTORY, parameters)
            messages = [self._pool.decode(conversation, seq, body) for seq, body in rows]
            return await with_images(db, messages, now=self._now())

    async def revise_question(self, lease: Lease, question: UserMessage) -> Lease:
        (saved,), blobs = set_apart([question])
        body = encode_message(saved)  # before anything is written
        now = self._now()
        parameters = {
            **_fence(lease), "question": body, "conversation": str(lease.turn.key), "now": now,
        }  # fmt: skip
        async with self._pool.transaction() as db:
            if rowcount(await execute(db, _REVISE_QUESTION, parameters)) != 1:
                raise self._lost(lease, "revise its question")
            await execute(db, _REVISE_QUESTION_MESSAGE, parameters)
            await keep_blobs(db, blobs, now=now, cap=self._blob_max_bytes)
        revised = self._question(lease.turn.id, body)
        return replace(lease, turn=replace(lease.turn, question=revised))

    async def tool_started(self, lease: Lease, call_id: str) -> None:
        await self._fenced(_TOOL_STARTED, _fence(lease), lease, f"start tool call {call_id}")

    async def save_refs(self, lease: Lease, refs: Sequence[str]) -> None:
        parameters = {**_fence(lease), "refs": list(refs)}
        await self._fenced(_SAVE_REFS, parameters, lease, "save refs")

    async def answered(
        self,
        lease: Lease,
        *,
        messages: Sequence[Message],
        text: str,
        finish_reason: str | None,
    ) -> None:
        outcome = {"state": "answered", "text": text, "finish_reason": finish_reason, "error": None}
        await self._end(lease, messages, outcome)

    async def failed(self, lease: Lease, *, messages: Sequence[Message], error: str) -> None:
        outcome = {"state": "failed", "text": None, "finish_reason": None, "error": error}
        await self._end(lease, messages, outcome)

    async def release(self, lease: Lease) -> bool:
        parameters = {**_fence(lease), "now": self._now()}
        async with self._pool.transaction() as db:
            if rowcount(await execute(db, _RELEASE, parameters)) == 1:
                return True
            running = await fetchval(db, _IS_RUNNING, parameters)
        if running is None:
            raise self._lost(lease, "release it")
        return False  # it ran a tool

    async def delivered(self, turn_id: int, refs: Sequence[str]) -> None:
        parameters = {"id": turn_id, "refs": list(refs), "now": self._now()}
        async with self._pool.connection() as db:
            if rowcount(await execute(db, _DELIVERED, parameters)) == 1:
                return
            state = await fetchval(db, _STATE, parameters)
        match state:
            case "delivered":
                return  # delivered already
            case None:
                raise StoreError(f"{self._pool.name}: there is no turn {turn_id}")
            case _:
                raise StoreError(
                    f"{self._pool.name}: turn {turn_id} is {state}, not answered:"
                    " it cannot be delivered"
                )

    async def stranded(self, *, is_dead: Callable[[str], bool] = nobody_is_dead) -> list[Turn]:
        parameters = {"now": self._now()}
        async with self._pool.transaction() as db:  # one snapshot
            unfinished = await fetch(db, _UNFINISHED, parameters)
            queued = await fetch(db, _STRANDED_QUEUED, parameters)
        found = [
            turn
            for turn, live in ((self._turn(row), row["live"]) for row in unfinished)
            if not live or (turn.owner is not None and is_dead(turn.owner))
        ]
        found += map(self._turn, queued)
        return sorted(found, key=lambda turn: (turn.accepted_at, turn.id))

    async def backlog(self) -> tuple[int, float | None]:
        async with self._pool.connection() as db:
            row = await fetchrow(db, _BACKLOG, {})
        assert row is not None  # an aggregate has one row
        count, oldest = row
        return int(count), None if oldest is None else float(oldest)

    async def unfinished(self, key: ConversationKey) -> Turn | None:
        async with self._pool.connection() as db:
            row = await fetchrow(db, _UNFINISHED_IN, {"conversation": str(key)})
        return None if row is None else self._turn(row)

    async def turn(self, turn_id: int) -> Turn:
        async with self._pool.connection() as db:
            row = await fetchrow(db, _TURN, {"id": turn_id})
        if row is None:
            raise StoreError(f"{self._pool.name}: there is no turn {turn_id}")
        return self._turn(row)

    async def forget_message(self, key: ConversationKey, order: str) -> None:
        parameters = {"conversation": str(key), "ord": order, "now": self._now()}
        async with self._pool.transaction() as db:
            await execute(db, _FORGET_MESSAGES, parameters)
            await execute(db, _FORGET_TURNS, parameters)

    async def prune(self, *, older_than: float) -> int:
        parameters = {"older_than": older_than}
        async with self._pool.transaction() as db:
            deleted = rowcount(await execute(db, _PRUNE_MESSAGES, parameters))
            await execute(db, _PRUNE_TURNS, parameters)
            await prune_blobs(db, older_than=older_than)
        return deleted

    # --- helpers ---------------------------------------------------------------------------

    def _now(self) -> float | None:
        """The store's time as a parameter: ``None`` lets the server's ``now()`` decide."""
        return None if self._clock is None else self._clock()

    def _lease(self, owner: str, lease_seconds: float) -> dict[str, Any]:
        if lease_seconds <= 0:
            raise ValueError(f"a lease needs positive lease_seconds, not {lease_seconds}")
        return {"owner": owner, "lease_seconds": lease_seconds, "now": self._now()}

    def _leased(self, row: Any, owner: str) -> Lease:
        turn = self._turn(row)
        assert turn.lease_expires_at is not None  # every lease sets it
        return Lease(turn=turn, owner=owner, fence=turn.fence, expires_at=turn.lease_expires_at)

    async def _fenced(
        self, query: Query, parameters: dict[str, Any], lease: Lease, what: str
    ) -> None:
        parameters = {**parameters, "now": self._now()}
        async with self._pool.connection() as db:
            if rowcount(await execute(db, query, parameters)) != 1:
                raise self._lost(lease, what)

    async def _end(
        self, lease: Lease, messages: Sequence[Message], outcome: dict[str, Any]
    ) -> None:
        stripped, blobs = set_apart(messages)
        bodies = [encode_message(message) for message in stripped]  # before anything is written
        parameters = {**_fence(lease), **outcome, "now": self._now()}
        async with self._pool.transaction() as db:
            if rowcount(await execute(db, _END, parameters)) != 1:
                raise self._lost(lease, f"end it {outcome['state']}")
            if bodies:
                appended = {
                    "conversation": str(lease.turn.key), "turn": lease.turn.id,
                    "bodies": bodies, "now": parameters["now"],
                }  # fmt: skip
                await execute(db, APPEND, appended)
            await keep_blobs(db, blobs, now=parameters["now"], cap=self._blob_max_bytes)

    def _lost(self, lease: Lease, what: str) -> LeaseLost:
        return LeaseLost(
            f"{self._pool.name}: turn {lease.turn.id} is no longer leased to"
            f" {lease.owner} (fence {lease.fence}): cannot {what}"
        )

    def _turn(self, row: Any) -> Turn:
        return Turn(
            id=row["id"],
            key=ConversationKey.parse(row["conversation"]),
            order=row["ord"],
            event_id=row["event_id"],
            question=self._question(row["id"], row["question"]),
            platform=row["platform"],
            timezone=row["timezone"],
            state=cast(TurnState, row["state"]),
            accepted_at=row["accepted_at"],
            owner=row["owner"],
            fence=row["fence"],
            lease_expires_at=row["lease_expires_at"],
            tool_started=row["tool_started"],
            refs=tuple(row["refs"]),
            final_text=row["final_text"],
            finish_reason=row["finish_reason"],
            error=row["error"],
        )

    def _question(self, turn_id: int, body: str) -> UserMessage:
        try:
            question = decode_message(body)
        except ValidationError as exc:
            raise StoreError(
                f"{self._pool.name}: the question of turn {turn_id} cannot be read ({explain(exc)})"
            ) from exc
        if not isinstance(question, UserMessage):
            raise StoreError(
                f"{self._pool.name}: the question of turn {turn_id} is a {question.role} message"
            )
        return question


def _fence(lease: Lease) -> dict[str, Any]:
    return {"id": lease.turn.id, "fence": lease.fence}
