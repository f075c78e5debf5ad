"""``bench.edits`` still runs (a few short replies, virtual time, no timing asserted)."""

from __future__ import annotations

from collections import deque

import pytest

from bench.edits import table
from bench.edits_platform import PLATFORMS, Window
from bench.edits_policies import OURS, POLICIES
from bench.edits_sim import Result, Scenario, run


@pytest.fixture(scope="module")
def results() -> list[Result]:
    return run([Scenario(platform=platform, replies=4, tokens=30) for platform in PLATFORMS])


def test_every_policy_runs_on_every_platform(results: list[Result]) -> None:
    policies = [policy.name for policy in POLICIES]
    assert [result.scenario.platform for result in results] == list(PLATFORMS)
    for result in results:
        assert list(result.rows) == policies
        assert all(row.calls > 0 and row.posts >= 4 for row in result.rows.values())
        assert "ours / every 20 deltas: p95 staleness" in table([result])


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
