"""Configured models and the fallback chain: settings, the registry the runtime builds, and
turns over two real loopback gateways (the primary and the fallback)."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from datetime import UTC, datetime
from pathlib import Path

import httpx2
import pytest

from bots.runtime import Runtime
from bots.settings import load_settings
from core.client import LLMClient, Timeouts
from core.engine import ConversationEngine, EngineConfig
from core.events import (
    AttemptVoid,
    EngineEvent,
    ModelRetrying,
    TextDelta,
    ToolFinished,
    TurnFailed,
    TurnFinished,
)
from core.messages import AssistantMessage, ConversationKey, Thinking, UserMessage
from core.models import ConfiguredModel, ModelEndpoint, ModelRegistry, configured_endpoints
from core.protocols import AnthropicProtocol, OpenAIProtocol
from core.retry import RetryPolicy
from core.settings import SettingsError
from core.store.journal import Lease
from core.store.memory import MemoryStore
from core.tools import ToolRegistry
from tests.fakes.llm_gateway import Error, FakeGateway, Stream
from tests.fakes.streams import anthropic_events, openai_chunks

KEY = ConversationKey(platform="slack", workspace="T1", channel="C1", thread="1700000000.000100")
CONFIG = EngineConfig(model="unused", system_prompt="You are a test bot.")
ATTEMPTS = 3
NO_WAIT = RetryPolicy(max_attempts=ATTEMPTS, base_delay=0.0, max_delay=0.0, deadline=10.0)
UNAVAILABLE = Error.openai(503, "The server is overloaded, try again later")
NOTE = "\n\n_(answered by backup: primary is unavailable)_"
SECRET = "sk-fast-do-not-print-0123456789"
_orders = itertools.count(1)


# --- turns over two gateways -------------------------------------------------------------------


@pytest.fixture
async def primary() -> AsyncIterator[FakeGateway]:
    async with FakeGateway() as gateway:
        yield gateway


@pytest.fixture
async def backup() -> AsyncIterator[FakeGateway]:
    async with FakeGateway() as gateway:
        yield gateway


class Models:
    """An engine over three configured models — ``primary`` (the default), ``backup`` (its
    fallback) and ``fast`` (chosen per turn) — the first two on gateways of their own."""

    def __init__(self, primary: FakeGateway, backup: FakeGateway, http: httpx2.AsyncClient) -> None:
        self.primary, self.backup, self.http = primary, backup, http
        self.store = MemoryStore()

    def model(
        self, name: str, gateway: FakeGateway, *, anthropic: bool = False, budget: int = 100_000
    ) -> ConfiguredModel:
        base_url = gateway.url if anthropic else gateway.url + "/v1"
        endpoint = ModelEndpoint(
            name=name, protocol="anthropic" if anthropic else "openai", base_url=base_url,
            model=f"{name}/model-id", api_key=f"sk-{name}", context_budget_tokens=budget,
        )  # fmt: skip
        client = LLMClient(
            http=self.http,
            protocol=AnthropicProtocol() if anthropic else OpenAIProtocol(),
            base_url=base_url,
            api_key=endpoint.api_key,
            timeouts=Timeouts(connect=10, read_idle=10, total=30),  # generous under load
        )
        return ConfiguredModel(endpoint=endpoint, client=client)

    def engine(
        self, *, anthropic: bool = False, backup_budget: int = 100_000
    ) -> ConversationEngine:
        registry = ModelRegistry(
            [
                self.model("primary", self.primary, anthropic=anthropic),
                self.model("backup", self.backup, anthropic=anthropic, budget=backup_budget),
                self.model("fast", self.backup),
            ],
            default="primary",
            fallback=["backup"],
        )
        return ConversationEngine(
            models=registry, store=self.store, tools=ToolRegistry(), config=CONFIG,
            retry=NO_WAIT, now=lambda: datetime(2026, 11, 25, 14, 30, tzinfo=UTC),
        )  # fmt: skip

    async def ask(self, text: str) -> Lease:
        order = f"{next(_orders):06d}"
        await self.store.accept(
            event_id=f"test:{order}", key=KEY, order=order,
            question=UserMessage(text=text, author_id="U1", author_name="Ada"),
            platform="slack", timezone=None, claim_ttl=60,
        )  # fmt: skip
        lease = await self.store.take(KEY, owner="worker-1", lease_seconds=60)
        assert lease is not None
        return lease

    async def turn(
        self, text: str, *, model: str | None = None, engine: ConversationEngine | None = None
    ) -> tuple[Lease, list[EngineEvent]]:
        lease = await self.ask(text)
        async with aclosing((engine or self.engine()).run_turn(lease, model=model)) as events:
            return lease, [event async for event in events]


@pytest.fixture
def models(primary: FakeGateway, backup: FakeGateway, http: httpx2.AsyncClient) -> Models:
    return Models(primary, backup, http)


def text_of(events: list[EngineEvent]) -> str:
    """What a renderer shows: text deltas, rewound at every void."""
    shown: list[str] = []
    mark = 0
    for event in events:
        if isinstance(event, TextDelta):
            shown.append(event.text)
        elif isinstance(event, AttemptVoid):
            del shown[mark:]
        elif isinstance(event, ToolFinished | TurnFinished):
            mark = len(shown)
    return "".join(shown)


async def test_a_primary_answering_503_every_time_hands_the_turn_to_the_fallback(
    models: Models,
) -> None:
    models.primary.enqueue(*[UNAVAILABLE] * ATTEMPTS)
    models.backup.enqueue(Stream(openai_chunks("Hello from the backup.")))
    lease, events = await models.turn("hi")

    assert len(models.primary.requests) == ATTEMPTS
    [asked] = models.backup.requests
    assert asked.json["model"] == "backup/model-id"
    assert asked.headers["authorization"] == "Bearer sk-backup"
    *retries, switch = [event for event in events if isinstance(event, ModelRetrying)]
    assert len(retries) == ATTEMPTS - 1  # the primary's own retries came first
    assert (switch.attempt, switch.wait, switch.busy) == (ATTEMPTS, 0.0, True)
    assert switch.reason.startswith("primary is unavailable (")
    assert switch.reason.endswith("; asking backup")
    final = events[-1]
    assert isinstance(final, TurnFinished)
    assert final.text == text_of(events) == "Hello from the backup." + NOTE
    # The note is for the user: shown and delivered, but not what the model reads next time.
    assert (await models.store.turn(lease.turn.id)).final_text == "Hello from the backup." + NOTE
    history = await models.store.load(KEY)
    assert [m.text for m in history if isinstance(m, AssistantMessage)] == [
        "Hello from the backup."
    ]


async def test_the_fallback_gets_the_history_trimmed_to_its_budget_without_reasoning(
    models: Models,
) -> None:
    old = [UserMessage(text=f"old message {n} " + "x" * 400) for n in range(20)]
    thought = AssistantMessage(
        text="Earlier answer.", thinking=(Thinking(thinking="Let me think.", signature="sig"),)
    )
    await models.store.append(KEY, [*old, thought])
    unavailable = Error.anthropic(529, "overloaded_error", "Overloaded")
    models.primary.enqueue(*[unavailable] * ATTEMPTS)
    models.backup.enqueue(Stream(anthropic_events("Fine.")))
    _, events = await models.turn("go on", engine=models.engine(anthropic=True, backup_budget=1000))

    assert isinstance(events[-1], TurnFinished)
    to_primary = models.primary.requests[0].json["messages"]
    to_backup = models.backup.requests[0].json["messages"]
    # Anthropic joins consecutive user messages: count the old ones by their text.
    assert "old message 0 " in json.dumps(to_primary)
    assert "old message 0 " not in json.dumps(to_backup)
    assert to_backup[-1] == {"role": "user", "content": [{"type": "text", "text": "go on"}]}
    blocks = [
        block["type"]
        for message in (to_primary, to_backup)
        for m in message
        if m["role"] == "assistant" and isinstance(m["content"], list)
        for block in m["content"]
    ]
    assert "thinking" in blocks  # the primary's own history, sent back to it
    assert all(
        block.get("type") != "thinking"
        for m in to_backup
        if m["role"] == "assistant" and isinstance(m["content"], list)
        for block in m["content"]
    )


async def test_a_primary_that_streamed_text_then_broke_is_retried_on_the_primary_only(
    models: Models,
) -> None:
    chunks = openai_chunks("Hello Ada, here is")
    models.primary.enqueue(*[Stream.cut(chunks, after=3)] * ATTEMPTS)
    _, events = await models.turn("hi")

    assert len(models.primary.requests) == ATTEMPTS
    assert models.backup.requests == []
    assert sum(isinstance(event, AttemptVoid) for event in events) == ATTEMPTS - 1
    final = events[-1]
    assert isinstance(final, TurnFailed)
    assert "backup" not in final.message


async def test_a_primary_that_broke_once_after_text_then_answered_needs_no_fallback(
    models: Models,
) -> None:
    chunks = openai_chunks("Hello Ada.")
    models.primary.enqueue(Stream.cut(chunks, after=3), Stream(chunks))
    _, events = await models.turn("hi")

    assert models.backup.requests == []
    final = events[-1]
    assert isinstance(final, TurnFinished)
    assert final.text == text_of(events) == "Hello Ada."


@pytest.mark.parametrize(
    "error",
    [
        Error.openai(400, "Invalid value for 'temperature'", type="invalid_request_error"),
        Error.openai(401, "Incorrect API key provided", type="invalid_request_error"),
        Error.openai(403, "This key may not use this model", type="permission_error"),
    ],
    ids=["bad-request", "auth", "forbidden"],
)
async def test_a_permanent_error_never_falls_back(models: Models, error: Error) -> None:
    models.primary.enqueue(error)
    _, events = await models.turn("hi")

    assert len(models.primary.requests) == 1
    assert models.backup.requests == []
    assert isinstance(events[-1], TurnFailed)
    assert not any(isinstance(event, ModelRetrying) for event in events)


async def test_a_context_too_long_never_falls_back(models: Models) -> None:
    too_long = Error.openai(400, "prompt is too long", code="context_length_exceeded")
    models.primary.enqueue(too_long, too_long)
    _, events = await models.turn("hi")

    assert len(models.primary.requests) == 2  # trimmed harder once, on the primary
    assert models.backup.requests == []
    assert events[-1] == TurnFailed(
        message="This thread is too long for me to continue. Please start a new thread."
    )


async def test_when_the_whole_chain_is_unavailable_the_user_is_told(models: Models) -> None:
    models.primary.enqueue(*[UNAVAILABLE] * ATTEMPTS)
    models.backup.enqueue(*[UNAVAILABLE] * ATTEMPTS)
    _, events = await models.turn("hi")

    assert (len(models.primary.requests), len(models.backup.requests)) == (ATTEMPTS, ATTEMPTS)
    final = events[-1]
    assert isinstance(final, TurnFailed)
    assert final.message.startswith("The language model is unavailable right now")


async def test_a_turn_asked_for_a_model_goes_to_its_gateway_and_model_id(models: Models) -> None:
    models.backup.enqueue(Stream(openai_chunks("Fast answer.")))
    _, events = await models.turn("hi", model="fast")

    assert models.primary.requests == []
    [asked] = models.backup.requests
    assert (asked.path, asked.json["model"]) == ("/v1/chat/completions", "fast/model-id")
    assert asked.headers["authorization"] == "Bearer sk-fast"
    final = events[-1]
    assert isinstance(final, TurnFinished)
    assert final.text == "Fast answer."  # no note: the model asked answered


async def test_a_model_no_longer_configured_gets_the_default(models: Models) -> None:
    models.primary.enqueue(Stream(openai_chunks("Default answer.")))
    _, events = await models.turn("hi", model="retired")

    assert [request.json["model"] for request in models.primary.requests] == ["primary/model-id"]
    assert isinstance(events[-1], TurnFinished)


async def test_an_engine_built_with_one_client_keeps_working(
    primary: FakeGateway, http: httpx2.AsyncClient
) -> None:
    client = LLMClient(
        http=http, protocol=OpenAIProtocol(), base_url=primary.url + "/v1", api_key="sk-test"
    )
    engine = ConversationEngine(
        client=client, store=MemoryStore(), tools=ToolRegistry(), config=CONFIG, retry=NO_WAIT
    )
    assert engine.model == "unused"
    assert engine.models.names() == ("default",)
    with pytest.raises(TypeError):
        ConversationEngine(
            client=client, models=engine.models, store=MemoryStore(), tools=ToolRegistry(),
            config=CONFIG, retry=NO_WAIT,
        )  # fmt: skip


# --- settings ----------------------------------------------------------------------------------

TABLES = """
[llm]
default_model = "smart"
fallback = ["fast"]

[[llm.models]]
name = "smart"
protocol = "anthropic"
model = "anthropic/claude-sonnet-4.5"
api_key_env = "OFOX_API_KEY"
context_budget_tokens = 150000

[[llm.models]]
name = "fast"
base_url = "http://127.0.0.1:9/v1"
model = "openai/gpt-4o-mini"
api_key_env = "FAST_KEY"
supports_images = false

[[llm.models]]
name = "local"
base_url = "http://localhost:11434/v1"
model = "llama3.2"
"""


def config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "relaybot.toml"
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path) -> str:
    with pytest.raises(SettingsError) as caught:
        load_settings(path, environ={})
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_tables_are_read_with_their_defaults(tmp_path: Path) -> None:
    llm = load_settings(config(tmp_path, TABLES), environ={}).llm
    assert llm.model_names() == ("smart", "fast", "local")
    assert (llm.resolved_default_model(), llm.fallback, llm.offline) == ("smart", ("fast",), False)
    smart, fast, local = llm.models
    assert (smart.resolved_base_url(), smart.supports_images) == (
        "https://api.ofox.ai/anthropic",
        True,
    )
    assert (fast.supports_images, local.api_key_env, local.context_budget_tokens) == (
        False,
        None,
        None,
    )


def test_endpoints_read_each_key_from_its_variable(tmp_path: Path) -> None:
    llm = load_settings(config(tmp_path, TABLES), environ={}).llm
    environ = {"OFOX_API_KEY": "sk-ofox-0123456789", "FAST_KEY": f" {SECRET}\n"}
    endpoints, left_out = configured_endpoints(llm, environ)
    assert left_out == []
    assert [(e.name, e.protocol, e.base_url, e.model, e.api_key) for e in endpoints] == [
        ("smart", "anthropic", "https://api.ofox.ai/anthropic", "anthropic/claude-sonnet-4.5",
         "sk-ofox-0123456789"),
        ("fast", "openai", "http://127.0.0.1:9/v1", "openai/gpt-4o-mini", SECRET),
        ("local", "openai", "http://localhost:11434/v1", "llama3.2", ""),
    ]  # fmt: skip
    assert [(e.supports_images, e.context_budget_tokens) for e in endpoints] == [
        (True, 150_000), (False, 100_000), (True, 100_000)
    ]  # fmt: skip
    assert SECRET not in repr(endpoints)


def test_a_used_model_without_its_key_stops_the_start_in_one_line(tmp_path: Path) -> None:
    llm = load_settings(config(tmp_path, TABLES), environ={}).llm
    with pytest.raises(SettingsError) as caught:
        configured_endpoints(llm, {"OFOX_API_KEY": "sk-ofox-0123456789", "FAST_KEY": " "})
    assert str(caught.value) == (
        "config error: llm.models: model 'fast': the variable FAST_KEY is not set (it is the "
        "fallback model); set it, or remove api_key_env for a keyless endpoint"
    )


def test_an_unused_model_without_its_key_is_left_out_with_one_line(tmp_path: Path) -> None:
    text = TABLES + '\n[[llm.models]]\nname = "spare"\nmodel = "m"\napi_key_env = "SPARE_KEY"\n'
    llm = load_settings(config(tmp_path, text), environ={}).llm
    environ = {"OFOX_API_KEY": "sk-ofox-0123456789", "FAST_KEY": SECRET}
    endpoints, left_out = configured_endpoints(llm, environ)
    assert [endpoint.name for endpoint in endpoints] == ["smart", "fast", "local"]
    assert left_out == ["model 'spare': the variable SPARE_KEY is not set, so it cannot be chosen"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            TABLES + '\n[[llm.models]]\nname = "fast"\nmodel = "m"\n',
            "config error: llm.models: two tables are named 'fast': each name must be unique",
        ),
        (
            TABLES.replace('default_model = "smart"', 'default_model = "smrt"'),
            "config error: llm.default_model: names 'smrt', which is not a configured model "
            "(configured: smart, fast, local)",
        ),
        (
            TABLES.replace('fallback = ["fast"]', 'fallback = ["fast", "slow"]'),
            "config error: llm.fallback: names 'slow', which is not a configured model "
            "(configured: smart, fast, local)",
        ),
        (
            TABLES.replace('fallback = ["fast"]', 'fallback = ["smart"]'),
            "config error: llm.fallback: 'smart' is the default model; a fallback must be "
            "another one",
        ),
        (
            TABLES.replace('default_model = "smart"\n', "").replace(
                'fallback = ["fast"]', 'fallback = ["local", "smart"]'
            ),
            "config error: llm.fallback: 'smart' is the default model; a fallback must be "
            "another one",
        ),
        (
            TABLES.replace('default_model = "smart"', 'model = "openai/gpt-4o"'),
            "config error: llm: with [[llm.models]] tables, llm.model would be ignored: "
            "describe the model in a table and name it in llm.default_model",
        ),
        (
            '[llm]\nfallback = ["backup"]\n',
            "config error: llm.fallback: names 'backup', which is not a configured model "
            "(configured: offline)",
        ),
        (
            '[[llm.models]]\nname = "m"\nmodel = "m"\napi_key_env = "$KEY"\n',
            "config error: llm.models.0.api_key_env: should be the name of an environment "
            "variable, such as OFOX_API_KEY",
        ),
        (
            '[[llm.models]]\nname = "two words"\nmodel = "m"\n',
            "config error: llm.models.0.name: should be one word of letters, digits, '.', '_' "
            "and '-' (users type it)",
        ),
    ],
    ids=[
        "duplicate", "unknown-default", "unknown-fallback", "fallback-is-default",
        "fallback-is-first-table", "shorthand-with-tables", "offline-fallback", "variable",
        "name",
    ],
)  # fmt: skip
def test_model_settings_problems_are_one_line(tmp_path: Path, text: str, expected: str) -> None:
    assert error_of(config(tmp_path, text)).startswith(expected)


def test_without_tables_the_shorthand_is_the_model_named_default() -> None:
    llm = load_settings(environ={"OFOX_API_KEY": "sk-ofox-0123456789"}).llm
    assert (llm.model_names(), llm.resolved_default_model(), llm.offline) == (
        ("default",),
        "default",
        False,
    )
    [endpoint] = configured_endpoints(llm, {})[0]
    assert (endpoint.name, endpoint.model, endpoint.api_key) == (
        "default",
        "openai/gpt-4o",
        "sk-ofox-0123456789",
    )
    assert load_settings(environ={}).llm.model_names() == ("offline",)


# --- the runtime -------------------------------------------------------------------------------


async def test_the_offline_model_is_the_one_configured_model_named_offline() -> None:
    lines: list[str] = []
    settings = load_settings(environ={})
    async with Runtime.start(settings, announce=lines.append, store=MemoryStore()) as runtime:
        assert runtime.models.names() == ("offline",)
        assert runtime.models.default.endpoint.offline
        assert runtime.models.fallback == ()
        assert runtime.endpoint is runtime.models.default.endpoint
    assert "the offline model answers" in lines[0]


async def test_the_runtime_builds_every_table_and_asks_the_chosen_one(
    tmp_path: Path, backup: FakeGateway
) -> None:
    text = TABLES.replace("http://127.0.0.1:9/v1", backup.url + "/v1")
    settings = load_settings(config(tmp_path, text), environ={})
    environ = {"OFOX_API_KEY": "sk-ofox-0123456789", "FAST_KEY": SECRET}
    backup.enqueue(Stream(openai_chunks("Quick.")))
    lines: list[str] = []
    store = MemoryStore()
    async with Runtime.start(
        settings, announce=lines.append, store=store, environ=environ
    ) as runtime:
        assert runtime.models.names() == ("smart", "fast", "local")
        assert runtime.engine.model == runtime.endpoint.model == "anthropic/claude-sonnet-4.5"
        assert [model.name for model in runtime.models.fallback] == ["fast"]
        await store.accept(
            event_id="runtime:1", key=KEY, order="000001",
            question=UserMessage(text="hi", author_id="U1", author_name="Ada"),
            platform="slack", timezone=None, claim_ttl=60,
        )  # fmt: skip
        lease = await store.take(KEY, owner="worker-1", lease_seconds=60)
        assert lease is not None
        async with aclosing(runtime.engine.run_turn(lease, model="fast")) as events:
            final = [event async for event in events][-1]
    assert isinstance(final, TurnFinished)
    assert final.text == "Quick."
    [asked] = backup.requests
    assert asked.json["model"] == "openai/gpt-4o-mini"
    assert asked.headers["authorization"] == f"Bearer {SECRET}"
    assert lines == []
    assert all(SECRET not in line for line in lines)
