"""StreamReply: engine events in, native streaming calls out — on a recording stream target, in
virtual time, with the real token-bucket budget.

A turn is a script of ``(at, event)`` pairs played by a task that feeds the reply, as the
bot's turn task would; the test moves the fake clock and reads what the platform saw.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from itertools import pairwise
from typing import Any

import pytest

from adapters.budget import Rate, TokenBucketBudget
from adapters.live import STOPPED
from adapters.stream_reply import (
    SESSION_DONE,
    Reply,
    StreamingRefused,
    StreamLimits,
    StreamReply,
    TaskUpdate,
)
from adapters.surface import SurfaceRateLimited
from adapters.text import restore_mentions
from core.events import (
    AttemptVoid,
    EngineEvent,
    TextDelta,
    ToolFinished,
    ToolStarted,
    TurnFailed,
    TurnFinished,
    Usage,
)
from tests.fakes.stream_target import FakeStreamTarget, Sent
from tests.support.clock import FakeClock, settle

START = ("slack.stream.start:T1",)
APPEND = ("slack.stream.append:T1",)
EDIT = ("slack.workspace:T1",)
LIMITS = StreamLimits(start_scopes=START, append_scopes=APPEND, edit_scopes=EDIT)
FEEDBACK = ({"type": "context_actions", "elements": [{"type": "feedback_buttons"}]},)
Script = Sequence[tuple[float, EngineEvent]]


def text(value: str) -> TextDelta:
    return TextDelta(text=value)


def finished(value: str) -> TurnFinished:
    return TurnFinished(text=value, usage=Usage(), rounds=1)


class Scene:
    """One reply on a fake target, with a clock, a budget, and its turn as a task."""

    def __init__(
        self,
        limits: StreamLimits = LIMITS,
        *,
        rates: dict[str, Rate] | None = None,
        **options: Any,
    ) -> None:
        self.clock = FakeClock()
        self.budget = TokenBucketBudget(rates, clock=self.clock)
        self.target = FakeStreamTarget(limits=limits, clock=self.clock)
        self.gone_calls = self.stop_calls = 0
        self.reply = StreamReply(
            self.target,
            self.budget,
            clock=self.clock,
            blocks=FEEDBACK,
            on_gone=self.on_gone,
            on_stop=self.on_stop,
            **options,
        )
        self.turn: asyncio.Task[None] | None = None

    def on_gone(self) -> None:
        self.gone_calls += 1
        if self.turn is not None:
            self.turn.cancel()

    def on_stop(self) -> None:
        """What the bot does: cancel the turn through its Stop path."""
        self.stop_calls += 1
        if self.turn is not None:
            self.turn.cancel()

    def start(self, script: Script) -> None:
        self.turn = asyncio.create_task(play(self.reply, self.clock, script))

    async def run(self, script: Script, *, until: float = 60.0) -> None:
        self.start(script)
        await self.clock.advance(until)
        assert self.turn is not None
        assert self.turn.done()
        if not self.turn.cancelled():
            await self.turn

    def sent(self, op: str) -> list[Sent]:
        return [s for s in self.target.calls if s.op == op and s.failed is None]


async def play(reply: Reply, clock: FakeClock, script: Script) -> None:
    async with reply:
        for at, event in script:
            await clock.sleep(at - clock.now())
            reply.feed(event)


def deltas(answer: str, size: int, every: float) -> list[tuple[float, EngineEvent]]:
    pieces = [answer[i : i + size] for i in range(0, len(answer), size)]
    return [(i * every, text(piece)) for i, piece in enumerate(pieces)]


# --- the whole answer -------------------------------------------------------------------------


async def test_the_finished_message_is_the_models_answer_with_feedback_under_it() -> None:
    scene = Scene()
    answer = "Paris is **sunny** today, 21 °C.\n\n```python\nprint('hi')\n```\n"
    script = [*deltas(answer, 5, 0.1), (3.0, finished(answer))]
    await scene.run(script)
    assert scene.target.visible() == [answer]
    (stop,) = scene.sent("stop")
    assert (stop.blocks, stop.session_status) == (FEEDBACK, SESSION_DONE)
    assert scene.reply.delivered
    assert scene.reply.messages == ("s1",)
    assert scene.target.ops()[0] == ("start", "s1")


async def test_appends_are_batched_within_the_append_budget() -> None:
    """60 deltas over 6 s: a start, then at most one append a second, each within the budget."""
    scene = Scene(rates={"slack.stream.append": Rate.per(2, 1, burst=1)})
    answer = "word " * 60
    await scene.run([*deltas(answer, 5, 0.1), (6.0, finished(answer))])
    appends = scene.sent("append")
    assert 4 <= len(appends) <= 7
    times = [a.at for a in appends]
    assert all(later - earlier >= 1.0 for earlier, later in pairwise(times))
    assert scene.target.visible() == [answer]


async def test_the_last_words_go_with_the_stop_when_a_stop_is_free() -> None:
    scene = Scene()
    answer = "one two three"
    await scene.run([(0.0, text("one ")), (0.6, finished(answer))])
    assert scene.sent("append") == []  # the stop carried them: one call of the shared Tier 4 saved
    (stop,) = scene.sent("stop")
    assert stop.markdown == "two three"
    assert stop.at == pytest.approx(0.6)
    assert scene.target.visible() == [answer]


async def test_the_last_words_go_as_an_append_while_the_stops_wait() -> None:
    """No stop free (one start and stop a minute here): the answer shows whole at once, as an
    append, and only the empty stop waits for its window."""
    scene = Scene(rates={"slack.stream.start": Rate.window(1, 60)})
    answer = "one two three"
    await scene.run([(0.0, text("one ")), (0.6, finished(answer))], until=90.0)
    (last,) = scene.sent("append")
    assert last.markdown == "two three"
    assert last.at == pytest.approx(0.6)
    (stop,) = scene.sent("stop")
    assert stop.markdown == ""
    assert stop.at == pytest.approx(60.0)
    assert scene.target.visible() == [answer]


async def test_an_answer_past_the_rollover_continues_in_new_messages_with_nothing_lost() -> None:
    scene = Scene()
    paragraph = "The quick brown fox jumps over the lazy dog. " * 20 + "\n\n"
    answer = (paragraph * 15)[:13_000]
    await scene.run([*deltas(answer, 400, 0.1), (5.0, finished(answer))])
    visible = scene.target.visible()
    assert len(visible) == 2
    assert all(len(message) <= 12_000 for message in visible)
    assert "".join(visible) == answer


async def test_a_fence_cut_by_a_rollover_is_closed_and_reopened() -> None:
    scene = Scene(StreamLimits(rollover_chars=200, start_scopes=START, append_scopes=APPEND))
    code = "".join(f"x = {i}\n" for i in range(60))
    answer = f"Here:\n\n```python\n{code}```\n"
    await scene.run([*deltas(answer, 30, 0.1), (5.0, finished(answer))])
    visible = scene.target.visible()
    assert len(visible) > 1
    assert all(len(message) <= 200 for message in visible)
    assert all(message.count("```") % 2 == 0 for message in visible)
    assert all(message.startswith("```python\n") for message in visible[1:])
    unwrapped = [visible[0].removesuffix("```")] + [
        m.removeprefix("```python\n").removesuffix("```") for m in visible[1:-1]
    ]  # each cut is at a line end here, so the closing marker follows the text's newline
    assert "".join([*unwrapped, visible[-1].removeprefix("```python\n")]) == answer


async def test_a_stream_past_its_lifetime_rolls_over_with_nothing_lost_or_doubled() -> None:
    scene = Scene()
    answer = "First part. Second part. Third."
    scene.start([(0.0, text("First part. ")), (2.0, text("Second part. ")),
                 (4.0, text("Third.")), (5.0, finished(answer))])  # fmt: skip
    await scene.clock.advance(1.0)
    scene.target.expire("s1")
    await scene.clock.advance(60.0)
    assert scene.turn is not None
    assert scene.turn.done()
    assert "".join(scene.target.visible()) == "First part. Second part. Third."
    assert scene.target.visible()[0] == "First part. "
    assert scene.reply.delivered


async def test_a_stream_that_cannot_be_stopped_is_finished_with_an_edit() -> None:
    scene = Scene()
    scene.start([(0.0, text("Almost ")), (10.0, finished("Almost done."))])
    await scene.clock.advance(5.0)
    scene.target.expire("s1")
    await scene.clock.advance(30.0)
    assert scene.target.visible() == ["Almost done."]
    (replace,) = scene.sent("replace")
    assert replace.blocks == FEEDBACK
    assert scene.reply.delivered


# --- rewinds and mentions ---------------------------------------------------------------------


async def test_a_rewind_after_streamed_text_leaves_exactly_one_visible_copy() -> None:
    scene = Scene()
    script: Script = [
        (0.0, text("The answer is 4")),
        (2.0, AttemptVoid(attempt=1, reason="connection reset")),
        (3.0, text("It is forty-two.")),
        (5.0, finished("It is forty-two.")),
    ]
    await scene.run(script)
    assert scene.target.visible() == ["It is forty-two."]
    assert scene.target.ops() == [
        ("start", "s1"), ("stop", "s1"), ("delete", "s1"), ("start", "s2"), ("stop", "s2"),
    ]  # fmt: skip


async def test_a_retry_that_says_the_same_again_takes_nothing_back() -> None:
    scene = Scene()
    script: Script = [
        (0.0, text("Hello, wor")),
        (2.0, AttemptVoid(attempt=1, reason="connection reset")),
        (3.0, text("Hello, world")),
        (5.0, finished("Hello, world")),
    ]
    await scene.run(script)
    assert scene.target.visible() == ["Hello, world"]
    assert not scene.sent("delete")


async def test_a_mass_mention_split_over_two_deltas_is_neutralized() -> None:
    scene = Scene()
    script: Script = [(0.0, text("Tell everyone <!he")), (2.0, text("re> now")),
              (4.0, finished("Tell everyone <!here> now"))]  # fmt: skip
    await scene.run(script)
    (shown,) = scene.target.visible()
    assert "<!here>" not in "".join(s.markdown for s in scene.target.calls)
    assert restore_mentions(shown) == "Tell everyone <!here> now"
    assert shown != "Tell everyone <!here> now"


async def test_at_everyone_split_over_two_deltas_is_neutralized() -> None:
    scene = Scene()
    script: Script = [(0.0, text("Ping @every")), (2.0, text("one please")),
              (4.0, finished("Ping @everyone please"))]  # fmt: skip
    await scene.run(script)
    assert "@everyone" not in "".join(s.markdown for s in scene.target.calls)
    assert restore_mentions(scene.target.visible()[0]) == "Ping @everyone please"


# --- tools, stops, failures -------------------------------------------------------------------


async def test_a_tool_shows_a_task_card_in_progress_then_complete() -> None:
    scene = Scene()
    started = ToolStarted(call_id="c1", name="get_weather", arguments={},
                          activity="Checking the weather in Paris")  # fmt: skip
    done = ToolFinished(call_id="c1", name="get_weather", ok=True, summary="21 °C, sunny",
                        elapsed=0.4)  # fmt: skip
    answer = "Let me check. It is sunny."
    script: Script = [(0.0, text("Let me check. ")), (1.5, started), (3.0, done),
                      (4.0, text("It is sunny.")), (5.0, finished(answer))]  # fmt: skip
    await scene.run(script)
    cards = [c for s in scene.target.calls for c in s.chunks if isinstance(c, TaskUpdate)]
    assert [(c.id, c.status) for c in cards] == [("c1", "in_progress"), ("c1", "complete")]
    assert cards[0].title == "Checking the weather in Paris"
    assert cards[1].output == "21 °C, sunny"
    assert scene.target.visible() == ["Let me check. It is sunny."]


async def test_stop_keeps_what_was_said_and_ends_stopped_with_no_append_after() -> None:
    scene = Scene()
    scene.start([(0.0, text("Partial answer")), (30.0, text(" never shown"))])
    await scene.clock.advance(2.0)
    assert scene.turn is not None
    scene.turn.cancel()
    await scene.clock.advance(10.0)
    assert scene.turn.done()
    (shown,) = scene.target.visible()
    assert shown == f"Partial answer\n\n_{STOPPED}_"
    assert scene.target.calls[-1].op == "stop"
    assert scene.target.calls[-1].session_status == SESSION_DONE


async def test_stopped_by_the_person_calls_on_stop_and_ends_stopped() -> None:
    scene = Scene()
    scene.start([(0.0, text("Working on it")), (2.0, text(" more")), (30.0, text(" never"))])
    await scene.clock.advance(1.0)
    scene.target.press_stop("s1")
    await scene.clock.advance(30.0)
    assert scene.stop_calls == 1
    assert scene.turn is not None
    assert scene.turn.done()
    assert scene.target.visible() == [f"Working on it more\n\n_{STOPPED}_"]
    failed = [s for s in scene.target.calls if s.failed]
    assert [s.failed for s in failed] == ["StoppedByUser"]
    assert not [s for s in scene.target.calls if s.op == "append" and s.at > failed[0].at]


async def test_a_rate_limit_is_back_pressure_and_then_the_newest_text_goes() -> None:
    scene = Scene()
    scene.target.fail_next("append", SurfaceRateLimited("ratelimited", retry_after=5.0))
    answer = "one two three four five"
    await scene.run([*deltas(answer, 4, 1.0), (8.0, finished(answer))])
    assert scene.target.visible() == [answer]
    limited = next(s for s in scene.target.calls if s.failed)
    later = [s for s in scene.target.calls if s.at > limited.at]
    assert later
    assert all(s.at >= limited.at + 5.0 for s in later)
    assert scene.reply.delivered


async def test_a_deleted_message_ends_the_reply_quietly() -> None:
    scene = Scene()
    scene.start([(0.0, text("Hello")), (2.0, text(" there")), (30.0, finished("Hello there"))])
    await scene.clock.advance(1.0)
    del scene.target.messages["s1"]
    await scene.clock.advance(40.0)
    assert scene.gone_calls == 1
    assert scene.reply.gone
    assert not scene.reply.delivered
    assert [s.failed for s in scene.target.calls if s.failed] == ["MessageGone"]


async def test_a_failed_turn_shows_its_error() -> None:
    scene = Scene()
    failed = TurnFailed(message="The model is unavailable.", partial_text="")
    await scene.run([(0.0, text("Let me")), (2.0, failed)])
    assert scene.target.visible() == ["Let me\n\n:warning: _The model is unavailable._"]


# --- refusal ----------------------------------------------------------------------------------


async def test_refused_streaming_falls_back_with_every_event_replayed() -> None:
    scene = Scene()
    refusals: list[str] = []
    # an editing LiveReply would go here; a second stream reply records the replay alike
    elsewhere = FakeStreamTarget(limits=LIMITS, clock=scene.clock)
    fallback = StreamReply(elsewhere, scene.budget, clock=scene.clock)
    scene.reply = StreamReply(
        scene.target,
        scene.budget,
        clock=scene.clock,
        fallback=lambda: fallback,
        on_refused=lambda error: refusals.append(error.code),
    )
    scene.target.fail_next("start", StreamingRefused("not_agent_app", code="not_agent_app"))
    answer = "Plain edits it is."
    await scene.run([(0.0, text("Plain ")), (1.0, text("edits it is.")), (2.0, finished(answer))])
    await settle()
    assert refusals == ["not_agent_app"]
    assert scene.target.visible() == []
    assert elsewhere.visible() == [answer]
    assert scene.reply.delivered
    assert scene.reply.messages == ("s1",)


async def test_refused_streaming_without_a_fallback_ends_undelivered() -> None:
    scene = Scene()
    scene.target.fail_next("start", StreamingRefused("feature_disabled", code="feature_disabled"))
    await scene.run([(0.0, text("Hi")), (1.0, finished("Hi"))])
    assert scene.reply.refused is not None
    assert scene.reply.refused.code == "feature_disabled"
    assert not scene.reply.delivered


# --- the Slack target, on a stub client -------------------------------------------------------


class _Response:
    def __init__(self, status_code: int, data: dict[str, Any], headers: dict[str, str]) -> None:
        self.status_code, self.data, self.headers = status_code, data, headers


class StubSlack:
    """An ``AsyncWebClient`` stand-in: records each call's arguments; answers or raises what it
    is told."""

    def __init__(self) -> None:
        self.retry_handlers: list[object] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.errors: list[tuple[str, int, dict[str, str]]] = []

    def fail_next(self, code: str, *, status: int = 200, retry_after: str = "") -> None:
        self.errors.append((code, status, {"Retry-After": retry_after} if retry_after else {}))

    async def _call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        self.calls.append((method, kwargs))
        if self.errors:
            from slack_sdk.errors import SlackApiError

            code, status, headers = self.errors.pop(0)
            response = _Response(status, {"ok": False, "error": code}, headers)
            raise SlackApiError(code, response)  # type: ignore[no-untyped-call]
        return {"ok": True, "ts": "1700000000.000100"}

    async def chat_startStream(self, **kwargs: Any) -> dict[str, Any]:
        return await self._call("chat.startStream", **kwargs)

    async def chat_appendStream(self, **kwargs: Any) -> dict[str, Any]:
        return await self._call("chat.appendStream", **kwargs)

    async def chat_stopStream(self, **kwargs: Any) -> dict[str, Any]:
        return await self._call("chat.stopStream", **kwargs)

    async def chat_update(self, **kwargs: Any) -> dict[str, Any]:
        return await self._call("chat.update", **kwargs)

    async def chat_delete(self, **kwargs: Any) -> dict[str, Any]:
        return await self._call("chat.delete", **kwargs)


def slack_stream(client: StubSlack, **options: Any) -> Any:
    from adapters.slack_stream import SlackStream

    return SlackStream(client, channel="C1", thread_ts="111.1", team="T1", **options)  # type: ignore[arg-type]


async def test_the_slack_target_sends_what_slack_takes() -> None:
    client = StubSlack()
    stream = slack_stream(client, recipient=("U1", "T1"))
    card = TaskUpdate(id="c1", title="Checking the weather", status="in_progress")
    ref = await stream.start("Hello", [])
    await stream.append(ref, markdown=" there", chunks=[card])
    await stream.stop(ref, markdown="", chunks=[], blocks=FEEDBACK, session_status="active")
    start, append, stop = client.calls
    start_chunks = start[1].pop("chunks")
    assert start == ("chat.startStream", {
        "channel": "C1", "thread_ts": "111.1", "recipient_user_id": "U1",
        "recipient_team_id": "T1", "task_display_mode": "timeline",
    })  # fmt: skip
    assert [c.to_dict() for c in start_chunks] == [{"type": "markdown_text", "text": "Hello"}]
    assert [c.to_dict() for c in append[1]["chunks"]] == [
        {"type": "markdown_text", "text": " there"},
        {"type": "task_update", "id": "c1", "title": "Checking the weather",
         "status": "in_progress"},
    ]  # fmt: skip
    assert stop == ("chat.stopStream", {
        "channel": "C1", "ts": ref, "blocks": list(FEEDBACK), "session_status": "active",
    })  # fmt: skip
    assert stream.limits.start_scopes == ("slack.stream.start:T1",)
    assert stream.limits.append_scopes == ("slack.stream.append:T1",)


async def test_the_slack_target_maps_slacks_errors() -> None:
    from adapters.stream_reply import StoppedByUser, StreamEnded
    from adapters.surface import MessageGone, MessageTooLong, SurfaceForbidden

    client = StubSlack()
    stream = slack_stream(client)
    expected = {
        "message_not_in_streaming_state": StreamEnded,
        "stopped_by_user": StoppedByUser,
        "not_agent_app": StreamingRefused,
        "feature_disabled": StreamingRefused,
        "channel_type_not_supported": StreamingRefused,
        "msg_too_long": MessageTooLong,
        "message_not_found": MessageGone,
        "is_archived": SurfaceForbidden,
    }
    for code, error in expected.items():
        client.fail_next(code)
        with pytest.raises(error, match=code) as raised:
            await stream.append("1.1", markdown="x", chunks=[])
        assert type(raised.value) is error
    client.fail_next("ratelimited", status=429, retry_after="7")
    with pytest.raises(SurfaceRateLimited) as limited:
        await stream.start("x", [])
    assert limited.value.retry_after == 7.0
    client.fail_next("not_agent_app")
    with pytest.raises(StreamingRefused) as refused:
        await stream.start("x", [])
    assert refused.value.code == "not_agent_app"
