"""Feedback on answers in SQLite: :class:`SqliteFeedback`, the feedback half of ``SqliteStore``
(the ``feedback`` table of schema version 3, :mod:`core.store.sqlite`; the contract is
:mod:`core.store.feedback`).

A vote is one transaction: insert it if the user has none on the turn (and the turn exists),
else update theirs; neither changing a row means there is no such turn. The journal's
``prune`` deletes the votes of the turns it deletes.
"""

from __future__ import annotations

from collections.abc import Callable

from core.store.errors import StoreError
from core.store.feedback import Feedback, FeedbackTotals
from core.store.sqlite_access import SharedConnection

__all__ = ["SqliteFeedback"]

# ``WHERE`` before ``ON CONFLICT``: SQLite's parser needs it after a ``SELECT``.
_VOTE = """
    INSERT INTO feedback (turn, user_id, positive, voted_at)
    SELECT id, :user, :positive, :now FROM turns WHERE id = :turn
    ON CONFLICT (turn, user_id) DO NOTHING
"""
_REVOTE = """
    UPDATE feedback SET positive = :positive, voted_at = :now
    WHERE turn = :turn AND user_id = :user
"""
_TOTALS = """
    SELECT COALESCE(SUM(positive), 0), COALESCE(SUM(1 - positive), 0), COUNT(DISTINCT turn)
    FROM feedback WHERE voted_at >= :since
"""
_OF_TURN = """
    SELECT user_id, positive, voted_at FROM feedback WHERE turn = :turn ORDER BY user_id
"""


class SqliteFeedback:
    """The :class:`~core.store.feedback.FeedbackLog` of a store file; ``SqliteStore`` sets the
    connection and the clock."""

    _connection: SharedConnection
    _clock: Callable[[], float]

    async def record_feedback(self, turn_id: int, user: str, positive: bool) -> bool:
        parameters = {
            "turn": turn_id,
            "user": user,
            "positive": int(positive),
            "now": self._clock(),
        }
        async with self._connection.transaction() as db:
            async with db.execute(_VOTE, parameters) as cursor:
                if cursor.rowcount == 1:
                    return True
            async with db.execute(_REVOTE, parameters) as cursor:
                if cursor.rowcount == 1:
                    return False
        raise StoreError(
            f"{self._connection.name}: there is no turn {turn_id} to record feedback on"
        )

    async def feedback_totals(self, since: float) -> FeedbackTotals:
        async with self._connection.statement() as db:
            rows = list(await db.execute_fetchall(_TOTALS, {"since": since}))
        positive, negative, turns = rows[0]  # an aggregate has one row
        return FeedbackTotals(positive=int(positive), negative=int(negative), turns=int(turns))

    async def feedback_of(self, turn_id: int) -> list[Feedback]:
        async with self._connection.statement() as db:
            rows = await db.execute_fetchall(_OF_TURN, {"turn": turn_id})
        return [
            Feedback(turn_id=turn_id, user=user, positive=bool(positive), at=float(at))
            for user, positive, at in rows
        ]
