"""``DirectSessions``: which conversation a Discord DM belongs to.

A DM channel between a person and the bot is one conversation until the person says
``reset`` or stays silent for the idle gap (``discord.dm_idle_hours``); then the next message
starts a new one. A conversation is named by the id of the message that started it, which
becomes the thread part of its ``ConversationKey`` (``("discord", "dm", channel id, that
message id)``), so its history in the store is its own.

Which conversation each channel is in is kept in memory only: after a restart, a person's
next DM starts a new conversation, as after an idle gap (the earlier ones stay in the store).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["DirectSessions"]


@dataclass(slots=True)
class _Session:
    name: str
    last: float


class DirectSessions:
    """The current conversation of each DM channel. ``clock`` gives seconds (monotonic)."""

    def __init__(
        self,
        *,
        idle_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        max_channels: int = 100_000,
    ) -> None:
        self._idle = idle_seconds
        self._clock = clock
        self._max_channels = max_channels
        self._sessions: dict[int, _Session] = {}

    def conversation(self, channel_id: int, message_id: int) -> str:
        """The conversation the DM ``message_id`` belongs to: the channel's current one, or a
        new one named after this message when there is none or it has been idle too long."""
        now = self._clock()
        session = self._sessions.get(channel_id)
        if session is None or now - session.last > self._idle:
            if len(self._sessions) >= self._max_channels:
                self._forget_idle(now)
            session = self._sessions[channel_id] = _Session(str(message_id), now)
        session.last = now
        return session.name

    def current(self, channel_id: int) -> str | None:
        """The channel's conversation as it stands, without counting a message (a deleted
        message is forgotten from it); ``None`` when there is none."""
        session = self._sessions.get(channel_id)
        return session.name if session is not None else None

    def reset(self, channel_id: int) -> None:
        """The channel's next message starts a new conversation."""
        self._sessions.pop(channel_id, None)

    def _forget_idle(self, now: float) -> None:
        """Drop the channels whose next message would start a new conversation anyway."""
        self._sessions = {
            channel: session
            for channel, session in self._sessions.items()
            if now - session.last <= self._idle
        }
