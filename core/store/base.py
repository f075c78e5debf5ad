"""``ConversationStore``: where threads remember what was said.

A store keeps each conversation's history (its messages, in order), de-duplicates platform
events (``claim``), and keeps the turn journal (:class:`~core.store.journal.TurnJournal`: every
accepted message answered once, in order, across crashes and restarts; its leases keep the
turns of a conversation one at a time, within a process and across processes), and the
feedback people give on answers (:class:`~core.store.feedback.FeedbackLog`), each channel's own
model and prompt (:class:`~core.store.channels.ChannelSettingsStore`) and each user's token
usage (:class:`~core.store.usage.UsageLedger`).
Implementations: ``memory`` (tests, the terminal), ``sqlite`` (the embedded default) and later
``redis`` (several worker processes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from core.messages import ConversationKey, Message
from core.store.channels import ChannelSettingsStore
from core.store.errors import StoreError
from core.store.feedback import FeedbackLog
from core.store.journal import TurnJournal
from core.store.usage import UsageLedger

__all__ = ["ConversationStore", "StoreError"]


class ConversationStore(TurnJournal, FeedbackLog, ChannelSettingsStore, UsageLedger, Protocol):
    async def load(self, key: ConversationKey) -> list[Message]:
        """Every message of the conversation, oldest first; ``[]`` for a new one. Messages of
        no turn (``append``) come first, then each turn's, in the turns' order. Images come
        with their data while the store keeps it (:mod:`core.store.blobs`)."""
        ...

    async def append(self, key: ConversationKey, messages: Sequence[Message]) -> None:
        """Add messages to the conversation, atomically (all or none), belonging to no turn."""
        ...

    async def claim(self, event_id: str, ttl: float) -> bool:
        """True the first time ``event_id`` is claimed within ``ttl`` seconds, else False."""
        ...

    async def check_writes(self) -> None:
        """Raise :class:`StoreError` when a write would fail now (a full disk or database, a
        read-only or damaged file, a lost server), leaving nothing written: whether a message
        could be accepted, asked by a readiness probe as often as every second."""
        ...

    async def close(self) -> None: ...
