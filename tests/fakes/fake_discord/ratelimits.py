"""Discord's rate limits, as the fake enforces them.

Every routed answer carries ``X-RateLimit-Limit``, ``-Remaining``, ``-Reset`` (epoch seconds),
``-Reset-After`` and ``-Bucket``. Message creates and edits share one bucket (:data:`MESSAGES`)
per channel (thread) of ``per_window`` per ``window`` seconds (5 per 5 s); every other route
has 50 per second per channel; all bot-token calls together are held to
``global_per_second``. Past a limit the answer is ``429 {"message": "You are being rate
limited.", "retry_after": s, "global": bool}`` with ``Retry-After`` and ``Via`` (discord.py
takes a 429 without ``Via`` for a Cloudflare ban), and nothing changes. discord.py paces
itself by these headers (its buckets are keyed by ``X-RateLimit-Bucket`` and channel), so a
client that only writes through discord.py, within the global limit, is not answered 429 —
concurrent sends and edits to one channel included.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MESSAGES = "messages"
"""The bucket message creates and edits share."""
_MAJOR = ("channel_id", "guild_id", "interaction_id", "token")
"""The path parameters that split a route's bucket, as Discord's major parameters do."""


@dataclass
class _Window:
    """A fixed window: ``limit`` requests from the first one until ``reset_at``."""

    limit: int
    length: float
    count: int = 0
    reset_at: float = -math.inf

    def take(self, now: float) -> float | None:
        """Counts one request and returns ``None``, or returns the wait when none is left."""
        if now >= self.reset_at:
            self.count, self.reset_at = 0, now + self.length
        if self.count >= self.limit:
            return self.reset_at - now
        self.count += 1
        return None


class TooManyRequests(Exception):
    """A ``429`` answer: its body and headers."""

    def __init__(self, body: dict[str, Any], headers: dict[str, str]) -> None:
        super().__init__(body["message"])
        self.body, self.headers = body, headers


class RateLimits:
    """The buckets, per route (or :data:`MESSAGES`) and major parameter, and the global
    limit; :attr:`rate_limited` counts the ``429`` answers."""

    def __init__(self, *, window: float, per_window: int, global_per_second: int) -> None:
        self.rate_limited = 0
        self._messages = (per_window, window)
        self._global = _Window(global_per_second, 1.0)
        self._buckets: dict[tuple[str, int | str], _Window] = {}

    def take(
        self, bucket: str, params: Mapping[str, Any], now: float, *, bot: bool
    ) -> dict[str, str]:
        """Counts one request — against the global limit too when it carries the bot's token —
        and returns its answer's headers; raises :class:`TooManyRequests` past a limit."""
        if bot and (wait := self._global.take(now)) is not None:
            raise self._too_many(wait)
        major = next((params[k] for k in _MAJOR if k in params), 0)
        limit, length = self._messages if bucket == MESSAGES else (50, 1.0)
        window = self._buckets.setdefault((bucket, major), _Window(limit, length))
        if (wait := window.take(now)) is not None:
            raise self._too_many(wait, bucket, limit)
        reset_after = _ms(max(window.reset_at - now, 0.0))
        return _headers(bucket, limit, limit - window.count, reset_after)

    def _too_many(self, wait: float, bucket: str = "", limit: int = 0) -> TooManyRequests:
        """A 429 for ``bucket``, or the global limit when none is named."""
        self.rate_limited += 1
        wait, global_ = _ms(wait), not bucket
        headers = {"Retry-After": str(math.ceil(wait)), "Via": "1.1 google",
                   "X-RateLimit-Scope": "global" if global_ else "user"}  # fmt: skip
        if global_:
            headers["X-RateLimit-Global"] = "true"
        else:
            headers |= _headers(bucket, limit, 0, wait)
        body = {"message": "You are being rate limited.", "retry_after": wait, "global": global_}
        return TooManyRequests(body, headers)


def _ms(seconds: float) -> float:
    """Rounded up to the millisecond, as Discord's headers are."""
    return math.ceil(seconds * 1000) / 1000


def _headers(bucket: str, limit: int, remaining: int, reset_after: float) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
        "X-RateLimit-Reset-After": f"{reset_after:.3f}",
        "X-RateLimit-Bucket": hashlib.md5(bucket.encode()).hexdigest(),
    }
