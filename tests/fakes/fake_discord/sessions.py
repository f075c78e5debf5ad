"""Gateway sessions, and who hears each event.

A session outlives its websocket (a :class:`Connection`): it numbers every event it is sent
and keeps the last thousand, so RESUME can replay what it missed. An event goes to every live
session whose intents ask for it, connected or not; without MESSAGE_CONTENT a guild message
arrives with empty content unless it is the bot's own or mentions the bot.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import zlib
from collections import deque
from typing import Any

from aiohttp import web

from tests.fakes.fake_discord.messages import Message
from tests.fakes.fake_discord.world import (
    BOT,
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MESSAGES,
    INTENT_MESSAGE_CONTENT,
)


class Connection:
    """One gateway websocket: its ``zlib-stream`` compressor (or none), and the session it
    carries once identified."""

    def __init__(self, ws: web.WebSocketResponse, *, compress: bool) -> None:
        self.ws = ws
        self.zlib = zlib.compressobj() if compress else None
        self.lock = asyncio.Lock()
        self.session: Session | None = None
        self.closed_by_server = False

    async def send(self, op: int, d: Any, event: str | None = None, seq: int | None = None) -> None:
        text = json.dumps({"op": op, "d": d, "s": seq, "t": event}, separators=(",", ":"))
        async with self.lock:
            if self.ws.closed:
                return
            try:
                if self.zlib is None:
                    await self.ws.send_str(text)
                else:
                    data = self.zlib.compress(text.encode()) + self.zlib.flush(zlib.Z_SYNC_FLUSH)
                    await self.ws.send_bytes(data)
            except ConnectionError:
                pass

    async def close(self, code: int, reason: str) -> None:
        self.closed_by_server = True
        await self.ws.close(code=code, message=reason.encode())


class Session:
    """A gateway session: it outlives its connection, and RESUME replays what it missed."""

    def __init__(self, intents: int) -> None:
        self.id = secrets.token_hex(16)
        self.intents = intents
        self.seq = 0
        self.log: deque[tuple[int, str, Any]] = deque(maxlen=1000)
        self.connection: Connection | None = None

    def wants(self, intent: int) -> bool:
        return intent == 0 or bool(self.intents & intent)

    def sees_content(self, message: Message) -> bool:
        """Without MESSAGE_CONTENT a guild message arrives empty unless it is the bot's own
        or mentions it."""
        return bool(
            self.intents & INTENT_MESSAGE_CONTENT
            or message.guild_id is None
            or message.author.id == BOT.id
            or any(u.id == BOT.id for u in message.mentions)
        )

    async def dispatch(self, event: str, data: Any) -> None:
        self.seq += 1
        self.log.append((self.seq, event, data))
        if self.connection is not None:
            await self.connection.send(0, data, event, self.seq)  # op 0: dispatch


class Sessions:
    """The live sessions, by id, and the fan-out of each event to them."""

    def __init__(self) -> None:
        self._live: dict[str, Session] = {}

    def start(self, intents: int, connection: Connection) -> Session:
        session = connection.session = Session(intents)
        session.connection = connection
        self._live[session.id] = session
        return session

    def get(self, session_id: str) -> Session | None:
        return self._live.get(session_id)

    def end(self, session: Session) -> None:
        self._live.pop(session.id, None)

    async def dispatch(self, event: str, data: dict[str, Any], intent: int) -> None:
        """Sends the event to every live session that asked for ``intent`` (0: all)."""
        for session in list(self._live.values()):
            if session.wants(intent):
                await session.dispatch(event, data)

    async def dispatch_message(self, event: str, message: Message) -> None:
        """MESSAGE_CREATE or MESSAGE_UPDATE, emptied for a session that may not see it."""
        full = message.payload(gateway=True)
        hidden = full | {"content": "", "embeds": [], "attachments": [], "components": []}
        for session in list(self._live.values()):
            if session.wants(_intent(message)):
                await session.dispatch(event, full if session.sees_content(message) else hidden)

    async def dispatch_delete(self, message: Message) -> None:
        body = {"id": str(message.id), "channel_id": str(message.channel_id)}
        if message.guild_id is not None:
            body["guild_id"] = str(message.guild_id)
        await self.dispatch("MESSAGE_DELETE", body, _intent(message))


def _intent(message: Message) -> int:
    """The intent a message's events go to."""
    return INTENT_GUILD_MESSAGES if message.guild_id else INTENT_DIRECT_MESSAGES
