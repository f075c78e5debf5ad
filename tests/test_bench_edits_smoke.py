"""``bench.edits`` still runs (a few short replies, virtual time, no timing asserted)."""

from __future__ import annotations

from collections import deque

import pytest

from bench import edits


@pytest.fixture(scope="module")
def results() -> list[edits.Result]:
    return edits.run(
        [edits.Scenario(platform=platform, replies=4, tokens=30) for platform in edits.PLATFORMS]
    )


def test_every_policy_runs_on_every_platform(results: list[edits.Result]) -> None:
    policies = [policy.name for policy in edits.POLICIES]
    assert [result.scenario.platform for result in results] == list(edits.PLATFORMS)
    for result in results:
        assert list(result.rows) == policies
        assert all(row.calls > 0 and row.posts >= 4 for row in result.rows.values())
        assert "ours / every 20 deltas: p95 staleness" in edits.table([result])


def test_ours_keeps_texts_intact_and_with_the_right_budget_never_hits_a_limit(
    results: list[edits.Result],
) -> None:
    for result in results:
        for name, row in result.rows.items():
            if name.startswith(edits.OURS):
                assert row.intact, (result.scenario.platform, name)
        assert result.rows[edits.OURS].errors == 0


def test_the_simulated_platform_never_accepts_more_than_a_window_allows(
    results: list[edits.Result],
) -> None:
    for result in results:
        platform = edits.PLATFORMS[result.scenario.platform]
        for outcome in result.outcomes.values():
            accepted: dict[edits.Window, deque[float]] = {}
            for call in outcome.landed:
                for window in platform.windows(call.op, call.reply):
                    recent = accepted.setdefault(window, deque())
                    recent.append(call.at)
                    while recent[0] <= call.at - window.seconds:
                        recent.popleft()
                    assert len(recent) <= window.limit
