"""ConversationEngine: turns over a real loopback gateway, real tools and real stores."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import Sequence
from contextlib import aclosing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import pytest

from bots.tools.weather import weather_tool
from core.client import LLMClient, Timeouts
from core.engine import ConversationEngine, EngineConfig
from core.events import (
    AttemptVoid,
    EngineEvent,
    TextDelta,
    ToolFinished,
    ToolStarted,
    TurnFailed,
    TurnFinished,
    Usage,
    WaitingForSlot,
)
from core.messages import (
    AssistantMessage,
    ConversationKey,
    Message,
    ToolResult,
    UserMessage,
)
from core.protocols import AnthropicProtocol, OpenAIProtocol
from core.retry import RetryPolicy
from core.store.base import ConversationStore, StoreError
from core.store.journal import Lease, LeaseLost, Turn
from core.store.memory import MemoryStore
from core.store.sqlite import SqliteStore
from core.tools import Tool, ToolRegistry, tool
from tests.conftest import Closing
from tests.fakes.llm_gateway import Error, FakeGateway, Stream
from tests.fakes.open_meteo import FakeOpenMeteo
from tests.fakes.streams import anthropic_events, openai_chunks
from tests.support.clock import FakeTime

KEY = ConversationKey(platform="slack", workspace="T1", channel="C1", thread="1700000000.000100")
NOW = datetime(2026, 11, 25, 14, 30, tzinfo=UTC)
CONFIG = EngineConfig(model="fake/model", system_prompt="You are a test bot.", max_rounds=4)
NO_WAIT = RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0, deadline=10.0)
WAIT = 20.0
"""The bound on waiting for a turn's progress over the loopback gateway: generous for a
loaded machine; a hang still fails inside the suite's 60 s per test."""


OWNER = "worker-1"
LEASE = 60.0
_orders = itertools.count(1)


async def accepted(
    store: ConversationStore, text: str, *, key: ConversationKey = KEY, tz: str | None = None
) -> Turn:
    """Ada's message accepted into the journal, ordered after every one accepted before."""
    order = f"{next(_orders):06d}"
    turn = await store.accept(
        event_id=f"test:{key}:{order}", key=key, order=order,
        question=UserMessage(text=text, author_id="U1", author_name="Ada"),
        platform="slack", timezone=tz, claim_ttl=60,
    )  # fmt: skip
    assert turn is not None
    return turn


async def asked(
    store: ConversationStore, text: str, *, key: ConversationKey = KEY, tz: str | None = None
) -> Lease:
    """Ada's message accepted and taken by this worker: a turn ready to run."""
    await accepted(store, text, key=key, tz=tz)
    lease = await store.take(key, owner=OWNER, lease_seconds=LEASE)
    assert lease is not None
    return lease


class Harness:
    def __init__(self, gateway: FakeGateway, http: httpx2.AsyncClient) -> None:
        self.gateway = gateway
        self.http = http
        self.store: ConversationStore = MemoryStore()
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.registry = ToolRegistry([self.lookup_tool()])
        self._ran: list[int] = []

    def lookup_tool(self) -> Tool:
        calls = self.calls

        @tool(activity="Looking up {topic}")
        async def lookup(topic: str) -> str:
            """Look a topic up."""
            calls.append(("lookup", {"topic": topic}))
            return f"{topic}: 42"

        return lookup

    def engine(
        self, *, anthropic: bool = False, config: EngineConfig = CONFIG
    ) -> ConversationEngine:
        client = LLMClient(
            http=self.http,
            protocol=AnthropicProtocol() if anthropic else OpenAIProtocol(),
            base_url=self.gateway.url if anthropic else self.gateway.url + "/v1",
            api_key="sk-test",
            timeouts=Timeouts(connect=10, read_idle=10, total=30),  # generous under load
        )
        return ConversationEngine(
            client=client, store=self.store, tools=self.registry, config=config,
            retry=NO_WAIT, now=lambda: NOW,
        )  # fmt: skip

    async def ask(self, text: str, *, key: ConversationKey = KEY, tz: str | None = None) -> Lease:
        """A turn ready to run; the answers of turns run before are delivered first, as a
        worker shows them (a thread's next turn waits for that)."""
        for turn_id in self._ran:
            if (await self.store.turn(turn_id)).state == "answered":
                await self.store.delivered(turn_id, [])
        self._ran.clear()
        return await asked(self.store, text, key=key, tz=tz)

    async def turn(self, lease: Lease, **engine: Any) -> list[EngineEvent]:
        self._ran.append(lease.turn.id)
        async with aclosing(self.engine(**engine).run_turn(lease)) as events:
            return [event async for event in events]

    def bodies(self) -> list[dict[str, Any]]:
        return [request.json or {} for request in self.gateway.requests]


@pytest.fixture
def harness(gateway: FakeGateway, http: httpx2.AsyncClient) -> Harness:
    return Harness(gateway, http)


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


def last(events: list[EngineEvent]) -> EngineEvent:
    return events[-1]


async def test_plain_turn_is_saved_and_the_next_turn_continues_it(harness: Harness) -> None:
    harness.gateway.enqueue(Stream(openai_chunks("Hello Ada!")), Stream(openai_chunks("Yes.")))
    lease = await harness.ask("Hi")
    first = await harness.turn(lease)
    assert last(first) == TurnFinished(
        text="Hello Ada!", usage=Usage(input_tokens=10, output_tokens=5), rounds=1
    )
    assert text_of(first) == "Hello Ada!"
    await harness.turn(await harness.ask("Do you remember me?"))
    second = harness.bodies()[1]["messages"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert second[2]["content"] == "Hello Ada!"
    history = await harness.store.load(KEY)
    assert [type(m).__name__ for m in history] == [
        "UserMessage", "AssistantMessage", "UserMessage", "AssistantMessage"
    ]  # fmt: skip
    turn = await harness.store.turn(lease.turn.id)
    assert (turn.final_text, turn.finish_reason) == ("Hello Ada!", "stop")  # delivered since


async def test_system_prompt_carries_date_time_and_time_zone(harness: Harness) -> None:
    harness.gateway.enqueue(Stream(openai_chunks("ok")))
    await harness.turn(await harness.ask("time?", tz="Europe/Paris"))
    system = harness.bodies()[0]["messages"][0]["content"]
    assert system.startswith("You are a test bot.")
    assert "Current date and time: Wednesday, 25 November 2026, 14:30 UTC." in system
    assert "The user's time zone is Europe/Paris; their local time is Wednesday 15:30." in system


async def test_tool_round_trip_openai(harness: Harness) -> None:
    harness.gateway.enqueue(
        Stream(
            openai_chunks("Let me look.", tool_calls=[("call_1", "lookup", '{"topic":"life"}')])
        ),
        Stream(openai_chunks("The answer is 42.")),
    )
    events = await harness.turn(await harness.ask("What is the answer to life?"))
    [finished] = [e for e in events if isinstance(e, ToolFinished)]
    assert [e for e in events if isinstance(e, ToolStarted | ToolFinished)] == [
        ToolStarted(
            call_id="call_1", name="lookup", arguments={"topic": "life"}, activity="Looking up life"
        ),
        ToolFinished(
            call_id="call_1", name="lookup", ok=True, summary="life: 42", elapsed=finished.elapsed
        ),
    ]
    assert text_of(events) == "Let me look.\n\nThe answer is 42."
    final = last(events)
    assert isinstance(final, TurnFinished)
    assert (final.text, final.rounds) == ("Let me look.\n\nThe answer is 42.", 2)
    assert final.usage.input_tokens == 20
    second = harness.bodies()[1]["messages"]
    assert second[-2]["tool_calls"][0]["function"] == {
        "name": "lookup", "arguments": '{"topic": "life"}'
    }  # fmt: skip
    assert second[-1] == {"role": "tool", "tool_call_id": "call_1", "content": "life: 42"}
    assert harness.calls == [("lookup", {"topic": "life"})]
    history = await harness.store.load(KEY)
    assert [m.role for m in history] == ["user", "assistant", "tool", "assistant"]


async def test_tool_round_trip_anthropic_sends_thinking_back(harness: Harness) -> None:
    harness.gateway.enqueue(
        Stream(anthropic_events(thinking="Need the tool.", signature="sig-1",
                                tool_uses=[("toolu_1", "lookup", '{"topic":"mars"}')])),
        Stream(anthropic_events("Mars: 42.")),
    )  # fmt: skip
    events = await harness.turn(await harness.ask("Tell me about Mars"), anthropic=True)
    assert isinstance(last(events), TurnFinished)
    second = harness.bodies()[1]["messages"]
    assert second[-2] == {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "Need the tool.", "signature": "sig-1"},
            {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"topic": "mars"}},
        ],
    }
    assert second[-1] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "mars: 42"}],
    }


async def test_parallel_tool_calls_overlap(harness: Harness) -> None:
    """Each tool waits for the other to start: the round finishes only if they overlap."""
    started = {"a": asyncio.Event(), "b": asyncio.Event()}

    @tool
    async def meet(name: str) -> str:
        """Wait for the other one."""
        started[name].set()
        await asyncio.wait_for(started["b" if name == "a" else "a"].wait(), WAIT)
        return f"{name} met"

    harness.registry.add(meet)
    harness.gateway.enqueue(
        Stream(openai_chunks(tool_calls=[("c1", "meet", '{"name":"a"}'),
                                         ("c2", "meet", '{"name":"b"}')])),
        Stream(openai_chunks("Both met.")),
    )  # fmt: skip
    events = await harness.turn(await harness.ask("meet"))
    kinds = [type(e).__name__ for e in events if isinstance(e, ToolStarted | ToolFinished)]
    assert kinds == ["ToolStarted", "ToolStarted", "ToolFinished", "ToolFinished"]
    assert isinstance(last(events), TurnFinished)
    tool_messages = harness.bodies()[1]["messages"][-2:]
    assert [m["content"] for m in tool_messages] == ["a met", "b met"]


async def test_broken_streams_never_rerun_tools_or_duplicate_text(harness: Harness) -> None:
    first = openai_chunks("Checking.", tool_calls=[("call_1", "lookup", '{"topic":"x"}')])
    second = openai_chunks("Found it: x is 42.")
    harness.gateway.enqueue(
        Stream.cut(first, after=3), Stream(first),  # broken after text
        Stream.cut(second, after=4), Stream(second),  # broken after the tool ran
    )  # fmt: skip
    events = await harness.turn(await harness.ask("x?"))
    assert sum(isinstance(e, AttemptVoid) for e in events) == 2
    assert harness.calls == [("lookup", {"topic": "x"})]
    final = last(events)
    assert isinstance(final, TurnFinished)
    assert final.text == text_of(events) == "Checking.\n\nFound it: x is 42."


async def test_a_follow_up_accepted_mid_answer_waits_then_reads_the_answer(
    harness: Harness,
) -> None:
    """Turn two is accepted while turn one streams: it cannot be taken until turn one ends,
    then its model request holds turn one's question and answer, then its own question, once."""
    one_streaming, release = asyncio.Event(), asyncio.Event()
    harness.gateway.enqueue(
        Stream(openai_chunks("first answer")), Stream(openai_chunks("second answer"))
    )
    engine = harness.engine()

    async def run(lease: Lease) -> list[EngineEvent]:
        seen: list[EngineEvent] = []
        async with aclosing(engine.run_turn(lease)) as events:
            async for event in events:
                seen.append(event)
                one_streaming.set()
                await release.wait()
        return seen

    first = await harness.ask("one")
    one = asyncio.create_task(run(first))
    await asyncio.wait_for(one_streaming.wait(), WAIT)
    await accepted(harness.store, "two")
    assert await harness.store.take(KEY, owner=OWNER, lease_seconds=LEASE) is None
    release.set()
    assert isinstance(last(await one), TurnFinished)
    assert await harness.store.take(KEY, owner=OWNER, lease_seconds=LEASE) is None  # not shown
    await harness.store.delivered(first.turn.id, [])
    two = await harness.store.take(KEY, owner=OWNER, lease_seconds=LEASE)
    assert two is not None
    assert two.turn.question.text == "two"
    assert isinstance(last(await run(two)), TurnFinished)
    second = harness.bodies()[1]["messages"]
    assert [m.get("content") for m in second[1:]] == ["one", "first answer", "two"]
    history = await harness.store.load(KEY)
    assert [(m.role, getattr(m, "text", None)) for m in history] == [
        ("user", "one"), ("assistant", "first answer"), ("user", "two"),
        ("assistant", "second answer"),
    ]  # fmt: skip


async def test_restart_continues_the_thread_from_sqlite(
    harness: Harness, tmp_path: Path, closing: Closing
) -> None:
    path = tmp_path / "relaybot.db"
    harness.store = await closing(SqliteStore.open(path))
    harness.gateway.enqueue(Stream(openai_chunks("Noted: blue.")), Stream(openai_chunks("Blue.")))
    await harness.turn(await harness.ask("My favourite colour is blue."))
    await harness.store.close()
    harness.store = await closing(SqliteStore.open(path))
    await harness.turn(await harness.ask("What is my favourite colour?"))
    contents = [m.get("content") for m in harness.bodies()[1]["messages"][1:]]
    assert contents == [
        "My favourite colour is blue.",
        "Noted: blue.",
        "What is my favourite colour?",
    ]


async def test_context_too_long_trims_harder_and_retries_once(harness: Harness) -> None:
    old = [UserMessage(text=f"old message {n} " + "x" * 400) for n in range(20)]
    await harness.store.append(KEY, old)
    too_long = Error.openai(400, "This model's maximum context length is 100 tokens",
                            code="context_length_exceeded")  # fmt: skip
    harness.gateway.enqueue(too_long, Stream(openai_chunks("Short now.")))
    events = await harness.turn(await harness.ask("go on"))
    assert isinstance(last(events), TurnFinished)
    sizes = [len(body["messages"]) for body in harness.bodies()]
    assert sizes[1] < sizes[0]
    assert harness.bodies()[1]["messages"][-1] == {"role": "user", "content": "go on"}


async def test_context_too_long_twice_tells_the_user(harness: Harness) -> None:
    too_long = Error.openai(400, "prompt is too long", code="context_length_exceeded")
    harness.gateway.enqueue(too_long, too_long)
    events = await harness.turn(await harness.ask("go on"))
    assert last(events) == TurnFailed(
        message="This thread is too long for me to continue. Please start a new thread."
    )


async def test_length_cut_answer_says_so(harness: Harness) -> None:
    harness.gateway.enqueue(Stream(openai_chunks("A long story", finish_reason="length")))
    events = await harness.turn(await harness.ask("tell me a story"))
    final = last(events)
    assert isinstance(final, TurnFinished)
    assert final.truncated
    assert (
        final.text
        == text_of(events)
        == ("A long story\n\n_(The answer was cut off because it reached the length limit.)_")
    )


async def test_failed_model_call_is_a_visible_message(harness: Harness) -> None:
    harness.gateway.enqueue(Error.openai(401, "Incorrect API key provided: sk-te***st"))
    lease = await harness.ask("hi")
    events = await harness.turn(lease)
    assert events == [
        TurnFailed(message="I can't reach the language model: the gateway rejected my "
                           "credentials. An admin needs to check the API key.")
    ]  # fmt: skip
    assert [m.role for m in await harness.store.load(KEY)] == ["user"]
    turn = await harness.store.turn(lease.turn.id)
    assert (turn.state, turn.error) == ("failed", "I can't reach the language model: the "
        "gateway rejected my credentials. An admin needs to check the API key.")  # fmt: skip


async def test_last_round_answers_without_tools(harness: Harness) -> None:
    looping = openai_chunks(tool_calls=[("c", "lookup", '{"topic":"again"}')])
    config = EngineConfig(model="m", system_prompt="s", max_rounds=2)
    harness.gateway.enqueue(Stream(looping), Stream(openai_chunks("Enough lookups.")))
    events = await harness.turn(await harness.ask("loop"), config=config)
    assert [body["tool_choice"] for body in harness.bodies()] == ["auto", "none"]
    assert isinstance(last(events), TurnFinished)


async def test_cancelling_a_turn_stops_tools_and_saves_what_was_said(harness: Harness) -> None:
    tool_started = asyncio.Event()
    tool_cancelled = threading.Event()

    @tool
    async def slow() -> str:
        """Never finishes on its own."""
        tool_started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            tool_cancelled.set()
            raise
        return "unreachable"

    harness.registry.add(slow)
    harness.gateway.enqueue(
        Stream(openai_chunks("Working on it.", tool_calls=[("c", "slow", "{}")]))
    )
    lease = await harness.ask("do the slow thing")
    task = asyncio.create_task(harness.turn(lease))
    await asyncio.wait_for(tool_started.wait(), WAIT)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert tool_cancelled.is_set()
    history: list[Message] = await harness.store.load(KEY)
    assert [m.role for m in history] == ["user", "assistant", "tool", "assistant"]
    assert isinstance(history[1], AssistantMessage)
    assert history[1].text == "Working on it."
    assert isinstance(history[2], ToolResult)
    assert history[2].is_error
    assert isinstance(history[3], AssistantMessage)
    assert history[3].stopped
    turn = await harness.store.turn(lease.turn.id)
    assert (turn.state, turn.error, turn.tool_started) == ("failed", "stopped", True)


async def test_cancelling_mid_stream_keeps_the_partial_text(harness: Harness) -> None:
    chunks = openai_chunks("Partial answer that goes on and on")
    harness.gateway.enqueue(Stream.stalled(chunks, after=3))
    engine = harness.engine()
    seen: list[EngineEvent] = []
    two_seen = asyncio.Event()

    async def consume() -> None:
        async with aclosing(engine.run_turn(lease)) as events:
            async for event in events:
                seen.append(event)
                if len(seen) == 2:
                    two_seen.set()

    lease = await harness.ask("go")
    task = asyncio.create_task(consume())
    await asyncio.wait_for(two_seen.wait(), WAIT)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    history = await harness.store.load(KEY)
    assert isinstance(history[-1], AssistantMessage)
    assert history[-1].stopped
    assert history[-1].text == text_of(seen)
    assert [m.role for m in history] == ["user", "assistant"]
    turn = await harness.store.turn(lease.turn.id)
    assert (turn.state, turn.error, turn.tool_started) == ("failed", "stopped", False)


async def test_request_gate_caps_concurrent_model_calls(harness: Harness) -> None:
    """With a cap of one, a model call starts only after the previous one finished."""
    harness.gateway.enqueue(*[Stream(openai_chunks(f"answer {n}")) for n in range(3)])
    engine = ConversationEngine(
        client=harness.engine()._client, store=harness.store, tools=harness.registry,
        config=CONFIG, retry=NO_WAIT, now=lambda: NOW, request_gate=asyncio.Semaphore(1),
    )  # fmt: skip
    in_flight: list[int] = []
    finished = 0

    async def run(n: int) -> None:
        nonlocal finished
        key = ConversationKey(platform="slack", workspace="T1", channel="C1", thread=str(n))
        lease = await harness.ask("hi", key=key)
        async with aclosing(engine.run_turn(lease)) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    in_flight.append(len(harness.gateway.requests) - finished)
            finished += 1

    await asyncio.gather(*(run(n) for n in range(3)))
    assert len(harness.gateway.requests) == 3
    assert set(in_flight) == {1}


async def test_a_call_waiting_for_a_free_slot_says_so_first(harness: Harness) -> None:
    """Every slot taken: the turn's first event says it waits for one; a free slot, no word."""
    harness.gateway.enqueue(*[Stream(openai_chunks(f"answer {n}")) for n in range(2)])
    gate = asyncio.Semaphore(1)
    engine = ConversationEngine(
        client=harness.engine()._client, store=harness.store, tools=harness.registry,
        config=CONFIG, retry=NO_WAIT, now=lambda: NOW, request_gate=gate,
    )  # fmt: skip
    await gate.acquire()  # another answer holds the only slot
    events = engine.run_turn(await harness.ask("hi"))
    assert isinstance(await anext(events), WaitingForSlot)
    waiting = asyncio.ensure_future(anext(events))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not waiting.done()  # in line for the slot, not asking the gateway
    assert harness.gateway.requests == []
    gate.release()
    rest = [await waiting, *[event async for event in events]]
    assert isinstance(rest[-1], TurnFinished)
    assert rest[-1].text == "answer 0"
    key = ConversationKey(platform="slack", workspace="T1", channel="C1", thread="free")
    free = await harness.turn(await harness.ask("hi", key=key))
    assert not any(isinstance(event, WaitingForSlot) for event in free)


@pytest.mark.parametrize("anthropic", [False, True], ids=["openai", "anthropic"])
async def test_weather_turn_end_to_end(harness: Harness, anthropic: bool) -> None:
    """The real get_weather against a loopback Open-Meteo, in both protocols."""
    async with FakeOpenMeteo() as weather:
        harness.registry.add(
            weather_tool(http=harness.http, geocoding_url=weather.url, forecast_url=weather.url)
        )
        arguments = '{"city": "Paris"}'
        if anthropic:
            first = anthropic_events(
                thinking="The user wants the weather.", signature="sig-w",
                tool_uses=[("toolu_w", "get_weather", arguments)],
            )  # fmt: skip
            second = anthropic_events("It is mild in Paris.")
        else:
            first = openai_chunks(tool_calls=[("call_w", "get_weather", arguments)])
            second = openai_chunks("It is mild in Paris.")
        harness.gateway.enqueue(Stream(first), Stream(second))
        events = await harness.turn(
            await harness.ask("What's the weather in Paris?"), anthropic=anthropic
        )

    [finished] = [e for e in events if isinstance(e, ToolFinished)]
    assert finished.ok
    assert finished.summary.startswith("Paris, France: ")
    assert last(events) == TurnFinished(
        text="It is mild in Paris.", usage=Usage(input_tokens=20, output_tokens=10), rounds=2
    )
    second_call = harness.bodies()[1]["messages"]
    if anthropic:
        assert second_call[-2]["content"][0] == {
            "type": "thinking", "thinking": "The user wants the weather.", "signature": "sig-w"
        }  # fmt: skip
        [result] = second_call[-1]["content"]
        assert result["tool_use_id"] == "toolu_w"
        content = result["content"]
    else:
        assert second_call[-1]["tool_call_id"] == "call_w"
        content = second_call[-1]["content"]
    assert json.loads(content)["place"] == "Paris"
    history = await harness.store.load(KEY)
    assert [m.role for m in history] == ["user", "assistant", "tool", "assistant"]
    assert isinstance(history[1], AssistantMessage)
    assert history[1].tool_calls[0].arguments == {"city": "Paris"}
    assert isinstance(history[2], ToolResult)
    assert json.loads(history[2].content)["country"] == "France"


async def test_leaving_a_turn_early_stops_its_tools_and_keeps_history_paired(
    harness: Harness,
) -> None:
    """A consumer that stops reading (and closes the turn) while a tool still runs: the tool
    is cancelled and every call is answered in history, so the next request is well-formed."""
    slow_started, slow_cancelled = asyncio.Event(), asyncio.Event()

    @tool
    async def slow() -> str:
        """Never finishes on its own."""
        slow_started.set()
        try:
            await asyncio.Event().wait()
        finally:
            slow_cancelled.set()
        return "unreachable"

    harness.registry.add(slow)
    calls = [("c1", "lookup", '{"topic":"x"}'), ("c2", "slow", "{}")]
    harness.gateway.enqueue(Stream(openai_chunks("On it.", tool_calls=calls)))
    lease = await harness.ask("go")
    async with aclosing(harness.engine().run_turn(lease)) as events:
        async for event in events:
            if isinstance(event, ToolFinished):  # lookup is done; slow still runs
                await asyncio.wait_for(slow_started.wait(), WAIT)
                break
    assert slow_cancelled.is_set()
    history = await harness.store.load(KEY)
    assert [m.role for m in history] == ["user", "assistant", "tool", "tool", "assistant"]
    results = [m for m in history if isinstance(m, ToolResult)]
    assert [(r.call_id, r.is_error) for r in results] == [("c1", False), ("c2", True)]
    turn = await harness.store.turn(lease.turn.id)
    assert (turn.state, turn.error) == ("failed", "stopped")


async def test_context_too_long_trims_below_the_budget_already_in_force(harness: Harness) -> None:
    """History far over the budget: the retry is trimmed harder than the first request was."""
    old = [UserMessage(text=f"old message {n} " + "x" * 400) for n in range(20)]
    await harness.store.append(KEY, old)
    too_long = Error.openai(400, "maximum context length exceeded", code="context_length_exceeded")
    harness.gateway.enqueue(too_long, Stream(openai_chunks("Short now.")))
    config = EngineConfig(model="m", system_prompt="s", context_budget_tokens=1000)
    events = await harness.turn(await harness.ask("go on"), config=config)
    assert isinstance(last(events), TurnFinished)
    sizes = [len(body["messages"]) for body in harness.bodies()]
    assert sizes[1] < sizes[0] < len(old)


async def test_a_result_whose_summary_raises_is_an_error_the_model_reads(harness: Harness) -> None:
    """The tool returned, but its result broke while summarized: the model is told, the turn
    ends, and the thread is free for the next message."""

    class Broken:
        @property
        def summary(self) -> str:
            raise RuntimeError("summary broke")

    @tool
    async def fragile() -> Broken:
        """Return a result whose summary breaks."""
        return Broken()

    harness.registry.add(fragile)
    harness.gateway.enqueue(
        Stream(openai_chunks(tool_calls=[("c1", "fragile", "{}")])),
        Stream(openai_chunks("The tool broke.")),
        Stream(openai_chunks("Next answer.")),
    )
    problem = "fragile returned a result that could not be read: RuntimeError: summary broke"
    async with asyncio.timeout(WAIT):  # a hang fails the test instead of stalling it
        events = await harness.turn(await harness.ask("try it"))
        [finished] = [e for e in events if isinstance(e, ToolFinished)]
        assert (finished.ok, finished.summary) == (False, problem)
        assert last(events) == TurnFinished(
            text="The tool broke.", usage=Usage(input_tokens=20, output_tokens=10), rounds=2
        )
        assert harness.bodies()[1]["messages"][-1] == {
            "role": "tool", "tool_call_id": "c1", "content": problem
        }  # fmt: skip
        following = await harness.turn(await harness.ask("and now?"))
    assert last(following) == TurnFinished(
        text="Next answer.", usage=Usage(input_tokens=10, output_tokens=5), rounds=1
    )


async def test_a_tool_runs_only_after_every_call_of_its_round_is_recorded(
    harness: Harness,
) -> None:
    """A recovered turn must never run a tool twice: the journal says so before any runs."""
    recorded: list[bool] = []
    turn_id = 0

    @tool
    async def check(name: str) -> str:
        """Look at the journal."""
        recorded.append((await harness.store.turn(turn_id)).tool_started)
        return f"{name} checked"

    harness.registry.add(check)
    calls = [("c1", "check", '{"name":"a"}'), ("c2", "check", '{"name":"b"}')]
    harness.gateway.enqueue(
        Stream(openai_chunks(tool_calls=calls)), Stream(openai_chunks("Checked."))
    )
    lease = await harness.ask("check")
    turn_id = lease.turn.id
    assert not (await harness.store.turn(turn_id)).tool_started
    events = await harness.turn(lease)
    assert isinstance(last(events), TurnFinished)
    assert recorded == [True, True]


async def test_an_answered_turn_saves_its_new_messages_final_text_and_finish_reason(
    harness: Harness,
) -> None:
    harness.gateway.enqueue(
        Stream(openai_chunks("Looking.", tool_calls=[("c1", "lookup", '{"topic":"x"}')])),
        Stream(openai_chunks("x is 42, and more", finish_reason="length")),
    )
    lease = await harness.ask("x?")
    events = await harness.turn(lease)
    final = last(events)
    assert isinstance(final, TurnFinished)
    turn = await harness.store.turn(lease.turn.id)
    assert (turn.state, turn.final_text, turn.finish_reason, turn.error) == (
        "answered", final.text, "length", None
    )  # fmt: skip
    assert turn.tool_started
    history = await harness.store.load(KEY)
    assert [m.role for m in history] == ["user", "assistant", "tool", "assistant"]
    assert [m.text for m in history if isinstance(m, UserMessage)] == ["x?"]  # saved once


async def test_a_failed_turn_saves_what_it_said_and_the_message_the_user_was_shown(
    harness: Harness,
) -> None:
    too_long = Error.openai(400, "prompt is too long", code="context_length_exceeded")
    harness.gateway.enqueue(
        Stream(openai_chunks("Looking.", tool_calls=[("c1", "lookup", '{"topic":"x"}')])),
        too_long,
        too_long,
    )
    lease = await harness.ask("x?")
    events = await harness.turn(lease)
    failed = last(events)
    assert failed == TurnFailed(
        message="This thread is too long for me to continue. Please start a new thread.",
        partial_text="Looking.",
    )
    turn = await harness.store.turn(lease.turn.id)
    assert (turn.state, turn.error, turn.final_text) == ("failed", failed.message, None)
    assert [m.role for m in await harness.store.load(KEY)] == ["user", "assistant", "tool"]


async def test_a_turn_taken_over_mid_answer_stops_before_its_tool_and_saves_nothing(
    harness: Harness,
) -> None:
    """The worker's lease expired and another worker took the turn over: the old worker's
    next write is refused, so it runs no tool and writes nothing more."""
    time = FakeTime()
    harness.store = MemoryStore(clock=time)
    harness.gateway.enqueue(
        Stream(openai_chunks("Let me look.", tool_calls=[("c1", "lookup", '{"topic":"x"}')]))
    )
    lease = await harness.ask("x?")
    seen: list[EngineEvent] = []

    async def consume() -> None:
        async with aclosing(harness.engine().run_turn(lease)) as events:
            async for event in events:
                seen.append(event)
                if len(seen) == 1:  # mid-answer, before the tool call
                    time.now += LEASE + 1
                    taken = await harness.store.take_over(
                        lease.turn.id, owner="worker-2", lease_seconds=LEASE
                    )
                    assert taken is not None

    with pytest.raises(LeaseLost):
        await consume()
    assert text_of(seen) == "Let me look."
    assert not any(isinstance(e, ToolStarted | TurnFinished | TurnFailed) for e in seen)
    assert harness.calls == []
    turn = await harness.store.turn(lease.turn.id)
    assert (turn.state, turn.owner, turn.fence, turn.tool_started) == (
        "running", "worker-2", 2, False
    )  # fmt: skip
    assert [m.role for m in await harness.store.load(KEY)] == ["user"]


class SlowFailStore(MemoryStore):
    """Its ``failed`` write waits until the test lets it through."""

    def __init__(self) -> None:
        super().__init__()
        self.writing = asyncio.Event()
        self.go = asyncio.Event()

    async def failed(self, lease: Lease, *, messages: Sequence[Message], error: str) -> None:
        self.writing.set()
        await self.go.wait()
        await super().failed(lease, messages=messages, error=error)


async def test_a_stopped_turn_is_saved_even_if_stopped_again_while_saving(
    harness: Harness,
) -> None:
    store = harness.store = SlowFailStore()
    harness.gateway.enqueue(Stream.stalled(openai_chunks("Partial answer"), after=3))
    lease = await harness.ask("go")
    streaming = asyncio.Event()

    async def consume() -> None:
        async with aclosing(harness.engine().run_turn(lease)) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    streaming.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(streaming.wait(), WAIT)
    task.cancel()
    await asyncio.wait_for(store.writing.wait(), WAIT)
    task.cancel()  # a second Stop while the first is being saved
    await asyncio.sleep(0)
    store.go.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    turn = await store.turn(lease.turn.id)
    assert (turn.state, turn.error) == ("failed", "stopped")
    history = await store.load(KEY)
    assert [m.role for m in history] == ["user", "assistant"]
    assert isinstance(history[1], AssistantMessage)
    assert history[1].stopped


class BrokenJournal(MemoryStore):
    """A store whose journal writes fail (not a lost lease: the store itself is down)."""

    def __init__(self, *, broken: set[str]) -> None:
        super().__init__()
        self.broken = broken

    async def tool_started(self, lease: Lease, call_id: str) -> None:
        if "tool_started" in self.broken:
            raise StoreError("the disk is full")
        await super().tool_started(lease, call_id)

    async def answered(
        self, lease: Lease, *, messages: Sequence[Message], text: str, finish_reason: str | None
    ) -> None:
        if "answered" in self.broken:
            raise StoreError("the disk is full")
        await super().answered(lease, messages=messages, text=text, finish_reason=finish_reason)


async def test_a_tool_call_that_cannot_be_recorded_is_not_run(harness: Harness) -> None:
    harness.store = BrokenJournal(broken={"tool_started"})
    harness.gateway.enqueue(
        Stream(openai_chunks("Looking.", tool_calls=[("c1", "lookup", '{"topic":"x"}')]))
    )
    lease = await harness.ask("x?")
    events = await harness.turn(lease)
    assert last(events) == TurnFailed(
        message="I couldn't save my progress, so I stopped before using a tool. Please try again.",
        partial_text="Looking.",
    )
    assert not any(isinstance(e, ToolStarted) for e in events)
    assert harness.calls == []
    turn = await harness.store.turn(lease.turn.id)
    assert (turn.state, turn.tool_started) == ("failed", False)
    history = await harness.store.load(KEY)
    assert [m.role for m in history] == ["user", "assistant", "tool"]


async def test_an_answer_the_store_cannot_save_is_still_shown(harness: Harness) -> None:
    harness.store = BrokenJournal(broken={"answered"})
    harness.gateway.enqueue(Stream(openai_chunks("Hello Ada!")))
    lease = await harness.ask("Hi")
    events = await harness.turn(lease)
    assert last(events) == TurnFinished(
        text="Hello Ada!", usage=Usage(input_tokens=10, output_tokens=5), rounds=1
    )
    assert (await harness.store.turn(lease.turn.id)).state == "running"
