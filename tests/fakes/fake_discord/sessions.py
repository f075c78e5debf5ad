"""Gateway sessions, and who hears each event.

A session outlives its websocket (a :class:`Connection`): it numbers every event it is sent
and keeps the last thousand, so RESUME can replay what it missed. An event goes to every live
session whose intents ask for it and whose shard hears it, connected or not; without
MESSAGE_CONTENT a guild message arrives with empty content unless it is the bot's own or
mentions the bot.

Shards, as on Discord: IDENTIFY's ``shard: [id, count]`` (``[0, 1]`` when absent) picks the
guilds a session hears, ``(guild_id >> 22) % count == id``; DMs, and events of no guild, go to
shard 0 only. Each connection keeps its shard and the events dispatched to it
(:attr:`Connection.dispatched`), so a test can tell which shard heard what.
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
    shard_of,
)


class Connection:
    """One gateway websocket: its ``zlib-stream`` compressor (or none), the session it
    carries once identified, and what it was sent."""

    def __init__(self, ws: web.WebSocketResponse, *, compress: bool) -> None:
        self.ws = ws
        self.zlib = zlib.compressobj() if compress else None
        self.lock = asyncio.Lock()
        self.session: Session | None = None
        self.closed_by_server = False
        self.shard: tuple[int, int] | None = None
        """``(id, count)`` from its IDENTIFY (or RESUME's session); None before either."""
        self.dispatched: list[tuple[str, Any]] = []
        """Each event (name, ``d``) sent over this websocket, in order, replays included."""

    async def send(self, op: int, d: Any, event: str | None = None, seq: int | None = None) -> None:
        text = json.dumps({"op": op, "d": d, "s": seq, "t": event}, separators=(",", ":"))
        async with self.lock:
            if self.ws.closed:
                return
            if event is not None:
                self.dispatched.append((event, d))
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

    def __init__(self, intents: int, shard: tuple[int, int] = (0, 1)) -> None:
        self.id = secrets.token_hex(16)
        self.intents = intents
        self.shard = shard
        self.seq = 0
        self.log: deque[tuple[int, str, Any]] = deque(maxlen=1000)
        self.connection: Connection | None = None

    def wants(self, intent: int) -> bool:
        return intent == 0 or bool(self.intents & intent)

    def hears(self, guild_id: int | None) -> bool:
        """Whether this session's shard gets the events of ``guild_id`` (None: a DM)."""
        shard_id, shard_count = self.shard
        return shard_of(guild_id, shard_count) == shard_id

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

    def start(
        self, intents: int, connection: Connection, shard: tuple[int, int] = (0, 1)
    ) -> Session:
        session = connection.session = Session(intents, shard)
        connection.shard = shard
        session.connection = connection
        self._live[session.id] = session
        return session

    def get(self, session_id: str) -> Session | None:
        return self._live.get(session_id)

    def end(self, session: Session) -> None:
        self._live.pop(session.id, None)

    async def dispatch(self, event: str, data: dict[str, Any], intent: int) -> None:
        """Sends the event to every live session that asked for ``intent`` (0: all) and
        whose shard hears the guild named by ``data["guild_id"]`` (none: shard 0)."""
        guild = data.get("guild_id")
        for session in list(self._live.values()):
            if session.wants(intent) and session.hears(None if guild is None else int(guild)):
                await session.dispatch(event, data)

    async def dispatch_message(self, event: str, message: Message) -> None:
        """MESSAGE_CREATE or MESSAGE_UPDATE, emptied for a session that may not see it."""
        full = message.payload(gateway=True)
        hidden = full | {"content": "", "embeds": [], "attachments": [], "components": []}
        for session in list(self._live.values()):
            if session.wants(_intent(message)) and session.hears(message.guild_id):
                await session.dispatch(event, full if session.sees_content(message) else hidden)

    async def dispatch_delete(self, message: Message) -> None:
        body = {"id": str(message.id), "channel_id": str(message.channel_id)}
        if message.guild_id is not None:
            body["guild_id"] = str(message.guild_id)
        await self.dispatch("MESSAGE_DELETE", body, _intent(message))


def _intent(message: Message) -> int:
    """The intent a message's events go to."""
    return INTENT_GUILD_MESSAGES if message.guild_id else INTENT_DIRECT_MESSAGES
