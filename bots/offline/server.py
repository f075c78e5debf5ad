"""The offline model on loopback: an aiohttp server that streams its answers over SSE in both
protocols, as the real gateways do. ``relaybot offline-llm`` runs it through
:func:`run_offline_llm`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable

from aiohttp import web

from bots.loopback import LoopbackServer
from bots.offline.conversation import RequestRejected, Wire
from bots.offline.model import MODEL_NAME, OfflineModel
from bots.offline.sse import Event, anthropic_events, openai_events

__all__ = ["MAX_REQUEST_BYTES", "OfflineLLMServer", "run_offline_llm"]

MAX_REQUEST_BYTES = 64 * 1024 * 1024
"""Requests carry a thread's images as base64 (up to 5 MB each), far past aiohttp's 1 MB."""


class OfflineLLMServer(LoopbackServer):
    """The offline model on loopback, speaking both protocols. Port 0 picks a free port."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        pace: float = 0.03,
        *,
        model: OfflineModel | None = None,
    ) -> None:
        self.pace = pace
        self._model = model or OfflineModel()
        self._closing = asyncio.Event()
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_post("/chat/completions", self._chat_completions)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/models", self._models)
        app.router.add_get("/health", self._health)
        super().__init__(app, host=host, port=port)

    @property
    def openai_base_url(self) -> str:
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url

    async def close(self) -> None:
        """Stop serving; answers still streaming are cut at their next word."""
        self._closing.set()
        await super().close()

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, "openai")

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, "anthropic")

    async def _models(self, request: web.Request) -> web.Response:
        if "anthropic-version" in request.headers:
            model = {"type": "model", "id": MODEL_NAME, "display_name": "relaybot offline model"}
            return web.json_response({"data": [model], "has_more": False})
        entry = {"id": MODEL_NAME, "object": "model", "created": 0, "owned_by": "relaybot"}
        return web.json_response({"object": "list", "data": [entry]})

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "model": MODEL_NAME})

    async def _answer(self, request: web.Request, protocol: Wire) -> web.StreamResponse:
        try:
            body = json.loads(await request.read())
        except (ValueError, RecursionError):
            return _rejected(protocol, "the request body is not valid JSON")
        try:
            if isinstance(body, dict) and not body.get("stream"):
                raise RequestRejected('the offline model only streams: send "stream": true')
            answer = self._model.answer(body, protocol=protocol)
        except RequestRejected as error:
            return _rejected(protocol, str(error))
        if protocol == "anthropic":
            return await self._stream(request, anthropic_events(answer))
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        events = openai_events(answer, include_usage=include_usage, created=int(time.time()))
        return await self._stream(request, events)

    async def _stream(self, request: web.Request, events: Iterable[Event]) -> web.StreamResponse:
        headers = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        try:
            for data, paced in events:
                if paced and self.pace > 0:
                    await self._pause()
                if self._closing.is_set():
                    if request.transport is not None:
                        request.transport.abort()
                    return response
                await response.write(data)
            await response.write_eof()
        except ConnectionError:
            pass  # the client went away mid-answer
        return response

    async def _pause(self) -> None:
        """One pace interval, cut short when the server closes."""
        try:
            async with asyncio.timeout(self.pace):
                await self._closing.wait()
        except TimeoutError:
            pass


def _rejected(protocol: Wire, message: str) -> web.Response:
    """A 400 in the protocol's error shape."""
    if protocol == "openai":
        error = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
        return web.json_response({"error": error}, status=400)
    body = {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    return web.json_response(body, status=400)


async def run_offline_llm(
    *, host: str, port: int, pace: float, announce: Callable[[str], None]
) -> None:
    """Serve the offline model until cancelled (``relaybot offline-llm --port N``)."""
    async with OfflineLLMServer(host=host, port=port, pace=pace) as server:
        announce(
            f"offline model listening on {server.url} "
            f"(OpenAI: {server.openai_base_url}, Anthropic: {server.anthropic_base_url})"
        )
        await asyncio.Event().wait()
