"""``bench.edits``'s PNG: per scenario, one reply's visible characters under each policy, and
the 429s per 10 s. matplotlib is imported only when a plot is drawn (it comes with the dev
extra)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import accumulate
from typing import TYPE_CHECKING

from bench.edits_platform import PLATFORMS
from bench.edits_sim import Result

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["plot"]


def plot(results: Sequence[Result], path: str) -> str:
    """One row per scenario: a reply's visible characters under each policy, and the 429s.
    Returns a one-line note of what was done."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no plot: matplotlib is not installed (it comes with the dev extra)"
    figure, axes = plt.subplots(len(results), 2, figsize=(14, 3.3 * len(results)), squeeze=False)
    for row, result in enumerate(results):
        _plot_reply(axes[row][0], result)
        _plot_errors(axes[row][1], result)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return f"plot saved to {path}"


def _plot_reply(ax: Axes, result: Result) -> None:
    plan = next(iter(result.outcomes.values())).turns
    index = sorted(range(len(plan)), key=lambda i: plan[i].start)[len(plan) // 2]
    turn = plan[index]
    model = list(accumulate(map(len, turn.tokens)))
    ax.step(turn.times, model, where="post", color="0.55", linestyle=":", label="model")
    for name, outcome in result.outcomes.items():
        progress = outcome.progress(index)
        times = [turn.start] + [at for at, _ in progress]
        ax.step(times, [0] + [chars for _, chars in progress], where="post", label=name)
    scenario = result.scenario
    ax.set_title(
        f"{PLATFORMS[scenario.platform].name}, {scenario.replies} replies: "
        f"reply #{index} (starts at {turn.start:.0f} s), visible characters",
        fontsize=10,
    )
    ax.set_xlabel("virtual seconds")
    ax.legend(fontsize=8, loc="lower right")


def _plot_errors(ax: Axes, result: Result) -> None:
    end = max(max(o.rejected, default=0.0) for o in result.outcomes.values())
    edges = [i * 10.0 for i in range(int(end // 10) + 2)]
    for name, outcome in result.outcomes.items():
        counts = [0] * len(edges)
        for at in outcome.rejected:
            counts[int(at // 10)] += 1
        ax.step(edges, counts, where="post", label=f"{name}: {len(outcome.rejected)}")
    ax.set_yscale("symlog", linthresh=10)
    ax.set_title("rate-limit errors (429s) per 10 s, and in all", fontsize=10)
    ax.set_xlabel("virtual seconds")
    ax.legend(fontsize=8, loc="upper right")
