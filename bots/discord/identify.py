"""IDENTIFY spaced across processes: Discord starts at most one gateway session per 5 s in
each bucket (``shard_id % max_concurrency``) and closes the connection of one sent too soon.
discord.py spaces the IDENTIFYs of one process only, so shards split over several processes
would send theirs together.

An :class:`IdentifyGate` is that spacing shared through Redis: before an IDENTIFY, a process
takes the key ``{key_prefix}discord:identify:{bucket}`` with ``SET NX PX <spacing ms>``;
whoever sets it goes, the others poll until it expires. Nobody releases the key: its expiry
is the spacing. A Redis that fails is :class:`IdentifyGateUnavailable`, and the client falls
back to discord.py's own spacing (see :class:`bots.discord.client.ShardedClient`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from adapters.redis_budget import BudgetUnavailable, redacted_url

__all__ = ["IdentifyGate", "IdentifyGateUnavailable", "open_identify_gate"]

REDIS_TIMEOUT = 2.0
"""Seconds a Redis call may take before the gate gives up on Redis (and the shard identifies
with discord.py's spacing instead of waiting on a Redis that does not answer)."""


class IdentifyGateUnavailable(Exception):
    """Redis failed while a shard waited to IDENTIFY. One line, no password."""


class IdentifyGate:
    """One IDENTIFY per ``spacing`` seconds per bucket, for every process on this Redis."""

    def __init__(self, redis: Redis, *, key_prefix: str, spacing: float, where: str) -> None:
        self._redis, self._prefix, self._where = redis, key_prefix, where
        self._spacing_ms = max(1, round(spacing * 1000))

    def key(self, bucket: int) -> str:
        return f"{self._prefix}discord:identify:{bucket}"

    async def take(self, bucket: int) -> None:
        """Return once this process may IDENTIFY in ``bucket``: it set the key, which then
        keeps every other IDENTIFY of the bucket waiting until it expires."""
        key = self.key(bucket)
        while not await self._call(self._redis.set(key, b"1", nx=True, px=self._spacing_ms)):
            left = await self._call(self._redis.pttl(key))
            if left == -1:  # a key without expiry (not ours): give it the spacing
                await self._call(self._redis.pexpire(key, self._spacing_ms))
            await asyncio.sleep(min(max(left, 1), self._spacing_ms) / 1000)

    async def _call(self, call: Awaitable[Any]) -> Any:
        """Await one Redis call; its failure becomes :class:`IdentifyGateUnavailable`."""
        try:
            return await call
        except (RedisError, OSError, TimeoutError) as error:
            raise IdentifyGateUnavailable(
                f"Redis at {self._where} failed ({type(error).__name__})"
            ) from None


@asynccontextmanager
async def open_identify_gate(
    url: str, *, key_prefix: str, spacing: float
) -> AsyncIterator[IdentifyGate]:
    """An :class:`IdentifyGate` on a Redis client of its own, closed with the block. Redis is
    not asked anything until a shard identifies: a Redis that is down then is a log line, not
    a refusal to start (the runtime's budget has checked it already)."""
    where = redacted_url(url)
    try:
        client: Redis = Redis.from_url(
            url, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
        )
    except ValueError as error:
        raise BudgetUnavailable(f"bad Redis URL {where}: {error}") from None
    try:
        yield IdentifyGate(client, key_prefix=key_prefix, spacing=spacing, where=where)
    finally:
        await client.aclose()
