"""The composition root every bot shares: settings in, a running conversation engine out.

``Runtime.start(settings)`` builds and wires, in one place, the HTTP client, the configured
models (``[[llm.models]]``, or the ``llm.*`` gateway, or the offline model when neither a key
nor a base URL is configured) with an LLM client each, the store, the tools (built-in, and those
of the ``[[tools.mcp]]`` servers, see :func:`open_tools`), the engine, the edit budget and the
Stop requests — and closes them in reverse order when the bot stops.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import aiohttp
import httpx2

from adapters.budget import EditBudget, Rate, TokenBucketBudget
from adapters.redis_budget import open_redis_budget
from bots.offline import MODEL_NAME, OfflineLLMServer
from bots.settings import Settings
from bots.stops import LocalStops, Stops, open_redis_stops
from bots.tools.weather import weather_tool
from core.client import LLMClient, new_http_client, new_stream_session
from core.engine import ConversationEngine, EngineConfig
from core.models import ConfiguredModel, ModelEndpoint, ModelRegistry, configured_endpoints
from core.protocols import protocol_for
from core.settings import OFFLINE_MODEL, LLMSettings
from core.store import open_store
from core.store.base import ConversationStore
from core.tools import ToolRegistry

if TYPE_CHECKING:
    from core.mcp_servers import ToolServers

__all__ = [
    "ModelEndpoint",
    "Runtime",
    "build_tools",
    "edit_budget",
    "edit_rates",
    "enough_open_files",
    "model_endpoint",
    "model_endpoints",
    "model_registry",
    "open_tools",
    "stop_requests",
]

Announce = Callable[[str], None]

FILES_PER_REQUEST = 2
"""Open files to allow per concurrent model request: its socket, and one for what the answer
does beside it (a tool's HTTP call, an attachment's download)."""
FILES_BESIDE = 256
"""Open files to allow for everything else: the store, the platform's connections, logs."""


def enough_open_files(max_concurrent_requests: int, *, announce: Announce) -> int | None:
    """Raise this process's soft limit on open files (``ulimit -n``, often 1,024) to what
    ``max_concurrent_requests`` streams may need, as far as the hard limit allows; announce it
    when the hard limit is lower, so that it shows at start and not as "Too many open files"
    under load. Returns the soft limit now (``None`` where there are no such limits)."""
    if sys.platform == "win32":
        return None
    import resource

    needed = FILES_PER_REQUEST * max_concurrent_requests + FILES_BESIDE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return soft
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < needed:
        announce(
            f"this process may open {target} files (ulimit -n), fewer than the {needed} that "
            f"llm.max_concurrent_requests = {max_concurrent_requests} may need: raise the "
            "limit, or lower the setting"
        )
    return target


@asynccontextmanager
async def model_endpoints(
    settings: Settings, *, announce: Announce, environ: Mapping[str, str] | None = None
) -> AsyncIterator[tuple[ModelEndpoint, ...]]:
    """The configured models' endpoints, keys read from ``environ`` (``os.environ``); with
    neither a table, a key nor a base URL, the offline model alone (named ``offline``), started
    on a free loopback port for as long as the block runs. A keyless base URL (Ollama,
    llama.cpp) is used as configured, never replaced. Each model left out for want of its key
    is announced; a default or fallback model without one raises ``SettingsError``."""
    llm = settings.llm
    if not llm.offline:
        endpoints, left_out = configured_endpoints(llm, os.environ if environ is None else environ)
        for line in left_out:
            announce(line)
        yield endpoints
        return
    async with OfflineLLMServer(pace=llm.offline_pace) as server:
        announce(
            f"no OFOX_API_KEY or base URL is configured, so the offline model answers "
            f"({server.url})"
        )
        yield (_offline_endpoint(llm, server),)


def _offline_endpoint(llm: LLMSettings, server: OfflineLLMServer) -> ModelEndpoint:
    base_url = server.openai_base_url if llm.protocol == "openai" else server.anthropic_base_url
    return ModelEndpoint(
        name=OFFLINE_MODEL, protocol=llm.protocol, base_url=base_url, model=MODEL_NAME,
        supports_images=True, context_budget_tokens=llm.context_budget_tokens, offline=True,
    )  # fmt: skip


@asynccontextmanager
async def model_endpoint(
    settings: Settings, *, announce: Announce, environ: Mapping[str, str] | None = None
) -> AsyncIterator[ModelEndpoint]:
    """The default model's endpoint (see :func:`model_endpoints`)."""
    async with model_endpoints(settings, announce=announce, environ=environ) as endpoints:
        default = settings.llm.resolved_default_model()
        yield next(endpoint for endpoint in endpoints if endpoint.name == default)


def model_registry(
    settings: Settings,
    endpoints: tuple[ModelEndpoint, ...],
    *,
    http: aiohttp.ClientSession | httpx2.AsyncClient,
    read_interval: float | None = None,
) -> ModelRegistry:
    """A client for each endpoint, with the configured default model and fallback chain;
    ``read_interval`` overrides ``llm.read_interval``."""
    llm = settings.llm
    models = [
        ConfiguredModel(
            endpoint=endpoint,
            client=LLMClient(
                http=http,
                protocol=protocol_for(endpoint.protocol),
                base_url=endpoint.base_url,
                api_key=endpoint.api_key,
                timeouts=llm.client_timeouts(),
                read_interval=llm.read_interval if read_interval is None else read_interval,
            ),
        )
        for endpoint in endpoints
    ]
    return ModelRegistry(models, default=llm.resolved_default_model(), fallback=llm.fallback)


def edit_rates(settings: Settings) -> dict[str, Rate]:
    """The configured edit rates, by scope kind (``slack_workspace`` → ``slack.workspace``)."""
    return {
        name.replace("_", "."): Rate.window(int(rate.count), rate.seconds)
        if rate.sliding
        else Rate.per(rate.count, rate.seconds, burst=rate.burst)
        for name, rate in settings.edit_budget
    }


@asynccontextmanager
async def edit_budget(settings: Settings) -> AsyncIterator[EditBudget]:
    """The edit budget at the configured rates: shared through Redis by every process when
    ``redis.url`` is set (its client closed with the block), else this process's own."""
    redis = settings.redis
    if redis.url is None:
        yield TokenBucketBudget(edit_rates(settings))
        return
    async with open_redis_budget(
        redis.url, edit_rates(settings), key_prefix=redis.key_prefix
    ) as budget:
        yield budget


@asynccontextmanager
async def stop_requests(settings: Settings) -> AsyncIterator[Stops]:
    """Stop requests: shared through Redis by every process when ``redis.url`` is set (its
    client closed with the block), else this process's own."""
    redis = settings.redis
    if redis.url is None:
        yield LocalStops()
        return
    async with open_redis_stops(redis.url, key_prefix=redis.key_prefix) as stops:
        yield stops


def build_tools(settings: Settings, http: httpx2.AsyncClient) -> ToolRegistry:
    """The built-in tools the settings enable (see :func:`open_tools` for the MCP servers')."""
    tools = settings.tools
    registry = ToolRegistry(
        default_timeout=tools.timeout + 5, max_result_chars=tools.max_result_chars
    )
    if tools.weather_enabled:
        registry.add(
            weather_tool(
                http=http,
                geocoding_url=str(tools.weather_geocoding_url),
                forecast_url=str(tools.weather_forecast_url),
                timeout=tools.timeout,
            )
        )
    return registry


@asynccontextmanager
async def open_tools(
    settings: Settings, *, http: httpx2.AsyncClient, environ: Mapping[str, str] | None = None
) -> AsyncIterator[tuple[ToolRegistry, ToolServers | None]]:
    """The built-in tools and those of the ``[[tools.mcp]]`` servers that started (``None``
    without servers), the servers closed when the block exits. ``environ`` (``os.environ``)
    gives their ``${VAR}``; one that is not set raises ``SettingsError``."""
    registry = build_tools(settings, http)
    tools = settings.tools
    if not tools.mcp:
        yield registry, None
        return
    # Imported only here: importing the MCP SDK takes about a second of CPU, which a bot
    # without MCP servers (and every other command) should not pay at start.
    from core.mcp_servers import ToolServers

    async with ToolServers.open(
        tools.mcp,
        environ=os.environ if environ is None else environ,
        start_timeout=tools.mcp_start_timeout,
        reconnect_delay=tools.mcp_reconnect_delay,
        reconnect_max_delay=tools.mcp_reconnect_max_delay,
    ) as servers:
        servers.add_to(registry)
        yield registry, servers


@dataclass(frozen=True, slots=True, kw_only=True)
class Runtime:
    settings: Settings
    endpoint: ModelEndpoint
    """The default model's."""
    http: httpx2.AsyncClient
    """The HTTP client of model calls and tools (a readiness probe asks the gateway with it)."""
    client: LLMClient
    """The default model's."""
    store: ConversationStore
    tools: ToolRegistry
    engine: ConversationEngine
    budget: EditBudget
    """Every reply's edits spend from it (see :func:`edit_budget`)."""
    stops: Stops = field(default_factory=LocalStops)
    """A Stop press goes through it, to whichever process writes the answer (see
    :func:`stop_requests`)."""

    @property
    def models(self) -> ModelRegistry:
        """Every configured model, the default and the fallback chain (the engine's)."""
        return self.engine.models

    @classmethod
    @asynccontextmanager
    async def start(
        cls,
        settings: Settings,
        *,
        announce: Announce,
        store: ConversationStore | None = None,
        environ: Mapping[str, str] | None = None,
        read_interval: float | None = None,
    ) -> AsyncIterator[Runtime]:
        """Everything a bot needs, closed when the block exits. ``store`` overrides the
        configured one (``relaybot ask`` keeps nothing); ``environ`` (``os.environ``) holds
        the keys ``[[llm.models]]`` tables name; ``read_interval`` overrides
        ``llm.read_interval`` (the terminal shows every token as it comes)."""
        llm = settings.llm
        enough_open_files(llm.max_concurrent_requests, announce=announce)
        async with AsyncExitStack() as stack:
            endpoints = await stack.enter_async_context(
                model_endpoints(settings, announce=announce, environ=environ)
            )
            budget = await stack.enter_async_context(edit_budget(settings))
            stops = await stack.enter_async_context(stop_requests(settings))
            http = await stack.enter_async_context(
                new_http_client(max_connections=llm.max_concurrent_requests + 16)
            )
            streams = await stack.enter_async_context(  # model streams: aiohttp, cheaper per token
                new_stream_session(max_connections=llm.max_concurrent_requests + 16)
            )
            if store is None:
                store = await open_store(  # only the default location's directory is made
                    settings.store.resolved_url(),
                    make_directories=settings.store.url is None,
                    blob_max_bytes=settings.store.blob_max_bytes,
                )
                stack.push_async_callback(store.close)
            models = model_registry(settings, endpoints, http=streams, read_interval=read_interval)
            default = models.default
            assert isinstance(default.client, LLMClient)  # model_registry made it
            tools, _ = await stack.enter_async_context(
                open_tools(settings, http=http, environ=environ)
            )
            config = EngineConfig(
                model=default.endpoint.model,
                system_prompt=llm.system_prompt,
                max_tokens=llm.max_tokens,
                temperature=llm.temperature,
                max_rounds=llm.max_rounds,
                context_budget_tokens=default.endpoint.context_budget_tokens,
                max_concurrent_requests=llm.max_concurrent_requests,
            )
            engine = ConversationEngine(
                models=models, store=store, tools=tools, config=config, retry=llm.retry_policy()
            )
            yield cls(
                settings=settings,
                endpoint=default.endpoint,
                http=http,
                client=default.client,
                store=store,
                tools=tools,
                engine=engine,
                budget=budget,
                stops=stops,
            )
