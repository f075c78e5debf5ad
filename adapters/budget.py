"""``EditBudget``: token buckets shared by every live reply of a scope.

A platform limits edits per scope, not per reply: Slack's ``chat.update`` per workspace, Discord
per channel and per bot. Every ``LiveReply`` of a scope spends from one bucket, so N concurrent
replies split the platform's budget instead of each assuming it owns it. A reply names its
scopes narrowest first (``SurfaceLimits.budget_scopes``, e.g. ``("discord.channel:123",
"discord.global")``) and takes one token from each, all at once.

A rate limit is back-pressure: a caller waits for its token however long that takes. Final
texts go first: a caller that acquires ``urgent`` (a reply's last version, a notice) is served
before every other caller waiting on a scope it shares, so when the budget is short the answers
land and the interim edits wait.

``EditBudget`` is the small interface; ``TokenBucketBudget`` keeps the buckets in this process,
and ``adapters.redis_budget.RedisBudget`` keeps them in Redis when several processes share a
workspace.
"""

from __future__ import annotations

import asyncio
import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

from adapters.clock import Clock, RealClock

__all__ = ["DEFAULT_RATES", "EditBudget", "Rate", "TokenBucketBudget", "rate_of"]

_EPSILON = 1e-9
"""Float slack: a bucket this close to a whole token has one (so a wait never rounds to 0 s)."""

_SWEEP_EVERY = 60.0
"""Seconds between two sweeps of the idle, full buckets."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Rate:
    """``per_second`` calls sustained, and up to ``burst`` at once after a quiet spell.

    A token bucket (the default): over any window of ``w`` seconds it grants at most
    ``burst + per_second * w`` calls, refilled continuously — steady, fit for the edits of
    many live replies. A ``sliding`` window (:meth:`window`): at most ``burst`` calls in any
    ``burst / per_second`` seconds, all of them usable at once after a quiet window — the way
    Slack counts its tiers, fit for a budget spent in bursts (a stream's start: 20 answers
    asked within 30 s all stream, where a bucket of the same limit would turn half away).
    """

    per_second: float
    burst: float
    sliding: bool = False

    def __post_init__(self) -> None:
        if not (0 < self.per_second < math.inf):
            raise ValueError(f"per_second must be positive and finite, not {self.per_second}")
        if not (1 <= self.burst < math.inf):
            raise ValueError(f"burst must be at least 1 and finite, not {self.burst}")
        if self.sliding and self.burst != int(self.burst):
            raise ValueError(f"a sliding window's count must be whole, not {self.burst}")

    @classmethod
    def per(cls, count: float, seconds: float, *, burst: float | None = None) -> Rate:
        """``count`` calls per ``seconds``; with no ``burst``, one call at a time."""
        if seconds <= 0:
            raise ValueError(f"seconds must be positive, not {seconds}")
        return cls(per_second=count / seconds, burst=1.0 if burst is None else burst)

    @classmethod
    def window(cls, count: int, seconds: float) -> Rate:
        """At most ``count`` calls in any ``seconds``: a sliding window."""
        if seconds <= 0:
            raise ValueError(f"seconds must be positive, not {seconds}")
        return cls(per_second=count / seconds, burst=count, sliding=True)

    @property
    def seconds(self) -> float:
        """A sliding window's length."""
        return self.burst / self.per_second


DEFAULT_RATES: Mapping[str, Rate] = MappingProxyType(
    {
        # Each keeps burst + count <= the platform's limit, so no window of the platform's
        # length ever holds more calls than it allows.
        # Slack Tier 3 (chat.update): about 50 a minute per workspace.
        "slack.workspace": Rate.per(45, 60, burst=5),
        # Slack chat.postMessage: about 1 a second per channel, short bursts allowed (kept
        # within 10 in any 10 s).
        "slack.channel": Rate.per(8, 10, burst=2),
        # Slack native streaming, per workspace: chat.startStream and chat.stopStream are Tier 2
        # (20+ a minute), each method its own window as Slack counts them. Spent in bursts
        # (answers asked together), so counted as Slack counts, in a sliding window — one call
        # short of the limit and a second longer than its minute, for the calls in flight at
        # the window's edges (at 60 s bench.edits met one 429 in 425 calls): bench.edits, 20
        # answers asked within 30 s, auto's p95 staleness 0.70x -> 0.42x of 1 edit/s/process ...
        "slack.stream.start": Rate.window(19, 61),
        "slack.stream.stop": Rate.window(19, 61),
        # ... and chat.appendStream is Tier 4 (100+ a minute).
        "slack.stream.append": Rate.per(90, 60, burst=10),
        # Discord: 5 message creates/edits per 5 s per channel. A steady 4 per 5 s serves many
        # replies in one channel fresher than a burst of 2 (bench.edits: p95 staleness 294 s ->
        # 215 s with 200 replies, 21 s -> 13.5 s with 20, still no 429).
        "discord.channel": Rate.per(4, 5, burst=1),
        # Discord: 50 requests a second per bot, all routes; 10 a second are left for the calls
        # no budget charges (threads, reactions, typing). A global 429 pauses the whole bot.
        "discord.global": Rate.per(30, 1, burst=10),
    }
)
"""Rates by scope kind: the part of a scope's name before ``:``. Other kinds are unlimited."""


def rate_of(rates: Mapping[str, Rate], scope: str) -> Rate | None:
    """``scope``'s rate: its own (``"slack.workspace:T123"``), else its kind's
    (``"slack.workspace"``), else ``None`` (unlimited)."""
    rate = rates.get(scope)
    return rate if rate is not None else rates.get(scope.partition(":")[0])


class EditBudget(Protocol):
    """Rate budgets shared by every reply that names the same scopes."""

    async def acquire(self, scopes: Sequence[str], *, urgent: bool = False) -> None:
        """Wait until every scope has a token, then take one from each, all at once.

        A reply never holds a narrow scope's token while it waits for a broad one. Callers
        naming the same scopes are served in arrival order, ``urgent`` ones first: no other
        caller takes a token of the first (narrowest) scope an urgent caller names while it
        waits — broader scopes are not held for it, so a final text stuck on a busy channel
        does not hold up other channels. A cancelled caller takes nothing and holds nobody up.
        Scopes with no rate never wait.
        """
        ...

    async def try_acquire(self, scopes: Sequence[str]) -> bool:
        """Take a token from every scope if each has one now and nobody waits in line for
        them: True. Else take nothing and return False at once — for a caller choosing between
        two ways by it (Slack's native streaming while a start is free, else an edit)."""
        ...

    def pause(self, scopes: Sequence[str], seconds: float) -> None:
        """The platform answered 429 with ``retry_after=seconds``: nobody acquires from the
        first scope given (the one the 429 was for) until ``seconds`` from now. Its bucket is
        emptied: one token is due when the pause ends (or one token's time from now, if later).
        Broader scopes listed after the first are not paused."""
        ...

    def available(self, scope: str) -> float:
        """Tokens in ``scope``'s bucket now (``inf`` for a scope with no rate)."""
        ...


@dataclass(slots=True)
class _Bucket:
    rate: Rate
    tokens: float
    since: float
    """When ``tokens`` was counted; in the future while paused (it refills from then)."""

    def refill(self, now: float) -> None:
        if now > self.since:
            gained = (now - self.since) * self.rate.per_second
            self.tokens = min(self.rate.burst, self.tokens + gained)
            self.since = now

    def wait(self, now: float) -> float:
        """Seconds until this bucket holds a whole token."""
        self.refill(now)
        if self.tokens >= 1 - _EPSILON:
            return 0.0
        return max(self.since, now) - now + (1 - self.tokens) / self.rate.per_second

    def drain(self, now: float, seconds: float) -> None:
        """Empty the bucket so its next token is due no sooner than ``seconds`` from now."""
        self.refill(now)
        self.tokens = 0.0
        self.since = max(self.since, now, now + seconds - 1 / self.rate.per_second)

    def full(self, now: float) -> bool:
        self.refill(now)
        return self.tokens >= self.rate.burst

    def take(self, now: float) -> None:
        self.tokens -= 1

    def left(self, now: float) -> float:
        self.refill(now)
        return max(0.0, self.tokens)


@dataclass(slots=True)
class _Window:
    """A sliding window: the times of the calls it counts, oldest first. After a pause it is
    full of calls that lapse one by one at the sustained rate from the pause's end, as an
    emptied bucket refills."""

    rate: Rate
    calls: list[float] = field(default_factory=list)

    def _expire(self, now: float) -> None:
        cut = bisect.bisect_right(self.calls, now - self.rate.seconds + _EPSILON)
        if cut:
            del self.calls[:cut]

    def wait(self, now: float) -> float:
        self._expire(now)
        over = len(self.calls) - int(self.rate.burst)
        if over < 0:
            return 0.0
        return max(0.0, self.calls[over] + self.rate.seconds - now)

    def drain(self, now: float, seconds: float) -> None:
        """Full until ``seconds`` from now, then a call at a time at the sustained rate — or
        later, where the window's own calls lapse later (a shorter pause never shortens a
        longer one). Only the last ``count`` calls decide when the next ones fit."""
        self._expire(now)
        count, step = int(self.rate.burst), 1 / self.rate.per_second
        first = now + seconds - self.rate.seconds  # lapses when the pause ends
        last = [-math.inf] * (count - len(self.calls)) + self.calls[-count:]
        self.calls = [max(call, first + k * step) for k, call in enumerate(last)]

    def full(self, now: float) -> bool:
        """Nothing counted: a new window would be the same."""
        self._expire(now)
        return not self.calls

    def take(self, now: float) -> None:
        bisect.insort(self.calls, now)

    def left(self, now: float) -> float:
        self._expire(now)
        return float(max(0, int(self.rate.burst) - len(self.calls)))


@dataclass(slots=True)
class _Line:
    """The callers of one urgency waiting on one set of scopes, in arrival order; the lock's
    holder is next."""

    turn: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiting: int = 0


class TokenBucketBudget:
    """``EditBudget`` in this process: one bucket (or sliding window) per scope name.

    ``rates`` override ``DEFAULT_RATES`` by kind (``"slack.workspace"``) or for one scope
    (``"slack.workspace:T123"``). Buckets are made when a scope is first used and dropped once
    they are full again, so a bot in many channels keeps only its busy ones.

    Each set of scopes has its own line (two: urgent and not), served in arrival order; only
    its head sleeps, until its tokens are due. Lines that share a broad scope (two Discord
    channels, one global bucket) take it in the order their waits end, so a reply stuck on a
    busy channel never holds up a reply in a quiet one. A line that is not urgent also waits
    while an urgent caller waits on one of its scopes (the urgent caller's narrowest).
    """

    def __init__(
        self, rates: Mapping[str, Rate] | None = None, *, clock: Clock | None = None
    ) -> None:
        self._rates = {**DEFAULT_RATES, **(rates or {})}
        self._clock: Clock = clock or RealClock()
        self._buckets: dict[str, _Bucket | _Window] = {}
        self._lines: dict[tuple[bool, tuple[str, ...]], _Line] = {}
        self._urgent: dict[str, int] = {}  # scope -> urgent callers waiting on it
        self._urgent_left = asyncio.Event()  # set (and replaced) when an urgent caller leaves
        self._swept = self._clock.now()

    async def acquire(self, scopes: Sequence[str], *, urgent: bool = False) -> None:
        rates = {scope: rate for scope in scopes if (rate := self._rate(scope)) is not None}
        key = (urgent, tuple(rates))
        if not rates or (
            key not in self._lines
            and not self._yields(rates, urgent)
            and self._try_take(rates) == 0
        ):
            return
        line = self._lines.setdefault(key, _Line())
        line.waiting += 1
        narrowest = key[1][0]
        if urgent:
            self._urgent[narrowest] = self._urgent.get(narrowest, 0) + 1
        try:
            async with line.turn:
                await self._take(rates, urgent)
        finally:
            line.waiting -= 1
            if line.waiting == 0:
                del self._lines[key]
            if urgent:
                self._urgent_leaves(narrowest)

    async def try_acquire(self, scopes: Sequence[str]) -> bool:
        rates = {scope: rate for scope in scopes if (rate := self._rate(scope)) is not None}
        names = tuple(rates)
        if not rates:
            return True
        if (False, names) in self._lines or (True, names) in self._lines:
            return False  # others wait for these tokens: they go first
        return not self._yields(rates, urgent=False) and self._try_take(rates) == 0

    async def _take(self, rates: Mapping[str, Rate], urgent: bool) -> None:
        while True:
            if self._yields(rates, urgent):
                await self._urgent_left.wait()
            elif (wait := self._try_take(rates)) > 0:
                await self._clock.sleep(wait)
            else:
                return

    def _yields(self, rates: Mapping[str, Rate], urgent: bool) -> bool:
        """A caller that is not urgent lets an urgent one waiting on one of its scopes go first."""
        return not urgent and any(scope in self._urgent for scope in rates)

    def _urgent_leaves(self, scope: str) -> None:
        if (left := self._urgent[scope] - 1) > 0:
            self._urgent[scope] = left
        else:
            del self._urgent[scope]
        self._urgent_left.set()
        self._urgent_left = asyncio.Event()

    def pause(self, scopes: Sequence[str], seconds: float) -> None:
        if not scopes or (rate := self._rate(scopes[0])) is None:
            return  # a scope with no rate has no bucket to hold a pause; the caller waits
        now = self._clock.now()
        self._sweep_if_due(now)
        self._bucket(scopes[0], rate, now).drain(now, max(0.0, seconds))

    def available(self, scope: str) -> float:
        if (rate := self._rate(scope)) is None:
            return math.inf
        if (bucket := self._buckets.get(scope)) is None:
            return rate.burst
        return bucket.left(self._clock.now())

    def _try_take(self, rates: Mapping[str, Rate]) -> float:
        """Take a token from every scope if each has one and return 0; else the seconds until
        they all might."""
        now = self._clock.now()
        self._sweep_if_due(now)
        buckets = [self._bucket(scope, rate, now) for scope, rate in rates.items()]
        wait = max(bucket.wait(now) for bucket in buckets)
        if wait == 0:
            for bucket in buckets:
                bucket.take(now)
        return wait

    def _rate(self, scope: str) -> Rate | None:
        return rate_of(self._rates, scope)

    def _bucket(self, scope: str, rate: Rate, now: float) -> _Bucket | _Window:
        bucket = self._buckets.get(scope)
        if bucket is None:
            bucket = _Window(rate) if rate.sliding else _Bucket(rate, tokens=rate.burst, since=now)
            self._buckets[scope] = bucket
        return bucket

    def _sweep_if_due(self, now: float) -> None:
        """Drop the full buckets (a new one would be the same), at most once a minute.

        Never between looking buckets up and taking from them: a dropped bucket would lose
        the charge."""
        if now - self._swept >= _SWEEP_EVERY:
            self._swept = now
            self._buckets = {s: b for s, b in self._buckets.items() if not b.full(now)}
