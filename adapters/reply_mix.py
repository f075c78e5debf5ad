"""``ReplyMix``: whether the next answer streams natively or edits its message, by whichever of
the two budgets has more room per answer.

Slack gives the two ways separate budgets per workspace: a native stream appends from Tier 4
(``chat.appendStream``, about 100 calls a minute), an edited message edits from Tier 3
(``chat.update``, about 50). Sending every answer one way leaves the other budget idle while
the busy one spreads thin: 20 answers asked within 30 s, all streamed, each get an append
every few seconds while ``chat.update`` sits unused. So ``auto`` streams the next answer while
the stream budget's rate per live stream (this one included) is at least the edit budget's
rate per live edited answer (this one included) — and a stream's start is free (taken then,
for this answer; see :meth:`EditBudget.try_acquire`). Each way's answers then see about the
same freshness, and together they use both budgets.

The answers counted are this process's: in a fleet each worker balances its own, which holds
the budgets' shares about right while workers take turns evenly.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from adapters.budget import DEFAULT_RATES, EditBudget, Rate, rate_of

__all__ = ["ReplyMix"]


class ReplyMix:
    """Counts the live answers per budget scope and chooses the way of the next one."""

    def __init__(self, budget: EditBudget, rates: Mapping[str, Rate] | None = None) -> None:
        self._budget = budget
        self._rates = {**DEFAULT_RATES, **(rates or {})}
        self._live: Counter[str] = Counter()

    async def streams(self, *, start: Sequence[str], append: str, edit: str) -> bool:
        """Whether the next answer streams: its stream would have at least the room per answer
        an edited one would (``append``'s rate per live stream against ``edit``'s per live
        edited answer), and a start is free now — taken, when True."""
        if self._room(append) < self._room(edit):
            return False
        return await self._budget.try_acquire(start)

    @contextmanager
    def live(self, scope: str) -> Iterator[None]:
        """An answer spending from ``scope`` (a stream's append scope, or an edited answer's
        edit scope) while the block runs."""
        self.began(scope)
        try:
            yield
        finally:
            self.ended(scope)

    def began(self, scope: str) -> None:
        self._live[scope] += 1

    def ended(self, scope: str) -> None:
        self._live[scope] -= 1
        if self._live[scope] <= 0:
            del self._live[scope]

    def live_count(self, scope: str) -> int:
        return self._live[scope]

    def _room(self, scope: str) -> float:
        rate = rate_of(self._rates, scope)
        return math.inf if rate is None else rate.per_second / (self._live[scope] + 1)
