"""The turn journal in SQLite: :class:`SqliteJournal`, the journal half of ``SqliteStore``.

The SQL of messages and claims lives here too, since accepting a message claims its event and
saves the question, and every message is ordered by the turn it belongs to (see
:mod:`core.store.sqlite` for the schema and :mod:`core.store.journal` for the contract). The
images of the messages a transaction saves go to the blob table in that transaction
(:mod:`core.store.sqlite_blobs`).

A turn is changed by one ``UPDATE … RETURNING``, or by one transaction when messages are
written with it. A write under a lease is fenced: it changes the row only ``WHERE id = ? AND
fence = ?`` (and the turn is in a state the lease allows); no row changed is
:class:`~core.store.journal.LeaseLost`, and nothing was written.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, cast

from pydantic import ValidationError

from core.messages import ConversationKey, Message, UserMessage
from core.store.base import StoreError
from core.store.blobs import set_apart
from core.store.codec import decode_message, encode_message, explain
from core.store.journal import Lease, LeaseLost, Turn, TurnState, nobody_is_dead
from core.store.sqlite_access import SharedConnection
from core.store.sqlite_blobs import PRUNE_BLOBS, keep_blobs, with_images

__all__ = ["APPEND", "CLAIM", "LOAD", "PRUNE_CLAIMS", "SqliteJournal"]

# Legacy messages (no turn) first, then by the order of their turn, then as stored.
LOAD = """
    SELECT m.seq, m.body FROM messages AS m LEFT JOIN turns AS t ON t.id = m.turn
    WHERE m.conversation = :conversation
    ORDER BY m.turn IS NOT NULL, t.ord, t.id, m.seq
"""
# The same, up to and including one turn (:ord, :id).
_HISTORY = """
    SELECT m.seq, m.body FROM messages AS m LEFT JOIN turns AS t ON t.id = m.turn
    WHERE m.conversation = :conversation
        AND (m.turn IS NULL OR t.ord < :ord OR (t.ord = :ord AND t.id <= :id))
    ORDER BY m.turn IS NOT NULL, t.ord, t.id, m.seq
"""
# One statement: numbers the batch after the conversation's last message and inserts it whole.
APPEND = """
    INSERT INTO messages (conversation, seq, body, created_at, turn)
    SELECT :conversation, last.seq + item.key + 1, item.value, :now, :turn
    FROM (SELECT COALESCE(MAX(seq), 0) AS seq FROM messages WHERE conversation = :conversation)
        AS last,
        json_each(:bodies) AS item
"""
# Inserts a new claim or renews an expired one; changes no row while the claim is live.
CLAIM = """
    INSERT INTO claims (event_id, expires_at) VALUES (:event_id, :expires_at)
    ON CONFLICT (event_id) DO UPDATE SET expires_at = excluded.expires_at
    WHERE claims.expires_at <= :now
"""
PRUNE_CLAIMS = "DELETE FROM claims WHERE expires_at <= ?"

_COLUMNS = """
    id, conversation, ord, event_id, state, question, platform, timezone, accepted_at, owner,
    fence, lease_expires_at, tool_started, refs, final_text, finish_reason, error
"""
_INSERT_TURN = f"""
    INSERT INTO turns (conversation, ord, event_id, state, question, platform, timezone,
        accepted_at, updated_at)
    VALUES (:conversation, :ord, :event_id, 'queued', :question, :platform, :timezone,
        :now, :now)
    RETURNING {_COLUMNS}
"""
_TURN = f"SELECT {_COLUMNS} FROM turns WHERE id = ?"
_UNFINISHED_IN = (
    f"SELECT {_COLUMNS} FROM turns WHERE conversation = ? AND state = 'running' LIMIT 1"
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
_LEASE = "owner = :owner, fence = fence + 1, lease_expires_at = :expires, updated_at = :now"
_TAKE = f"""
    UPDATE turns SET state = 'running', {_LEASE}
    WHERE conversation = :conversation AND id = {_FIRST_QUEUED} AND NOT {_RUNNING_IN_THREAD}
    RETURNING {_COLUMNS}
"""
_TAKE_OVER = f"""
    UPDATE turns SET state = iif(state = 'queued', 'running', state), {_LEASE}
    WHERE id = :id AND (
        (state = 'queued' AND id = {_FIRST_QUEUED} AND NOT {_RUNNING_IN_THREAD})
        OR (state IN ('running', 'answered')
            AND (:force OR lease_expires_at IS NULL OR lease_expires_at <= :now))
    )
    RETURNING {_COLUMNS}
"""
# The writes of a lease: a running turn's, or (renew, save_refs) a delivery lease's.
_RUNNING = "id = :id AND fence = :fence AND state = 'running'"
_LEASED = """id = :id AND fence = :fence AND (
    state = 'running' OR (state = 'answered' AND lease_expires_at IS NOT NULL)
)"""
_RENEW = f"""
    UPDATE turns SET lease_expires_at = :expires, updated_at = :now WHERE {_LEASED}
    RETURNING {_COLUMNS}
"""
_TOOL_STARTED = f"UPDATE turns SET tool_started = 1, updated_at = :now WHERE {_RUNNING}"
_REVISE_QUESTION = f"UPDATE turns SET question = :question, updated_at = :now WHERE {_RUNNING}"
# The turn's question is its first message.
_REVISE_QUESTION_MESSAGE = """
    UPDATE messages SET body = :question
    WHERE conversation = :conversation AND seq = (
        SELECT MIN(seq) FROM messages WHERE conversation = :conversation AND turn = :id
    )
"""
_SAVE_REFS = f"UPDATE turns SET refs = :refs, updated_at = :now WHERE {_LEASED}"
# answered keeps the lease, as the worker's delivery lease; failed ends it.
_END = f"""
    UPDATE turns SET state = :state, final_text = :text, finish_reason = :finish_reason,
        error = :error, lease_expires_at = iif(:state = 'answered', lease_expires_at, NULL),
        updated_at = :now
    WHERE {_RUNNING}
"""
_RELEASE = f"""
    UPDATE turns SET state = 'queued', owner = NULL, lease_expires_at = NULL, updated_at = :now
    WHERE {_RUNNING} AND NOT tool_started
"""
_DELIVERED = """
    UPDATE turns SET state = 'delivered', refs = :refs, lease_expires_at = NULL,
        updated_at = :now
    WHERE id = :id AND state = 'answered'
"""
_UNFINISHED = f"SELECT {_COLUMNS} FROM turns WHERE state IN ('running', 'answered')"
_STRANDED_QUEUED = f"""
    SELECT {_COLUMNS} FROM turns
    WHERE state = 'queued' AND id = {_FIRST_QUEUED} AND NOT {_RUNNING_IN_THREAD}
"""
_BACKLOG = "SELECT COUNT(*), MIN(accepted_at) FROM turns WHERE state = 'queued'"
_KNOWN = """
    SELECT EXISTS (SELECT 1 FROM turns WHERE conversation = :conversation)
        OR EXISTS (SELECT 1 FROM messages WHERE conversation = :conversation)
"""
_FORGET_MESSAGES = """
    DELETE FROM messages WHERE turn IN (
        SELECT id FROM turns WHERE conversation = :conversation AND ord = :ord
    )
"""
_FORGET_TURNS = """
    UPDATE turns SET state = 'failed', error = 'deleted', lease_expires_at = NULL,
        updated_at = :now
    WHERE conversation = :conversation AND ord = :ord AND state IN ('queued', 'running')
"""
_ENDED_BEFORE = "state IN ('delivered', 'failed') AND accepted_at < :older_than"
_PRUNE_MESSAGES = f"""
    DELETE FROM messages WHERE (turn IS NULL AND created_at < :older_than)
        OR turn IN (SELECT id FROM turns WHERE {_ENDED_BEFORE})
"""
_PRUNE_FEEDBACK = f"DELETE FROM feedback WHERE turn IN (SELECT id FROM turns WHERE {_ENDED_BEFORE})"
_PRUNE_TURNS = f"DELETE FROM turns WHERE {_ENDED_BEFORE}"


class SqliteJournal:
    """The :class:`~core.store.journal.TurnJournal` of a store file; ``SqliteStore`` sets the
    shared connection, the clock and the cap on the images kept."""

    _connection: SharedConnection
    _clock: Callable[[], float]
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
        now = self._clock()
        claim = {"event_id": event_id, "expires_at": now + claim_ttl, "now": now}
        turn = {
            "conversation": str(key),
            "ord": order,
            "event_id": event_id,
            "question": body,
            "platform": platform,
            "timezone": timezone,
            "now": now,
        }
        async with self._connection.transaction() as db:
            async with db.execute(CLAIM, claim) as cursor:
                if cursor.rowcount != 1:
                    return None  # claimed already: the transaction wrote nothing
            await db.execute(PRUNE_CLAIMS, (now,))
            (row,) = await db.execute_fetchall(_INSERT_TURN, turn)
            accepted = self._turn(row)
            message = {
                "conversation": str(key),
                "turn": accepted.id,
                "bodies": json.dumps([body], ensure_ascii=False),
                "now": now,
            }
            await db.execute(APPEND, message)
            await keep_blobs(db, blobs, now=now, cap=self._blob_max_bytes)
        return accepted

    async def known(self, key: ConversationKey) -> bool:
        async with self._connection.statement() as db:
            ((known,),) = await db.execute_fetchall(_KNOWN, {"conversation": str(key)})
        return bool(known)

    async def take(self, key: ConversationKey, *, owner: str, lease_seconds: float) -> Lease | None:
        parameters = {"conversation": str(key), **self._lease(owner, lease_seconds)}
        return await self._leased(_TAKE, parameters, owner)

    async def take_over(
        self, turn_id: int, *, owner: str, lease_seconds: float, force: bool = False
    ) -> Lease | None:
        parameters = {"id": turn_id, "force": force, **self._lease(owner, lease_seconds)}
        return await self._leased(_TAKE_OVER, parameters, owner)

    async def renew(self, lease: Lease, *, lease_seconds: float) -> Lease:
        parameters = {**_fence(lease), **self._lease(lease.owner, lease_seconds)}
        renewed = await self._leased(_RENEW, parameters, lease.owner, urgent=True)
        if renewed is None:
            raise self._lost(lease, "renew")
        return renewed

    async def history(self, lease: Lease) -> list[Message]:
        conversation = str(lease.turn.key)
        parameters = {"conversation": conversation, "ord": lease.turn.order, "id": lease.turn.id}
        async with self._connection.statement() as db:
            fence = await db.execute_fetchall(
                "SELECT fence FROM turns WHERE id = ?", (lease.turn.id,)
            )
            if list(fence) != [(lease.fence,)]:
                raise self._lost(lease, "read the history")
            rows = await db.execute_fetchall(_HISTORY, parameters)
            messages = [self._connection.decode(conversation, seq, body) for seq, body in rows]
            return await with_images(db, messages, now=self._clock())

    async def revise_question(self, lease: Lease, question: UserMessage) -> Lease:
        (saved,), blobs = set_apart([question])
        body = encode_message(saved)  # before anything is written
        now = self._clock()
        parameters = {
            **_fence(lease), "question": body, "conversation": str(lease.turn.key), "now": now,
        }  # fmt: skip
        async with self._connection.transaction() as db:
            async with db.execute(_REVISE_QUESTION, parameters) as cursor:
                if cursor.rowcount != 1:
                    raise self._lost(lease, "revise its question")
            await db.execute(_REVISE_QUESTION_MESSAGE, parameters)
            await keep_blobs(db, blobs, now=now, cap=self._blob_max_bytes)
        return replace(
            lease, turn=replace(lease.turn, question=self._question(lease.turn.id, body))
        )

    async def tool_started(self, lease: Lease, call_id: str) -> None:
        await self._fenced(_TOOL_STARTED, _fence(lease), lease, f"start tool call {call_id}")

    async def save_refs(self, lease: Lease, refs: Sequence[str]) -> None:
        parameters = {**_fence(lease), "refs": json.dumps(list(refs), ensure_ascii=False)}
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
        parameters = {**_fence(lease), "now": self._clock()}
        async with self._connection.transaction() as db:
            async with db.execute(_RELEASE, parameters) as cursor:
                if cursor.rowcount == 1:
                    return True
            running = await db.execute_fetchall(f"SELECT 1 FROM turns WHERE {_RUNNING}", parameters)
        if not running:
            raise self._lost(lease, "release it")
        return False  # it ran a tool

    async def delivered(self, turn_id: int, refs: Sequence[str]) -> None:
        parameters = {
            "id": turn_id,
            "refs": json.dumps(list(refs), ensure_ascii=False),
            "now": self._clock(),
        }
        async with self._connection.statement() as db:
            async with db.execute(_DELIVERED, parameters) as cursor:
                if cursor.rowcount == 1:
                    return
            rows = await db.execute_fetchall("SELECT state FROM turns WHERE id = ?", (turn_id,))
        match list(rows):
            case [("delivered",)]:
                return  # delivered already
            case [(state,)]:
                raise StoreError(
                    f"{self._connection.name}: turn {turn_id} is {state}, not answered:"
                    " it cannot be delivered"
                )
            case _:
                raise StoreError(f"{self._connection.name}: there is no turn {turn_id}")

    async def stranded(self, *, is_dead: Callable[[str], bool] = nobody_is_dead) -> list[Turn]:
        now = self._clock()
        async with self._connection.statement() as db:
            unfinished = await db.execute_fetchall(_UNFINISHED)
            queued = await db.execute_fetchall(_STRANDED_QUEUED)
        found = [
            turn
            for turn in map(self._turn, unfinished)
            if not _live(turn, now) or (turn.owner is not None and is_dead(turn.owner))
        ]
        found += map(self._turn, queued)
        return sorted(found, key=lambda turn: (turn.accepted_at, turn.id))

    async def backlog(self) -> tuple[int, float | None]:
        async with self._connection.statement() as db:
            rows = list(await db.execute_fetchall(_BACKLOG))
        count, oldest = rows[0]
        return int(count), None if oldest is None else float(oldest)

    async def unfinished(self, key: ConversationKey) -> Turn | None:
        async with self._connection.statement() as db:
            rows = list(await db.execute_fetchall(_UNFINISHED_IN, (str(key),)))
        return self._turn(rows[0]) if rows else None

    async def turn(self, turn_id: int) -> Turn:
        async with self._connection.statement() as db:
            rows = list(await db.execute_fetchall(_TURN, (turn_id,)))
        if not rows:
            raise StoreError(f"{self._connection.name}: there is no turn {turn_id}")
        return self._turn(rows[0])

    async def forget_message(self, key: ConversationKey, order: str) -> None:
        parameters = {"conversation": str(key), "ord": order, "now": self._clock()}
        async with self._connection.transaction() as db:
            await db.execute(_FORGET_MESSAGES, parameters)
            await db.execute(_FORGET_TURNS, parameters)

    async def prune(self, *, older_than: float) -> int:
        parameters = {"older_than": older_than}
        async with self._connection.transaction() as db:
            async with db.execute(_PRUNE_MESSAGES, parameters) as cursor:
                deleted = cursor.rowcount
            await db.execute(_PRUNE_FEEDBACK, parameters)
            await db.execute(_PRUNE_TURNS, parameters)
            await db.execute(PRUNE_BLOBS, parameters)
        return deleted

    # --- helpers ---------------------------------------------------------------------------

    def _lease(self, owner: str, lease_seconds: float) -> dict[str, Any]:
        if lease_seconds <= 0:
            raise ValueError(f"a lease needs positive lease_seconds, not {lease_seconds}")
        now = self._clock()
        return {"owner": owner, "expires": now + lease_seconds, "now": now}

    async def _leased(
        self, sql: str, parameters: dict[str, Any], owner: str, *, urgent: bool = False
    ) -> Lease | None:
        async with self._connection.statement(urgent=urgent) as db:
            rows = list(await db.execute_fetchall(sql, parameters))
        if not rows:
            return None
        turn = self._turn(rows[0])
        return Lease(turn=turn, owner=owner, fence=turn.fence, expires_at=parameters["expires"])

    async def _fenced(self, sql: str, parameters: dict[str, Any], lease: Lease, what: str) -> None:
        parameters = {**parameters, "now": self._clock()}
        async with self._connection.statement() as db, db.execute(sql, parameters) as cursor:
            if cursor.rowcount != 1:
                raise self._lost(lease, what)

    async def _end(
        self, lease: Lease, messages: Sequence[Message], outcome: dict[str, Any]
    ) -> None:
        stripped, blobs = set_apart(messages)
        bodies = [encode_message(message) for message in stripped]  # before anything is written
        now = self._clock()
        async with self._connection.transaction() as db:
            async with db.execute(_END, {**_fence(lease), **outcome, "now": now}) as cursor:
                if cursor.rowcount != 1:
                    raise self._lost(lease, f"end it {outcome['state']}")
            if bodies:
                appended = {
                    "conversation": str(lease.turn.key),
                    "turn": lease.turn.id,
                    "bodies": json.dumps(bodies, ensure_ascii=False),
                    "now": now,
                }
                await db.execute(APPEND, appended)
            await keep_blobs(db, blobs, now=now, cap=self._blob_max_bytes)

    def _lost(self, lease: Lease, what: str) -> LeaseLost:
        return LeaseLost(
            f"{self._connection.name}: turn {lease.turn.id} is no longer leased to"
            f" {lease.owner} (fence {lease.fence}): cannot {what}"
        )

    def _turn(self, row: Any) -> Turn:
        (id_, conversation, order, event_id, state, question, platform, timezone) = row[:8]
        (accepted_at, owner, fence, expires, tool_started, refs, text, finish, error) = row[8:]
        return Turn(
            id=id_,
            key=ConversationKey.parse(conversation),
            order=order,
            event_id=event_id,
            question=self._question(id_, question),
            platform=platform,
            timezone=timezone,
            state=cast(TurnState, state),
            accepted_at=accepted_at,
            owner=owner,
            fence=fence,
            lease_expires_at=expires,
            tool_started=bool(tool_started),
            refs=tuple(json.loads(refs)),
            final_text=text,
            finish_reason=finish,
            error=error,
        )

    def _question(self, turn_id: int, body: str) -> UserMessage:
        try:
            question = decode_message(body)
        except ValidationError as exc:
            raise StoreError(
                f"{self._connection.name}: the question of turn {turn_id} cannot be read"
                f" ({explain(exc)})"
            ) from exc
        if not isinstance(question, UserMessage):
            raise StoreError(
                f"{self._connection.name}: the question of turn {turn_id} is a"
                f" {question.role} message"
            )
        return question


def _fence(lease: Lease) -> dict[str, Any]:
    return {"id": lease.turn.id, "fence": lease.fence}


def _live(turn: Turn, now: float) -> bool:
    return turn.lease_expires_at is not None and turn.lease_expires_at > now
