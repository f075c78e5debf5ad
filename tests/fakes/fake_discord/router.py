"""What every REST route shares: the ``/api/v10`` prefix, ``Authorization: Bot <token>``, the
rate limits, the record of each call, and Discord's JSON answers.

A missing or wrong token is ``401 {"message": "401: Unauthorized", "code": 0}`` (interaction
callbacks and webhooks carry their interaction token in the path instead); a path that names
no route, or a snowflake that is not a number, is ``404``. A handler answers ``(status,
payload)`` or raises :class:`~tests.fakes.fake_discord.errors.DiscordError`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.fake_discord.errors import DiscordError
from tests.fakes.fake_discord.ratelimits import RateLimits, TooManyRequests

API_PREFIX = "/api/v10"
_NOT_FOUND = {"message": "404: Not Found", "code": 0}

Params = dict[str, Any]
"""Path parameters: snowflakes as ints, tokens and ``@original`` as strings."""
Query = Mapping[str, str]
Answer = tuple[int, Any]
Handler = Callable[[Params, Any, Query], Awaitable[Answer]]


@dataclass(frozen=True)
class Route:
    """``handler`` answers ``method template``; ``bucket`` names a rate-limit bucket it shares
    (else it has its own); ``auth`` is false where the path carries an interaction token."""

    method: str
    template: str
    handler: Handler
    _: KW_ONLY
    bucket: str = ""
    auth: bool = True

    @property
    def name(self) -> str:
        return f"{self.method} {self.template}"


@dataclass(frozen=True, kw_only=True)
class RecordedCall:
    """One REST call as the fake saw it: ``route`` the template (``"POST
    /channels/{channel_id}/messages"``), ``path`` below ``/api/v10``, ``json`` the body
    (``payload_json`` of a multipart one), ``at`` the fake's clock, ``status`` its answer."""

    method: str
    path: str
    route: str
    json: Any
    at: float
    status: int
    query: Mapping[str, str] = field(default_factory=dict)


class Router:
    """Serves routes on an aiohttp app, keeping every call in :attr:`calls`."""

    def __init__(self, *, token: str, limits: RateLimits, clock: Callable[[], float]) -> None:
        self.calls: list[RecordedCall] = []
        self._token, self._limits, self._clock = token, limits, clock

    def install(self, app: web.Application, routes: Iterable[Route]) -> None:
        """Adds the routes, in order (the first that matches answers), then the ``404``."""
        for route in routes:
            app.router.add_route(route.method, API_PREFIX + route.template, self._endpoint(route))
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", _not_found)

    def _endpoint(self, route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def endpoint(request: web.Request) -> web.StreamResponse:
            body, now, query = await _read_body(request), self._clock(), dict(request.query)
            status, payload, headers = await self._answer(route, request, body, query, now)
            self.calls.append(RecordedCall(method=request.method, route=route.name, json=body,
                                           at=now, path=request.path.removeprefix(API_PREFIX),
                                           status=status, query=query))  # fmt: skip
            if status == 204:
                return web.Response(status=204, headers=headers)
            return _json(payload, status=status, headers=headers)

        return endpoint

    async def _answer(
        self, route: Route, request: web.Request, body: Any, query: Query, now: float
    ) -> tuple[int, Any, Mapping[str, str]]:
        if route.auth and request.headers.get("Authorization") != f"Bot {self._token}":
            return 401, {"message": "401: Unauthorized", "code": 0}, {}
        try:
            params = {k: _param(k, v) for k, v in request.match_info.items()}
        except ValueError:
            return 404, _NOT_FOUND, {}
        try:
            headers = self._limits.take(route.bucket or route.name, params, now, bot=route.auth)
        except TooManyRequests as refused:
            return 429, refused.body, refused.headers
        try:
            status, payload = await route.handler(params, body, query)
        except DiscordError as error:
            status, payload = error.status, error.body
        return status, payload, headers


def _json(
    payload: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """A JSON answer with Discord's bare ``Content-Type: application/json`` (discord.py
    compares the header exactly and treats ``; charset=utf-8`` as text)."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {**(headers or {}), "Content-Type": "application/json"}
    return web.Response(body=body, status=status, headers=headers)


async def _not_found(request: web.Request) -> web.StreamResponse:
    return _json(_NOT_FOUND, status=404)


def _param(name: str, value: str) -> int | str:
    """A path parameter: snowflakes as ints (``ValueError`` when not one), the rest as is."""
    if not name.endswith("_id") or value == "@original":
        return value
    return int(value)


async def _read_body(request: web.Request) -> Any:
    if request.content_type == "application/json":
        raw = await request.read()
        return json.loads(raw) if raw else None
    if request.content_type.startswith("multipart/"):
        payload = (await request.post()).get("payload_json")
        return json.loads(payload) if isinstance(payload, str) else None
    return None
