"""The gateway websocket at ``/gateway``: HELLO, heartbeats, IDENTIFY → READY and
GUILD_CREATE, RESUME, REQUEST_GUILD_MEMBERS.

``v=10``, ``encoding=json``, ``compress=zlib-stream`` or none. HELLO carries
``heartbeat_interval`` (ms); heartbeats are acked. IDENTIFY is answered with READY, then
GUILD_CREATE for each guild of its shard (all members with the GUILD_MEMBERS intent, else only
the bot; active threads with their ``owner_id``); a ``shard`` that is not ``[id, count]`` with
``0 <= id < count`` closes with 4010. RESUME replays what the session missed, then RESUMED;
REQUEST_GUILD_MEMBERS → GUILD_MEMBERS_CHUNK. A wrong token closes with 4004, a privileged
intent not in ``privileged_intents`` with 4014. A client's clean close (1000, 1001) ends its
session; any other close leaves it resumable.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.fake_discord.sessions import Connection, Session, Sessions
from tests.fakes.fake_discord.state import State
from tests.fakes.fake_discord.world import (
    APP_ID,
    BOT,
    GUILD,
    INTENT_GUILD_MEMBERS,
    INTENT_GUILDS,
    PRIVILEGED_INTENTS,
    USERS,
    app_flags,
)

DISPATCH, HEARTBEAT, IDENTIFY, PRESENCE, VOICE, RESUME = 0, 1, 2, 3, 4, 6
REQUEST_MEMBERS, INVALID_SESSION, HELLO, HEARTBEAT_ACK = 8, 9, 10, 11
"""Gateway opcodes."""


class Gateway:
    """Serves the gateway: one :class:`~tests.fakes.fake_discord.sessions.Connection` per
    websocket, sessions kept in :class:`~tests.fakes.fake_discord.sessions.Sessions`."""

    def __init__(
        self,
        sessions: Sessions,
        state: State,
        *,
        token: str,
        privileged_intents: int,
        heartbeat_interval: int,
    ) -> None:
        self.url = ""
        """This gateway's address, sent as ``resume_gateway_url``; set once serving."""
        self.identify: dict[str, Any] | None = None
        self.ready = asyncio.Event()
        self.heartbeats = 0
        self.connections: list[Connection] = []
        """Every websocket served so far, closed ones included, in order."""
        self._sessions, self._state = sessions, state
        self._token, self._privileged = token, privileged_intents
        self._heartbeat_interval = heartbeat_interval
        self._connections: list[Connection] = []

    async def close_all(self, code: int, reason: str) -> None:
        for connection in list(self._connections):
            await connection.close(code, reason)

    async def endpoint(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        compress = request.query.get("compress")
        if request.query.get("v", "10") != "10":
            await ws.close(code=4012, message=b"Invalid API version.")
            return ws
        if request.query.get("encoding", "json") != "json" or compress not in (None, "zlib-stream"):
            await ws.close(code=4002, message=b"Error while decoding payload.")
            return ws
        connection = Connection(ws, compress=compress is not None)
        self._connections.append(connection)
        self.connections.append(connection)
        try:
            await connection.send(HELLO, {"heartbeat_interval": self._heartbeat_interval})
            async for frame in ws:
                try:
                    payload = json.loads(frame.data) if frame.type is WSMsgType.TEXT else None
                except ValueError:
                    payload = None
                if not isinstance(payload, dict):
                    await connection.close(4002, "Error while decoding payload.")
                    break
                await self._on_op(connection, payload)
        finally:
            self._connections.remove(connection)
            if (session := connection.session) is not None and session.connection is connection:
                session.connection = None
                if ws.close_code in (1000, 1001) and not connection.closed_by_server:
                    self._sessions.end(session)  # the client's clean close ends it
        return ws

    async def _on_op(self, connection: Connection, payload: dict[str, Any]) -> None:
        op, d = payload.get("op"), payload.get("d")
        session = connection.session
        if op == HEARTBEAT:
            self.heartbeats += 1
            await connection.send(HEARTBEAT_ACK, None)
        elif op == IDENTIFY:
            await self._on_identify(connection, d if isinstance(d, dict) else {})
        elif op == RESUME:
            await self._on_resume(connection, d if isinstance(d, dict) else {})
        elif session is None:
            await connection.close(4003, "Not authenticated.")
        elif op == REQUEST_MEMBERS:
            members, nonce = [u.member() for u in USERS.values()], (d or {}).get("nonce")
            chunk = {"guild_id": str(GUILD), "members": members, "chunk_index": 0,
                     "chunk_count": 1, "not_found": [], "nonce": nonce}  # fmt: skip
            await session.dispatch("GUILD_MEMBERS_CHUNK", chunk)
        elif op not in (PRESENCE, VOICE):
            await connection.close(4001, "Unknown opcode.")

    async def _on_identify(self, connection: Connection, d: dict[str, Any]) -> None:
        intents, shard = d.get("intents"), _shard(d.get("shard", [0, 1]))
        if connection.session is not None:
            await connection.close(4005, "Already authenticated.")
        elif d.get("token") != self._token:
            await connection.close(4004, "Authentication failed.")
        elif not isinstance(intents, int):
            await connection.close(4013, "Invalid intent(s).")
        elif intents & PRIVILEGED_INTENTS & ~self._privileged:
            await connection.close(4014, "Disallowed intent(s).")
        elif shard is None:
            await connection.close(4010, "Invalid shard.")
        else:
            self.identify = d
            session = self._sessions.start(intents, connection, shard)
            await session.dispatch("READY", self._ready(session))
            if session.wants(INTENT_GUILDS):
                members = bool(intents & INTENT_GUILD_MEMBERS)
                for guild in self._guilds(session):
                    created = self._state.guild_create(guild, members=members)
                    await session.dispatch("GUILD_CREATE", created)
            self.ready.set()

    def _guilds(self, session: Session) -> list[int]:
        """The guilds whose events the session's shard hears."""
        return [guild for guild in self._state.guilds if session.hears(guild)]

    async def _on_resume(self, connection: Connection, d: dict[str, Any]) -> None:
        session = self._sessions.get(str(d.get("session_id")))
        if d.get("token") != self._token or session is None:
            await connection.send(INVALID_SESSION, False)
            return
        if (old := session.connection) is not None:
            old.session = None
            await old.close(4000, "Resumed elsewhere.")
        connection.session, session.connection = session, connection
        connection.shard = session.shard
        seen = int(d.get("seq") or 0)
        for seq, event, data in list(session.log):
            if seq > seen:
                await connection.send(DISPATCH, data, event, seq)
        await session.dispatch("RESUMED", {})

    def _ready(self, session: Session) -> dict[str, Any]:
        guilds = [{"id": str(guild), "unavailable": True} for guild in self._guilds(session)]
        return {
            "v": 10, "user": BOT.payload() | {"verified": True, "mfa_enabled": False},
            "guilds": guilds, "session_id": session.id, "session_type": "normal",
            "resume_gateway_url": self.url, "shard": list(session.shard),
            "application": {"id": str(APP_ID), "flags": app_flags(self._privileged)},
            "private_channels": [], "relationships": [], "presences": [],
            "guild_join_requests": [], "geo_ordered_rtc_regions": [], "user_settings": {},
        }  # fmt: skip


def _shard(given: Any) -> tuple[int, int] | None:
    """IDENTIFY's ``shard`` as ``(id, count)``, or None when Discord would refuse it."""
    match given:
        case [int(shard_id), int(count)] if 0 <= shard_id < count:
            return shard_id, count
    return None
