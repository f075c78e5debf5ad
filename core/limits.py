"""Usage limits: how many tokens one person may spend per UTC day and per calendar month.

Pure: :func:`check` is given the user's :class:`~core.store.usage.Usage` (read from the store
by the caller) and answers whether a new turn may start. A turn starts while the user is under
both limits; turns already running are not stopped, so a user may end a little over a limit
(several turns in flight at once overshoot together). Over a limit, the :class:`Refusal`
carries one polite line saying when the count starts again:

    You've used your 50,000 tokens for today; it resets at 00:00 UTC (in 3 h 12 min).

When both limits are used up the month's is named — the day's reset would not help.
People named in ``exempt_users`` (platform user ids, as the platform shows them: Slack's
``U…``, a Discord user's id) are never refused. Limits are off by default.

Usage is counted from the gateway's report of a turn's tokens; when a gateway reports none,
:func:`estimate_tokens` stands in (about four characters a token).

Settings (``[limits]`` in the TOML file): :class:`LimitsSettings`, a section ``bots.settings``
composes (``limits: LimitsSettings = LimitsSettings()``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from pydantic import Field

from core.settings import Section
from core.store.usage import Usage

__all__ = ["LimitsSettings", "Refusal", "UsageLimits", "check", "estimate_tokens"]

_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
"""English month names, whatever the process's locale (``%B`` follows it)."""
CHARS_PER_TOKEN = 4
"""The usual ratio of English text in the common tokenizers: an estimate, never a bill."""


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageLimits:
    """Tokens a user may spend per UTC day and per calendar month (``None``: no limit)."""

    daily_tokens: int | None = None
    monthly_tokens: int | None = None
    exempt: frozenset[str] = field(default_factory=frozenset)
    """Platform user ids never limited (admins)."""

    @property
    def active(self) -> bool:
        """Whether any limit is set: when not, the caller need not read usage at all."""
        return self.daily_tokens is not None or self.monthly_tokens is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class Refusal:
    """Why a turn may not start: the message to show the user, and when it may again."""

    message: str
    period: Literal["day", "month"]
    resets_at: float


def check(usage: Usage, limits: UsageLimits, user: str, *, now: float) -> Refusal | None:
    """``None`` if ``user`` (a platform user id) may start a turn now, else the
    :class:`Refusal` to show them. ``now`` is the time ``usage`` was read for."""
    if user in limits.exempt:
        return None
    if limits.monthly_tokens is not None and usage.month >= limits.monthly_tokens:
        return _refusal("month", limits.monthly_tokens, usage.month_resets_at, now=now)
    if limits.daily_tokens is not None and usage.day >= limits.daily_tokens:
        return _refusal("day", limits.daily_tokens, usage.day_resets_at, now=now)
    return None


def estimate_tokens(text: str) -> int:
    """About how many tokens ``text`` is, for a gateway that reports no usage: one per four
    characters, rounded up (so any text costs at least one)."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


class LimitsSettings(Section):
    """``[limits]``: per-user token budgets, off unless a number is set."""

    daily_tokens: int | None = Field(default=None, gt=0)
    """Tokens a user may spend per UTC day."""
    monthly_tokens: int | None = Field(default=None, gt=0)
    """Tokens a user may spend per calendar month (UTC)."""
    exempt_users: frozenset[str] = frozenset()
    """Platform user ids never limited (Slack ``U…``, Discord user ids): the admins."""

    def usage_limits(self) -> UsageLimits:
        return UsageLimits(
            daily_tokens=self.daily_tokens,
            monthly_tokens=self.monthly_tokens,
            exempt=self.exempt_users,
        )


def _refusal(
    period: Literal["day", "month"], limit: int, resets_at: float, *, now: float
) -> Refusal:
    when = datetime.fromtimestamp(resets_at, UTC)
    if period == "day":
        span, at = "today", f"at {when:%H:%M} UTC"
    else:
        span, at = "this month", f"on {when.day} {_MONTHS[when.month - 1]} at {when:%H:%M} UTC"
    message = (
        f"You've used your {limit:,} tokens for {span}; it resets {at}"
        f" (in {_duration(resets_at - now)})."
    )
    return Refusal(message=message, period=period, resets_at=resets_at)


def _duration(seconds: float) -> str:
    """``3 h 12 min``, ``12 days 3 h``, ``5 min``: minutes rounded up, to the two largest
    units (a reset is never "in 0 min")."""
    minutes = max(1, math.ceil(seconds / 60))
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        parts = [f"{days} day" + ("s" if days > 1 else ""), f"{hours} h" if hours else ""]
    else:
        parts = [f"{hours} h" if hours else "", f"{minutes} min" if minutes else ""]
    return " ".join(part for part in parts if part)
