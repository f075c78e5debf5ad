"""``bench.edits`` still runs (a few short replies, virtual time, no timing asserted)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest

from adapters.stream_reply import StreamEnded
from adapters.surface import Draft, SurfaceRateLimited
from bench.edits import table, verdicts
from bench.edits_platform import (
    LATENCY,
    PLATFORMS,
    STREAM_LIFETIME,
    SimulatedPlatform,
    SimulatedStream,
    SimulatedSurface,
    Window,
)
from bench.edits_policies import AUTO, NATIVE, OURS, POLICIES
from bench.edits_sim import Result, Scenario, run
from tests.support.clock import FakeClock

T = TypeVar("T")


@pytest.fixture(scope="module")
def results() -> list[Result]:
    return run([Scenario(platform=platform, replies=4, tokens=30) for platform in PLATFORMS])


def test_every_policy_runs_where_the_platform_allows_it(results: list[Result]) -> None:
    everywhere = [policy.name for policy in POLICIES if not policy.streams]
    assert [result.scenario.platform for result in results] == list(PLATFORMS)
    slack, discord = results
    assert list(slack.rows) == [*everywhere, NATIVE, AUTO]
    assert list(discord.rows) == everywhere  # Discord does not stream natively
    for result in results:
        for outcome in result.outcomes.values():
            opened = sum(call.op in ("post", "start") for call in outcome.landed)
            assert opened >= 4, (result.scenario.platform, outcome.policy)
        assert "ours / every 20 deltas: p95 staleness" in table([result])
    assert "auto / 1 edit/s/process: p95 staleness" in table([slack])
    assert any(line.startswith("  auto, as measured") for line in verdicts(slack))


def test_native_and_auto_stream_every_text_intact_without_a_429(results: list[Result]) -> None:
    slack = results[0]
    native, auto = slack.rows[NATIVE], slack.rows[AUTO]
    assert native.streamed > 0
    assert native.posts == native.edits == 0
    assert auto.streamed > 0  # 4 replies: the start budget's burst streams the first ones
    for row in (native, auto):
        assert row.intact, row.policy
        assert row.errors == 0, row.policy


def test_ours_keeps_texts_intact_and_with_the_right_budget_never_hits_a_limit(
    results: list[Result],
) -> None:
    for result in results:
        for name, row in result.rows.items():
            if name.startswith(OURS):
                assert row.intact, (result.scenario.platform, name)
        assert result.rows[OURS].errors == 0


def test_the_simulated_platform_never_accepts_more_than_a_window_allows(
    results: list[Result],
) -> None:
    for result in results:
        platform = PLATFORMS[result.scenario.platform]
        for outcome in result.outcomes.values():
            accepted: dict[Window, deque[float]] = {}
            for call in outcome.landed:
                for window in platform.windows(call.op, call.reply):
                    recent = accepted.setdefault(window, deque())
                    recent.append(call.at)
                    while recent[0] <= call.at - window.seconds:
                        recent.popleft()
                    assert len(recent) <= window.limit


async def _landed(clock: FakeClock, call: Coroutine[Any, Any, T]) -> T:
    """Make one simulated call: it takes ``LATENCY`` of virtual time."""
    task = asyncio.create_task(call)
    await clock.advance(LATENCY)
    return await task


async def test_a_stream_past_its_lifetime_ends_and_keeps_its_text_until_replaced() -> None:
    clock = FakeClock()
    platform = SimulatedPlatform(PLATFORMS["slack"], clock)
    stream = SimulatedSurface(platform, 0).stream()
    ref = await _landed(clock, stream.start("Hello", ()))
    await _landed(clock, stream.append(ref, markdown=" world", chunks=()))
    assert platform.shown[ref] == Draft(text="Hello world")

    await clock.advance(STREAM_LIFETIME)
    with pytest.raises(StreamEnded):
        await _landed(clock, stream.append(ref, markdown="!", chunks=()))
    assert platform.shown[ref] == Draft(text="Hello world")
    await _landed(clock, stream.replace(ref, "Hello world!", ()))
    assert platform.shown[ref] == Draft(text="Hello world!", final=True)
    assert [call.op for call in platform.landed] == ["start", "append", "edit"]


async def test_starts_and_stops_each_have_a_tier_2_window() -> None:
    """As Slack counts them: 20 starts in a minute, and 20 stops beside them."""
    clock = FakeClock()
    platform = SimulatedPlatform(PLATFORMS["slack"], clock)
    streams = [SimulatedSurface(platform, i).stream() for i in range(21)]
    refs = [await _landed(clock, stream.start("a", ())) for stream in streams[:20]]
    for stream, ref in zip(streams[:20], refs, strict=True):
        stop = stream.stop(ref, markdown="b", chunks=(), blocks=(), session_status=None)
        await _landed(clock, stop)
    with pytest.raises(SurfaceRateLimited):
        await _landed(clock, streams[20].start("a", ()))
    assert [platform.shown[ref] for ref in refs] == [Draft(text="ab", final=True)] * 20


def test_discord_has_no_stream() -> None:
    platform = SimulatedPlatform(PLATFORMS["discord"], FakeClock())
    with pytest.raises(ValueError, match="no native streaming"):
        SimulatedStream(platform, 0)
