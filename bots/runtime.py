"""The composition root every bot shares: settings in, a running conversation engine out.

``Runtime.start(settings)`` builds and wires, in one place, the HTTP client, the model
endpoint (the configured gateway, or the offline model when neither a key nor a base URL is
configured), the LLM client, the store, the tools, the engine, the edit budget and the Stop
requests — and closes them in reverse order when the bot stops.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field

import httpx2

from adapters.budget import EditBudget, Rate, TokenBucketBudget
from adapters.redis_budget import open_redis_budget
from bots.offline import MODEL_NAME, OfflineLLMServer
from bots.settings import Settings
from bots.stops import LocalStops, Stops, open_redis_stops
from bots.tools.weather import weather_tool
from core.client import LLMClient, new_http_client
from core.engine import ConversationEngine, EngineConfig
from core.protocols import protocol_for
from core.store import open_store
from core.store.base import ConversationStore
from core.tools import ToolRegistry

__all__ = [
    "ModelEndpoint",
    "Runtime",
    "build_tools",
    "edit_budget",
    "edit_rates",
    "model_endpoint",
    "stop_requests",
]

Announce = Callable[[str], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelEndpoint:
    """Where model calls go. ``offline`` marks the built-in offline model."""

    protocol: str
    base_url: str
    api_key: str
    model: str
    offline: bool = False

    def __repr__(self) -> str:
        return f"ModelEndpoint(protocol={self.protocol!r}, base_url={self.base_url!r})"


@asynccontextmanager
async def model_endpoint(settings: Settings, *, announce: Announce) -> AsyncIterator[ModelEndpoint]:
    """The configured gateway; with neither a key nor a base URL, the offline model, started
    on a free loopback port for as long as the block runs. A keyless base URL (Ollama,
    llama.cpp) is used as configured, never replaced."""
    llm = settings.llm
    if llm.api_key is not None or llm.base_url is not None:
        key = llm.api_key.get_secret_value() if llm.api_key is not None else ""
        yield ModelEndpoint(
            protocol=llm.protocol,
            base_url=llm.resolved_base_url(),
            api_key=key,
            model=llm.resolved_model(),
        )
        return
    async with OfflineLLMServer(pace=llm.offline_pace) as server:
        announce(
            f"no OFOX_API_KEY or base URL is configured, so the offline model answers "
            f"({server.url})"
        )
        base_url = server.openai_base_url if llm.protocol == "openai" else server.anthropic_base_url
        yield ModelEndpoint(
            protocol=llm.protocol, base_url=base_url, api_key="", model=MODEL_NAME, offline=True
        )


def edit_rates(settings: Settings) -> dict[str, Rate]:
    """The configured edit rates, by scope kind (``slack_workspace`` → ``slack.workspace``)."""
    return {
        name.replace("_", "."): Rate.per(rate.count, rate.seconds, burst=rate.burst)
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


@dataclass(frozen=True, slots=True, kw_only=True)
class Runtime:
    settings: Settings
    endpoint: ModelEndpoint
    http: httpx2.AsyncClient
    """The HTTP client of model calls and tools (a readiness probe asks the gateway with it)."""
    client: LLMClient
    store: ConversationStore
    tools: ToolRegistry
    engine: ConversationEngine
    budget: EditBudget
    """Every reply's edits spend from it (see :func:`edit_budget`)."""
    stops: Stops = field(default_factory=LocalStops)
    """A Stop press goes through it, to whichever process writes the answer (see
    :func:`stop_requests`)."""

    @classmethod
    @asynccontextmanager
    async def start(
        cls,
        settings: Settings,
        *,
        announce: Announce,
        store: ConversationStore | None = None,
    ) -> AsyncIterator[Runtime]:
        """Everything a bot needs, closed when the block exits. ``store`` overrides the
        configured one (``relaybot ask`` keeps nothing)."""
        llm = settings.llm
        async with AsyncExitStack() as stack:
            endpoint = await stack.enter_async_context(model_endpoint(settings, announce=announce))
            budget = await stack.enter_async_context(edit_budget(settings))
            stops = await stack.enter_async_context(stop_requests(settings))
            http = await stack.enter_async_context(
                new_http_client(max_connections=llm.max_concurrent_requests + 16)
            )
            if store is None:
                store = await open_store(  # only the default location's directory is made
                    settings.store.resolved_url(), make_directories=settings.store.url is None
                )
                stack.push_async_callback(store.close)
            client = LLMClient(
                http=http,
                protocol=protocol_for(endpoint.protocol),
                base_url=endpoint.base_url,
                api_key=endpoint.api_key,
                timeouts=llm.client_timeouts(),
            )
            tools = build_tools(settings, http)
            config = EngineConfig(
                model=endpoint.model,
                system_prompt=llm.system_prompt,
                max_tokens=llm.max_tokens,
                temperature=llm.temperature,
                max_rounds=llm.max_rounds,
                context_budget_tokens=llm.context_budget_tokens,
                max_concurrent_requests=llm.max_concurrent_requests,
            )
            engine = ConversationEngine(
                client=client, store=store, tools=tools, config=config, retry=llm.retry_policy()
            )
            yield cls(
                settings=settings,
                endpoint=endpoint,
                http=http,
                client=client,
                store=store,
                tools=tools,
                engine=engine,
                budget=budget,
                stops=stops,
            )
