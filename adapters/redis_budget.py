"""``RedisBudget``: the ``EditBudget`` every process shares, kept in Redis.

Three workers answering one Slack workspace must split its ``chat.update`` limit, not spend it
three times. ``RedisBudget`` keeps the same buckets as ``TokenBucketBudget`` (the same rates,
overrides and rules; see :mod:`adapters.budget`) in Redis, where every process takes from them:

- A bucket is a hash ``{prefix}budget:{scope}`` (``tokens``, ``since``) that expires once it
  would be full again, so idle buckets vanish (a missing bucket is a full one). A sliding
  window (``Rate.window``) is a sorted set ``{prefix}budget-window:{scope}`` of its calls by
  time (each named by its caller), expiring with its last call.
- One Lua script takes a token from every scope a caller names, or from none and answers how
  long to wait. Time is Redis's ``TIME``, read inside the script: workers' clocks differ, and
  this process's clock never enters the bucket arithmetic.
- An urgent caller (a final text) that has to wait registers in ``{prefix}budget-urgent:{scope}``
  of its narrowest scope, a sorted set scored by when the registration lapses; it renews it
  each time it tries again, so a crashed process holds nobody up for longer than
  ``urgent_ttl``. The script refuses a caller that is not urgent while a scope it names has a
  live registration.
- In this process, callers naming the same scopes queue in arrival order and only the first
  of each queue asks Redis; between attempts it sleeps with the ``sleep`` it was given.

``pause`` and ``available`` are synchronous in ``EditBudget``: ``pause`` sends its write in the
background (this process's next ``acquire`` waits for it to land), and ``available`` is this
process's last look at a bucket (``tokens`` asks Redis).

A Redis that cannot be reached is ``BudgetUnavailable`` (the URL named without its password):
at start from :func:`open_redis_budget`, and while running a warning, after which the caller
waits and tries again — a rate limit is back-pressure, and so is its keeper's absence.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from adapters.budget import DEFAULT_RATES, Rate, rate_of

__all__ = ["BudgetUnavailable", "RedisBudget", "open_redis_budget", "redacted_url"]

log = logging.getLogger("relaybot.budget")

Sleep = Callable[[float], Awaitable[None]]

_RETRY_UNREACHABLE = 1.0
"""Seconds between two attempts while Redis cannot be reached."""

_HELPERS = """
local EPSILON = 1e-9
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
-- The bucket at KEYS[key], refilled to now: tokens, since (never before now).
local function load(key, rate, burst, now)
  local saved = redis.call('HMGET', key, 'tokens', 'since')
  local tokens, since = tonumber(saved[1]) or burst, tonumber(saved[2]) or now
  if now > since then
    tokens, since = math.min(burst, tokens + (now - since) * rate), now
  end
  return tokens, since
end
-- The sliding window at KEYS[key] (a sorted set of calls by time), its lapsed calls dropped:
-- the calls it counts, and the seconds until one more fits (0 when one does).
local function window(key, limit, length, now)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%.6f', now - length + EPSILON))
  local count = redis.call('ZCARD', key)
  local over = count - limit
  if over < 0 then return count, 0 end
  local at = redis.call('ZRANGE', key, over, over, 'WITHSCORES')
  return count, math.max(0, tonumber(at[2]) + length - now)
end
-- Kept until its last call lapses, and a second more.
local function keep_window(key, length, now)
  local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if last[2] then
    redis.call('PEXPIRE', key, math.ceil((tonumber(last[2]) - now + length + 1) * 1000))
  end
end
-- Saved until it would be full again (a missing bucket is a full one), and a second more.
local function save(key, tokens, since, rate, burst, now)
  redis.call('HSET', key, 'tokens', string.format('%.17g', tokens),
             'since', string.format('%.6f', since))
  local full = since - now + (burst - tokens) / rate
  redis.call('PEXPIRE', key, math.ceil((full + 1) * 1000))
end
"""

_TAKE = (
    _HELPERS
    + """
-- KEYS: n buckets (or windows), then their n urgent sets, narrowest scope first.
-- ARGV: urgent (1 or 0), waiter id, urgent_ttl (s), then rate, burst and sliding (1 or 0) of
-- each scope. Returns {took (1 or 0), wait (us), now (us), then tokens and since - now of each
-- scope}.
local n = #KEYS / 2
local urgent, waiter, urgent_ttl = ARGV[1] == '1', ARGV[2], tonumber(ARGV[3])
local now = clock()
local wait = 0
local tokens, since, rates, bursts, sliding = {}, {}, {}, {}, {}
for i = 1, n do
  local rate, burst = tonumber(ARGV[1 + 3 * i]), tonumber(ARGV[2 + 3 * i])
  rates[i], bursts[i], sliding[i] = rate, burst, ARGV[3 + 3 * i] == '1'
  if sliding[i] then
    local count, due = window(KEYS[i], burst, burst / rate, now)
    tokens[i], since[i] = burst - count, now
    wait = math.max(wait, due)
  else
    tokens[i], since[i] = load(KEYS[i], rate, burst, now)
    if tokens[i] < 1 - EPSILON then
      wait = math.max(wait, since[i] - now + (1 - tokens[i]) / rate)
    end
  end
  if not urgent then  -- an urgent caller waiting on this scope goes first: look again soon
    redis.call('ZREMRANGEBYSCORE', KEYS[n + i], '-inf', string.format('%.6f', now))
    if redis.call('ZCARD', KEYS[n + i]) > 0 then
      wait = math.max(wait, math.min(1 / rate, 1))
    end
  end
end
local took = 0
if wait > 0 then
  if urgent then
    redis.call('ZADD', KEYS[n + 1], string.format('%.6f', now + urgent_ttl), waiter)
    redis.call('PEXPIRE', KEYS[n + 1], math.ceil(urgent_ttl * 1000))
  end
else
  took = 1
  for i = 1, n do
    tokens[i] = tokens[i] - 1
    if sliding[i] then
      redis.call('ZADD', KEYS[i], string.format('%.6f', now), waiter)
      keep_window(KEYS[i], bursts[i] / rates[i], now)
    else
      save(KEYS[i], tokens[i], since[i], rates[i], bursts[i], now)
    end
  end
  if urgent then redis.call('ZREM', KEYS[n + 1], waiter) end
end
local answer = {took, math.ceil(wait * 1000000), math.floor(now * 1000000)}
for i = 1, n do
  answer[#answer + 1] = string.format('%.17g', tokens[i])
  answer[#answer + 1] = string.format('%.6f', since[i] - now)
end
return answer
"""
)

_PAUSE = (
    _HELPERS
    + """
-- KEYS[1]: the bucket (or window). ARGV: rate, burst, sliding, seconds. Empty it: its next
-- call is due no sooner than seconds from now, the ones after at its rate. Returns since - now.
local rate, burst, seconds = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[4])
local now = clock()
if ARGV[3] == '1' then
  -- A window full until the pause ends, then a call at a time at its rate, or later where its
  -- own calls lapse later: the k-th of its last burst calls is kept if later than the k-th
  -- filler, else replaced by it (a shorter pause never shortens a longer one).
  local length = burst / rate
  local first = now + seconds - length
  window(KEYS[1], burst, length, now)
  local last = redis.call('ZRANGE', KEYS[1], -burst, -1, 'WITHSCORES')
  local have = #last / 2
  redis.call('DEL', KEYS[1])
  for k = 0, burst - 1 do
    local at, member = first + k / rate, string.format('pause:%.6f:%d', now, k)
    local j = k - (burst - have)  -- this slot's own call, 0-based, when it has one
    if j >= 0 and tonumber(last[2 * j + 2]) > at then
      at, member = tonumber(last[2 * j + 2]), last[2 * j + 1]
    end
    redis.call('ZADD', KEYS[1], string.format('%.6f', at), member)
  end
  keep_window(KEYS[1], length, now)
  return string.format('%.6f', seconds)
end
local _, since = load(KEYS[1], rate, burst, now)
since = math.max(since, now + seconds - 1 / rate)
save(KEYS[1], 0, since, rate, burst, now)
return string.format('%.6f', since - now)
"""
)

_REFUND = (
    _HELPERS
    + """
-- KEYS: buckets (or windows). ARGV: the waiter id, then rate, burst and sliding of each.
-- Gives back the call a cancelled caller took.
local now = clock()
for i = 1, #KEYS do
  local rate, burst = tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i])
  if ARGV[3 * i + 1] == '1' then
    redis.call('ZREM', KEYS[i], ARGV[1])
  else
    local tokens, since = load(KEYS[i], rate, burst, now)
    save(KEYS[i], math.min(burst, tokens + 1), since, rate, burst, now)
  end
end
return 1
"""
)

_TOKENS = (
    _HELPERS
    + """
-- KEYS[1]: the bucket (or window). ARGV: rate, burst, sliding. Its tokens now (nothing
-- written but a window's lapsed calls dropped).
local rate, burst, now = tonumber(ARGV[1]), tonumber(ARGV[2]), clock()
if ARGV[3] == '1' then
  local count = window(KEYS[1], burst, burst / rate, now)
  return string.format('%.17g', burst - count)
end
local tokens = load(KEYS[1], rate, burst, now)
return string.format('%.17g', tokens)
"""
)


class BudgetUnavailable(RuntimeError):
    """The budget's Redis cannot be reached (or answered with an error)."""


def redacted_url(url: str) -> str:
    """``url`` without its password: ``redis://user:pw@host:6379/0`` → ``redis://user@host:6379/0``."""
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if not sep or not at:
        return url
    user = userinfo.partition(":")[0]
    return f"{scheme}://{user + '@' if user else ''}{host}{slash}{path}"


@dataclass(frozen=True, slots=True)
class _Answer:
    took: bool
    wait: float
    """Seconds until every scope might have a token (0 when taken)."""
    at: float
    """Redis's time of the attempt, in seconds."""


@dataclass(slots=True)
class _Waiter:
    """One ``acquire`` call: its scopes' rates, its id in the urgent sets, its call in flight."""

    rates: dict[str, Rate]
    urgent: bool
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    call: asyncio.Task[_Answer] | None = None


@dataclass(slots=True)
class _Line:
    """The callers of this process waiting on one set of scopes with one urgency; the lock's
    holder is next."""

    turn: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiting: int = 0


class RedisBudget:
    """``EditBudget`` shared through Redis by every process using the same ``key_prefix``.

    ``rates`` override ``DEFAULT_RATES`` by kind or for one scope, as in ``TokenBucketBudget``;
    every process should be given the same. ``redis`` is owned by the caller (see
    :func:`open_redis_budget`); ``aclose`` waits for the budget's own background writes.
    """

    def __init__(
        self,
        redis: Redis,
        rates: Mapping[str, Rate] | None = None,
        *,
        key_prefix: str = "relaybot:",
        sleep: Sleep = asyncio.sleep,
        urgent_ttl: float = 10.0,
        where: str = "Redis",
    ) -> None:
        if urgent_ttl <= 0:
            raise ValueError(f"urgent_ttl must be positive, not {urgent_ttl}")
        self._redis = redis
        self._rates = {**DEFAULT_RATES, **(rates or {})}
        self._prefix = key_prefix
        self._sleep = sleep
        self._urgent_ttl = urgent_ttl
        self._where = where
        self._take_script = redis.register_script(_TAKE)
        self._pause_script = redis.register_script(_PAUSE)
        self._refund_script = redis.register_script(_REFUND)
        self._tokens_script = redis.register_script(_TOKENS)
        self._lines: dict[tuple[bool, tuple[str, ...]], _Line] = {}
        self._seen: dict[str, tuple[float, float]] = {}  # scope -> (tokens, since on loop.time())
        self._pauses: set[asyncio.Task[None]] = set()
        self._chores: set[asyncio.Task[None]] = set()

    def bucket_key(self, scope: str) -> str:
        """The key of ``scope``'s bucket, or of its sliding window (a sorted set)."""
        rate = rate_of(self._rates, scope)
        kind = "budget-window" if rate is not None and rate.sliding else "budget"
        return f"{self._prefix}{kind}:{scope}"

    def urgent_key(self, scope: str) -> str:
        return f"{self._prefix}budget-urgent:{scope}"

    async def check(self) -> None:
        """Raise ``BudgetUnavailable`` unless Redis answers."""
        await self._redis_call(self._redis.ping())

    async def aclose(self) -> None:
        """Let the pauses and clean-ups already sent land (a second at most), then stop."""
        tasks = self._pauses | self._chores
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=1.0)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    # --- acquire -------------------------------------------------------------------------------

    async def acquire(self, scopes: Sequence[str], *, urgent: bool = False) -> None:
        rates = {
            scope: rate for scope in scopes if (rate := rate_of(self._rates, scope)) is not None
        }
        if not rates:
            return
        if self._pauses:  # this process's 429s count before its next take
            await asyncio.wait(set(self._pauses))
        waiter = _Waiter(rates, urgent)
        key = (urgent, tuple(rates))
        took = False
        try:
            if key not in self._lines:
                took = (await self._attempt(waiter)).took
            if not took:
                await self._wait_in_line(key, waiter)
                took = True
        finally:
            if not took and (urgent or waiter.call is not None):
                self._spawn(self._chores, self._leave(waiter), f"budget leave {waiter.id}")

    async def try_acquire(self, scopes: Sequence[str]) -> bool:
        rates = {
            scope: rate for scope in scopes if (rate := rate_of(self._rates, scope)) is not None
        }
        if not rates:
            return True
        if self._pauses:  # this process's 429s count before its next take
            await asyncio.wait(set(self._pauses))
        names = tuple(rates)
        if (False, names) in self._lines or (True, names) in self._lines:
            return False  # this process's own callers wait for these tokens: they go first
        # Not urgent: nothing is left registered. A cancellation during the call may lose the
        # token it took, which slows the scope by one call and never breaks its limit.
        return (await self._take(_Waiter(rates, False))).took

    async def _wait_in_line(self, key: tuple[bool, tuple[str, ...]], waiter: _Waiter) -> None:
        line = self._lines.setdefault(key, _Line())
        line.waiting += 1
        try:
            async with line.turn:
                while not (answer := await self._attempt(waiter)).took:
                    renew = self._urgent_ttl / 3  # an urgent caller renews its registration
                    await self._sleep(min(answer.wait, renew) if waiter.urgent else answer.wait)
        finally:
            line.waiting -= 1
            if line.waiting == 0:
                del self._lines[key]

    async def _attempt(self, waiter: _Waiter) -> _Answer:
        """One try at taking from every scope. The call runs to its end even if the caller is
        cancelled meanwhile (``_leave`` then gives back what it took)."""
        while True:
            waiter.call = asyncio.ensure_future(self._take(waiter))
            try:
                answer = await asyncio.shield(waiter.call)
            except BudgetUnavailable as error:
                log.warning("edit budget: %s; trying again in %.0f s", error, _RETRY_UNREACHABLE)
                waiter.call = None
                await self._sleep(_RETRY_UNREACHABLE)
                continue
            waiter.call = None
            return answer

    async def _take(self, waiter: _Waiter) -> _Answer:
        scopes = list(waiter.rates)
        args: list[str | float] = ["1" if waiter.urgent else "0", waiter.id, self._urgent_ttl]
        for rate in waiter.rates.values():
            args += _rate_args(rate)
        keys = [self.bucket_key(s) for s in scopes] + [self.urgent_key(s) for s in scopes]
        reply = await self._redis_call(self._take_script(keys=keys, args=args))
        took, wait_us, now_us, *state = reply
        here = asyncio.get_running_loop().time()
        for scope, tokens, ahead in zip(scopes, state[::2], state[1::2], strict=True):
            self._seen[scope] = (float(tokens), here + float(ahead))
        return _Answer(took=bool(took), wait=int(wait_us) / 1e6, at=int(now_us) / 1e6)

    async def _leave(self, waiter: _Waiter) -> None:
        """A caller gone without its token: what its last call took is given back, and its
        urgent registration removed (after that call, which might have renewed it)."""
        if waiter.call is not None:
            try:
                answer = await waiter.call
            except BudgetUnavailable:
                answer = None
            if answer is not None and answer.took:
                args: list[str | float] = [waiter.id]
                for rate in waiter.rates.values():
                    args += _rate_args(rate)
                keys = [self.bucket_key(scope) for scope in waiter.rates]
                await self._redis_call(self._refund_script(keys=keys, args=args))
        if waiter.urgent:
            narrowest = next(iter(waiter.rates))
            await self._redis_call(self._redis.zrem(self.urgent_key(narrowest), waiter.id))

    # --- pause and available -------------------------------------------------------------------

    def pause(self, scopes: Sequence[str], seconds: float) -> None:
        if not scopes or (rate := rate_of(self._rates, scopes[0])) is None:
            return  # a scope with no rate has no bucket to hold a pause; the caller waits
        scope, seconds = scopes[0], max(0.0, seconds)
        here = asyncio.get_running_loop().time()
        _, since = self._seen.get(scope, (0.0, here))
        self._seen[scope] = (0.0, max(since, here, here + seconds - 1 / rate.per_second))
        self._spawn(self._pauses, self._pause(scope, rate, seconds), f"budget pause {scope}")

    async def _pause(self, scope: str, rate: Rate, seconds: float) -> None:
        args = [*_rate_args(rate), seconds]
        await self._redis_call(self._pause_script(keys=[self.bucket_key(scope)], args=args))

    def available(self, scope: str) -> float:
        """This process's estimate, from its last look at the bucket (``tokens`` asks Redis)."""
        if (rate := rate_of(self._rates, scope)) is None:
            return math.inf
        if (seen := self._seen.get(scope)) is None:
            return rate.burst
        tokens, since = seen
        elapsed = max(0.0, asyncio.get_running_loop().time() - since)
        return max(0.0, min(rate.burst, tokens + elapsed * rate.per_second))

    async def tokens(self, scope: str) -> float:
        """Tokens in ``scope``'s bucket now, as Redis counts them (``inf`` with no rate)."""
        if (rate := rate_of(self._rates, scope)) is None:
            return math.inf
        args = _rate_args(rate)
        reply = await self._redis_call(
            self._tokens_script(keys=[self.bucket_key(scope)], args=args)
        )
        return float(reply)

    # --- the boundary --------------------------------------------------------------------------

    async def _redis_call(self, call: Awaitable[Any]) -> Any:
        """Await one Redis call; its errors become ``BudgetUnavailable``."""
        try:
            return await call
        except (RedisConnectionError, RedisTimeoutError, OSError) as error:
            raise BudgetUnavailable(f"cannot reach Redis at {self._where}: {error}") from None
        except RedisError as error:
            raise BudgetUnavailable(f"Redis at {self._where} failed: {error}") from None

    def _spawn(
        self, owner: set[asyncio.Task[None]], work: Coroutine[Any, Any, None], name: str
    ) -> None:
        task = asyncio.create_task(work, name=name)
        owner.add(task)
        task.add_done_callback(owner.discard)
        task.add_done_callback(_log_failure)


def _rate_args(rate: Rate) -> list[str | float]:
    """A scope's rate as the scripts read it: per second, burst, sliding (1 or 0)."""
    return [rate.per_second, rate.burst, "1" if rate.sliding else "0"]


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        log.warning("edit budget: %s failed: %s", task.get_name(), error)


@asynccontextmanager
async def open_redis_budget(
    url: str, rates: Mapping[str, Rate] | None = None, *, key_prefix: str = "relaybot:"
) -> AsyncIterator[RedisBudget]:
    """A ``RedisBudget`` on a client of its own, checked at once (``BudgetUnavailable`` when
    Redis does not answer) and closed with the block."""
    where = redacted_url(url)
    try:
        client: Redis = Redis.from_url(url)
    except ValueError as error:
        raise BudgetUnavailable(f"bad Redis URL {where}: {error}") from None
    try:
        budget = RedisBudget(client, rates, key_prefix=key_prefix, where=where)
        await budget.check()
        try:
            yield budget
        finally:
            await budget.aclose()
    finally:
        await client.aclose()
