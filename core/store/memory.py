"""``MemoryStore``: history, claims, the turn journal, feedback, channel settings and usage, in
this process only (tests, the terminal bot).

Messages are stored serialized, exactly as the SQLite store writes them, so a message that a
file could not hold fails here too and a loaded message never aliases a saved one; images are
kept apart, once by hash, as every store keeps them (:mod:`core.store.blobs`). Each method
changes the store without awaiting anything, so it is atomic among the tasks of the process.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from core.messages import ConversationBreak, ConversationKey, Message, UserMessage
from core.store.base import StoreError
from core.store.blobs import BLOB_MAX_BYTES, Blob, filled, fitting, set_apart, wanted
from core.store.channels import UNCHANGED, Change, ChannelSettings, check_change
from core.store.codec import decode_message, encode_message
from core.store.feedback import Feedback, FeedbackTotals
from core.store.journal import Lease, LeaseLost, Turn, nobody_is_dead
from core.store.usage import Usage, check_tokens, kept_since, periods

__all__ = ["MemoryStore"]

_NAME = "memory store"


@dataclass(frozen=True, slots=True)
class _Stored:
    body: str
    turn: int | None  # None: stored by append, not by a turn
    created_at: float


@dataclass(frozen=True, slots=True)
class _KeptBlob:
    data: bytes
    stored_at: float
    last_used_at: float


class MemoryStore:
    """A :class:`~core.store.base.ConversationStore` in dicts; everything is lost on exit.

    ``clock`` gives the time (seconds) that claims and leases expire by; ``blob_max_bytes``
    caps the bytes of the images kept (:mod:`core.store.blobs`).
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.time, blob_max_bytes: int = BLOB_MAX_BYTES
    ) -> None:
        if blob_max_bytes < 0:
            raise ValueError(f"blob_max_bytes cannot be negative, not {blob_max_bytes}")
        self._clock = clock
        self._blob_max_bytes = blob_max_bytes
        self._blobs: dict[str, _KeptBlob] = {}  # sha256 -> an image's bytes
        self._conversations: dict[str, list[_Stored]] = {}
        self._claims: dict[str, float] = {}  # event id -> expiry
        self._expiries: list[tuple[float, str]] = []  # a heap, to prune expired claims
        self._turns: dict[int, Turn] = {}
        self._threads: dict[str, list[int]] = {}  # conversation -> its turns' ids
        self._turn_ids = itertools.count(1)
        self._feedback: dict[tuple[int, str], Feedback] = {}  # (turn id, user) -> their vote
        self._channels: dict[tuple[str, str, str], ChannelSettings] = {}
        self._usage: dict[tuple[str, Literal["day", "month"], int], int] = {}  # -> tokens
        self._closed = False

    def __repr__(self) -> str:
        return "MemoryStore()"

    # --- conversations and claims -------------------------------------------------------------

    async def load(self, key: ConversationKey) -> list[Message]:
        self._check_open()
        return self._decoded(self._conversations.get(str(key), []))

    async def append(self, key: ConversationKey, messages: Sequence[Message]) -> None:
        self._check_open()
        bodies, blobs = _encoded(messages)
        self._add(str(key), None, bodies)
        self._keep_blobs(blobs)

    async def break_conversation(self, key: ConversationKey) -> None:
        self._check_open()
        conversation = str(key)
        turns = [self._turns[id_] for id_ in self._threads.get(conversation, [])]
        last = max(turns, key=lambda turn: (turn.order, turn.id), default=None)
        self._add(
            conversation, None if last is None else last.id, [encode_message(ConversationBreak())]
        )

    async def claim(self, event_id: str, ttl: float) -> bool:
        _check_ttl(ttl)
        self._check_open()
        return self._claim(event_id, ttl)

    async def check_writes(self) -> None:
        """Dicts have room until the process has none: only a closed store refuses."""
        self._check_open()

    async def close(self) -> None:
        self._closed = True

    # --- the turn journal ---------------------------------------------------------------------

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
        _check_ttl(claim_ttl)
        self._check_open()
        (body,), blobs = _encoded([question])  # before anything is kept
        if not self._claim(event_id, claim_ttl):
            return None
        self._keep_blobs(blobs)
        saved = UserMessage.model_validate_json(body)  # a copy, as a file would give back
        turn = Turn(
            id=next(self._turn_ids),
            key=key,
            order=order,
            event_id=event_id,
            question=saved,
            platform=platform,
            timezone=timezone,
            accepted_at=self._clock(),
        )
        self._turns[turn.id] = turn
        self._threads.setdefault(str(key), []).append(turn.id)
        self._conversations.setdefault(str(key), []).append(
            _Stored(body, turn.id, turn.accepted_at)
        )
        return turn

    async def known(self, key: ConversationKey) -> bool:
        self._check_open()
        return str(key) in self._threads or str(key) in self._conversations

    async def take(self, key: ConversationKey, *, owner: str, lease_seconds: float) -> Lease | None:
        _check_lease(lease_seconds)
        self._check_open()
        now = self._clock()
        first = self._first_queued(str(key))
        if first is None or self._running_in(str(key)):
            return None
        return self._lease(first, owner, now, lease_seconds)

    async def take_over(
        self, turn_id: int, *, owner: str, lease_seconds: float, force: bool = False
    ) -> Lease | None:
        _check_lease(lease_seconds)
        self._check_open()
        now = self._clock()
        turn = self._turns.get(turn_id)
        if turn is None:
            return None
        conversation = str(turn.key)
        match turn.state:
            case "queued":
                first = self._first_queued(conversation)
                free = not self._running_in(conversation)
                stranded = free and first is not None and first.id == turn.id
            case "running" | "answered":
                stranded = force or not _live(turn, now)
            case _:
                stranded = False
        return self._lease(turn, owner, now, lease_seconds) if stranded else None

    async def renew(self, lease: Lease, *, lease_seconds: float) -> Lease:
        _check_lease(lease_seconds)
        turn = self._fenced(lease, "renew", delivery=True)
        now = self._clock()
        renewed = self._save(replace(turn, lease_expires_at=now + lease_seconds))
        return replace(lease, turn=renewed, expires_at=now + lease_seconds)

    async def history(self, lease: Lease) -> list[Message]:
        self._check_open()
        turn = self._turns.get(lease.turn.id)
        if turn is None or turn.fence != lease.fence:
            raise self._lost(lease, "read the history")
        mark = (turn.order, turn.id)
        return self._decoded(
            stored
            for stored in self._conversations.get(str(turn.key), [])
            if stored.turn is None or self._position(stored.turn) <= mark
        )

    async def revise_question(self, lease: Lease, question: UserMessage) -> Lease:
        (body,), blobs = _encoded([question])  # before anything is changed
        saved = UserMessage.model_validate_json(body)
        turn = replace(self._fenced(lease, "revise its question"), question=saved)
        stored = self._conversations[str(turn.key)]
        first = next(index for index, kept in enumerate(stored) if kept.turn == turn.id)
        stored[first] = replace(stored[first], body=body)
        self._save(turn)
        self._keep_blobs(blobs)
        return replace(lease, turn=turn)

    async def tool_started(self, lease: Lease, call_id: str) -> None:
        turn = self._fenced(lease, f"start tool call {call_id}")
        self._save(replace(turn, tool_started=True))

    async def save_refs(self, lease: Lease, refs: Sequence[str]) -> None:
        turn = self._fenced(lease, "save refs", delivery=True)
        self._save(replace(turn, refs=tuple(refs)))

    async def answered(
        self,
        lease: Lease,
        *,
        messages: Sequence[Message],
        text: str,
        finish_reason: str | None,
    ) -> None:
        bodies, blobs = _encoded(messages)  # before anything changes
        turn = self._fenced(lease, "end it answered")
        # The lease stays, as this worker's delivery lease.
        self._save(replace(turn, state="answered", final_text=text, finish_reason=finish_reason))
        self._add(str(turn.key), turn.id, bodies)
        self._keep_blobs(blobs)

    async def failed(self, lease: Lease, *, messages: Sequence[Message], error: str) -> None:
        bodies, blobs = _encoded(messages)  # before anything changes
        turn = self._fenced(lease, "end it failed")
        self._save(replace(turn, state="failed", error=error, lease_expires_at=None))
        self._add(str(turn.key), turn.id, bodies)
        self._keep_blobs(blobs)

    async def release(self, lease: Lease) -> bool:
        turn = self._fenced(lease, "release it")
        if turn.tool_started:
            return False
        self._save(replace(turn, state="queued", owner=None, lease_expires_at=None))
        return True

    async def delivered(self, turn_id: int, refs: Sequence[str]) -> None:
        turn = await self.turn(turn_id)
        if turn.state == "answered":
            self._save(replace(turn, state="delivered", refs=tuple(refs), lease_expires_at=None))
        elif turn.state != "delivered":
            raise StoreError(
                f"{_NAME}: turn {turn_id} is {turn.state}, not answered: it cannot be delivered"
            )

    async def stranded(self, *, is_dead: Callable[[str], bool] = nobody_is_dead) -> list[Turn]:
        self._check_open()
        now = self._clock()
        found: list[Turn] = []
        for conversation in self._threads:
            first = self._first_queued(conversation)
            if first is not None and not self._running_in(conversation):
                found.append(first)
        for turn in self._turns.values():
            if turn.state in ("running", "answered") and (
                not _live(turn, now) or (turn.owner is not None and is_dead(turn.owner))
            ):
                found.append(turn)
        return sorted(found, key=lambda turn: (turn.accepted_at, turn.id))

    async def backlog(self) -> tuple[int, float | None]:
        self._check_open()
        accepted = [turn.accepted_at for turn in self._turns.values() if turn.state == "queued"]
        return len(accepted), min(accepted, default=None)

    async def unfinished(self, key: ConversationKey) -> Turn | None:
        self._check_open()
        ids = self._threads.get(str(key), [])
        return next((t for i in ids if (t := self._turns[i]).state == "running"), None)

    async def turn(self, turn_id: int) -> Turn:
        self._check_open()
        try:
            return self._turns[turn_id]
        except KeyError:
            raise StoreError(f"{_NAME}: there is no turn {turn_id}") from None

    async def forget_message(self, key: ConversationKey, order: str) -> None:
        self._check_open()
        conversation = str(key)
        turns = [self._turns[id_] for id_ in self._threads.get(conversation, [])]
        forgotten = {turn.id for turn in turns if turn.order == order}
        if not forgotten:
            return
        self._keep(conversation, lambda stored: stored.turn not in forgotten)
        for turn in turns:
            if turn.id in forgotten and turn.state in ("queued", "running"):
                self._save(replace(turn, state="failed", error="deleted", lease_expires_at=None))

    async def prune(self, *, older_than: float) -> int:
        self._check_open()
        ended = {
            turn.id
            for turn in self._turns.values()
            if turn.state in ("delivered", "failed") and turn.accepted_at < older_than
        }
        deleted = 0
        for conversation in list(self._conversations):
            deleted += self._keep(
                conversation,
                lambda stored: (
                    stored.turn not in ended
                    and (stored.turn is not None or stored.created_at >= older_than)
                ),
            )
        self._feedback = {
            vote: feedback for vote, feedback in self._feedback.items() if vote[0] not in ended
        }
        for id_ in ended:
            conversation = str(self._turns.pop(id_).key)
            self._threads[conversation].remove(id_)
            if not self._threads[conversation]:
                del self._threads[conversation]
        self._blobs = {
            sha256: blob for sha256, blob in self._blobs.items() if blob.last_used_at >= older_than
        }
        self._prune_usage()
        return deleted

    # --- feedback -----------------------------------------------------------------------------

    async def record_feedback(self, turn_id: int, user: str, positive: bool) -> bool:
        self._check_open()
        if turn_id not in self._turns:
            raise StoreError(f"{_NAME}: there is no turn {turn_id} to record feedback on")
        new = (turn_id, user) not in self._feedback
        self._feedback[turn_id, user] = Feedback(
            turn_id=turn_id, user=user, positive=positive, at=self._clock()
        )
        return new

    async def feedback_totals(self, since: float) -> FeedbackTotals:
        self._check_open()
        cast = [vote for vote in self._feedback.values() if vote.at >= since]
        positive = sum(vote.positive for vote in cast)
        turns = len({vote.turn_id for vote in cast})
        return FeedbackTotals(positive=positive, negative=len(cast) - positive, turns=turns)

    async def feedback_of(self, turn_id: int) -> list[Feedback]:
        self._check_open()
        votes = [vote for (turn, _), vote in self._feedback.items() if turn == turn_id]
        return sorted(votes, key=lambda vote: vote.user)

    # --- channel settings and usage -----------------------------------------------------------

    async def channel_settings(
        self, platform: str, workspace: str, channel: str
    ) -> ChannelSettings:
        self._check_open()
        return self._channels.get((platform, workspace, channel), ChannelSettings())

    async def set_channel_settings(
        self,
        platform: str,
        workspace: str,
        channel: str,
        *,
        model: Change = UNCHANGED,
        prompt: Change = UNCHANGED,
        by: str,
    ) -> ChannelSettings:
        check_change(model, prompt)
        self._check_open()
        key = (platform, workspace, channel)
        was = self._channels.get(key, ChannelSettings())
        self._channels[key] = settings = ChannelSettings(
            model=was.model if model is UNCHANGED else model,
            prompt=was.prompt if prompt is UNCHANGED else prompt,
            updated_by=by,
            updated_at=self._clock(),
        )
        return settings

    async def add_usage(self, user_key: str, tokens: int, *, at: float | None = None) -> None:
        check_tokens(tokens)
        self._check_open()
        period = periods(self._clock() if at is None else at)
        for counter in ((user_key, "day", period.day), (user_key, "month", period.month)):
            self._usage[counter] = self._usage.get(counter, 0) + tokens

    async def usage(self, user_key: str, *, now: float) -> Usage:
        self._check_open()
        period = periods(now)
        return period.usage(
            day=self._usage.get((user_key, "day", period.day), 0),
            month=self._usage.get((user_key, "month", period.month), 0),
        )

    # --- helpers ------------------------------------------------------------------------------

    def _claim(self, event_id: str, ttl: float) -> bool:
        now = self._clock()
        while self._expiries and self._expiries[0][0] <= now:  # prune expired claims
            expiry, expired = heapq.heappop(self._expiries)
            if self._claims.get(expired) == expiry:
                del self._claims[expired]
        if event_id in self._claims:
            return False
        self._claims[event_id] = now + ttl
        heapq.heappush(self._expiries, (now + ttl, event_id))
        return True

    def _prune_usage(self) -> None:
        day, month = kept_since(self._clock())
        self._usage = {
            (user, kind, start): tokens
            for (user, kind, start), tokens in self._usage.items()
            if start >= (day if kind == "day" else month)
        }

    def _add(self, conversation: str, turn: int | None, bodies: list[str]) -> None:
        if bodies:
            now = self._clock()
            stored = self._conversations.setdefault(conversation, [])
            stored.extend(_Stored(body, turn, now) for body in bodies)

    def _keep(self, conversation: str, keep: Callable[[_Stored], bool]) -> int:
        """Drop the conversation's messages that ``keep`` refuses; how many were dropped."""
        stored = self._conversations.get(conversation, [])
        kept = [item for item in stored if keep(item)]
        if kept:
            self._conversations[conversation] = kept
        else:
            self._conversations.pop(conversation, None)
        return len(stored) - len(kept)

    def _decoded(self, stored: Iterable[_Stored]) -> list[Message]:
        """Messages of no turn first, then by their turn's order (a stable sort), with their
        images' data from the blobs still kept (which are used now)."""
        ordered = sorted(
            stored, key=lambda item: (item.turn is not None, self._position(item.turn))
        )
        messages = [decode_message(item.body) for item in ordered]
        now = self._clock()
        found: dict[str, bytes] = {}
        for sha256 in wanted(messages):
            if (blob := self._blobs.get(sha256)) is not None:
                self._blobs[sha256] = replace(blob, last_used_at=now)
                found[sha256] = blob.data
        return filled(messages, found)

    def _keep_blobs(self, blobs: Sequence[Blob]) -> None:
        """Keep ``blobs`` (used now), then drop the least recently used blobs past the cap."""
        blobs = fitting(blobs, self._blob_max_bytes)
        if not blobs:
            return
        now = self._clock()
        for blob in blobs:
            was = self._blobs.get(blob.sha256)
            stored_at = now if was is None else was.stored_at
            self._blobs[blob.sha256] = _KeptBlob(blob.data, stored_at, last_used_at=now)
        total = sum(len(kept.data) for kept in self._blobs.values())
        least_recent_first = sorted(
            self._blobs.items(), key=lambda item: (item[1].last_used_at, item[1].stored_at, item[0])
        )
        for sha256, kept in least_recent_first:
            if total <= self._blob_max_bytes:
                break
            del self._blobs[sha256]
            total -= len(kept.data)

    def _position(self, turn_id: int | None) -> tuple[str, int]:
        if turn_id is None:
            return ("", 0)
        turn = self._turns[turn_id]
        return (turn.order, turn.id)

    def _first_queued(self, conversation: str) -> Turn | None:
        queued = [
            turn
            for id_ in self._threads.get(conversation, [])
            if (turn := self._turns[id_]).state == "queued"
        ]
        return min(queued, key=lambda turn: (turn.order, turn.id), default=None)

    def _running_in(self, conversation: str) -> bool:
        """A turn holds the thread: one running, or answered and not yet delivered (under a
        live lease or an expired one), so that answers appear in their questions' order."""
        return any(
            self._turns[id_].state in ("running", "answered")
            for id_ in self._threads.get(conversation, [])
        )

    def _lease(self, turn: Turn, owner: str, now: float, lease_seconds: float) -> Lease:
        expires_at = now + lease_seconds
        leased = self._save(
            replace(
                turn,
                state="running" if turn.state == "queued" else turn.state,
                owner=owner,
                fence=turn.fence + 1,
                lease_expires_at=expires_at,
            )
        )
        return Lease(turn=leased, owner=owner, fence=leased.fence, expires_at=expires_at)

    def _fenced(self, lease: Lease, what: str, *, delivery: bool = False) -> Turn:
        """The leased turn as stored, if the lease still holds it (``delivery``: a delivery
        lease on an answered turn will do), else :class:`LeaseLost`."""
        self._check_open()
        turn = self._turns.get(lease.turn.id)
        if turn is None or turn.fence != lease.fence:
            raise self._lost(lease, what)
        delivering = delivery and turn.state == "answered" and turn.lease_expires_at is not None
        if turn.state != "running" and not delivering:
            raise self._lost(lease, what)
        return turn

    def _save(self, turn: Turn) -> Turn:
        self._turns[turn.id] = turn
        return turn

    def _lost(self, lease: Lease, what: str) -> LeaseLost:
        return LeaseLost(
            f"{_NAME}: turn {lease.turn.id} is no longer leased to {lease.owner}"
            f" (fence {lease.fence}): cannot {what}"
        )

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{_NAME}: used after close()")


def _encoded(messages: Sequence[Message]) -> tuple[list[str], list[Blob]]:
    """The messages' JSON, without image data, and the blobs of their images: all, before any
    is kept."""
    stripped, blobs = set_apart(messages)
    return [encode_message(message) for message in stripped], blobs


def _check_ttl(ttl: float) -> None:
    if ttl <= 0:
        raise ValueError(f"a claim needs a positive ttl, not {ttl}")


def _check_lease(lease_seconds: float) -> None:
    if lease_seconds <= 0:
        raise ValueError(f"a lease needs positive lease_seconds, not {lease_seconds}")


def _live(turn: Turn, now: float) -> bool:
    return turn.lease_expires_at is not None and turn.lease_expires_at > now
