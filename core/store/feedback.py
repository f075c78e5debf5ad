"""Feedback on answers: who pressed 👍 or 👎 under which turn's answer, and when.

A vote belongs to a turn (:class:`~core.store.journal.Turn` ``id``) and a user, once: the
pair is the key. Pressing the other button changes the vote (and its time), as Slack's own
feedback buttons let a person change their mind; pressing either again is not a second vote.
So :meth:`FeedbackLog.record_feedback` tells a new vote (``True``) from a changed or repeated
one (``False``) — a counter of presses counts only new ones — and the totals count each
person's latest vote once.

A vote is timed by the store's clock when it is cast (last cast, for a changed one):
:meth:`FeedbackLog.feedback_totals` counts the votes cast since a time. Votes go with their
turn when the journal's ``prune`` deletes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = ["Feedback", "FeedbackLog", "FeedbackTotals"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Feedback:
    """One person's vote on one answer, as stored."""

    turn_id: int
    user: str
    """The platform's user id (Slack's ``U…``), never shown in a log line."""
    positive: bool
    at: float
    """When it was cast (or last changed), by the store's clock."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedbackTotals:
    """Votes cast in a period: how many of each, and on how many answers."""

    positive: int = 0
    negative: int = 0
    turns: int = 0
    """Answers with at least one vote in the period."""


class FeedbackLog(Protocol):
    """The feedback part of a store (memory, SQLite and Postgres: one contract test suite)."""

    async def record_feedback(self, turn_id: int, user: str, positive: bool) -> bool:
        """Store ``user``'s vote on turn ``turn_id`` at the store's time: ``True`` when it is
        the user's first vote on that turn, ``False`` when it replaces their earlier one (its
        value and time). :class:`~core.store.errors.StoreError` if there is no such turn
        (never accepted, or pruned)."""
        ...

    async def feedback_totals(self, since: float) -> FeedbackTotals:
        """The votes cast at or after ``since`` (the store's clock): positive, negative, and
        the number of turns they are on."""
        ...

    async def feedback_of(self, turn_id: int) -> list[Feedback]:
        """The votes on one turn, by user; ``[]`` for a turn without any (or no turn)."""
        ...
