"""``ConversationStore``: where threads remember what was said.

A store keeps each conversation's messages in order, serializes turns of one conversation
(``turn_lock``), and de-duplicates platform events (``claim``). Implementations: ``memory``
(tests, the terminal), ``sqlite`` (the embedded default) and later ``redis`` (several worker
processes).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from core.messages import ConversationKey, Message

__all__ = ["ConversationStore", "StoreError"]


class StoreError(Exception):
    """The store cannot be used: an unreadable or corrupt file, a wrong schema, a lost server.
    The message names the store (never a password) and what is wrong, in one line."""


class ConversationStore(Protocol):
    async def load(self, key: ConversationKey) -> list[Message]:
        """Every message of the conversation, oldest first; ``[]`` for a new one."""
        ...

    async def append(self, key: ConversationKey, messages: Sequence[Message]) -> None:
        """Add messages at the end of the conversation, atomically (all or none)."""
        ...

    def turn_lock(self, key: ConversationKey) -> AbstractAsyncContextManager[None]:
        """Hold while a turn runs: turns of one key run one at a time, in arrival order."""
        ...

    async def claim(self, event_id: str, ttl: float) -> bool:
        """True the first time ``event_id`` is claimed within ``ttl`` seconds, else False."""
        ...

    async def close(self) -> None: ...
