"""Long waits for the model are explained: a retry says why the answer pauses, and a silent
model is called slow — in virtual time, on a recording surface.

The unit tests feed a ``LiveReply`` scripted engine events, as ``tests/test_live.py`` does; the
last one runs the real engine and client against the loopback gateway, which answers ``429``
with ``Retry-After: 30`` first: the fake clock lets the half minute pass at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import aclosing
from typing import Any

import httpx2
import pytest

from adapters.budget import TokenBucketBudget
from adapters.live import (
    MODEL_BUSY,
    MODEL_RETRYING,
    MODEL_SLOW,
    THINKING,
    WAITING_FOR_SLOT,
    LiveReply,
)
from adapters.surface import Draft, SurfaceLimits
from core.client import LLMClient, Timeouts
from core.engine import ConversationEngine, EngineConfig
from core.events import (
    AttemptVoid,
    EngineEvent,
    ModelRetrying,
    ReasoningDelta,
    TextDelta,
    ToolFinished,
    ToolStarted,
    TurnFinished,
    Usage,
    WaitingForSlot,
)
from core.messages import ConversationKey, UserMessage
from core.protocols import OpenAIProtocol
from core.retry import RetryPolicy
from core.store.journal import Lease
from core.store.memory import MemoryStore
from core.tools import ToolRegistry
from tests.fakes.llm_gateway import Error, FakeGateway, Stream
from tests.fakes.streams import openai_chunks
from tests.fakes.surface import Call, FakeSurface
from tests.support.clock import FakeClock
from tests.support.waiting import until

LIMITS = SurfaceLimits(max_length=2000, edit_interval=1.0)
PLACEHOLDER = Draft(text="", status=THINKING)
Script = Sequence[tuple[float, EngineEvent]]
BUSY = ModelRetrying(attempt=1, wait=30.0, reason="HTTP 429", busy=True)
WAIT = 20.0
"""The bound on waiting, in real time, for the loopback gateway's side of a turn."""


def text(value: str) -> TextDelta:
    return TextDelta(text=value)


def finished(value: str) -> TurnFinished:
    return TurnFinished(text=value, usage=Usage(), rounds=1)


class Scene:
    """One reply on a recording surface and a fake clock; its turn plays a script."""

    def __init__(self, **options: Any) -> None:
        self.clock = FakeClock()
        self.surface = FakeSurface(limits=LIMITS, clock=self.clock)
        budget = TokenBucketBudget({}, clock=self.clock)
        self.reply = LiveReply(self.surface, budget, clock=self.clock, **options)
        self.turn: asyncio.Task[None] | None = None
        self.others: set[asyncio.Task[Any]] = set()
        """The tasks alive, besides the turn, the moment the reply's block was left."""

    def start(self, script: Script) -> None:
        self.turn = asyncio.create_task(self._play(script))

    async def run(self, script: Script, *, until: float = 90.0) -> None:
        self.start(script)
        await self.clock.advance(until)
        assert self.turn is not None
        assert self.turn.done()
        await self.turn

    def statuses(self) -> list[str | None]:
        return [call.draft.status for call in self.surface.calls if call.draft is not None]

    async def _play(self, script: Script) -> None:
        try:
            async with self.reply:
                for at, event in script:
                    await self.clock.sleep(at - self.clock.now())
                    self.reply.feed(event)
        finally:
            self.others = asyncio.all_tasks() - {asyncio.current_task()}


# --- a retry says why the answer pauses --------------------------------------------------------


async def test_a_busy_model_shows_why_until_its_text_replaces_the_notice() -> None:
    scene = Scene()
    await scene.run([(0.0, BUSY), (30.0, text("Sunny.")), (31.0, finished("Sunny."))])
    assert scene.surface.calls == [
        Call(0.0, "post", "m1", PLACEHOLDER),
        Call(1.0, "edit", "m1", Draft(text="", status=MODEL_BUSY)),  # and for all 29 s more
        Call(30.0, "edit", "m1", Draft(text="Sunny.")),
        Call(31.0, "edit", "m1", Draft(text="Sunny.", final=True)),
    ]


async def test_a_lost_connection_rewinds_the_text_and_says_it_is_retrying() -> None:
    scene = Scene()
    retrying = ModelRetrying(attempt=1, wait=0.5, reason="the stream broke", busy=False)
    script: Script = [
        (0.0, text("Hel")),
        (0.5, AttemptVoid(attempt=1, reason="the stream broke")),
        (0.5, retrying),
        (2.0, text("Hello")),
        (3.0, finished("Hello")),
    ]
    await scene.run(script)
    assert scene.surface.calls == [
        Call(0.0, "post", "m1", PLACEHOLDER),
        Call(0.0, "edit", "m1", Draft(text="Hel")),
        Call(1.0, "edit", "m1", Draft(text="", status=MODEL_RETRYING)),
        Call(2.0, "edit", "m1", Draft(text="Hello")),
        Call(3.0, "edit", "m1", Draft(text="Hello", final=True)),
    ]


# --- a silent model is called slow -------------------------------------------------------------


async def test_five_silent_seconds_before_the_first_words_are_called_slow() -> None:
    scene = Scene()
    await scene.run([(12.0, text("Finally.")), (13.0, finished("Finally."))])
    assert scene.surface.calls == [
        Call(0.0, "post", "m1", PLACEHOLDER),
        Call(5.0, "edit", "m1", Draft(text="", status=MODEL_SLOW)),
        Call(12.0, "edit", "m1", Draft(text="Finally.")),
        Call(13.0, "edit", "m1", Draft(text="Finally.", final=True)),
    ]


async def test_a_model_stalled_mid_answer_is_called_slow_below_its_text() -> None:
    scene = Scene()
    script: Script = [(0.0, text("Once")), (9.0, text(" upon")), (10.0, finished("Once upon"))]
    await scene.run(script)
    assert scene.surface.calls == [
        Call(0.0, "post", "m1", PLACEHOLDER),
        Call(0.0, "edit", "m1", Draft(text="Once")),
        Call(5.0, "edit", "m1", Draft(text="Once", status=MODEL_SLOW)),
        Call(9.0, "edit", "m1", Draft(text="Once upon")),
        Call(10.0, "edit", "m1", Draft(text="Once upon", final=True)),
    ]


async def test_any_event_ends_the_silence_and_starts_counting_again() -> None:
    scene = Scene()  # reasoning is not shown, but it is the model speaking
    script: Script = [(7.0, ReasoningDelta(text="hmm")), (20.0, finished("Done."))]
    await scene.run(script)
    assert [(call.at, call.draft and call.draft.status) for call in scene.surface.calls] == [
        (0.0, THINKING),
        (5.0, MODEL_SLOW),
        (7.0, THINKING),
        (12.0, MODEL_SLOW),
        (20.0, None),
    ]


async def test_a_running_tool_speaks_for_itself() -> None:
    scene = Scene()
    script: Script = [
        (0.5, ToolStarted(call_id="c1", name="get_weather", arguments={}, activity="Checking")),
        (20.0, ToolFinished(call_id="c1", name="get_weather", ok=True, summary="", elapsed=19.5)),
        (20.5, text("Sunny.")),
        (21.5, finished("Sunny.")),
    ]
    await scene.run(script)
    assert scene.statuses() == [THINKING, "Checking…", "Checking — done", None, None]


async def test_a_retry_notice_is_not_replaced_by_the_slow_one() -> None:
    scene = Scene()
    await scene.run([(0.0, BUSY), (60.0, finished("Late."))])
    assert scene.statuses() == [THINKING, MODEL_BUSY, None]


async def test_an_answer_waiting_for_a_free_slot_says_so_and_is_not_called_slow() -> None:
    scene = Scene()
    await scene.run([(0.0, WaitingForSlot()), (40.0, text("Here.")), (41.0, finished("Here."))])
    assert scene.statuses() == [THINKING, WAITING_FOR_SLOT, None, None]


async def test_no_patience_never_calls_the_model_slow() -> None:
    scene = Scene(patience=None)
    await scene.run([(60.0, text("Finally.")), (61.0, finished("Finally."))])
    assert scene.statuses() == [THINKING, None, None]


@pytest.mark.parametrize("stopped", [False, True])
async def test_no_task_outlives_a_reply_that_was_waiting_on_the_model(stopped: bool) -> None:
    scene = Scene()
    scene.start([(2.0, text("Hi")), (60.0, finished("Hi"))])
    await scene.clock.advance(3.0)  # the flusher waits, with its patience running
    assert scene.turn is not None
    if stopped:
        scene.turn.cancel()
    await scene.clock.advance(60.0)
    assert scene.turn.done()
    assert scene.others == {asyncio.current_task()}  # no flusher, no timer: only this test
    assert scene.surface.calls[-1].draft == Draft(
        text="Hi", status="Stopped." if stopped else None, final=True
    )


# --- end to end: the engine, the client and the gateway ----------------------------------------


KEY = ConversationKey(platform="slack", workspace="T1", channel="C1", thread="1700000000.000100")


async def asked(store: MemoryStore, question: str) -> Lease:
    turn = await store.accept(
        event_id="test:1", key=KEY, order="000001",
        question=UserMessage(text=question, author_id="U1", author_name="Ada"),
        platform="slack", claim_ttl=60,
    )  # fmt: skip
    assert turn is not None
    lease = await store.take(KEY, owner="worker-1", lease_seconds=60)
    assert lease is not None
    return lease


async def test_a_rate_limited_gateway_shows_the_busy_notice_then_the_answer(
    gateway: FakeGateway, http: httpx2.AsyncClient
) -> None:
    clock = FakeClock()
    store = MemoryStore()
    limited = Error.openai(429, "Rate limit reached", type="rate_limit_error",
                           headers={"Retry-After": "30"})  # fmt: skip
    gateway.enqueue(limited, Stream(openai_chunks("It is sunny.")))
    client = LLMClient(
        http=http, protocol=OpenAIProtocol(), base_url=gateway.url + "/v1", api_key="sk-test",
        timeouts=Timeouts(connect=10, read_idle=10, total=30),
    )  # fmt: skip
    engine = ConversationEngine(
        client=client, store=store, tools=ToolRegistry([]),
        config=EngineConfig(model="fake/model", system_prompt="Be brief."),
        retry=RetryPolicy(max_attempts=2, max_retry_after=60.0, deadline=180.0),
        sleep=clock.sleep, clock=clock.now,
    )  # fmt: skip
    surface = FakeSurface(limits=SurfaceLimits(max_length=2000, edit_interval=0.0), clock=clock)
    reply = LiveReply(surface, TokenBucketBudget({}, clock=clock), clock=clock)
    seen: list[EngineEvent] = []

    async def turn(lease: Lease) -> None:
        async with reply, aclosing(engine.run_turn(lease)) as events:
            async for event in events:
                seen.append(event)
                reply.feed(event)

    lease = await asked(store, "Weather in Paris?")
    task = asyncio.create_task(turn(lease))
    busy = Draft(text="", status=MODEL_BUSY)
    await until(
        lambda: surface.messages.get("m1") == busy and clock.next_deadline == 30.0,
        "the busy notice shown while the retry waits out Retry-After",
        within=WAIT,
    )
    await clock.advance(30.0)
    await asyncio.wait_for(task, WAIT)

    assert [e for e in seen if isinstance(e, ModelRetrying)] == [
        ModelRetrying(attempt=1, wait=30.0, busy=True,
                      reason="the model gateway answered HTTP 429: Rate limit reached")
    ]  # fmt: skip
    assert surface.calls[:2] == [
        Call(0.0, "post", "m1", PLACEHOLDER),
        Call(0.0, "edit", "m1", busy),
    ]
    assert all(call.at == 30.0 and call.draft and not call.draft.status
               for call in surface.calls[2:])  # fmt: skip
    assert surface.calls[-1] == Call(30.0, "edit", "m1", Draft(text="It is sunny.", final=True))
    assert len(gateway.requests) == 2
    assert (await store.turn(lease.turn.id)).final_text == "It is sunny."
