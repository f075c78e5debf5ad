"""Feedback on answers: a vote stored and counted, and ``relaybot feedback``'s totals.

- :func:`record` is what a platform's feedback button calls: it stores the vote
  (:meth:`~core.store.feedback.FeedbackLog.record_feedback`), counts a new one in
  ``relaybot_feedback_total{rating}`` and logs one line — never the user's id, which the store
  keeps and a log shipped elsewhere need not.
- :func:`feedback_command` prints the totals of a period (``--since 7d``, ``24h``, ``30m``)
  from the configured store: "👍 12  👎 3  on 14 answers since 2026-11-30 10:00 UTC", or one
  JSON object.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from typing import TextIO

from bots.settings import Settings
from core.metrics import FEEDBACK
from core.store import FeedbackLog, FeedbackTotals, open_store

__all__ = ["DEFAULT_PERIOD", "as_json", "feedback_command", "parse_period", "record", "summary"]

log = logging.getLogger("relaybot.feedback")

DEFAULT_PERIOD = "7d"
_UNITS = {"m": 60, "h": 3600, "d": 86400}
_PERIOD = re.compile(r"(\d+)([mhd])")


async def record(store: FeedbackLog, turn_id: int, user: str, positive: bool) -> bool:
    """Store ``user``'s vote on turn ``turn_id``; ``True`` when it is their first on it. A
    changed vote replaces the stored one but is not counted again: the counter says how many
    people voted, the store what they think now. :class:`~core.store.StoreError` if there is
    no such turn."""
    new = await store.record_feedback(turn_id, user, positive)
    rating = "positive" if positive else "negative"
    if new:
        FEEDBACK.labels(rating=rating).inc()
    log.info("feedback on turn %d: %s (%s)", turn_id, rating, "new" if new else "changed")
    return new


def parse_period(text: str) -> float:
    """Seconds in a period written ``30m``, ``24h`` or ``7d``; ``ValueError`` saying how to
    write one otherwise."""
    match = _PERIOD.fullmatch(text.strip().lower())
    if match is None or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a period: write a whole number and m, h or d (7d, 24h)")
    return int(match.group(1)) * _UNITS[match.group(2)]


def summary(totals: FeedbackTotals, since: float) -> str:
    """One line: the votes of each kind and the answers they are on, since when (UTC)."""
    answers = "answer" if totals.turns == 1 else "answers"
    return (
        f"👍 {totals.positive}  👎 {totals.negative}  on {totals.turns} {answers}"
        f" since {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(since))}"
    )


def as_json(totals: FeedbackTotals, since: float) -> str:
    """The totals as one JSON object, ``since`` in ISO 8601 (UTC)."""
    return json.dumps(
        {
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since)),
            "positive": totals.positive,
            "negative": totals.negative,
            "turns": totals.turns,
        }
    )


async def feedback_command(
    settings: Settings,
    *,
    period: float,
    as_json_object: bool,
    out: TextIO,
    clock: Callable[[], float] = time.time,
) -> int:
    """``relaybot feedback``: print the totals of the last ``period`` seconds from the
    configured store; 0. A store that cannot be opened raises
    :class:`~core.store.StoreError` (the command line prints it)."""
    since = clock() - period
    store = await open_store(
        settings.store.resolved_url(), make_directories=settings.store.url is None
    )
    try:
        totals = await store.feedback_totals(since)
    finally:
        await store.close()
    print(as_json(totals, since) if as_json_object else summary(totals, since), file=out)
    return 0
