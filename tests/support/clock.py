"""Virtual time for tests and benchmarks: clocks that move only when told to.

- :class:`FakeClock` is an :class:`adapters.clock.Clock` (``now()`` and ``sleep()``): sleepers
  wake as :meth:`FakeClock.advance` moves it.
- :class:`FakeTime` is a plain ``() -> float`` clock (what the stores and Discord's DM sessions
  take): calling it reads :attr:`FakeTime.now`, which a test sets.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools

__all__ = ["FakeClock", "FakeTime", "settle"]


class FakeClock:
    """Virtual time: ``sleep`` waits until ``advance`` moves the clock past its deadline.

    ``await clock.advance(0.5)`` wakes, in deadline order, every sleeper due within the next
    half second, letting each run before the clock moves on — so a test says "3 deltas in
    0.2 s" exactly, without a wall-clock sleep.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._now + seconds, next(self._order), future))
        await future

    @property
    def next_deadline(self) -> float | None:
        """When the earliest sleeper is due, or ``None`` when nobody sleeps."""
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    async def advance(self, seconds: float) -> None:
        """Move the clock forward, waking sleepers as their deadlines pass."""
        target = self._now + seconds
        await settle()
        while (deadline := self.next_deadline) is not None and deadline <= target:
            self._now = max(self._now, deadline)
            while self._sleepers and self._sleepers[0][0] <= self._now:
                _, _, future = heapq.heappop(self._sleepers)
                if not future.done():
                    future.set_result(None)
            await settle()
        self._now = target
        await settle()


class FakeTime:
    """A ``() -> float`` clock that reads :attr:`now`; a test moves it (``time.now += 10``)."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def settle(rounds: int = 20) -> None:
    """Let every ready task run until the event loop has nothing left to do right now."""
    for _ in range(rounds):
        await asyncio.sleep(0)
