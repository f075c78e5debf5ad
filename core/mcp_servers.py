"""MCP tool servers: each configured server's tools, offered to the model like relaybot's own.

    async with ToolServers.open(settings.tools.mcp, environ=os.environ) as servers:
        servers.add_to(registry)        # github__search_issues, … (those that started)
        servers.status("github")        # "up", or "down: <why>"

This is built on the official ``mcp`` SDK, major version 2 (``mcp>=2.3,<3``). Version 2 speaks
HTTP through ``httpx2``, the client relaybot already uses, where 1.x would add ``httpx`` and
``httpcore`` beside it; it negotiates the 2026-07-28 protocol and falls back to the initialize
handshake of older servers by itself (``mode="auto"``), so servers written for 1.x still work.

A server is started (stdio: ``command`` with ``args``) or reached (streamable HTTP: ``url`` with
``headers``) when relaybot starts. One owner task per server enters and exits the SDK's client,
its transport and its session (their anyio cancel scopes must be entered and left by the same
task); calls come from the turns' tasks and go through the session, which hands each request to
the transport over memory streams and waits for its own answer, so it is safe to share.

- A server that fails to start (or to list its tools within ``start_timeout``) is logged in
  one line and offers no tools; the bot starts without them.
- A server whose connection ends (its process exits, its HTTP transport fails) is reconnected
  by the next call, which waits for it within the call's timeout. A reconnection that fails
  is not tried again for ``reconnect_delay`` seconds, doubled after each failure up to
  ``reconnect_max_delay``; meanwhile its calls return an error result at once. A call that was
  running when the connection ended is not repeated: it may have had its effect.
- Every call is bounded by the server's ``timeout`` (the registry's per-tool timeout).
- A stdio server's environment is the SDK's default (``PATH``, ``HOME``, ``USER``…) plus its
  ``env``: relaybot's own tokens never reach it.
- Each call's ``_meta`` carries ``relaybot/user`` (``id``, ``name``, ``platform``, ``workspace``)
  only with ``send_user``; otherwise nothing about the user is sent.

A tool is offered as ``<server>__<tool>``, made to fit the protocols' ``^[a-zA-Z0-9_-]{1,64}$``
(other characters become ``_``; a longer name is cut and ends with a short hash of the whole),
and called by its own name. A name taken twice is refused with one log line. Results become text
(:func:`core.mcp_results.result_text`) wrapped as untrusted data; ``isError`` is an error result.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Self, cast

import anyio
import httpx2
from mcp import Client
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, CallToolResult, Implementation, RequestParamsMeta
from mcp_types import Tool as ListedTool

from core.mcp_results import escape_tool_result, result_frame, result_text
from core.mcp_settings import MCPServerSettings
from core.tools import Tool, ToolContext, ToolFailure, ToolRegistry, ToolText, describe_error

__all__ = ["ServerStatus", "ToolServer", "ToolServers", "tool_name"]

log = logging.getLogger("relaybot.mcp")

_NAME_LIMIT = 64
_UNSAFE_IN_NAMES = re.compile(r"[^A-Za-z0-9_-]")
_DESCRIPTION_CHARS = 1024
_LIST_PAGES = 100
_CLOSE_WAIT = 10.0
USER_META_KEY = "relaybot/user"
_HTTP_TIMEOUT = httpx2.Timeout(30.0, read=300.0)  # the SDK's: a response stream may stay open
Streams = tuple[Any, Any]
"""A transport's read and write streams (the SDK's ``TransportStreams``)."""


def tool_name(server: str, tool: str) -> str:
    """The name the model calls ``server``'s ``tool`` by: ``<server>__<tool>``, other characters
    than letters, digits, ``_`` and ``-`` replaced by ``_``, and a name over 64 characters cut
    to 55 plus ``_`` and 8 hex digits of its hash (so two long names stay apart)."""
    whole = f"{server}__{tool}"
    name = _UNSAFE_IN_NAMES.sub("_", whole)
    if len(name) <= _NAME_LIMIT:
        return name
    digest = hashlib.sha256(whole.encode()).hexdigest()[:8]
    return f"{name[: _NAME_LIMIT - 9]}_{digest}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerStatus:
    """How a server is: ``up``, or ``down`` with why."""

    state: Literal["up", "down"]
    reason: str = ""

    def __str__(self) -> str:
        return self.state if self.state == "up" else f"down: {self.reason}"


class ToolServer:
    """One MCP server: its connection (owned by one task), its listed tools and its calls.

    ``environ`` gives the ``${VAR}`` of ``env`` and ``headers``; ``start_timeout`` bounds each
    connection (starting the server, the handshake and the tool listing); ``clock`` (monotonic
    seconds) times the reconnection backoff.
    """

    def __init__(
        self,
        settings: MCPServerSettings,
        *,
        environ: Mapping[str, str],
        start_timeout: float = 30.0,
        reconnect_delay: float = 1.0,
        reconnect_max_delay: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self._env = settings.resolved_env(environ)  # SettingsError for an unset ${VAR}
        self._headers = settings.resolved_headers(environ)
        self._start_timeout = start_timeout
        self._reconnect_delay = reconnect_delay
        self._reconnect_max_delay = reconnect_max_delay
        self._clock = clock
        self._client: Client | None = None
        self._listed: tuple[ListedTool, ...] = ()
        self._wanted = asyncio.Event()  # a connection is wanted: the owner makes one
        self._lost = asyncio.Event()  # the connection ended (or must end): the owner closes it
        self._attempt: asyncio.Future[str | None] | None = None  # None: connected; else why not
        self._owner: asyncio.Task[None] | None = None
        self._closing = False
        self._was_up = False
        self._failures = 0
        self._retry_at = 0.0
        self._status = ServerStatus(state="down", reason="not started")

    @property
    def status(self) -> ServerStatus:
        return self._status

    @property
    def listed(self) -> tuple[ListedTool, ...]:
        """The tools the server listed when it started, before ``allowed_tools`` and
        ``denied_tools``."""
        return self._listed

    async def start(self) -> bool:
        """Connect and list the tools, within ``start_timeout``. False (and one log line) if the
        server could not be started: it then offers no tools and is not tried again."""
        self._owner = asyncio.create_task(self._own(), name=f"MCP server {self.name}")
        problem = await self._connect()
        if problem is None:
            listed = ", ".join(tool.name for tool in self._listed) or "none"
            log.info("MCP server %s is up; its tools: %s", self.name, listed)
            for wanted in self.settings.allowed_tools:
                if all(tool.name != wanted for tool in self._listed):
                    log.warning("MCP server %s lists no tool named %r (allowed_tools names it)",
                                self.name, wanted)  # fmt: skip
            return True
        log.warning("MCP server %s did not start (%s); its tools are left out", self.name, problem)
        await self.close()
        self._status = ServerStatus(state="down", reason=problem)
        return False

    def tools(self) -> list[Tool]:
        """Its tools, as the model may call them: listed, allowed and not denied."""
        return [
            Tool.from_schema(
                self._caller(listed.name),
                name=tool_name(self.name, listed.name),
                description=_shorten(listed.description or listed.title or ""),
                parameters=listed.input_schema,
                activity=f"Using {self.name}: {listed.name}",
                timeout=self.settings.timeout,
                source=self.name,
                channels=self.settings.channels,
            )
            for listed in self._listed
            if self.settings.offers(listed.name)
        ]

    async def call(
        self, tool: str, arguments: dict[str, Any], context: ToolContext
    ) -> CallToolResult:
        """Call ``tool`` (the server's own name), connecting first if the connection was lost.
        Raises :class:`ToolFailure` when the server cannot be reached or refuses the call."""
        client = await self._connected()
        meta = None
        if self.settings.send_user:
            meta = cast(RequestParamsMeta, {USER_META_KEY: _user(context)})
        try:
            return await client.call_tool(tool, arguments, meta=meta)
        except MCPError as error:
            if error.code == CONNECTION_CLOSED:
                self._lost.set()
                raise ToolFailure(
                    f"the connection to the MCP server {self.name} was lost during the call "
                    "(it may or may not have run); relaybot reconnects on the next call"
                ) from None
            raise ToolFailure(f"the MCP server {self.name} refused the call: {error}") from None

    async def close(self) -> None:
        """Close the connection (a stdio server's process ends with it). A connection being
        made is abandoned; calls waiting for it fail."""
        owner, self._owner = self._owner, None
        if owner is None:
            return
        self._closing = True
        if self._client is None:
            owner.cancel()  # idle, or connecting: nothing to wind down politely
        else:
            self._lost.set()  # the owner closes the connection ...
            self._wanted.set()  # ... and then, wanting none, returns
        try:
            await asyncio.wait({owner}, timeout=_CLOSE_WAIT)
        finally:
            owner.cancel()
            [ended] = await asyncio.gather(owner, return_exceptions=True)
            if isinstance(ended, Exception):
                log.error("MCP server %s: its connection task failed: %s", self.name,
                          describe_error(ended))  # fmt: skip
        self._status = ServerStatus(state="down", reason="closed")

    # --- the connection -----------------------------------------------------------------------

    async def _connected(self) -> Client:
        """The live client, or a new one made by the owner (waited for); ToolFailure while the
        backoff runs or when the reconnection fails."""
        if self._client is not None and not self._lost.is_set():
            return self._client
        if self._owner is None:
            raise ToolFailure(f"the MCP server {self.name} is not running")
        wait = self._retry_at - self._clock()
        if wait > 0:
            raise ToolFailure(
                f"the MCP server {self.name} is unavailable ({self._status.reason}); relaybot "
                f"tries again in {wait:.0f} s"
            )
        problem = await self._connect()
        if problem is not None or self._client is None:
            raise ToolFailure(f"the MCP server {self.name} is unavailable ({problem})")
        return self._client

    async def _connect(self) -> str | None:
        """Ask the owner for a connection and wait for it: ``None`` once connected, else why
        not. Callers that come while it connects share the attempt."""
        if self._attempt is None or self._attempt.done():
            self._attempt = asyncio.get_running_loop().create_future()
            self._wanted.set()
        return await asyncio.shield(self._attempt)

    async def _own(self) -> None:
        """The owner task: makes each connection when one is wanted, holds it until it ends,
        and closes it — all in this one task."""
        try:
            while True:
                await self._wanted.wait()
                self._wanted.clear()
                if self._closing:
                    return
                connecting = True
                try:
                    async with AsyncExitStack() as connection:
                        self._lost.clear()
                        async with asyncio.timeout(self._start_timeout):
                            client = self._client_for(self._lost)
                            await connection.enter_async_context(client)
                            self._listed = await _list_tools(client)
                        connecting = False
                        self._up(client)
                        await self._lost.wait()
                        self._client = None
                    reason = "the connection ended"
                except Exception as error:  # the SDK raises ExceptionGroups of transport errors
                    self._client = None
                    reason = _reason(error)
                if connecting:
                    self._failed(reason)
                elif not self._closing:
                    self._ended(reason)
        finally:
            self._client = None
            self._settle("the connection was closed")

    def _client_for(self, ended: asyncio.Event) -> Client:
        if self.settings.command is not None:
            params = StdioServerParameters(
                command=self.settings.command, args=list(self.settings.args), env=self._env
            )
            transport = _watched(stdio_client(params), ended)
        else:
            assert self.settings.url is not None  # the settings give one or the other
            transport = _watched(_http_transport(self.settings.url, self._headers), ended)
        return Client(transport, client_info=Implementation(name="relaybot", version="1"))

    def _up(self, client: Client) -> None:
        if self._was_up:
            log.info("MCP server %s is up again", self.name)
        self._was_up = True
        self._client = client
        self._failures, self._retry_at = 0, 0.0
        self._status = ServerStatus(state="up")
        self._settle(None)

    def _failed(self, reason: str) -> None:
        """A connection could not be made: the calls waiting for it learn why, and the next
        try waits out the backoff."""
        self._failures += 1
        delay = self._reconnect_delay * 2 ** (self._failures - 1)
        self._retry_at = self._clock() + min(delay, self._reconnect_max_delay)
        self._status = ServerStatus(state="down", reason=reason)
        self._settle(reason)

    def _ended(self, reason: str) -> None:
        """A connection that was up ended; the next call makes a new one at once."""
        self._status = ServerStatus(state="down", reason=reason)
        log.warning("MCP server %s: %s; it is reconnected on its next call", self.name, reason)

    def _settle(self, problem: str | None) -> None:
        if self._attempt is not None and not self._attempt.done():
            self._attempt.set_result(problem)

    def _caller(self, tool: str) -> Callable[[dict[str, Any], ToolContext], Any]:
        async def call(arguments: dict[str, Any], context: ToolContext) -> ToolText:
            result = await self.call(tool, arguments, context)
            text = result_text(result)
            frame, escaped = result_frame(self.name, tool), escape_tool_result(text)
            summary = _first_line(text)
            if result.is_error:
                raise ToolFailure(escaped, summary=summary, frame=frame)
            return ToolText(text=escaped, summary=summary, frame=frame)

        return call


class ToolServers:
    """Every configured MCP server, started together and closed together."""

    def __init__(self, servers: Iterable[ToolServer] = ()) -> None:
        self.servers = tuple(servers)

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        settings: Sequence[MCPServerSettings],
        *,
        environ: Mapping[str, str],
        start_timeout: float = 30.0,
        reconnect_delay: float = 1.0,
        reconnect_max_delay: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> AsyncIterator[ToolServers]:
        """Start every server at once (one that fails is left out, logged), closed on exit.
        Raises :class:`~core.settings_errors.SettingsError` for an unset ``${VAR}``."""
        servers = cls(
            ToolServer(
                each, environ=environ, start_timeout=start_timeout, reconnect_delay=reconnect_delay,
                reconnect_max_delay=reconnect_max_delay, clock=clock,
            )
            for each in settings
        )  # fmt: skip
        async with servers:
            await asyncio.gather(*(server.start() for server in servers.servers))
            yield servers

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.gather(*(server.close() for server in self.servers))

    def status(self, name: str) -> ServerStatus:
        return next(server.status for server in self.servers if server.name == name)

    def add_to(self, registry: ToolRegistry) -> None:
        """Add the tools of the servers that are up to ``registry``; a tool whose name is
        taken (by a built-in tool or another server's) is left out with one log line."""
        for server in self.servers:
            if server.status.state != "up":
                continue
            for each in server.tools():
                try:
                    registry.add(each)
                except ValueError:
                    log.warning("MCP server %s: the tool name %s is taken; this tool is left out",
                                server.name, each.name)  # fmt: skip


# --- transports -----------------------------------------------------------------------------------


@asynccontextmanager
async def _http_transport(url: str, headers: dict[str, str]) -> AsyncIterator[Streams]:
    """Streamable HTTP to ``url`` with ``headers`` on every request, its HTTP client closed
    with it. Redirects are followed by the SDK only within the URL's origin."""
    async with AsyncExitStack() as stack:
        http = httpx2.AsyncClient(headers=headers, timeout=_HTTP_TIMEOUT)
        await stack.enter_async_context(http)
        yield await stack.enter_async_context(streamable_http_client(url, http_client=http))


@asynccontextmanager
async def _watched(transport: Any, ended: asyncio.Event) -> AsyncIterator[Streams]:
    """``transport`` whose read stream sets ``ended`` when it ends (a stdio server's process
    exited, say): the owner closes the connection then, before a call finds it dead."""
    async with transport as (read, write):
        yield _WatchedStream(read, ended), write


class _WatchedStream:
    """A read stream (the SDK's ``ReadStream`` protocol) that sets ``ended`` when it ends or
    fails."""

    def __init__(self, inner: Any, ended: asyncio.Event) -> None:
        self._inner = inner
        self._ended = ended

    @property
    def last_context(self) -> Any:  # the SDK reads the sender's context from its own streams
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> Any:
        try:
            return await self._inner.receive()
        except Exception:  # EndOfStream, ClosedResourceError, BrokenResourceError
            self._ended.set()
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> _WatchedStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


# --- helpers --------------------------------------------------------------------------------------


async def _list_tools(client: Client) -> tuple[ListedTool, ...]:
    tools: list[ListedTool] = []
    cursor: str | None = None
    for _ in range(_LIST_PAGES):
        page = await client.list_tools(cursor=cursor)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if cursor is None:
            break
    return tuple(tools)


def _user(context: ToolContext) -> dict[str, str]:
    return {
        "id": context.user_id,
        "name": context.user_name,
        "platform": context.platform,
        "workspace": context.key.workspace,
    }


def _reason(error: BaseException) -> str:
    """The first real error inside ``error`` (the SDK's task groups wrap them), on one line."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    if isinstance(error, TimeoutError):
        return "it did not answer in time"
    if isinstance(error, MCPError) and error.code == CONNECTION_CLOSED:
        return "it closed the connection"
    return describe_error(error)


def _shorten(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _DESCRIPTION_CHARS else text[: _DESCRIPTION_CHARS - 1] + "…"


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")
