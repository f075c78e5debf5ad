"""The platform-neutral commands (``bots.commands``) on a memory store and two configured
models on real loopback gateways; ``new`` through a real engine turn."""

from __future__ import annotations

from contextlib import aclosing
from datetime import UTC, datetime

import httpx2
import pytest

from bots.commands import Answer, Command, Commands, Invoker, Where, parse
from bots.replies import NOT_YOURS
from bots.stops import LocalStops
from core.client import LLMClient, Timeouts
from core.engine import ConversationEngine, EngineConfig
from core.events import TurnFinished
from core.limits import UsageLimits
from core.messages import (
    AssistantMessage,
    ConversationBreak,
    ConversationKey,
    Message,
    UserMessage,
)
from core.models import ConfiguredModel, ModelEndpoint, ModelRegistry
from core.protocols import OpenAIProtocol
from core.retry import RetryPolicy
from core.store.base import ConversationStore
from core.store.channels import MAX_PROMPT_CHARS
from core.store.journal import Lease, Turn
from core.store.memory import MemoryStore
from core.store.usage import user_key
from core.tools import ToolRegistry
from tests.fakes.llm_gateway import FakeGateway, Stream
from tests.fakes.streams import openai_chunks
from tests.support import stores

clock, store = stores.clock, stores.store  # the store contract fixtures: every backend

CHANNEL = Where(platform="slack", workspace="T1", channel="C1", thread=None)
THREAD = Where(platform="slack", workspace="T1", channel="C1", thread="1700000000.000100")
KEY = ConversationKey(platform="slack", workspace="T1", channel="C1", thread="1700000000.000100")
ADMIN = Invoker(user="U_ADMIN", admin=True)
ADA = Invoker(user="U_ADA", admin=False)
BOB = Invoker(user="U_BOB", admin=False)
NAMED = Invoker(user="U_NAMED", admin=False)  # named in the bot's settings
NO_LIMITS = UsageLimits()
NOW = datetime(2026, 11, 25, 14, 30, tzinfo=UTC).timestamp()


class Watched:
    """A worker as a :class:`~bots.stops.LocalStops` sees it: records the stops it gets."""

    def __init__(self) -> None:
        self.stopped: list[int] = []

    def stop(self, turn_id: int) -> bool:
        self.stopped.append(turn_id)
        return True

    def answering_ids(self) -> list[int]:
        return []


class Bot:
    """Commands over a memory store, two models (``smart``, the default, and ``fast``) and
    Stop requests reaching one watched worker."""

    def __init__(self, gateway: FakeGateway, http: httpx2.AsyncClient) -> None:
        self.gateway = gateway
        self.store = MemoryStore()
        self.http = http
        self.models = ModelRegistry(
            [self._model("smart", gateway.url + "/v1"), self._model("fast", "http://fast.test/v1")],
            default="smart",
        )
        self.stops = LocalStops()
        self.worker = Watched()
        self.stops.watch(self.worker)
        self.orders = 0

    def _model(self, name: str, base_url: str) -> ConfiguredModel:
        endpoint = ModelEndpoint(
            name=name, protocol="openai", base_url=base_url, model=f"{name}/model-id",
            api_key=f"sk-{name}",
        )  # fmt: skip
        client = LLMClient(
            http=self.http, protocol=OpenAIProtocol(), base_url=base_url,
            api_key=endpoint.api_key, timeouts=Timeouts(connect=10, read_idle=10, total=30),
        )  # fmt: skip
        return ConfiguredModel(endpoint=endpoint, client=client)

    def commands(self, *, limits: UsageLimits = NO_LIMITS) -> Commands:
        return Commands(
            store=self.store, models=self.models, limits=limits,
            admins=frozenset({NAMED.user}), stops=self.stops, clock=lambda: NOW,
        )  # fmt: skip

    async def run(
        self, text: str, *, where: Where = CHANNEL, invoker: Invoker = ADA, **kwargs: UsageLimits
    ) -> str:
        answer = await self.commands(**kwargs).run(parse(text), where=where, invoker=invoker)
        assert answer.ephemeral
        return answer.text

    async def asked(self, text: str, *, by: str = ADA.user) -> Lease:
        """A question of ``by`` in the thread, taken by a worker: being answered."""
        self.orders += 1
        order = f"{self.orders:06d}"
        await self.store.accept(
            event_id=f"test:{order}", key=KEY, order=order,
            question=UserMessage(text=text, author_id=by, author_name=by),
            platform="Slack", claim_ttl=60,
        )  # fmt: skip
        lease = await self.store.take(KEY, owner="worker-1", lease_seconds=60)
        assert lease is not None
        return lease

    async def answered(self, text: str, reply: str) -> None:
        """One whole turn through the engine, delivered: the thread is free again."""
        self.gateway.enqueue(Stream(openai_chunks(reply)))
        lease = await self.asked(text)
        engine = ConversationEngine(
            models=self.models, store=self.store, tools=ToolRegistry(),
            config=EngineConfig(model="unused", system_prompt="You are a test bot."),
            retry=RetryPolicy(max_attempts=1, base_delay=0.0, max_delay=0.0, deadline=10.0),
        )  # fmt: skip
        async with aclosing(engine.run_turn(lease)) as events:
            ended = [event async for event in events][-1]
        assert isinstance(ended, TurnFinished)
        await self.store.delivered(lease.turn.id, ["ref"])


@pytest.fixture
def bot(gateway: FakeGateway, http: httpx2.AsyncClient) -> Bot:
    return Bot(gateway, http)  # the gateway and the client are closed by their fixtures


# --- parse and help -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  Model   fast ", Command("model", "fast")),
        ("/model", Command("model", "")),
        ("relaybot prompt Be brief.  Very.", Command("prompt", "Be brief.  Very.")),
        ("/relaybot USAGE", Command("usage", "")),
        ("", Command("", "")),
        ("   ", Command("", "")),
    ],
)
def test_parse(text: str, expected: Command) -> None:
    assert parse(text) == expected


async def test_help_lists_every_command_with_where_it_works(bot: Bot) -> None:
    text = await bot.run("help")
    assert text.splitlines() == [
        "relaybot commands:",
        "`help`: this list (anywhere)",
        "`model [<name>|reset]`: show or choose this channel's model"
        " (in a channel; changing it is for admins)",
        "`prompt [<text>|reset]`: show or set this channel's instructions"
        " (in a channel; changing it is for admins)",
        "`usage`: your tokens today and this month, and the limits (anywhere)",
        "`new`: the next message starts a fresh conversation (in a thread)",
        "`stop`: stop the answer being written (in a thread)",
    ]
    assert await bot.run("") == text
    assert await bot.run("frobnicate now") == text


# --- model ----------------------------------------------------------------------------------


async def test_model_shows_the_default_then_an_admins_choice_then_the_default_again(
    bot: Bot,
) -> None:
    names = "Configured models: `smart`, `fast` (default `smart`)."
    assert await bot.run("model") == (
        f"This channel is answered by smart (smart/model-id at 127.0.0.1).\n{names}"
    )
    assert await bot.run("model fast", invoker=ADMIN) == (
        "From the next message, this channel is answered by `fast`."
    )
    assert await bot.run("model") == (
        f"This channel is answered by fast (fast/model-id at fast.test).\n{names}"
    )
    settings = await bot.store.channel_settings("slack", "T1", "C1")
    assert (settings.model, settings.updated_by) == ("fast", ADMIN.user)
    other = Where(platform="slack", workspace="T1", channel="C2", thread=None)
    assert (await bot.run("model", where=other)).startswith("This channel is answered by smart")

    assert await bot.run("model reset", invoker=NAMED) == (
        "This channel is back to the default model, `smart`."
    )
    assert (await bot.store.channel_settings("slack", "T1", "C1")).model is None
    await bot.run("model fast", invoker=ADMIN)
    await bot.run("model default", invoker=ADMIN)
    assert (await bot.store.channel_settings("slack", "T1", "C1")).model is None


async def test_an_unknown_model_is_refused_with_the_names(bot: Bot) -> None:
    assert await bot.run("model gpt-9", invoker=ADMIN) == (
        "There is no model `gpt-9`. Configured models: `smart`, `fast` (default `smart`)."
    )
    assert (await bot.store.channel_settings("slack", "T1", "C1")).model is None


# --- prompt ---------------------------------------------------------------------------------


async def test_prompt_shows_sets_and_resets_the_channels_instructions(bot: Bot) -> None:
    assert await bot.run("prompt") == "This channel's instructions: none: relaybot's own."
    assert await bot.run("prompt Answer in French.", invoker=ADMIN) == (
        "From the next message, this channel is answered with these instructions."
    )
    assert await bot.run("prompt") == "This channel's instructions:\nAnswer in French."
    assert await bot.run("prompt reset", invoker=NAMED) == (
        "This channel's instructions are back to relaybot's own."
    )
    assert (await bot.store.channel_settings("slack", "T1", "C1")).prompt is None


async def test_a_prompt_too_long_is_refused_with_the_stores_words(bot: Bot) -> None:
    long = "x" * (MAX_PROMPT_CHARS + 1)
    assert await bot.run(f"prompt {long}", invoker=ADMIN) == (
        "A channel prompt can be at most 4,000 characters; this one has 4,001."
    )
    assert (await bot.store.channel_settings("slack", "T1", "C1")).prompt is None


@pytest.mark.parametrize("text", ["model fast", "model reset", "prompt Be rude.", "prompt reset"])
async def test_channel_wide_changes_are_for_admins_and_named_users(bot: Bot, text: str) -> None:
    refused = await bot.run(text, invoker=ADA)
    assert refused.startswith("Only workspace admins and the users the bot's settings name may")
    assert refused.endswith("Anyone may look: use the command without an argument.")
    settings = await bot.store.channel_settings("slack", "T1", "C1")
    assert settings.updated_by is None  # nothing was written
    await bot.run(text, invoker=NAMED)
    assert (await bot.store.channel_settings("slack", "T1", "C1")).updated_by == NAMED.user


# --- usage ----------------------------------------------------------------------------------


async def test_usage_without_limits(bot: Bot) -> None:
    await bot.store.add_usage(user_key("slack", "T1", ADA.user), 1234, at=NOW)
    assert await bot.run("usage") == (
        "Your tokens: 1,234 today, 1,234 this month.\nThere are no limits."
    )


async def test_usage_shows_the_limits_and_when_they_reset(bot: Bot) -> None:
    key = user_key("slack", "T1", ADA.user)
    await bot.store.add_usage(key, 700, at=NOW - 86_400)  # yesterday: this month only
    await bot.store.add_usage(key, 1_000, at=NOW)
    limits = UsageLimits(daily_tokens=1_000, monthly_tokens=50_000, exempt=frozenset({"U_X"}))
    assert (await bot.run("usage", limits=limits)).splitlines() == [
        "Your tokens: 1,000 today, 1,700 this month.",
        "Limit today: 1,000 tokens; resets 2026-11-26 at 00:00 UTC.",
        "Limit this month: 50,000 tokens; resets 2026-12-01 at 00:00 UTC.",
        "You've used your 1,000 tokens for today; it resets at 00:00 UTC (in 9 h 30 min).",
    ]
    exempt = Invoker(user="U_X", admin=False)
    assert (await bot.run("usage", limits=limits, invoker=exempt)).splitlines() == [
        "Your tokens: 0 today, 0 this month.",
        "You have no limit.",
    ]


async def test_usage_with_only_a_daily_limit(bot: Bot) -> None:
    limits = UsageLimits(daily_tokens=5_000)
    assert (await bot.run("usage", limits=limits)).splitlines() == [
        "Your tokens: 0 today, 0 this month.",
        "Limit today: 5,000 tokens; resets 2026-11-26 at 00:00 UTC.",
        "No limit this month.",
    ]


# --- new ------------------------------------------------------------------------------------


def said(bot: Bot) -> list[list[str]]:
    """What each model request held, system prompt aside."""
    return [
        [message["content"] for message in request.json["messages"] if message["role"] != "system"]
        for request in bot.gateway.requests
    ]


async def test_new_cuts_what_came_before_from_the_next_turns_history(bot: Bot) -> None:
    rebuilt: list[Message] = [
        UserMessage(text="My name is Ada.", author_id=ADA.user),
        AssistantMessage(text="Hi"),
    ]
    await bot.store.append(KEY, rebuilt)  # a thread rebuilt from the platform
    assert await bot.run("new", where=THREAD) == (
        "The next message here starts a fresh conversation."
    )
    await bot.answered("What is my name?", "I don't know.")
    await bot.answered("Are you sure?", "Yes.")

    assert said(bot) == [
        ["What is my name?"],  # nothing from before `new`
        ["What is my name?", "I don't know.", "Are you sure?"],
    ]
    assert (await bot.store.load(KEY))[:3] == [*rebuilt, ConversationBreak()]


async def test_new_after_answered_turns_cuts_them_too(bot: Bot) -> None:
    await bot.answered("My name is Ada.", "Hello Ada.")
    await bot.run("new", where=THREAD)
    await bot.answered("What is my name?", "I don't know.")

    assert said(bot)[1] == ["What is my name?"]


async def test_every_store_keeps_the_break(store: ConversationStore) -> None:
    messages: list[Message] = [
        UserMessage(text="before"),
        ConversationBreak(),
        UserMessage(text="after"),
    ]
    await store.append(KEY, messages)
    loaded = await store.load(KEY)
    assert loaded == messages
    assert [type(m) for m in loaded] == [type(m) for m in messages]


async def test_thread_commands_need_a_thread(bot: Bot) -> None:
    assert await bot.run("new") == (
        "Use `new` in a thread: it starts that thread's conversation afresh."
    )
    assert await bot.run("stop") == "Use `stop` in the thread whose answer you want stopped."
    assert await bot.store.load(KEY) == []


# --- stop -----------------------------------------------------------------------------------


async def test_stop_with_nothing_running(bot: Bot) -> None:
    assert await bot.run("stop", where=THREAD) == "Nothing is being answered here."
    assert bot.worker.stopped == []


@pytest.mark.parametrize("invoker", [ADA, ADMIN, NAMED], ids=["asker", "admin", "named"])
async def test_stop_by_the_asker_or_an_admin_stops_the_running_answer(
    bot: Bot, invoker: Invoker
) -> None:
    lease = await bot.asked("Write me a long poem.", by=ADA.user)
    assert await bot.run("stop", where=THREAD, invoker=invoker) == "Stopping the answer."
    assert bot.worker.stopped == [lease.turn.id]


async def test_stop_by_someone_else_is_refused(bot: Bot) -> None:
    await bot.asked("Write me a long poem.", by=ADA.user)
    assert await bot.run("stop", where=THREAD, invoker=BOB) == NOT_YOURS
    assert bot.worker.stopped == []


async def test_stop_asks_this_processs_worker_first(bot: Bot) -> None:
    lease = await bot.asked("Write me a long poem.", by=ADA.user)

    class Answering:
        def answering_in(self, key: ConversationKey) -> Turn | None:
            return lease.turn if key == KEY else None

    commands = Commands(
        store=bot.store, models=bot.models, limits=UsageLimits(), admins=frozenset(),
        stops=bot.stops, worker=Answering(),
    )  # fmt: skip
    await bot.store.close()  # the store is not asked: the worker knows
    answer = await commands.run(parse("stop"), where=THREAD, invoker=ADA)
    assert answer == Answer(text="Stopping the answer.")
    assert bot.worker.stopped == [lease.turn.id]
