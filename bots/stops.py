"""Stop across processes: a Stop pressed on one worker stops the answer another one writes.

A Stop press is a *request* (:meth:`Stops.request`), not a call on the local worker: with
``redis.url`` set, :class:`RedisStops` sets ``{prefix}stop:{turn_id}`` (with a TTL) and
publishes the turn id on ``{prefix}stops``. Every process listens on that channel and stops
the answer if it writes it (its :class:`StopTarget`, the worker). Pub/sub loses what is
published while a subscriber reconnects, so the key is the request's lasting copy: the
listener checks it for every answer being written whenever it (re)subscribes, and a worker
checks it when it starts answering a turn (:meth:`Stops.requested`) — an answer started after
the press, or a press made while this process was disconnected, still stops.

Without Redis, :class:`LocalStops` stops this process's worker directly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager
from typing import Any, Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

from adapters.redis_budget import BudgetUnavailable, redacted_url
from bots.tasks import cancel_and_wait

__all__ = ["STOP_TTL", "LocalStops", "RedisStops", "StopTarget", "Stops", "open_redis_stops"]

log = logging.getLogger("relaybot.stops")

STOP_TTL = 600.0
"""Seconds a Stop request is kept: longer than any answer takes to start."""
_RETRY = 1.0
"""Seconds before the listener subscribes again after Redis failed it."""


class StopTarget(Protocol):
    """What stops answers in a process: a :class:`~bots.turns.TurnWorker`."""

    def stop(self, turn_id: int) -> bool:
        """Stop writing that answer; False when it is not written here."""
        ...

    def answering_ids(self) -> Collection[int]:
        """The turns whose answers are being written here."""
        ...


class Stops(Protocol):
    """Stop requests, seen by every process that answers (see the module docstring)."""

    def watch(self, target: StopTarget) -> None:
        """Stop ``target``'s answers when they are requested."""
        ...

    def unwatch(self, target: StopTarget) -> None: ...

    async def request(self, turn_id: int) -> None:
        """Stop that turn's answer, wherever it is written."""
        ...

    async def requested(self, turn_id: int) -> bool:
        """Whether a Stop of that turn was requested (and not yet expired)."""
        ...


class LocalStops:
    """Stops within one process: a request stops the watched workers' answer at once."""

    def __init__(self) -> None:
        self._targets: set[StopTarget] = set()

    def watch(self, target: StopTarget) -> None:
        self._targets.add(target)

    def unwatch(self, target: StopTarget) -> None:
        self._targets.discard(target)

    async def request(self, turn_id: int) -> None:
        _stop_here(self._targets, turn_id)

    async def requested(self, turn_id: int) -> bool:
        return False  # a request reaches a running answer at once, or there is none


class RedisStops:
    """Stop requests shared through Redis by every process using the same ``key_prefix``.

    ``redis`` is owned by the caller (see :func:`open_redis_stops`). :meth:`start` subscribes
    (and returns once subscribed); :meth:`aclose` stops listening.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        key_prefix: str = "relaybot:",
        ttl: float = STOP_TTL,
        where: str = "Redis",
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._redis = redis
        self._prefix = key_prefix
        self._ttl_ms = max(1, round(ttl * 1000))
        self._where = where
        self._sleep = sleep
        self._targets: set[StopTarget] = set()
        self._listener: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()
        self.subscriptions = 0
        """How many times the listener has subscribed (1 after :meth:`start`)."""

    @property
    def channel(self) -> str:
        return f"{self._prefix}stops"

    def key(self, turn_id: int) -> str:
        return f"{self._prefix}stop:{turn_id}"

    def watch(self, target: StopTarget) -> None:
        self._targets.add(target)

    def unwatch(self, target: StopTarget) -> None:
        self._targets.discard(target)

    async def request(self, turn_id: int) -> None:
        """Keep the request (``stop:{turn_id}``, with the TTL) and publish it. If Redis fails,
        the answer is stopped here if it is written here, and the failure logged."""
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(self.key(turn_id), "1", px=self._ttl_ms)
                pipe.publish(self.channel, str(turn_id))
                await pipe.execute()
        except (RedisError, OSError) as error:
            log.warning("Stop of turn %d not shared: Redis at %s failed: %s", turn_id,
                        self._where, error)  # fmt: skip
            _stop_here(self._targets, turn_id)

    async def requested(self, turn_id: int) -> bool:
        try:
            return bool(await self._redis.exists(self.key(turn_id)))
        except (RedisError, OSError) as error:
            log.warning("cannot ask Redis at %s about a Stop of turn %d: %s", self._where,
                        turn_id, error)  # fmt: skip
            return False

    async def start(self) -> None:
        """Start listening; return once subscribed (or raise what ended the listener)."""
        if self._listener is not None:
            raise RuntimeError("already started")
        self._listener = asyncio.create_task(self._listen(), name="stops listener")
        waiter = asyncio.create_task(self._subscribed.wait(), name="stops subscribed")
        await asyncio.wait({waiter, self._listener}, return_when=asyncio.FIRST_COMPLETED)
        await cancel_and_wait(waiter)
        if self._listener.done():
            self._listener.result()

    async def aclose(self) -> None:
        if self._listener is not None:
            await cancel_and_wait(self._listener)

    async def _listen(self) -> None:
        while True:
            try:
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    async for message in pubsub.listen():
                        await self._received(message)
            except (RedisError, OSError) as error:
                log.warning("Stop requests from Redis at %s: %s; subscribing again in %g s",
                            self._where, error, _RETRY)  # fmt: skip
            await self._sleep(_RETRY)

    async def _received(self, message: dict[str, Any]) -> None:
        match message.get("type"):
            case "subscribe":
                self.subscriptions += 1
                await self._check_answering()  # what was published while unsubscribed
                self._subscribed.set()
            case "message":
                data = message.get("data")
                text = data.decode() if isinstance(data, bytes) else str(data)
                if text.isdigit():
                    _stop_here(self._targets, int(text))

    async def _check_answering(self) -> None:
        for target in list(self._targets):
            for turn_id in list(target.answering_ids()):
                if await self.requested(turn_id):
                    target.stop(turn_id)


def _stop_here(targets: Collection[StopTarget], turn_id: int) -> None:
    for target in list(targets):
        if target.stop(turn_id):
            log.info("stopped turn %d", turn_id)


@asynccontextmanager
async def open_redis_stops(url: str, *, key_prefix: str = "relaybot:") -> AsyncIterator[RedisStops]:
    """``RedisStops`` on a client of its own, listening for the block
    (``BudgetUnavailable`` when Redis does not answer)."""
    where = redacted_url(url)
    try:
        client: Redis = Redis.from_url(url)
    except ValueError as error:
        raise BudgetUnavailable(f"bad Redis URL {where}: {error}") from None
    try:
        try:
            await client.ping()
        except (RedisError, OSError) as error:
            raise BudgetUnavailable(f"cannot reach Redis at {where}: {error}") from None
        stops = RedisStops(client, key_prefix=key_prefix, where=where)
        await stops.start()
        try:
            yield stops
        finally:
            await stops.aclose()
    finally:
        await client.aclose()
