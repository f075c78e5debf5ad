"""TurnWorker: the journal's turns answered on a platform — in order, once, and after a crash.

The platform here is a recording one (``tests.fakes.surface.FakeSurface`` per thread); the
engine is the real one, over the loopback gateway; the store is the memory store on a fake
clock the tests move, which the worker reads and its recovery loop sleeps on, so an expired
lease or an hour between prunes is a number, not a wait.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx2
import pytest

from adapters.budget import Rate, TokenBucketBudget
from adapters.clock import RealClock
from adapters.live import LiveReply
from adapters.surface import Draft, MessageRef, Surface, SurfaceLimits, SurfaceRateLimited
from bots.replies import BROKEN, INTERRUPTED, OFFLINE, RESTARTING
from bots.turns import PRUNE_INTERVAL, TurnWorker, WorkerTiming
from core.client import LLMClient, Timeouts
from core.engine import ConversationEngine, EngineConfig
from core.limits import UsageLimits
from core.messages import AssistantMessage, ConversationKey, UserMessage
from core.protocols import OpenAIProtocol
from core.retry import RetryPolicy
from core.store import Lease, MemoryStore, SqliteStore, StoreError, Turn
from core.store.usage import user_key
from core.tools import Tool, ToolRegistry, tool
from tests.conftest import Closing
from tests.fakes.llm_gateway import FakeGateway, Stream
from tests.fakes.streams import openai_chunks
from tests.fakes.surface import FakeSurface
from tests.support.clock import FakeClock
from tests.support.waiting import until

KEY = ConversationKey(platform="slack", workspace="T1", channel="C1", thread="1700000000.000100")
OTHER = ConversationKey(platform="slack", workspace="T1", channel="C1", thread="1700000009.000100")
LIMITS = SurfaceLimits(max_length=2000, edit_interval=0.0)
LEASE = 30.0
DEAD = "host:1:dead"
DAY = 86400.0


class RecordingPlatform:
    """A platform whose threads are fake surfaces; ``notices`` answer a question's text with
    a notice instead of the model."""

    def __init__(self) -> None:
        self.surfaces: dict[str, FakeSurface] = {}
        self.notices: dict[str, str] = {}
        self.finished: list[int] = []
        self.budget = TokenBucketBudget({}, clock=RealClock())

    def thread(self, key: ConversationKey) -> FakeSurface:
        return self.surfaces.setdefault(str(key), FakeSurface(limits=LIMITS, clock=RealClock()))

    async def prepare(self, lease: Lease) -> Lease | str:
        return self.notices.get(lease.turn.question.text, lease)

    async def surface(self, turn: Turn) -> Surface:
        return self.thread(turn.key)

    def reply(
        self,
        turn: Turn,
        surface: Surface,
        *,
        on_gone: Callable[[], None],
        on_posted: Callable[[tuple[MessageRef, ...]], Awaitable[None]],
    ) -> LiveReply:
        return LiveReply(
            surface, self.budget, on_gone=on_gone, on_posted=on_posted, name=f"turn {turn.id}"
        )

    async def finished_turn(self, turn: Turn) -> None:
        self.finished.append(turn.id)


class Scene:
    def __init__(self, gateway: FakeGateway, http: httpx2.AsyncClient) -> None:
        self.gateway = gateway
        self.clock = FakeClock(1_000.0)
        self.store = MemoryStore(clock=self.clock.now)
        self.platform = RecordingPlatform()
        self.platform.finished = []
        client = LLMClient(
            http=http, protocol=OpenAIProtocol(), base_url=gateway.url + "/v1",
            api_key="sk-test", timeouts=Timeouts(connect=5, read_idle=5, total=20),
        )  # fmt: skip
        self.engine = ConversationEngine(
            client=client, store=self.store, tools=ToolRegistry([]),
            config=EngineConfig(model="fake/model", system_prompt="Be brief."),
            retry=RetryPolicy(max_attempts=1, base_delay=0.0, max_delay=0.0, deadline=20.0),
        )  # fmt: skip
        self.worker = self.new_worker("host:2:me")

    def new_worker(
        self, owner: str, *, retention: float | None = None, limits: UsageLimits | None = None
    ) -> TurnWorker:
        platform = self.platform

        class Adapter:  # the Platform protocol over the recording platform
            prepare = platform.prepare
            surface = platform.surface
            reply = platform.reply
            finished = platform.finished_turn

        timing = WorkerTiming(
            lease_seconds=LEASE, recovery_max_age=3600, retention_seconds=retention,
            now=self.clock.now, sleep=self.clock.sleep,
        )  # fmt: skip
        return TurnWorker(
            store=self.store, engine=self.engine, platform=Adapter(), budget=platform.budget,
            timing=timing, owner=owner, limits=limits,
        )  # fmt: skip

    async def accept(self, text: str, order: str, *, key: ConversationKey = KEY) -> Turn:
        turn = await self.store.accept(
            event_id=f"{key}/{order}", key=key, order=order,
            question=UserMessage(text=text, author_id="U1", author_name="Ada"),
            platform="Slack", claim_ttl=600,
        )  # fmt: skip
        assert turn is not None
        return turn

    async def idle(self) -> None:
        await until(lambda: self.worker.busy == 0, "the worker is idle", within=20)

    def shown(self, key: ConversationKey = KEY) -> list[str]:
        return self.platform.thread(key).visible()

    def questions(self) -> list[list[str]]:
        """The user messages of each model request, in order."""
        return [
            [m["content"] for m in (request.json or {})["messages"] if m["role"] == "user"]
            for request in self.gateway.requests
        ]


@pytest.fixture
async def scene(gateway: FakeGateway, http: httpx2.AsyncClient) -> AsyncIterator[Scene]:
    made = Scene(gateway, http)
    yield made
    await made.worker.close()


def answers(*texts: str) -> list[Stream]:
    return [Stream(openai_chunks(text)) for text in texts]


# --- a thread's turns -------------------------------------------------------------------------


async def test_a_threads_turns_are_answered_once_each_in_the_platforms_order(
    scene: Scene,
) -> None:
    scene.gateway.enqueue(*answers("One.", "Two.", "Three."))
    for text, order in (("third", "3"), ("first", "1"), ("second", "2")):
        await scene.accept(text, order)
    scene.worker.wake(KEY)
    scene.worker.wake(KEY)  # a second wake starts no second drainer
    await scene.idle()
    assert scene.questions() == [
        ["first"],
        ["first", "second"],
        ["first", "second", "third"],
    ]  # each question once, after the answers before it
    assert scene.shown() == ["One.", "Two.", "Three."]
    states = [(await scene.store.turn(n)).state for n in (1, 2, 3)]
    assert states == ["delivered"] * 3


async def test_two_threads_are_answered_side_by_side(scene: Scene) -> None:
    scene.gateway.enqueue(*answers("Here.", "There."))
    await scene.accept("here", "1")
    await scene.accept("there", "1", key=OTHER)
    scene.worker.wake(KEY)
    scene.worker.wake(OTHER)
    await scene.idle()
    assert sorted([*scene.shown(), *scene.shown(OTHER)]) == ["Here.", "There."]


async def test_a_notice_instead_of_an_answer_ends_the_turn_failed(scene: Scene) -> None:
    scene.platform.notices["too long"] = "That message is too long for me."
    scene.gateway.enqueue(*answers("Fine."))
    await scene.accept("too long", "1")
    await scene.accept("short", "2")
    scene.worker.wake(KEY)
    await scene.idle()
    assert scene.shown() == ["That message is too long for me.", "Fine."]
    first = await scene.store.turn(1)
    assert (first.state, first.error) == ("failed", "That message is too long for me.")
    assert scene.questions() == [["short"]]  # the refused question is not history
    assert scene.platform.finished == [1, 2]


async def test_a_turn_that_breaks_around_its_answer_ends_broken_not_running(
    scene: Scene,
) -> None:
    async def no_surface(turn: Turn) -> Surface:
        raise RuntimeError("the platform client is closed")

    scene.platform.surface = no_surface  # type: ignore[method-assign]
    scene.worker = scene.new_worker("host:2:me")  # over the broken platform
    turn = await scene.accept("hello", "1")
    scene.worker.wake(KEY)
    await scene.idle()
    ended = await scene.store.turn(turn.id)
    assert (ended.state, ended.error) == ("failed", BROKEN)  # not retried forever by recovery
    assert await scene.store.stranded() == []


async def test_stop_ends_that_answer_and_the_next_turn_runs(scene: Scene) -> None:
    scene.gateway.enqueue(
        Stream.stalled(openai_chunks("A long answer that never ends"), after=2),
        *answers("Next."),
    )
    first = await scene.accept("go on", "1")
    await scene.accept("next", "2")
    scene.worker.wake(KEY)
    await until(lambda: scene.worker.answering(first.id) is not None, "the first answer")
    await until(lambda: any(scene.shown()), "the first words")
    assert scene.worker.stop(first.id) is True
    await scene.idle()
    assert scene.worker.stop(first.id) is False  # it has ended
    stopped = await scene.store.turn(first.id)
    assert (stopped.state, stopped.error) == ("failed", "stopped")
    assert scene.shown()[-1] == "Next."


async def test_a_turn_taken_over_mid_answer_is_left_to_its_new_owner_without_a_word(
    scene: Scene,
) -> None:
    """Another worker took the lease (this one was paused past it, say): this worker sends
    nothing more — no "stopped", no Stop button taken away — and writes nothing."""
    scene.gateway.enqueue(Stream.stalled(openai_chunks("A long answer that never ends"), after=2))
    turn = await scene.accept("go on", "1")
    scene.worker.wake(KEY)
    await until(lambda: any(scene.shown()), "the first words")
    surface = scene.platform.thread(KEY)
    shown, calls = dict(surface.messages), len(surface.calls)

    other = await scene.store.take_over(turn.id, owner="host:9:other", lease_seconds=LEASE,
                                        force=True)  # fmt: skip
    assert other is not None
    await scene.clock.advance(LEASE / 3)  # the next renewal finds the lease gone
    await scene.idle()
    assert (surface.messages, len(surface.calls)) == (shown, calls)
    now = await scene.store.turn(turn.id)
    assert (now.state, now.owner, now.refs) == ("running", "host:9:other", other.turn.refs)


# --- channel settings and usage -----------------------------------------------------------------


async def test_a_channels_prompt_and_model_reach_its_turns_only(scene: Scene) -> None:
    await scene.store.set_channel_settings("slack", "T1", "C1", prompt="Answer in French.",
                                           model="not-configured", by="U9")  # fmt: skip
    elsewhere = ConversationKey(platform="slack", workspace="T1", channel="C2", thread="1.1")
    scene.gateway.enqueue(*answers("Bonjour.", "Hello."))
    await scene.accept("hi", "1")
    scene.worker.wake(KEY)
    await scene.idle()
    await scene.accept("hi", "1", key=elsewhere)
    scene.worker.wake(elsewhere)
    await scene.idle()
    here, there = (request.json["messages"][0]["content"] for request in scene.gateway.requests)
    assert "Instructions for this channel, from its admins:\nAnswer in French." in here
    assert "Answer in French." not in there
    assert [r.json["model"] for r in scene.gateway.requests] == ["fake/model"] * 2  # unknown


async def test_a_turns_tokens_are_counted_for_its_asker(scene: Scene) -> None:
    scene.gateway.enqueue(*answers("One."))  # the fake gateway reports 10 in, 5 out
    await scene.accept("count me", "1")
    scene.worker.wake(KEY)
    await scene.idle()
    used = await scene.store.usage(user_key("slack", "T1", "U1"), now=scene.clock.now())
    assert (used.day, used.month) == (15, 15)


async def test_a_user_over_the_daily_budget_is_told_and_the_model_not_asked(
    scene: Scene,
) -> None:
    await scene.store.add_usage(user_key("slack", "T1", "U1"), 1_000)
    await scene.worker.close()
    scene.worker = scene.new_worker("host:2:me", limits=UsageLimits(daily_tokens=1_000))
    turn = await scene.accept("one more?", "1")
    scene.worker.wake(KEY)
    await scene.idle()
    assert scene.gateway.requests == []
    (shown,) = scene.shown()
    assert "tokens for today" in shown
    assert "resets" in shown
    assert (await scene.store.turn(turn.id)).state == "failed"


async def test_usage_is_exact_under_twenty_concurrent_turns_over_two_connections(
    gateway: FakeGateway, http: httpx2.AsyncClient, tmp_path: Path, closing: Closing
) -> None:
    """One user's 20 answers at once, taken by two workers on two connections to one store
    file: every turn's 15 tokens (the fake gateway's 10 in, 5 out) counted, none lost."""
    path = tmp_path / "relaybot.db"
    stores = [await closing(SqliteStore.open(path)) for _ in range(2)]
    platform = RecordingPlatform()

    class Adapter:
        prepare = platform.prepare
        surface = platform.surface
        reply = platform.reply
        finished = platform.finished_turn

    workers = []
    for n, store in enumerate(stores):
        client = LLMClient(
            http=http, protocol=OpenAIProtocol(), base_url=gateway.url + "/v1",
            api_key="sk-test", timeouts=Timeouts(connect=5, read_idle=5, total=20),
        )  # fmt: skip
        engine = ConversationEngine(
            client=client, store=store, tools=ToolRegistry([]),
            config=EngineConfig(model="fake/model", system_prompt="Be brief."),
            retry=RetryPolicy(max_attempts=1, base_delay=0.0, max_delay=0.0, deadline=20.0),
        )  # fmt: skip
        workers.append(TurnWorker(store=store, engine=engine, platform=Adapter(),
                                  budget=platform.budget, owner=f"host:{n}:w"))  # fmt: skip
    gateway.enqueue(*answers(*["Counted."] * 20))
    for n in range(20):
        key = ConversationKey(platform="slack", workspace="T1", channel="C1", thread=f"{n}.1")
        await stores[n % 2].accept(
            event_id=f"e{n}", key=key, order=f"{n}.1", platform="Slack", claim_ttl=600,
            question=UserMessage(text="count me", author_id="U1", author_name="Ada"),
        )  # fmt: skip
        workers[n % 2].wake(key)
    try:
        await until(lambda: len(platform.finished) == 20 and not any(w.busy for w in workers),
                    "every answer", within=30)  # fmt: skip
    finally:
        for worker in workers:
            await worker.close()
    used = await stores[1].usage(user_key("slack", "T1", "U1"), now=time.time())
    assert (used.day, used.month) == (20 * 15, 20 * 15)


# --- recovery -----------------------------------------------------------------------------------


async def stranded_by_a_dead_worker(
    scene: Scene, text: str, *, shown: str = "Half an ans", tool: bool = False
) -> Turn:
    """A turn a dead worker took, showed a partial answer of (and ran a tool for)."""
    turn = await scene.accept(text, "1")
    lease = await scene.store.take(KEY, owner=DEAD, lease_seconds=LEASE)
    assert lease is not None
    ref = await scene.platform.thread(KEY).post(Draft(text=shown))
    await scene.store.save_refs(lease, [ref])
    if tool:
        await scene.store.tool_started(lease, "call_1")
    return turn


async def test_a_turn_whose_worker_died_is_answered_again_in_place_of_its_partial_answer(
    scene: Scene,
) -> None:
    turn = await stranded_by_a_dead_worker(scene, "what is up?")
    scene.gateway.enqueue(*answers("All is well."))
    await scene.worker.recover()
    assert scene.gateway.requests == []  # the lease is still live: nothing to recover yet
    await scene.clock.advance(LEASE + 1)
    await scene.worker.recover()
    await scene.idle()
    assert scene.shown() == ["All is well."]  # in place of the partial answer
    assert (await scene.store.turn(turn.id)).state == "delivered"
    assert scene.questions() == [["what is up?"]]


async def test_a_message_accepted_just_before_a_crash_is_answered_at_the_next_start(
    scene: Scene,
) -> None:
    """The process died between accepting and taking it (Slack's acknowledgement may not have
    gone out either): the next start finds it queued and answers it, once."""
    turn = await scene.accept("are you there?", "1")
    scene.gateway.enqueue(*answers("Here."))
    await scene.worker.start()
    await scene.idle()
    assert scene.shown() == ["Here."]
    assert (await scene.store.turn(turn.id)).state == "delivered"
    assert (
        await scene.store.accept(
            event_id=turn.event_id,
            key=KEY,
            order="1",
            question=turn.question,
            platform="Slack",
            claim_ttl=600,
        )
        is None
    )  # Slack's retry of that event: accepted already, nothing more
    assert len(scene.gateway.requests) == 1


async def test_at_start_a_dead_processs_turn_is_taken_at_once(scene: Scene) -> None:
    turn = await stranded_by_a_dead_worker(scene, "still there?")
    scene.gateway.enqueue(*answers("Yes."))
    await scene.worker.recover(is_dead=lambda owner: owner == DEAD)  # its lease is live
    await scene.idle()
    assert scene.shown() == ["Yes."]
    assert (await scene.store.turn(turn.id)).state == "delivered"


async def test_a_turn_that_ran_a_tool_ends_with_the_interrupted_notice(scene: Scene) -> None:
    turn = await stranded_by_a_dead_worker(scene, "book it", tool=True)
    await scene.clock.advance(LEASE + 1)
    await scene.worker.recover()
    await scene.idle()
    assert scene.gateway.requests == []  # never run again: a tool never runs twice
    assert scene.platform.thread(KEY).messages == {"m1": Draft(text=INTERRUPTED, final=True)}
    ended = await scene.store.turn(turn.id)
    assert (ended.state, ended.error) == ("failed", INTERRUPTED)


async def test_an_answered_turn_that_was_not_delivered_is_delivered(scene: Scene) -> None:
    turn = await stranded_by_a_dead_worker(scene, "hello")
    lease = await scene.store.take_over(turn.id, owner=DEAD, lease_seconds=LEASE, force=True)
    assert lease is not None
    answer = AssistantMessage(text="Hello, Ada!", finish_reason="stop")
    await scene.store.answered(lease, messages=[answer], text="Hello, Ada!", finish_reason="stop")
    await scene.clock.advance(LEASE + 1)
    await scene.worker.recover()
    await scene.idle()
    assert scene.gateway.requests == []
    assert scene.shown() == ["Hello, Ada!"]
    assert (await scene.store.turn(turn.id)).state == "delivered"


async def test_a_turn_too_old_to_answer_says_so(scene: Scene) -> None:
    turn = await scene.accept("yesterday's question", "1")
    await scene.clock.advance(3601)
    await scene.worker.recover()
    await scene.idle()
    assert scene.gateway.requests == []
    assert scene.shown() == [OFFLINE]
    ended = await scene.store.turn(turn.id)
    assert (ended.state, ended.error) == ("failed", OFFLINE)


async def test_queued_turns_left_behind_are_answered_after_the_recovered_one(scene: Scene) -> None:
    await stranded_by_a_dead_worker(scene, "first")
    await scene.accept("second", "2")
    scene.gateway.enqueue(*answers("One.", "Two."))
    await scene.clock.advance(LEASE + 1)
    await scene.worker.recover()
    await scene.idle()
    assert scene.shown() == ["One.", "Two."]
    assert scene.questions() == [["first"], ["first", "second"]]


# --- retention --------------------------------------------------------------------------------


def said(text: str) -> UserMessage:
    return UserMessage(text=text, author_id="U1", author_name="Ada")


async def test_start_deletes_the_history_older_than_the_retention(
    scene: Scene, caplog: pytest.LogCaptureFixture
) -> None:
    await scene.store.append(KEY, [said("a month ago"), said("and a reply")])
    await scene.clock.advance(29 * DAY)
    await scene.store.append(KEY, [said("yesterday")])
    await scene.clock.advance(DAY)

    keeper = scene.new_worker("host:2:keeper")  # retention off: everything is kept
    await keeper.start()
    await keeper.close()
    assert len(await scene.store.load(KEY)) == 3

    scene.worker = scene.new_worker("host:2:me", retention=7 * DAY)
    with caplog.at_level("INFO", logger="relaybot.turns"):
        await scene.worker.start()
    assert await scene.store.load(KEY) == [said("yesterday")]
    assert "deleted 2 messages older than retention_days (7)" in caplog.messages


async def test_old_history_is_deleted_again_an_hour_later_not_before(scene: Scene) -> None:
    scene.worker = scene.new_worker("host:2:me", retention=60)
    await scene.worker.start()  # deletes (nothing) now: the next time is an hour from now
    await scene.store.append(KEY, [said("hello")])

    await scene.clock.advance(PRUNE_INTERVAL - LEASE / 2)  # the recovery loop ran all along
    assert await scene.store.load(KEY) == [said("hello")]  # long past the retention, but kept
    await scene.clock.advance(LEASE / 2)  # the loop's first round an hour after the start
    assert await scene.store.load(KEY) == []


async def test_a_store_that_fails_to_delete_is_logged_and_asked_again_an_hour_later(
    scene: Scene, caplog: pytest.LogCaptureFixture
) -> None:
    asked: list[float] = []

    async def failing_prune(*, older_than: float) -> int:
        asked.append(older_than)
        raise StoreError("memory store: the disk is full")

    scene.store.prune = failing_prune  # type: ignore[method-assign]
    scene.worker = scene.new_worker("host:2:me", retention=DAY)
    await scene.worker.start()  # not fatal
    assert "could not delete history older than retention_days (1)" in caplog.messages
    await scene.clock.advance(PRUNE_INTERVAL)
    assert asked == [1_000.0 - DAY, 1_000.0 + PRUNE_INTERVAL - DAY]  # the loop goes on

    scene.gateway.enqueue(*answers("Still here."))  # and turns are still answered
    await scene.accept("hello?", "1")
    scene.worker.wake(KEY)
    await scene.idle()
    assert scene.shown() == ["Still here."]


# --- shutdown -----------------------------------------------------------------------------------


class Blocking:
    """A tool that runs until the test lets it go."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.go = asyncio.Event()

    def tool(self) -> Tool:
        @tool(activity="Checking")
        async def check(topic: str) -> str:
            """Check a topic."""
            self.started.set()
            await self.go.wait()
            return "checked"

        return check


async def test_a_shutdown_hands_back_an_answer_that_ran_no_tool_and_the_next_start_answers_it(
    scene: Scene,
) -> None:
    scene.gateway.enqueue(Stream.stalled(openai_chunks("A long answer that never ends"), after=2))
    first = await scene.accept("go on", "1")
    follow_up = await scene.accept("and then?", "2")
    scene.worker.wake(KEY)
    await until(lambda: any(scene.shown()), "the first words")

    await scene.worker.shutdown(grace=8)
    surface = scene.platform.thread(KEY)
    assert list(surface.messages.values()) == [Draft(text="", status=RESTARTING, final=True)]
    released = await scene.store.turn(first.id)
    assert (released.state, released.owner, released.refs) == ("queued", None, ("m1",))
    assert (await scene.store.turn(follow_up.id)).state == "queued"  # never taken
    scene.gateway.release_stalls()

    scene.gateway.enqueue(*answers("All of it.", "Then this."))
    scene.worker = scene.new_worker("host:3:next")
    await scene.worker.start()
    await scene.idle()
    assert scene.shown() == ["All of it.", "Then this."]  # the notice gave way to the answer
    assert [(await scene.store.turn(n)).state for n in (first.id, follow_up.id)] == [
        "delivered",
        "delivered",
    ]
    assert scene.questions()[-2:] == [["go on"], ["go on", "and then?"]]


async def test_a_shutdown_ends_an_answer_that_ran_a_tool_as_interrupted(
    scene: Scene, gateway: FakeGateway
) -> None:
    blocking = Blocking()
    scene.engine._tools = ToolRegistry([blocking.tool()])
    gateway.enqueue(
        Stream(openai_chunks("Let me check. ", tool_calls=[("call_1", "check", '{"topic": "x"}')]))
    )
    turn = await scene.accept("check x", "1")
    scene.worker.wake(KEY)
    await blocking.started.wait()

    await scene.worker.shutdown(grace=8)
    shown = list(scene.platform.thread(KEY).messages.values())
    assert shown == [Draft(text="Let me check. ", status=INTERRUPTED, final=True, error=True)]
    ended = await scene.store.turn(turn.id)
    assert (ended.state, ended.error) == ("failed", INTERRUPTED)
    assert await scene.store.stranded() == []  # nothing for the next start to run again


async def test_a_complete_answer_is_delivered_during_a_shutdown(scene: Scene) -> None:
    scene.platform.budget = TokenBucketBudget({"chat": Rate.per(1, 60)}, clock=scene.clock)
    surface = scene.platform.thread(KEY)
    surface._limits = SurfaceLimits(max_length=2000, edit_interval=0.0, budget_scopes=("chat",))
    scene.worker = scene.new_worker("host:2:me")
    scene.gateway.enqueue(*answers("Done."))
    turn = await scene.accept("quick", "1")
    scene.worker.wake(KEY)
    await until(lambda: surface.calls, "the placeholder")
    await until(lambda: scene.worker.busy and scene.gateway.pending == 0, "the model answered")
    await until(
        lambda: scene.worker._answers and next(iter(scene.worker._answers.values())).complete,
        "the answer complete, waiting for the budget",
    )

    shutting = asyncio.create_task(scene.worker.shutdown(grace=120))
    await scene.clock.advance(61)
    await shutting
    assert list(surface.messages.values()) == [Draft(text="Done.", final=True)]
    assert (await scene.store.turn(turn.id)).state == "delivered"


async def test_what_is_not_shown_within_the_grace_is_left_to_the_next_start(scene: Scene) -> None:
    surface = scene.platform.thread(KEY)
    scene.gateway.enqueue(Stream.stalled(openai_chunks("Never finished"), after=2))
    turn = await scene.accept("go on", "1")
    scene.worker.wake(KEY)
    await until(lambda: any(scene.shown()), "the first words")
    surface.fail_next("edit", SurfaceRateLimited("ratelimited", retry_after=600))

    shutting = asyncio.create_task(scene.worker.shutdown(grace=8))
    await until(lambda: surface.calls[-1].failed == "SurfaceRateLimited", "the rate limit")
    await scene.clock.advance(8)
    await shutting  # within the grace, though the notice could not be shown
    assert scene.worker.busy == 0
    released = await scene.store.turn(turn.id)
    assert released.state == "queued"  # the next start answers it in place of what shows
    scene.gateway.release_stalls()
