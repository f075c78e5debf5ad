"""A loopback Slack Socket Mode server: ``apps.connections.open`` and the websocket it hands out.

    async with FakeSocketMode(app_token="xapp-1-test") as socket_mode:
        web_client = AsyncWebClient(base_url=socket_mode.api_url)   # for apps.connections.open
        ...                                                         # connect a client
        await socket_mode.connected()
        envelope_id = await socket_mode.send_event({"type": "app_mention", ...})
        assert await socket_mode.ack(envelope_id) == {"envelope_id": envelope_id}

``POST {api_url}apps.connections.open`` with ``Authorization: Bearer xapp-…`` (the app-level
token) answers ``{"ok": true, "url": "ws://127.0.0.1:PORT/link/?ticket=…&app_id=…"}``, as
Slack does; any other token answers ``invalid_auth`` (a bot token ``xoxb-…``:
``not_allowed_token_type``). The websocket sends the ``hello`` envelope on connect; the test
then pushes envelopes (:meth:`FakeSocketMode.send_event` wraps an event in ``events_api`` and an
``event_callback``, :meth:`FakeSocketMode.push` sends any envelope) and reads what the client
sent back: every text frame is recorded in :attr:`FakeSocketMode.received` (when each
envelope was acknowledged in :attr:`FakeSocketMode.acked_at`), and :meth:`FakeSocketMode.ack`
waits for the frame acknowledging an envelope.

Only the Web API method Socket Mode itself needs lives here; the bot's other Web API calls go to
the fake Slack Web API (``tests/fakes/slack_api.py``). A bot that reaches both through one base
URL, as it reaches Slack, is given :attr:`FakeSocketMode.api_url` with ``web_api`` set to the
fake Web API's: every other method is passed on to it unchanged.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from typing import Any

from aiohttp import ClientSession, WSMsgType, web

from bots.loopback import LoopbackServer

__all__ = ["FakeSocketMode"]


class FakeSocketMode(LoopbackServer):
    """An aiohttp server on ``127.0.0.1`` (port 0 = ephemeral) playing Slack's Socket Mode.

    The app, team and bot user default to those of the fake Web API (``A1``, ``T1``, ``UBOT``).
    """

    def __init__(
        self,
        *,
        app_token: str = "xapp-1-A1-1-test",
        app_id: str = "A1",
        team_id: str = "T1",
        bot_user_id: str = "UBOT",
        web_api: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.app_token = app_token
        self.app_id = app_id
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.opens = 0  # successful apps.connections.open calls
        self.received: list[dict[str, Any]] = []  # text frames from the client, parsed
        self.acked_at: dict[str, float] = {}  # envelope id -> time.monotonic() of its ack
        self._web_api = web_api
        self._envelopes = (f"fake-envelope-{n}" for n in itertools.count(1))
        self._events = (f"Ev0FAKE{n:04d}" for n in itertools.count(1))
        self._sockets: list[web.WebSocketResponse] = []
        self._connected = asyncio.Event()
        self._arrived = asyncio.Condition()
        app = web.Application()
        app.router.add_post("/api/apps.connections.open", self._connections_open)
        app.router.add_get("/link/", self._link)
        app.router.add_route("*", "/api/{method}", self._pass_on)
        # aiohttp's default shutdown timeout, as before: close() ends the websockets first.
        super().__init__(app, host=host, port=port, shutdown_timeout=60.0)

    @property
    def api_url(self) -> str:
        """The Web API base URL to give the socket-mode client's ``AsyncWebClient``."""
        return f"{self.url}/api/"

    async def close(self) -> None:
        for socket in self._sockets:
            await socket.close()
        await super().close()

    async def connected(self) -> None:
        """Wait until a client holds an open websocket (it has been sent ``hello``)."""
        await self._connected.wait()

    async def push(self, envelope: dict[str, Any]) -> None:
        """Send one envelope, as JSON text, on the newest open websocket."""
        await self.connected()
        await self._sockets[-1].send_str(json.dumps(envelope))

    async def send_event(self, event: dict[str, Any], *, event_id: str | None = None) -> str:
        """Push ``event`` as Slack delivers it in Socket Mode; returns the envelope id."""
        envelope_id = next(self._envelopes)
        await self.push(
            {
                "envelope_id": envelope_id,
                "type": "events_api",
                "accepts_response_payload": False,
                "retry_attempt": 0,
                "retry_reason": "",
                "payload": {
                    "token": "fake-verification-token",
                    "team_id": self.team_id,
                    "api_app_id": self.app_id,
                    "event": event,
                    "type": "event_callback",
                    "event_id": event_id or next(self._events),
                    "event_time": int(time.time()),
                    "authorizations": [
                        {
                            "enterprise_id": None,
                            "team_id": self.team_id,
                            "user_id": self.bot_user_id,
                            "is_bot": True,
                            "is_enterprise_install": False,
                        }
                    ],
                    "is_ext_shared_channel": False,
                },
            }
        )
        return envelope_id

    async def ack(self, envelope_id: str) -> dict[str, Any]:
        """The frame the client sent back for ``envelope_id`` (waits for it: bound the wait
        with ``asyncio.timeout``)."""

        def find() -> dict[str, Any] | None:
            return next((m for m in self.received if m.get("envelope_id") == envelope_id), None)

        async with self._arrived:
            await self._arrived.wait_for(lambda: find() is not None)
        found = find()
        assert found is not None
        return found

    async def _connections_open(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token != self.app_token:
            error = "not_allowed_token_type" if token.startswith("xoxb-") else "invalid_auth"
            return web.json_response({"ok": False, "error": error})
        self.opens += 1
        host, port = self._runner.addresses[0][:2]
        url = f"ws://{host}:{port}/link/?ticket=fake-ticket-{self.opens}&app_id={self.app_id}"
        return web.json_response({"ok": True, "url": url})

    async def _pass_on(self, request: web.Request) -> web.Response:
        if self._web_api is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        url = self._web_api + request.match_info["method"]
        asked = ("Authorization", "Content-Type")
        headers = {name: request.headers[name] for name in asked if name in request.headers}
        async with (
            ClientSession() as session,
            session.request(
                request.method, url, params=request.query, data=await request.read(),
                headers=headers,
            ) as answer,
        ):  # fmt: skip
            said = ("Content-Type", "Retry-After", "x-oauth-scopes")
            headers = {name: answer.headers[name] for name in said if name in answer.headers}
            return web.Response(status=answer.status, body=await answer.read(), headers=headers)

    async def _link(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        self._sockets.append(socket)
        hello = {
            "type": "hello",
            "num_connections": len([s for s in self._sockets if not s.closed]),
            "debug_info": {
                "host": "applink-fake",
                "build_number": 1,
                "approximate_connection_time": 18060,
            },
            "connection_info": {"app_id": self.app_id},
        }
        await socket.send_str(json.dumps(hello))
        self._connected.set()
        async for message in socket:
            if message.type == WSMsgType.TEXT:
                frame = json.loads(message.data)
                async with self._arrived:
                    self.received.append(frame)
                    if isinstance(frame.get("envelope_id"), str):
                        self.acked_at.setdefault(frame["envelope_id"], time.monotonic())
                    self._arrived.notify_all()
        return socket
