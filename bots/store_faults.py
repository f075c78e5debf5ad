"""``StoreFaults``: a failing store, logged so that an operator sees why without drowning.

A full disk fails every message until space is freed: a traceback for each would bury the one
that says why. So the first failure of a kind is logged at ERROR with its traceback, the rest
of that kind as a DEBUG line with a count, and once the store works again one INFO line says
how many failed meanwhile — the next failure is news again.
"""

from __future__ import annotations

import logging
import re

from core.store import StoreError

__all__ = ["StoreFaults", "failure_kind"]


class StoreFaults:
    """The store's failures on one bot's accept path, counted by :func:`failure_kind`."""

    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._counts: dict[str, int] = {}

    def failed(self, error: StoreError, doing: str) -> None:
        """The store failed while the bot was ``doing`` something ("accepting slack:T1:…")."""
        kind = failure_kind(error)
        count = self._counts[kind] = self._counts.get(kind, 0) + 1
        if count == 1:
            self._log.error("the store failed %s: %s", doing, error, exc_info=error)
        else:
            self._log.debug("the store failed %s (%s, %d times)", doing, kind, count)

    def worked(self) -> None:
        """The store did what was asked: the outage, if there was one, is over."""
        if self._counts:
            failures = sum(self._counts.values())
            self._counts.clear()
            self._log.info("the store works again (%d failures meanwhile)", failures)


def failure_kind(error: StoreError) -> str:
    """The error's type and what caused it — SQLite's error name (``SQLITE_FULL``) or the
    cause's type — else its message with numbers blanked: what one failure shares with the
    next, without the ids that differ from message to message."""
    cause = error.__cause__
    if cause is not None:
        detail = getattr(cause, "sqlite_errorname", None) or type(cause).__name__
    else:
        detail = re.sub(r"\d+", "#", str(error))
    return f"{type(error).__name__} ({detail})"
