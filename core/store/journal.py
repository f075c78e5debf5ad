"""The turn journal: a message's life, written down before it is acted on.

A platform message that the bot will answer is *accepted* in one transaction: its event id is
claimed, the user's message saved, and a :class:`Turn` recorded ``queued``. From then on the
store, not a process's memory, holds the promise to answer it::

    queued ──take──> running ──answered()──> answered ──delivered()──> delivered
      ^                 │  └──failed()──> failed
      └───release()─────┤  (a shutdown; never after a tool ran)
                        └── lease expired (the worker died) ──recover──> running again, or failed

- **Order.** Turns of one thread run one at a time, in the platform's order (``Turn.order``:
  Slack's ``ts``, a Discord snowflake zero-padded to 20 digits — compared as strings), not in
  arrival order. :meth:`TurnJournal.take` hands out the thread's earliest queued turn, and
  only while no turn of the thread is ``running`` or ``answered`` — even one whose lease
  expired: recovering it (:meth:`TurnJournal.take_over`) comes first. An ``answered`` turn
  holds its thread until it is delivered: in a fleet the next turn may be another worker's,
  whose answer must not appear above this one's.
- **Leases and fencing.** Taking a turn leases it to an ``owner`` (a worker's id) for
  ``lease_seconds``; the owner renews it while the turn runs. Each take increments the turn's
  ``fence``: a write made with an older :class:`Lease` (a worker whose lease expired and was
  taken over) raises :class:`LeaseLost` and changes nothing. :meth:`TurnJournal.answered`
  keeps the lease as a *delivery lease* — the worker that answered delivers next, and no
  other worker of a fleet delivers the turn while that lease lives;
  :meth:`TurnJournal.failed` and :meth:`TurnJournal.delivered` end it.
- **History by turn.** Messages are stored with the turn they belong to. The history of turn N
  (:meth:`TurnJournal.history`) is every message stored before the journal existed or by
  appending directly (a thread rebuilt from the platform), then the messages of every turn
  ordered before N, then N's own — so a follow-up accepted while an answer streams reads that
  answer, and a turn never sees a later question.
- **Tools are never run twice.** Before a tool runs, :meth:`TurnJournal.tool_started` is
  written durably; a recovered turn that has one ends ``failed`` (the user is told it was
  interrupted) instead of running again.
- **Platform message refs** (opaque strings a bot chooses, such as Slack's message ``ts``) are
  saved as soon as the first message is posted (:meth:`TurnJournal.save_refs`), so recovery can
  edit what a dead worker left behind.

Every method that changes a turn is atomic. Times come from the store's clock (seconds).
Every method that saves a user message keeps its images' bytes apart, in the same transaction,
and every method that returns history puts them back (:mod:`core.store.blobs`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from core.messages import ConversationKey, Message, UserMessage
from core.store.errors import StoreError

__all__ = [
    "Lease",
    "LeaseLost",
    "Turn",
    "TurnJournal",
    "TurnState",
    "discord_order",
    "nobody_is_dead",
]

TurnState = Literal["queued", "running", "answered", "delivered", "failed"]


class LeaseLost(StoreError):
    """The turn's lease was taken over by another worker (or the turn ended): this worker's
    write was refused and must not be retried. The message names the turn."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Turn:
    """One accepted message and what became of it, as the journal holds it."""

    id: int
    """Unique in the store, assigned at accept."""
    key: ConversationKey
    order: str
    """The platform's order of the message within its thread (see the module docs)."""
    event_id: str
    """The claim it was accepted under (``slack:T1:C2:1700000000.000100``)."""
    question: UserMessage
    """The user's message, as saved at accept: its images without their data, which the blob
    table keeps (:mod:`core.store.blobs`) and :meth:`TurnJournal.history` puts back."""
    platform: str
    """Where it was asked, in words the model reads ("Slack")."""
    timezone: str | None = None
    """The asker's IANA time zone, when the platform says."""
    state: TurnState = "queued"
    accepted_at: float = 0.0
    owner: str | None = None
    """The worker holding (or last holding) its lease."""
    fence: int = 0
    """How many times it has been taken; a :class:`Lease` carries the value it was taken with."""
    lease_expires_at: float | None = None
    tool_started: bool = False
    """A tool call of this turn was recorded as started: it must never run again."""
    refs: tuple[str, ...] = ()
    """The platform messages showing its answer, as the bot saved them."""
    final_text: str | None = None
    """The answer (``answered``/``delivered``), saved before delivery."""
    finish_reason: str | None = None
    error: str | None = None
    """What the user was shown when it ended ``failed``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    """The right to run ``turn`` and write its outcome, while ``fence`` is the turn's latest."""

    turn: Turn
    owner: str
    fence: int
    expires_at: float


def nobody_is_dead(owner: str) -> bool:
    """The default ``is_dead`` of :meth:`TurnJournal.stranded`: no owner is known to be dead,
    so only expired leases strand a turn."""
    return False


class TurnJournal(Protocol):
    """The journal part of a store. Memory and SQLite implement it; the Postgres store of the
    fleet implements the same contract (one contract test suite runs against every store)."""

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
        """In one transaction: claim ``event_id`` (for ``claim_ttl`` seconds, as ``claim``),
        save ``question`` and record a ``queued`` turn. ``None`` when the event was accepted
        (or claimed) already: nothing is written."""
        ...

    async def known(self, key: ConversationKey) -> bool:
        """The thread has an accepted turn or stored messages: the bot is part of it."""
        ...

    async def take(self, key: ConversationKey, *, owner: str, lease_seconds: float) -> Lease | None:
        """Lease the thread's earliest ``queued`` turn to ``owner`` (state ``running``, fence
        incremented); ``None`` when none is queued or a turn of the thread is ``running`` or
        ``answered``, even under an expired lease (see "Order")."""
        ...

    async def take_over(
        self, turn_id: int, *, owner: str, lease_seconds: float, force: bool = False
    ) -> Lease | None:
        """Lease a turn found by :meth:`stranded` to ``owner`` (fence incremented, so its old
        owner is fenced out); ``None`` if it is no longer stranded (another worker took it,
        or it ended).

        - A ``running`` turn whose lease expired stays ``running``, under the new lease.
        - A ``queued`` turn becomes ``running``, as :meth:`take` would make it: only the
          earliest queued turn of its thread, while no turn of the thread is ``running``.
        - An ``answered`` turn whose delivery lease expired stays ``answered``: the new lease
          is a delivery lease too, for putting its final text on the platform;
          :meth:`delivered` ends it.

        ``force`` takes a ``running`` or ``answered`` turn even if its lease is live: for a
        turn :meth:`stranded` listed because ``is_dead(owner)`` said its owner is gone. It
        does not lift a queued turn's wait for its thread.
        """
        ...

    async def renew(self, lease: Lease, *, lease_seconds: float) -> Lease:
        """Extend the lease from now — a running turn's, or the delivery lease of an
        ``answered`` one; :class:`LeaseLost` if it was taken over or the turn ended
        (``failed``, ``delivered``, or its message deleted)."""
        ...

    async def history(self, lease: Lease) -> list[Message]:
        """What the model reads for the leased turn (see "History by turn"): messages of no
        turn, then those of the turns before it (by order, then as stored), then its own,
        its question first. :class:`LeaseLost` if the lease was taken over."""
        ...

    async def revise_question(self, lease: Lease, question: UserMessage) -> Lease:
        """Replace the running turn's question, where it is saved and in its history (a bot
        that accepted the raw text before acknowledging the platform puts in the names it looked
        up afterwards); the lease, with the turn as revised."""
        ...

    async def tool_started(self, lease: Lease, call_id: str) -> None:
        """Durably record that the turn is about to run a tool (``Turn.tool_started``)."""
        ...

    async def save_refs(self, lease: Lease, refs: Sequence[str]) -> None:
        """Replace the turn's platform message refs (a running turn's, or under a delivery
        lease)."""
        ...

    async def answered(
        self,
        lease: Lease,
        *,
        messages: Sequence[Message],
        text: str,
        finish_reason: str | None,
    ) -> None:
        """In one transaction: append the turn's messages (after its question) and move it to
        ``answered`` with its final text. The lease stays (owner, fence and expiry unchanged),
        as the delivery lease of this worker, which delivers next: it may :meth:`renew` it and
        :meth:`save_refs` with it; :meth:`delivered` ends it. Until it expires (or its owner
        is dead) the turn is not :meth:`stranded`."""
        ...

    async def failed(self, lease: Lease, *, messages: Sequence[Message], error: str) -> None:
        """In one transaction: append what the turn said (maybe nothing) and end it ``failed``
        with the error the user was shown. The lease ends."""
        ...

    async def release(self, lease: Lease) -> bool:
        """Give a ``running`` turn back to the queue (its worker is shutting down): state
        ``queued``, no owner, no lease, its refs kept (whoever runs it next replaces what they
        show); it is taken again in its place in the thread's order. ``False``, and nothing
        changes, when it ran a tool (``Turn.tool_started``): it must never run again, so its
        worker ends it ``failed`` instead. :class:`LeaseLost` if the lease was taken over or
        the turn is not running."""
        ...

    async def delivered(self, turn_id: int, refs: Sequence[str]) -> None:
        """An ``answered`` turn's final text is on the platform, in ``refs``; any delivery
        lease ends. Nothing happens if it was delivered already; :class:`StoreError` if the
        turn is in another state or there is none."""
        ...

    async def stranded(self, *, is_dead: Callable[[str], bool] = nobody_is_dead) -> list[Turn]:
        """Turns a worker must finish, oldest accepted first (then by id):

        - ``running`` and ``answered`` turns (not yet delivered) whose lease expired or whose
          owner ``is_dead(owner)`` says is gone (a previous process on this machine, say);
        - the earliest ``queued`` turn of each thread that has no ``running`` or ``answered``
          turn (the one :meth:`take` would give): a queued turn behind one waits for it, even
          for one whose lease expired, which is listed itself.
        """
        ...

    async def backlog(self) -> tuple[int, float | None]:
        """How many turns are ``queued``, and the earliest ``accepted_at`` among them (``None``
        when none is): what an operator watches to see answers falling behind."""
        ...

    async def turn(self, turn_id: int) -> Turn:
        """The turn as stored now; :class:`StoreError` if there is none."""
        ...

    async def break_conversation(self, key: ConversationKey) -> None:
        """Start the thread's conversation afresh: a :class:`~core.messages.ConversationBreak`
        stored after everything the thread has (with its last turn, so it keeps its place
        among the turns' messages), which the engine cuts the history at. Turns taken later
        read nothing said before it."""
        ...

    async def unfinished(self, key: ConversationKey) -> Turn | None:
        """The thread's ``running`` turn (the answer being written, by whichever worker), or
        ``None``: what a Stop of the whole thread stops."""
        ...

    async def forget_message(self, key: ConversationKey, order: str) -> None:
        """The platform deleted the message ``order`` of the thread: remove its turn's
        messages (question and answer) from history. A ``queued`` or ``running`` turn for it
        ends ``failed`` with the error ``"deleted"`` and no reply: the lease ends, so a worker
        still running it gets :class:`LeaseLost` at its next write and writes nothing. An
        ``answered`` turn is still delivered. No turn of that order: nothing happens."""
        ...

    async def prune(self, *, older_than: float) -> int:
        """Delete history and ended turns accepted before ``older_than`` (retention), and the
        images last used before it (:mod:`core.store.blobs`); how many messages were deleted.

        A turn goes whole: an ended (``delivered`` or ``failed``) turn accepted before
        ``older_than`` is deleted with all its messages, even those stored after it; a turn
        not ended keeps its messages whatever their age. Messages of no turn go when they
        were stored before ``older_than``. The feedback on a deleted turn goes with it
        (:mod:`core.store.feedback`). Claims are left to expire."""
        ...


def discord_order(snowflake: int | str) -> str:
    """A Discord message id as a turn order: zero-padded, so that string order is time order."""
    return f"{int(snowflake):020d}"
