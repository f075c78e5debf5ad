"""Prometheus metrics: what a weather turn, a Slack 429 and the journal's backlog put in the
registry, and where ``GET /metrics`` is served (the HTTP-mode app, ``--metrics-port``).

The registry is one per process, shared by every test that runs a turn, so each test reads a
metric before and after what it does and compares the difference.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import aclosing

import aiohttp
import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack_surface import SlackSurface
from adapters.surface import Draft, SurfaceRateLimited
from bots.cli import build_parser
from bots.metrics_server import serve_metrics
from bots.tools.weather import weather_tool
from core.client import LLMClient, Timeouts
from core.engine import ConversationEngine, EngineConfig
from core.events import ToolFinished, TurnFinished
from core.messages import ConversationKey, UserMessage
from core.metrics import REGISTRY, SECONDS_BUCKETS, TOKEN_BUCKETS, exposition
from core.protocols import AnthropicProtocol, OpenAIProtocol
from core.retry import RetryPolicy
from core.store.base import ConversationStore
from core.store.journal import Lease
from core.store.memory import MemoryStore
from core.tools import ToolRegistry
from tests import test_slack_bot
from tests.conftest import Spawn
from tests.fakes.llm_gateway import FakeGateway, Stream
from tests.fakes.open_meteo import FakeOpenMeteo
from tests.fakes.slack_api import FakeSlack, ratelimited
from tests.fakes.streams import anthropic_events, openai_chunks
from tests.support import stores
from tests.support.clock import FakeTime
from tests.test_slack_bot import SECRET, TOKEN, WAIT, Harness, relaybot_slack

bot, start = test_slack_bot.bot, test_slack_bot.start  # its fixtures, by the same names

KEY = ConversationKey(platform="slack", workspace="T1", channel="C1", thread="1700000000.000100")
MODEL = "test/metrics-weather"
NO_WAIT = RetryPolicy(max_attempts=1)
TOOL_SECONDS = 0.25
"""Every tool call takes exactly this long on the tools' ticking clock."""


class Delta:
    """Samples of the process-wide registry, as differences from when it was made."""

    def __init__(self) -> None:
        self._before = _samples()

    def __call__(self, name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return _samples().get(key, 0.0) - self._before.get(key, 0.0)


def _samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in REGISTRY.collect()
        for sample in family.samples
    }


def ticking(step: float) -> Callable[[], float]:
    """A clock that moves ``step`` seconds each time it is read."""
    ticks = itertools.count()
    return lambda: next(ticks) * step


def gen_ai(provider: str, **more: str) -> dict[str, str]:
    return {
        "gen_ai_operation_name": "chat",
        "gen_ai_provider_name": provider,
        "gen_ai_request_model": MODEL,
        **more,
    }


def test_buckets_are_the_conventions_advisory_ones() -> None:
    assert tuple(float(4**n) for n in range(14)) == TOKEN_BUCKETS
    assert TOKEN_BUCKETS[-1] == 67_108_864
    assert SECONDS_BUCKETS[0] == 0.01
    assert SECONDS_BUCKETS[-1] == pytest.approx(81.92)
    assert all(b / a == pytest.approx(2) for a, b in itertools.pairwise(SECONDS_BUCKETS))


# --- a weather turn through the real engine -----------------------------------------------------


@pytest.fixture
async def open_meteo() -> AsyncIterator[FakeOpenMeteo]:
    async with FakeOpenMeteo() as fake:
        yield fake


@pytest.mark.parametrize("anthropic", [False, True], ids=["openai", "anthropic"])
async def test_a_weather_turn_counts_tokens_model_calls_and_the_tool(
    gateway: FakeGateway, http: httpx2.AsyncClient, open_meteo: FakeOpenMeteo, anthropic: bool
) -> None:
    provider = "anthropic" if anthropic else "openai"
    arguments = '{"city": "Paris"}'
    if anthropic:
        first = anthropic_events(tool_uses=[("toolu_w", "get_weather", arguments)], usage=(100, 7))
        second = anthropic_events("It is mild in Paris.", usage=(130, 20))
    else:
        first = openai_chunks(tool_calls=[("call_w", "get_weather", arguments)], usage=(100, 7))
        second = openai_chunks("It is mild in Paris.", usage=(130, 20))
    gateway.enqueue(Stream(first), Stream(second))
    client = LLMClient(
        http=http,
        protocol=AnthropicProtocol() if anthropic else OpenAIProtocol(),
        base_url=gateway.url if anthropic else gateway.url + "/v1",
        api_key="sk-test",
        timeouts=Timeouts(connect=10, read_idle=10, total=30),
    )
    store = MemoryStore()
    tools = ToolRegistry(
        [weather_tool(http=http, geocoding_url=open_meteo.url, forecast_url=open_meteo.url)],
        clock=ticking(TOOL_SECONDS),
    )
    engine = ConversationEngine(
        client=client, store=store, tools=tools, retry=NO_WAIT, clock=ticking(0.5),
        config=EngineConfig(model=MODEL, system_prompt="You are a test bot."),
    )  # fmt: skip
    delta = Delta()

    async with aclosing(engine.run_turn(await _taken(store))) as turn:
        events = [event async for event in turn]

    assert isinstance(events[-1], TurnFinished)
    assert [e.ok for e in events if isinstance(e, ToolFinished)] == [True]
    tokens = "gen_ai_client_token_usage"
    assert delta(f"{tokens}_count", **gen_ai(provider, gen_ai_token_type="input")) == 2
    assert delta(f"{tokens}_sum", **gen_ai(provider, gen_ai_token_type="input")) == 230
    assert delta(f"{tokens}_count", **gen_ai(provider, gen_ai_token_type="output")) == 2
    assert delta(f"{tokens}_sum", **gen_ai(provider, gen_ai_token_type="output")) == 27
    # 100 and 130 input tokens: both above 64, both at most 256
    assert delta(f"{tokens}_bucket", **gen_ai(provider, gen_ai_token_type="input", le="64.0")) == 0
    assert delta(f"{tokens}_bucket", **gen_ai(provider, gen_ai_token_type="input", le="256.0")) == 2
    duration = "gen_ai_client_operation_duration_seconds"
    first_chunk = "gen_ai_client_operation_time_to_first_chunk_seconds"
    assert delta(f"{duration}_count", **gen_ai(provider)) == 2
    assert delta(f"{first_chunk}_count", **gen_ai(provider)) == 2
    first_chunk_seconds = delta(f"{first_chunk}_sum", **gen_ai(provider))
    assert 0 < first_chunk_seconds < delta(f"{duration}_sum", **gen_ai(provider))
    tool = {"tool": "get_weather"}
    assert delta("relaybot_tool_calls_total", **tool, outcome="ok") == 1
    assert delta("relaybot_tool_calls_total", **tool, outcome="error") == 0
    assert delta("relaybot_tool_duration_seconds_count", **tool) == 1
    assert delta("relaybot_tool_duration_seconds_sum", **tool) == TOOL_SECONDS
    assert delta("relaybot_model_retries_total", reason="busy") == 0

    families = {family.name for family in text_string_to_metric_families(exposition()[0].decode())}
    assert {"gen_ai_client_token_usage", duration, first_chunk, "relaybot_tool_calls"} <= families


async def _taken(store: MemoryStore) -> Lease:
    turn = await store.accept(
        event_id="test:metrics", key=KEY, order="000001",
        question=UserMessage(text="What's the weather in Paris?", author_id="U1",
                             author_name="Ada"),
        platform="slack", timezone=None, claim_ttl=60,
    )  # fmt: skip
    assert turn is not None
    lease = await store.take(KEY, owner="worker-1", lease_seconds=60)
    assert lease is not None
    return lease


# --- platform calls -----------------------------------------------------------------------------


async def test_a_slack_429_through_the_surface_is_counted_rate_limited() -> None:
    calls = "relaybot_platform_calls_total"
    async with FakeSlack(token=TOKEN) as slack, aiohttp.ClientSession() as session:
        client = AsyncWebClient(token=TOKEN, base_url=slack.api_url, session=session)
        asked = slack.seed_message("C1", "U1", "<@UBOT> hello")
        surface = SlackSurface(client, channel="C1", thread_ts=asked, team="T1")
        delta = Delta()
        ref = await surface.post(Draft(text="Hel"))
        slack.fail("chat.update", ratelimited(retry_after=3))
        with pytest.raises(SurfaceRateLimited):
            await surface.edit(ref, Draft(text="Hello"))

    slack_call = {"platform": "slack"}
    assert delta(calls, **slack_call, method="chat.postMessage", result="ok") == 1
    assert delta(calls, **slack_call, method="chat.update", result="rate_limited") == 1
    assert delta(calls, **slack_call, method="chat.update", result="ok") == 0
    assert delta(calls, **slack_call, method="chat.update", result="error") == 0


# --- the journal's backlog, and where /metrics is served ------------------------------------------


clock, store = stores.clock, stores.store  # the contract fixtures, by the same names


async def test_the_backlog_is_the_queued_turns_and_the_oldest_acceptance(
    store: ConversationStore, clock: FakeTime
) -> None:
    assert await store.backlog() == (0, None)
    await _accept_two(store, clock)  # at 1000 and 1005; the first is taken
    assert await store.backlog() == (1, 1_005.0)


async def _accept_two(store: ConversationStore, clock: FakeTime) -> None:
    for n in (1, 2):
        await store.accept(
            event_id=f"test:backlog:{n}", key=KEY, order=f"{n:06d}",
            question=UserMessage(text="hi", author_id="U1"), platform="slack", claim_ttl=60,
        )  # fmt: skip
        clock.now += 5
    assert await store.take(KEY, owner="worker-1", lease_seconds=60) is not None


async def test_metrics_port_serves_the_backlog_of_queued_turns(
    store: ConversationStore, clock: FakeTime
) -> None:
    await _accept_two(store, clock)
    clock.now = 1_012.0

    async with serve_metrics(store, host="127.0.0.1", port=0, now=clock) as url:
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/metrics")
        families = await _scrape(url)

    assert families["relaybot_journal_queued_turns"] == 1
    assert families["relaybot_journal_oldest_queued_seconds"] == 7.0  # accepted at 1005


async def test_the_http_mode_app_serves_metrics_as_text(bot: Harness) -> None:
    async with bot.http.get(bot.url + "/metrics") as response:
        assert response.status == 200
        assert response.content_type == "text/plain"
        text = await response.text()
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {
        "gen_ai_client_token_usage",
        "gen_ai_client_operation_duration_seconds",
        "relaybot_platform_calls",
        "relaybot_turns",
        "relaybot_journal_queued_turns",
    } <= names


def test_metrics_port_is_an_option_of_the_long_running_bots() -> None:
    parser = build_parser()
    assert parser.parse_args(["slack", "--metrics-port", "0"]).metrics_port == 0
    assert parser.parse_args(["discord", "--metrics-port", "9464"]).metrics_port == 9464
    assert parser.parse_args(["slack"]).metrics_port is None


async def test_relaybot_slack_announces_and_serves_its_metrics_port(spawn: Spawn) -> None:
    async with FakeSlack(token=TOKEN) as slack, FakeGateway() as gateway:
        process = await relaybot_slack(
            spawn, "--http", "--host", "127.0.0.1", "--port", "0", "--metrics-port", "0",
            OFOX_API_KEY="sk-test", SLACK_BOT_TOKEN=TOKEN, SLACK_SIGNING_SECRET=SECRET,
            RELAYBOT_LLM__BASE_URL=gateway.url + "/v1", RELAYBOT_SLACK__API_URL=slack.api_url,
            RELAYBOT_STORE__URL="memory://",
        )  # fmt: skip
        assert process.stderr is not None
        lines = [(await asyncio.wait_for(process.stderr.readline(), WAIT)).decode()]
        while not lines[-1].startswith("relaybot: listening for Slack on "):
            lines.append((await asyncio.wait_for(process.stderr.readline(), WAIT)).decode())
        [announced] = [line for line in lines if line.startswith("relaybot: serving metrics on ")]
        url = announced.split(" on ", 1)[1].strip()
        families = await _scrape(url)
        process.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(process.communicate(), WAIT)

    assert process.returncode == 0, err.decode()
    assert families["relaybot_journal_queued_turns"] == 0


async def _scrape(url: str) -> Mapping[str, float]:
    """The unlabelled samples of a scrape, by name (the gauges)."""
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=")
        text = await response.text()
    return dict(_unlabelled(text))


def _unlabelled(text: str) -> Iterator[tuple[str, float]]:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.labels:
                yield sample.name, sample.value
