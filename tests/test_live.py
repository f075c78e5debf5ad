"""LiveReply: engine events in, platform calls out — on a recording surface, in virtual time.

A turn is a script of ``(at, event)`` pairs played by a task that feeds the reply, as a bot's
turn task would; the test moves the fake clock and compares the calls the platform saw.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from itertools import accumulate, pairwise
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.budget import Rate, TokenBucketBudget
from adapters.live import LiveReply
from adapters.surface import (
    Draft,
    MessageTooLong,
    SurfaceError,
    SurfaceForbidden,
    SurfaceLimits,
    SurfaceRateLimited,
)
from adapters.text import join_pieces, restore_mentions, split_message
from core.events import (
    AttemptVoid,
    EngineEvent,
    ReasoningDelta,
    TextDelta,
    ToolFinished,
    ToolStarted,
    TurnFailed,
    TurnFinished,
    Usage,
)
from tests.fakes.surface import Call, FakeSurface
from tests.support.clock import FakeClock, settle

LIMITS = SurfaceLimits(max_length=2000, edit_interval=1.0)
PLACEHOLDER = Draft(text="", status="Thinking…")
Script = Sequence[tuple[float, EngineEvent]]


def text(value: str) -> TextDelta:
    return TextDelta(text=value)


def finished(value: str) -> TurnFinished:
    return TurnFinished(text=value, usage=Usage(), rounds=1)


def started(activity: str, call_id: str = "c1") -> ToolStarted:
    return ToolStarted(call_id=call_id, name="get_weather", arguments={}, activity=activity)


def done(call_id: str = "c1", *, ok: bool = True) -> ToolFinished:
    return ToolFinished(call_id=call_id, name="get_weather", ok=ok, summary="", elapsed=0.1)


class Scene:
    """One reply on a fake surface, with a clock, a budget, and its turn as a task."""

    def __init__(
        self,
        limits: SurfaceLimits = LIMITS,
        *,
        rates: Mapping[str, Rate] | None = None,
        **options: Any,
    ) -> None:
        self.clock = FakeClock()
        self.budget = TokenBucketBudget(rates, clock=self.clock)
        self.surface = FakeSurface(limits=limits, clock=self.clock)
        self.gone_calls = 0
        self.reply = LiveReply(
            self.surface, self.budget, clock=self.clock, on_gone=self.on_gone, **options
        )
        self.turn: asyncio.Task[None] | None = None

    def on_gone(self) -> None:
        self.gone_calls += 1
        if self.turn is not None:
            self.turn.cancel()

    def start(self, script: Script, *, fail: Exception | None = None) -> None:
        self.turn = asyncio.create_task(play(self.reply, self.clock, script, fail=fail))

    async def run(self, script: Script, *, until: float = 30.0) -> None:
        """Play the whole turn and let ``until`` virtual seconds pass."""
        self.start(script)
        await self.end(until)

    async def end(self, until: float) -> None:
        assert self.turn is not None
        await self.clock.advance(until)
        assert self.turn.done()
        await self.turn


async def play(
    reply: LiveReply, clock: FakeClock, script: Script, *, fail: Exception | None = None
) -> None:
    async with reply:
        for at, event in script:
            await clock.sleep(at - clock.now())
            reply.feed(event)
        if fail is not None:
            raise fail


# --- timing ------------------------------------------------------------------------------------


async def test_three_deltas_in_a_fifth_of_a_second_make_one_edit() -> None:
    scene = Scene()
    deltas = [(0.0, text("Hel")), (0.1, text("lo, ")), (0.2, text("world"))]
    script: Script = [*deltas, (3.0, finished("Hello, world"))]
    await scene.run(script)
    assert scene.surface.calls == [
        Call(0.0, "post", "m1", PLACEHOLDER),
        Call(0.0, "edit", "m1", Draft(text="Hel")),
        Call(1.0, "edit", "m1", Draft(text="Hello, world")),
        Call(3.0, "edit", "m1", Draft(text="Hello, world", final=True)),
    ]


async def test_placeholder_at_once_then_first_text_within_one_flusher_tick() -> None:
    scene = Scene()
    async with scene.reply as reply:
        await settle()
        assert scene.surface.calls == [Call(0.0, "post", "m1", PLACEHOLDER)]
        reply.feed(text("Hi"))
        await settle()
        assert scene.surface.visible() == ["Hi"]
        assert scene.surface.messages["m1"] == Draft(text="Hi")
        reply.feed(finished("Hi there"))
        await scene.clock.advance(1.0)
    assert reply.messages == ("m1",)
    assert scene.surface.calls[-1] == Call(1.0, "edit", "m1", Draft(text="Hi there", final=True))


async def test_no_placeholder_posts_the_first_text() -> None:
    scene = Scene(placeholder=None)
    await scene.run([(0.5, text("Hi")), (0.6, finished("Hi"))])
    assert scene.surface.calls == [
        Call(0.5, "post", "m1", Draft(text="Hi")),
        Call(1.5, "edit", "m1", Draft(text="Hi", final=True)),
    ]


async def test_unchanged_text_is_never_sent_again() -> None:
    scene = Scene()
    script: Script = [
        (0.0, text("Hello")),
        (0.2, ReasoningDelta(text="hmm")),  # not shown
        (0.3, AttemptVoid(attempt=1, reason="stream interrupted")),
        (0.5, text("Hello")),  # the retry says the same: nothing to edit
        (5.0, finished("Hello")),
    ]
    await scene.run(script)
    assert scene.surface.calls == [
        Call(0.0, "post", "m1", PLACEHOLDER),
        Call(0.0, "edit", "m1", Draft(text="Hello")),
        Call(5.0, "edit", "m1", Draft(text="Hello", final=True)),
    ]


async def test_rate_limited_edit_waits_retry_after_then_sends_the_newest_text() -> None:
    limits = SurfaceLimits(max_length=2000, edit_interval=1.0, budget_scopes=("chat:C1",))
    scene = Scene(limits, rates={"chat": Rate.per(10, 1, burst=10)})
    scene.surface.fail_next("edit", SurfaceRateLimited("ratelimited", retry_after=2.0))
    deltas = [(0.0, text("a")), (0.5, text("b")), (1.0, text("c")), (1.5, text("d"))]
    script: Script = [*deltas, (2.5, finished("abcd"))]
    scene.start(script)
    await scene.clock.advance(0.1)
    assert scene.budget.available("chat:C1") == 0  # the scope is paused for everyone
    await scene.end(10.0)
    assert scene.surface.calls == [
        Call(0.0, "post", "m1", PLACEHOLDER),
        Call(0.0, "edit", "m1", Draft(text="a"), failed="SurfaceRateLimited"),
        Call(2.0, "edit", "m1", Draft(text="abcd")),
        Call(3.0, "edit", "m1", Draft(text="abcd", final=True)),
    ]


async def test_fifty_replies_sharing_a_workspace_budget_never_exceed_it() -> None:
    clock = FakeClock()
    budget = TokenBucketBudget(clock=clock)  # Slack: 45 a minute per workspace, bursts of 5
    limits = SurfaceLimits(
        max_length=12_000, edit_interval=1.0, budget_scopes=("slack.workspace:T1",)
    )
    surfaces = [FakeSurface(limits=limits, clock=clock) for _ in range(50)]
    turns, answers = [], []
    for i, surface in enumerate(surfaces):
        deltas = [(0.1 * i + 0.5 * n, text(f"w{i}.{n} ")) for n in range(40)]
        answers.append("".join(delta.text for _, delta in deltas))
        reply = LiveReply(surface, budget, clock=clock, name=f"r{i}")
        script: Script = [*deltas, (25.0, finished(answers[-1]))]
        turns.append(asyncio.create_task(play(reply, clock, script)))
    for _ in range(400):  # 200 s, half a second at a time
        await clock.advance(0.5)
    assert all(turn.done() for turn in turns)
    await asyncio.gather(*turns)

    times = sorted(call.at for surface in surfaces for call in surface.calls)
    busiest = max(sum(1 for t in times if start <= t < start + 60.0) for start in times)
    assert busiest <= 50  # Slack Tier 3: about 50 chat.update a minute per workspace
    assert [s.visible() for s in surfaces] == [[answer] for answer in answers]
    assert all(s.messages["m1"].final for s in surfaces)


# --- length ------------------------------------------------------------------------------------


async def test_overflow_inside_a_code_fence_freezes_the_message_and_reopens_the_fence() -> None:
    scene = Scene()  # Discord: 2,000 characters
    code = "".join(f"print('line {n:03}')  # a comment to make it longer\n" for n in range(45))
    answer = "```python\n" + code + "```\n\nRun it with `python`."
    chunks = [answer[i : i + 150] for i in range(0, len(answer), 150)]
    script: Script = [(0.25 * n, text(chunk)) for n, chunk in enumerate(chunks)]
    await scene.run([*script, (10.0, finished(answer))])

    first, second = scene.surface.visible()
    assert first.startswith("```python\nprint('line 000')")
    assert first.endswith("\n```")
    assert second.startswith("```python\nprint('line")
    assert second.endswith("Run it with `python`.")
    assert all(len(draft) <= 2000 for draft in (first, second))
    assert join_pieces([first, second]) == answer
    frozen = [c for c in scene.surface.calls if c.ref == "m1" and c.draft and c.draft.final]
    assert frozen == [Call(frozen[0].at, "edit", "m1", Draft(text=first, final=True))]
    assert scene.surface.calls[-1].draft == Draft(text=second, final=True)
    # The status line (and Stop button) live on the last message only.
    assert [c for c in scene.surface.calls if c.ref == "m1" and c.at > frozen[0].at] == []


async def test_void_attempt_rewinds_and_deletes_surplus_messages() -> None:
    scene = Scene(SurfaceLimits(max_length=100, edit_interval=1.0))  # 75 of text a message
    long = "\n\n" + " ".join(["lorem ipsum"] * 12)  # two more messages
    retried = "\n\nIt is sunny."
    script: Script = [
        (0.0, text("Let me check.")),
        (0.1, started("Checking the weather in Paris")),
        (0.2, done()),
        (0.3, text(long)),
        (3.0, AttemptVoid(attempt=1, reason="stream interrupted")),
        (5.0, text(retried)),
        (7.0, finished("Let me check." + retried)),
    ]
    await scene.run(script)
    assert scene.surface.calls == [
        Call(0.0, "post", "m1", PLACEHOLDER),
        Call(0.0, "edit", "m1", Draft(text="Let me check.")),
        Call(1.0, "edit", "m1", Draft(text="Let me check.\n\n", final=True)),
        Call(1.0, "post", "m2", Draft(text="lorem ipsum " * 6, final=True)),
        Call(1.0, "post", "m3", Draft(text="lorem ipsum " * 5 + "lorem ipsum")),  # the rest
        Call(3.0, "delete", "m3"),
        Call(3.0, "delete", "m2"),
        Call(3.0, "edit", "m1", Draft(text="Let me check.")),
        Call(5.0, "edit", "m1", Draft(text="Let me check.\n\nIt is sunny.")),
        Call(7.0, "edit", "m1", Draft(text="Let me check.\n\nIt is sunny.", final=True)),
    ]


# --- status ------------------------------------------------------------------------------------


async def test_tool_status_shows_then_clears_when_text_resumes() -> None:
    scene = Scene()
    script: Script = [
        (0.5, started("Checking the weather in Paris")),
        (0.6, started("Looking up Lyon", call_id="c2")),
        (1.5, done()),
        (2.5, done("c2", ok=False)),
        (3.5, text("It is sunny in Paris.")),
        (6.0, finished("It is sunny in Paris.")),
    ]
    await scene.run(script)
    paris = "Checking the weather in Paris"
    assert scene.surface.calls == [
        Call(0.0, "post", "m1", PLACEHOLDER),
        Call(1.0, "edit", "m1", Draft(text="", status=f"{paris}… · Looking up Lyon…")),
        Call(2.0, "edit", "m1", Draft(text="", status=f"{paris} — done · Looking up Lyon…")),
        Call(
            3.0, "edit", "m1", Draft(text="", status=f"{paris} — done · Looking up Lyon — failed")
        ),
        Call(3.5, "edit", "m1", Draft(text="It is sunny in Paris.")),  # the first text: at once
        Call(6.0, "edit", "m1", Draft(text="It is sunny in Paris.", final=True)),
    ]


async def test_reasoning_shows_only_when_asked() -> None:
    scene = Scene(show_reasoning=True)
    thought = "The user asks about Paris. " * 5
    await scene.run([(0.0, ReasoningDelta(text=thought)), (2.0, finished("Sunny."))])
    shown = thought[-80:].split()
    assert scene.surface.calls[1].draft == Draft(text="", status="Thinking: " + " ".join(shown))


# --- endings -----------------------------------------------------------------------------------


async def test_failed_turn_shows_the_error_and_keeps_the_partial_text() -> None:
    scene = Scene()
    error = "The language model is unavailable right now (HTTP 503). Please try again."
    await scene.run([(0.0, text("Paris is")), (0.5, TurnFailed(message=error))])
    assert scene.surface.visible() == ["Paris is"]
    assert scene.surface.calls[-1] == Call(
        1.0, "edit", "m1", Draft(text="Paris is", status=error, final=True, error=True)
    )


async def test_failed_turn_before_any_text_shows_the_partial_text_of_earlier_rounds() -> None:
    scene = Scene()
    await scene.run([(0.0, TurnFailed(message="Too long.", partial_text="Round one."))])
    assert scene.surface.calls == [
        Call(0.0, "post", "m1", PLACEHOLDER),
        Call(
            0.0, "edit", "m1", Draft(text="Round one.", status="Too long.", final=True, error=True)
        ),
    ]


async def test_block_raising_without_a_final_event_shows_a_short_error() -> None:
    scene = Scene()
    scene.start([(0.0, text("Half an ans"))], fail=RuntimeError("bug"))
    with pytest.raises(RuntimeError, match="bug"):
        await scene.end(5.0)
    assert scene.surface.messages["m1"] == Draft(
        text="Half an ans", status="Something went wrong.", final=True, error=True
    )


async def test_stopped_turn_says_stopped() -> None:
    scene = Scene()
    scene.start([(0.0, text("Once upon")), (0.5, text(" a time")), (60.0, finished("never"))])
    await scene.clock.advance(0.7)
    assert scene.turn is not None
    scene.turn.cancel()  # the Stop button
    await scene.clock.advance(0.1)
    scene.turn.cancel()  # pressed again while "Stopped." is being delivered
    with pytest.raises(asyncio.CancelledError):
        await scene.end(5.0)
    assert scene.surface.calls[-1] == Call(
        1.0, "edit", "m1", Draft(text="Once upon a time", status="Stopped.", final=True)
    )


async def test_final_edit_is_retried_until_it_lands() -> None:
    scene = Scene()
    scene.start([(0.0, text("Hi")), (0.5, finished("Hi!"))])
    await scene.clock.advance(0.1)
    scene.surface.fail_next("edit", SurfaceError("HTTP 502"))
    scene.surface.fail_next("edit", SurfaceError("HTTP 502"))
    await scene.end(10.0)
    final = Draft(text="Hi!", final=True)
    assert scene.surface.calls[2:] == [
        Call(1.0, "edit", "m1", final, failed="SurfaceError"),
        Call(2.0, "edit", "m1", final, failed="SurfaceError"),
        Call(4.0, "edit", "m1", final),
    ]


async def test_final_edit_gives_up_after_its_attempts(caplog: pytest.LogCaptureFixture) -> None:
    scene = Scene(final_attempts=3)
    scene.start([(0.0, finished("Hi"))])
    for _ in range(3):
        scene.surface.fail_next("edit", SurfaceError("HTTP 500"))
    with caplog.at_level(logging.WARNING, logger="relaybot.live"):
        await scene.end(30.0)
    assert [c.failed for c in scene.surface.calls] == [None, *["SurfaceError"] * 3]
    assert [r.getMessage() for r in caplog.records] == [
        "live reply reply: gave up delivering its final text after 3 attempts"
    ]


async def test_a_given_up_final_text_is_not_delivered() -> None:
    scene = Scene(final_attempts=2)
    scene.start([(0.0, finished("Hi"))])
    for _ in range(2):
        scene.surface.fail_next("edit", SurfaceError("HTTP 500"))
    await scene.end(30.0)
    assert scene.reply.delivered is False  # the bot must not record it delivered


async def test_a_final_text_on_the_platform_is_delivered() -> None:
    scene = Scene()
    assert scene.reply.delivered is False
    await scene.run([(0.0, text("Hi")), (1.0, finished("Hi there"))])
    assert scene.reply.delivered is True


# --- the messages a bot saves -------------------------------------------------------------------


async def test_every_post_and_delete_is_reported_with_all_the_messages() -> None:
    reported: list[tuple[str, ...]] = []

    async def posted(refs: tuple[str, ...]) -> None:
        reported.append(refs)

    scene = Scene(SurfaceLimits(max_length=100, edit_interval=1.0), on_posted=posted)
    long = "\n\n" + " ".join(["lorem ipsum"] * 12)
    script: Script = [
        (0.0, text("Let me check.")),
        (0.3, text(long)),
        (3.0, AttemptVoid(attempt=1, reason="stream interrupted")),
        (7.0, finished("Let me check.")),
    ]
    await scene.run(script)
    assert reported == [("m1",), ("m1", "m2"), ("m1", "m2", "m3"), ("m1", "m2"), ("m1",)]


async def test_a_failing_report_of_the_messages_does_not_stop_the_reply(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def posted(refs: tuple[str, ...]) -> None:
        raise RuntimeError("the store is gone")

    scene = Scene(on_posted=posted)
    with caplog.at_level(logging.ERROR, logger="relaybot.live"):
        await scene.run([(0.0, finished("Hi"))])
    assert scene.surface.visible() == ["Hi"]
    assert scene.reply.delivered is True
    assert [r.getMessage() for r in caplog.records] == ["live reply reply: on_posted failed"]


async def test_message_too_long_is_split_smaller_and_sent_again() -> None:
    scene = Scene(final_attempts=1)  # were it counted as a failure, the reply would give up
    scene.surface.fail_next("edit", MessageTooLong("msg_too_long"))
    answer = "\n\n".join(f"Paragraph {n}: " + "words " * 40 for n in range(7))  # 1,783: fits
    await scene.run([(0.0, finished(answer))])
    first, second = split_message(answer, 1600 - 200)  # 80 % of 2,000, the status room apart
    assert scene.surface.calls == [
        Call(0.0, "post", "m1", PLACEHOLDER),
        Call(0.0, "edit", "m1", Draft(text=answer, final=True), failed="MessageTooLong"),
        Call(0.0, "edit", "m1", Draft(text=first, final=True)),
        Call(0.0, "post", "m2", Draft(text=second, final=True)),
    ]
    assert scene.surface.visible() == [first, second]
    assert max(len(first), len(second)) <= 1600
    assert join_pieces([first, second]) == answer


async def test_message_too_long_counts_as_a_failure_once_the_limit_is_at_its_floor() -> None:
    scene = Scene(final_attempts=2)
    for _ in range(20):
        scene.surface.fail_next("edit", MessageTooLong("msg_too_long"))
    await scene.run([(0.0, finished("A short answer that Slack keeps refusing."))])
    # 2,000 → 1,600 → 1,280 → 1,024 → 819 → 655 → 524 → 500: 7 free tries, then 2 counted.
    assert [c.failed for c in scene.surface.calls] == [None, *["MessageTooLong"] * 9]


# --- gone --------------------------------------------------------------------------------------


async def test_deleted_message_cancels_the_turn_and_nothing_more_is_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scene = Scene()
    scene.start([(0.0, text("Hello")), (0.5, text(", world")), (9.0, finished("Hello, world"))])
    await scene.clock.advance(0.2)
    scene.surface.remove("m1")  # a person deletes the message
    with (
        caplog.at_level(logging.INFO, logger="relaybot.live"),
        pytest.raises(asyncio.CancelledError),
    ):
        await scene.end(20.0)
    assert scene.surface.calls == [
        Call(0.0, "post", "m1", PLACEHOLDER),
        Call(0.0, "edit", "m1", Draft(text="Hello")),
        Call(1.0, "edit", "m1", Draft(text="Hello, world"), failed="MessageGone"),
    ]
    assert (scene.gone_calls, scene.reply.gone) == (1, True)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("INFO", "live reply reply: its message is gone; stopping the turn")
    ]
    scene.reply.feed(text("more"))  # a no-op now
    assert len(scene.surface.calls) == 3


async def test_forbidden_stops_the_reply_with_one_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scene = Scene()
    scene.surface.fail_next("post", SurfaceForbidden("channel archived"))
    scene.start([(0.0, text("Secret answer")), (2.0, finished("Secret answer"))])
    with (
        caplog.at_level(logging.INFO, logger="relaybot.live"),
        pytest.raises(asyncio.CancelledError),
    ):
        await scene.end(10.0)
    assert [c.failed for c in scene.surface.calls] == ["SurfaceForbidden"]
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", "live reply reply: may not write here any more (channel archived)")
    ]


# --- any text, any split -----------------------------------------------------------------------

WORDS = ["word", "Paris", "é", "日本語。", "x" * 40, " ", " ", "\n", "\n\n", "- item\n"]
MARKUP = ["```python\n", "```\n", "```", "**", "`", "@everyone", "<!here>", "@here"]
TOKENS = st.sampled_from(WORDS + MARKUP)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    answer=st.lists(TOKENS, min_size=1, max_size=120).map("".join),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=30),
    gaps=st.lists(st.floats(min_value=0.0, max_value=1.5), min_size=1, max_size=10),
)
def test_any_text_in_any_split_is_delivered_exactly_within_the_limit(
    answer: str, cuts: list[int], gaps: list[float]
) -> None:
    asyncio.run(_deliver(answer, cuts, gaps))


async def _deliver(answer: str, cuts: list[int], gaps: list[float]) -> None:
    scene = Scene(SurfaceLimits(max_length=160, edit_interval=1.0))
    bounds = [0, *sorted({cut % (len(answer) + 1) for cut in cuts}), len(answer)]
    deltas = [answer[a:b] for a, b in pairwise(bounds) if b > a]
    times = list(accumulate(gaps[n % len(gaps)] for n in range(len(deltas) + 1)))
    script: Script = [(at, text(delta)) for at, delta in zip(times, deltas, strict=False)]
    await scene.run([*script, (times[-1], finished(answer))], until=times[-1] + 60.0)
    assert all(
        len(c.draft.text) + len(c.draft.status or "") + 4 <= 160
        for c in scene.surface.calls
        if c.draft is not None
    )
    assert all(draft.final for draft in scene.surface.messages.values())
    assert restore_mentions(join_pieces(scene.surface.visible())) == answer


async def test_posts_spend_from_their_own_scopes() -> None:
    """Slack limits chat.postMessage apart from the workspace's chat.update budget: the
    placeholder post leaves the workspace's only token to the first text."""
    limits = SurfaceLimits(
        max_length=2000, edit_interval=1.0, budget_scopes=("slack.workspace:T1",), post_scopes=()
    )
    scene = Scene(limits, rates={"slack.workspace": Rate.per(1, 60)})
    await scene.run([(0.0, text("Hi")), (0.5, finished("Hi there"))], until=61.0)
    assert [(call.op, call.at, call.draft) for call in scene.surface.calls] == [
        ("post", 0.0, PLACEHOLDER),
        ("edit", 0.0, Draft(text="Hi")),
        ("edit", 60.0, Draft(text="Hi there", final=True)),
    ]


async def test_an_answer_stopped_inside_a_code_block_ends_with_the_block_closed() -> None:
    """The status line must not end up inside an open fence."""
    scene = Scene()
    scene.start([(0.0, text("Here:\n```python\nprint(1)")), (10.0, finished("never"))])
    await scene.clock.advance(0.5)
    assert scene.turn is not None
    scene.turn.cancel()
    await scene.clock.advance(5.0)
    final = scene.surface.calls[-1].draft
    assert final == Draft(text="Here:\n```python\nprint(1)\n```", status="Stopped.", final=True)


# --- under pressure: rate limits, a restart ------------------------------------------------------


async def test_a_final_text_rate_limited_twenty_times_is_still_delivered() -> None:
    scene = Scene(final_attempts=3)
    for _ in range(20):
        scene.surface.fail_next("edit", SurfaceRateLimited("ratelimited", retry_after=30.0))
    await scene.run([(0.0, finished("The answer"))], until=20 * 30 + 5)
    assert scene.reply.delivered
    assert scene.surface.messages["m1"] == Draft(text="The answer", final=True)
    assert sum(call.failed == "SurfaceRateLimited" for call in scene.surface.calls) == 20


async def test_a_final_text_goes_ahead_of_interim_edits_when_the_budget_is_short() -> None:
    clock = FakeClock()
    budget = TokenBucketBudget({"chat": Rate.per(1, 10)}, clock=clock)
    limits = SurfaceLimits(max_length=2000, edit_interval=1.0, budget_scopes=("chat:C1",))
    early, late = (FakeSurface(limits=limits, clock=clock) for _ in range(2))
    streaming = LiveReply(early, budget, clock=clock, placeholder=None)
    finishing = LiveReply(late, budget, clock=clock, placeholder=None)
    long_turn = asyncio.create_task(
        play(streaming, clock, [(n, text(f"w{n} ")) for n in range(40)] + [(40, finished("x"))])
    )
    await clock.advance(15)  # the first text took the only token; the next edit waits
    short_turn = asyncio.create_task(play(finishing, clock, [(15, finished("Done."))]))
    await clock.advance(60)

    after = 15.0
    late_calls = [call.at for call in late.calls]
    early_edits = [call.at for call in early.calls if call.op == "edit" and call.at > after]
    assert late_calls
    assert early_edits
    assert late_calls[0] < early_edits[0]  # the final post went first
    await clock.advance(100)
    await asyncio.gather(long_turn, short_turn)


async def test_end_with_replaces_the_answer_with_a_notice_and_later_events_change_nothing() -> None:
    scene = Scene()
    async with scene.reply as reply:
        reply.feed(text("Half an ans"))
        await scene.clock.advance(1)
        reply.end_with("Restarting — I'll continue in a moment.")
        reply.feed(text("wer"))
        await scene.clock.advance(1)
    assert scene.surface.messages["m1"] == Draft(
        text="", status="Restarting — I'll continue in a moment.", final=True
    )


async def test_end_with_keep_text_shows_the_notice_under_what_was_said() -> None:
    scene = Scene()
    async with scene.reply as reply:
        reply.feed(text("Half"))
        await scene.clock.advance(1)
        reply.end_with("I was interrupted.", keep_text=True, error=True)
        await scene.clock.advance(1)
    assert scene.surface.messages["m1"] == Draft(
        text="Half", status="I was interrupted.", final=True, error=True
    )


async def test_abort_stops_at_once_and_the_reply_is_not_delivered() -> None:
    scene = Scene()
    scene.surface.fail_next("post", SurfaceRateLimited("ratelimited", retry_after=600.0))
    async with scene.reply as reply:
        reply.feed(finished("The answer"))
        await scene.clock.advance(1)
        reply.abort()
    assert not reply.delivered
    assert [call.failed for call in scene.surface.calls] == ["SurfaceRateLimited"]


async def test_an_adopted_message_becomes_the_reply_and_the_others_go() -> None:
    scene = Scene()
    for text_ in ("Restarting…", "a second piece"):
        await scene.surface.post(Draft(text=text_))
    scene.reply.adopt(("m1", "m2"))
    await scene.run([(0.0, text("Again")), (1.0, finished("Again, whole."))])
    assert scene.surface.messages == {"m1": Draft(text="Again, whole.", final=True)}
    assert scene.reply.messages == ("m1",)
    ops = [call.op for call in scene.surface.calls[2:]]
    assert ops[0] == "delete"
    assert set(ops[1:]) == {"edit"}


async def test_an_adopted_message_found_gone_is_posted_anew() -> None:
    scene = Scene()
    scene.reply.adopt(("m9",))
    await scene.run([(0.0, finished("Here."))])
    assert scene.surface.visible() == ["Here."]
    assert scene.reply.delivered
    assert scene.gone_calls == 0
