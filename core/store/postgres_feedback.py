"""Feedback on answers in Postgres: :class:`PostgresFeedback`, the feedback half of
``PostgresStore`` — the SQL of :mod:`core.store.sqlite_feedback`, ported (the ``feedback``
table of schema version 2, :mod:`core.store.postgres`; the contract is
:mod:`core.store.feedback`).

A vote is one transaction: ``INSERT … ON CONFLICT DO NOTHING`` (which waits for another
worker inserting the same user's vote on the same turn, then finds it), else an update of the
user's vote; neither changing a row means there is no such turn. A vote is a foreign key of
its turn, deleted with it (``ON DELETE CASCADE``): a vote racing the prune of its turn fails
instead of outliving it.
"""

from __future__ import annotations

from collections.abc import Callable

from core.store.errors import StoreError
from core.store.feedback import Feedback, FeedbackTotals
from core.store.postgres_access import NOW, Pool, Query, execute, fetch, fetchrow, rowcount

__all__ = ["PostgresFeedback"]

_VOTE = Query(f"""
    INSERT INTO feedback (turn, user_id, positive, voted_at)
    SELECT id, :user::text, :positive::boolean, {NOW} FROM turns WHERE id = :turn
    ON CONFLICT (turn, user_id) DO NOTHING
""")
_REVOTE = Query(f"""
    UPDATE feedback SET positive = :positive, voted_at = {NOW}
    WHERE turn = :turn AND user_id = :user
""")
_TOTALS = Query("""
    SELECT COUNT(*) FILTER (WHERE positive), COUNT(*) FILTER (WHERE NOT positive),
        COUNT(DISTINCT turn)
    FROM feedback WHERE voted_at >= :since::float8
""")
_OF_TURN = Query("""
    SELECT user_id, positive, voted_at FROM feedback WHERE turn = :turn ORDER BY user_id
""")


class PostgresFeedback:
    """The :class:`~core.store.feedback.FeedbackLog` of a database; ``PostgresStore`` sets the
    pool and the clock (``None``: the server's ``now()``)."""

    _pool: Pool
    _clock: Callable[[], float] | None

    async def record_feedback(self, turn_id: int, user: str, positive: bool) -> bool:
        now = None if self._clock is None else self._clock()
        parameters = {"turn": turn_id, "user": user, "positive": positive, "now": now}
        async with self._pool.transaction() as db:
            if rowcount(await execute(db, _VOTE, parameters)) == 1:
                return True
            if rowcount(await execute(db, _REVOTE, parameters)) == 1:
                return False
        raise StoreError(f"{self._pool.name}: there is no turn {turn_id} to record feedback on")

    async def feedback_totals(self, since: float) -> FeedbackTotals:
        async with self._pool.connection() as db:
            row = await fetchrow(db, _TOTALS, {"since": since})
        assert row is not None  # an aggregate has one row
        positive, negative, turns = row
        return FeedbackTotals(positive=int(positive), negative=int(negative), turns=int(turns))

    async def feedback_of(self, turn_id: int) -> list[Feedback]:
        async with self._pool.connection() as db:
            rows = await fetch(db, _OF_TURN, {"turn": turn_id})
        return [
            Feedback(turn_id=turn_id, user=user, positive=bool(positive), at=float(at))
            for user, positive, at in rows
        ]
