"""Token usage per user: what each person's turns cost this UTC day and this calendar month.

A user is named by a *user key*, ``platform:workspace:user`` (:func:`user_key`): a Slack
user id is only unique within its workspace, and one person on two platforms is two users.
The parts are the platform's own ids (``slack:T0123:U0456``, ``discord:<guild id>:<user id>``);
they hold no colon, so a key reads back unambiguously.

:meth:`UsageLedger.add_usage` adds a turn's tokens to two counters at once — the user's UTC day
and their calendar month (UTC) — atomically, also when several processes share the store: a
count is never lost to a race, and the day and the month never disagree. :meth:`UsageLedger.usage`
reads both for the periods that hold ``now``, with when each one starts afresh; a period with
no row counts 0, so a new day starts at 0 while the month goes on.

The journal's ``prune`` also deletes old counters (:func:`kept_since`): day counters of days
that began more than two days before today's, month counters of months that began more than
two months before this month's. Only the current periods are ever read; the two before are
kept for an operator who looks at the table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Protocol

__all__ = [
    "DAY",
    "Periods",
    "Usage",
    "UsageLedger",
    "check_tokens",
    "kept_since",
    "periods",
    "user_key",
]

DAY: Final = 86_400
"""Seconds in a UTC day (epoch time has no leap seconds)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """A user's tokens in the current UTC day and calendar month."""

    day: int
    month: int
    day_resets_at: float
    """When the day's count starts again from 0: the next 00:00 UTC."""
    month_resets_at: float
    """When the month's count starts again from 0: 00:00 UTC on the 1st of the next month."""


class UsageLedger(Protocol):
    """The usage part of a store (memory, SQLite and Postgres: one contract test suite)."""

    async def add_usage(self, user_key: str, tokens: int, *, at: float | None = None) -> None:
        """Add ``tokens`` to the user's day and month counters of the time ``at`` (by default
        the store's time now), both or neither. ``ValueError`` for a negative count."""
        ...

    async def usage(self, user_key: str, *, now: float) -> Usage:
        """The user's counters of the day and the month that hold ``now``."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Periods:
    """The UTC day and calendar month holding a time: epoch seconds of their starts and ends."""

    day: int
    day_ends: int
    month: int
    month_ends: int

    def usage(self, *, day: int, month: int) -> Usage:
        return Usage(
            day=day, month=month, day_resets_at=self.day_ends, month_resets_at=self.month_ends
        )


def user_key(platform: str, workspace: str, user: str) -> str:
    """``platform:workspace:user``, the key usage is counted under (see the module docs)."""
    return f"{platform}:{workspace}:{user}"


def periods(at: float) -> Periods:
    """The UTC day and calendar month that hold the time ``at`` (epoch seconds)."""
    day = math.floor(at / DAY) * DAY
    return Periods(
        day=day,
        day_ends=day + DAY,
        month=_month_start(at, months_back=0),
        month_ends=_month_start(at, months_back=-1),
    )


def kept_since(now: float) -> tuple[int, int]:
    """``(day, month)``: ``prune`` deletes day counters that start before ``day`` (two days
    before today's) and month counters that start before ``month`` (two months before this
    one's)."""
    return periods(now).day - 2 * DAY, _month_start(now, months_back=2)


def check_tokens(tokens: int) -> None:
    """``ValueError`` for a count no ledger adds: usage only grows."""
    if tokens < 0:
        raise ValueError(f"usage is a count of tokens spent, never negative (not {tokens})")


def _month_start(at: float, *, months_back: int) -> int:
    moment = datetime.fromtimestamp(at, UTC)
    index = moment.year * 12 + moment.month - 1 - months_back
    start = datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)
    return int(start.timestamp())
