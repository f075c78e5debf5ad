"""``MemoryStore``: conversations kept in this process only (tests, the terminal bot).

Messages are stored serialized, exactly as the SQLite store writes them, so a message that a
file could not hold fails here too and a loaded message never aliases a saved one.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager

from core.messages import ConversationKey, Message
from core.store.base import StoreError
from core.store.codec import decode_message, encode_message
from core.store.locks import KeyedLock

__all__ = ["MemoryStore"]


class MemoryStore:
    """A :class:`~core.store.base.ConversationStore` in a dict; everything is lost on exit.

    ``clock`` gives the time (seconds) that claims expire by.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._conversations: dict[str, list[str]] = {}
        self._claims: dict[str, float] = {}  # event id -> expiry
        self._expiries: list[tuple[float, str]] = []  # a heap, to prune expired claims
        self._locks = KeyedLock()
        self._closed = False

    def __repr__(self) -> str:
        return "MemoryStore()"

    async def load(self, key: ConversationKey) -> list[Message]:
        self._check_open()
        return [decode_message(body) for body in self._conversations.get(str(key), ())]

    async def append(self, key: ConversationKey, messages: Sequence[Message]) -> None:
        self._check_open()
        bodies = [encode_message(message) for message in messages]  # all, before any is kept
        if bodies:
            self._conversations.setdefault(str(key), []).extend(bodies)

    def turn_lock(self, key: ConversationKey) -> AbstractAsyncContextManager[None]:
        return self._locks.hold(str(key))

    async def claim(self, event_id: str, ttl: float) -> bool:
        if ttl <= 0:
            raise ValueError(f"a claim needs a positive ttl, not {ttl}")
        self._check_open()
        now = self._clock()
        self._prune(now)
        if event_id in self._claims:
            return False
        self._claims[event_id] = now + ttl
        heapq.heappush(self._expiries, (now + ttl, event_id))
        return True

    async def close(self) -> None:
        self._closed = True

    def _prune(self, now: float) -> None:
        while self._expiries and self._expiries[0][0] <= now:
            expiry, event_id = heapq.heappop(self._expiries)
            if self._claims.get(event_id) == expiry:
                del self._claims[event_id]

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("memory store: used after close()")
