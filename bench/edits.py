"""``python -m bench.edits``: streaming many replies into one platform scope, in virtual time.

Many replies stream at once into one Slack workspace, or one Discord channel, each growing its
message as its tokens arrive. The platform is modelled by its own sliding-window limiter (not
our token bucket): a call over a window is answered ``SurfaceRateLimited(retry_after=...)``
with the time until the window frees, and every accepted call is recorded with its virtual time
and text. Nothing sleeps on the wall clock: a :class:`~adapters.clock.FakeClock` is advanced in
small steps while the model's tokens are fed at their scheduled times.

The platforms, as modelled (``PLATFORMS``):

- Slack: ``chat.update`` at most 50 per 60 s per workspace (Tier 3). ``chat.postMessage`` has
  its own limit, about one a second per channel with short bursts allowed; the replies are
  threads spread over ``SLACK_CHANNELS`` channels and posts get a window of 60 per 60 s per
  channel, which this load never fills: posts are effectively not limited. Slack's
  ``Retry-After`` is in whole seconds.
- Discord: 5 creates or edits per 5 s per channel, and 50 requests a second per bot (global).
  ``retry_after`` has millisecond precision.

Every call takes ``LATENCY`` seconds; the platform counts it, and the text is visible, when it
lands. The policies, each a bot streaming every reply of one run:

- ``ours`` — :class:`adapters.live.LiveReply` with a :class:`~adapters.budget.TokenBucketBudget`
  at ``DEFAULT_RATES``, its default placeholder, and a per-message ``edit_interval`` of 1 s on
  both platforms (a lone reply then updates about once a second, which reads as smooth:
  Discord allows one a second per channel, and Slack limits the workspace, not a message);
  ``ours, budget +50%`` / ``-50%`` — the same with every rate (and burst) one and a half times
  / half the default.
- ``every 20 deltas`` — a naive bot: it posts the first text, then edits after every 20th
  token, ignoring limits; on a 429 it waits ``retry_after`` (its model stream waits too) and
  continues with the next edit; the final edit is sent until it lands.
- ``1 edit/s/process`` — llmcord's throttle: one timestamp shared by every reply in the
  process; a reply whose token arrives at least 1 s after the last edit anywhere edits (in the
  background, one edit at a time per reply); the first text is posted at once and the final
  edit is sent regardless of the throttle; a 429 is retried with the same text after
  ``retry_after``, as discord.py does (here until it lands, where discord.py gives up after 5).

Staleness is, for every token, the time from its arrival until the first accepted call whose
text contains it. A reply is intact when its message finally shows exactly the model's text.
Each platform runs three loads (``scenarios``): the issue's 200 replies starting within 30 s,
20 replies within 30 s, and 60 replies within 3 minutes (longer than Slack's window).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import math
import os
import random
import statistics
import sys
import tempfile
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from adapters.budget import DEFAULT_RATES, Rate, TokenBucketBudget
from adapters.clock import FakeClock, settle
from adapters.live import LiveReply
from adapters.surface import (
    Draft,
    MessageGone,
    MessageRef,
    SurfaceLimits,
    SurfaceRateLimited,
)
from core.events import EngineEvent, TextDelta, TurnFinished, Usage

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "PLATFORMS",
    "POLICIES",
    "Outcome",
    "Platform",
    "Scenario",
    "Window",
    "main",
    "run",
    "scenarios",
    "simulate",
    "table",
]

LATENCY = 0.1
"""Seconds from a call's start until the platform has it (and the text shows)."""
STEP = 0.02
"""Seconds between two feeds of the model's tokens while they stream."""
SLACK_CHANNELS = 10
HORIZON = 3 * 3600.0
"""Virtual seconds after which a run is cut short (its replies then count as not intact)."""

Op = Literal["post", "edit"]
T = TypeVar("T")


# --- the platform ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Window:
    """At most ``limit`` calls in any ``seconds`` window, for one scope ``key``."""

    key: str
    limit: int
    seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Platform:
    """One platform as modelled: its windows per call, and what our surface declares."""

    name: str
    windows: Callable[[Op, int], tuple[Window, ...]]
    """The windows a call of reply ``i`` counts in."""
    limits: SurfaceLimits
    whole_seconds: bool
    """``retry_after`` rounded up to whole seconds (Slack's ``Retry-After``)."""


def _slack_windows(op: Op, reply: int) -> tuple[Window, ...]:
    if op == "post":
        return (Window(f"chat.postMessage:C{reply % SLACK_CHANNELS}", 60, 60.0),)
    return (Window("chat.update:T1", 50, 60.0),)


def _discord_windows(op: Op, reply: int) -> tuple[Window, ...]:
    return (Window("channel:C1", 5, 5.0), Window("global", 50, 1.0))


PLATFORMS = {
    "slack": Platform(
        name="Slack workspace",
        windows=_slack_windows,
        limits=SurfaceLimits(
            max_length=12_000,
            edit_interval=1.0,
            budget_scopes=("slack.workspace:T1",),
            post_scopes=(),  # chat.postMessage is limited per channel, apart from chat.update
        ),
        whole_seconds=True,
    ),
    "discord": Platform(
        name="Discord channel",
        windows=_discord_windows,
        limits=SurfaceLimits(
            max_length=2_000,
            edit_interval=1.0,
            budget_scopes=("discord.channel:C1", "discord.global"),
        ),
        whole_seconds=False,
    ),
}


@dataclass(frozen=True, slots=True)
class Landed:
    """A call the platform accepted: when it landed, for which reply, and its draft."""

    at: float
    reply: int
    op: Op
    ref: MessageRef
    draft: Draft


class SimulatedPlatform:
    """The platform's side: sliding windows, the calls it accepted and the 429s it answered."""

    def __init__(self, platform: Platform, clock: FakeClock) -> None:
        self.platform = platform
        self._clock = clock
        self._windows: dict[str, deque[float]] = {}
        self.landed: list[Landed] = []
        self.rejected: list[float] = []
        self.shown: dict[MessageRef, Draft] = {}
        self.owner: dict[MessageRef, int] = {}

    async def call(self, op: Op, reply: int, ref: MessageRef, draft: Draft) -> None:
        await self._clock.sleep(LATENCY)
        now = self._clock.now()
        windows = self.platform.windows(op, reply)
        wait = max(self._wait(window, now) for window in windows)
        if wait > 0:
            self.rejected.append(now)
            if self.platform.whole_seconds:
                wait = math.ceil(wait)
            raise SurfaceRateLimited(f"{op} rate limited", retry_after=wait)
        if op == "edit" and ref not in self.shown:
            raise MessageGone("no such message")
        for window in windows:
            self._windows[window.key].append(now)
        self.landed.append(Landed(now, reply, op, ref, draft))
        self.shown[ref], self.owner[ref] = draft, reply

    def _wait(self, window: Window, now: float) -> float:
        calls = self._windows.setdefault(window.key, deque())
        while calls and calls[0] <= now - window.seconds:
            calls.popleft()
        return 0.0 if len(calls) < window.limit else calls[0] + window.seconds - now


class SimulatedSurface:
    """One reply's thread: a ``Surface`` whose every call goes to the simulated platform."""

    def __init__(self, platform: SimulatedPlatform, reply: int) -> None:
        self._platform = platform
        self._reply = reply
        self._posted = 0

    @property
    def limits(self) -> SurfaceLimits:
        return self._platform.platform.limits

    def render(self, markdown: str) -> str:
        return markdown

    async def post(self, draft: Draft) -> MessageRef:
        ref = f"r{self._reply}m{self._posted + 1}"
        await self._platform.call("post", self._reply, ref, draft)
        self._posted += 1
        return ref

    async def edit(self, ref: MessageRef, draft: Draft) -> None:
        await self._platform.call("edit", self._reply, ref, draft)

    async def delete(self, ref: MessageRef) -> None:
        raise NotImplementedError("no reply here deletes a message")


# --- the workload ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    platform: str
    replies: int
    tokens: int = 400
    tokens_per_second: float = 40.0
    arrivals_over: float = 30.0
    """Replies start at random times within the first ``arrivals_over`` seconds."""
    first_token: float = 0.5
    """Seconds from a reply's start (its placeholder) to its first token."""
    seed: int = 0

    @property
    def title(self) -> str:
        return (
            f"{PLATFORMS[self.platform].name}: {self.replies} replies x {self.tokens} tokens "
            f"at {self.tokens_per_second:g}/s, starting over {self.arrivals_over:g} s"
        )


@dataclass(frozen=True, slots=True)
class Turn:
    """One reply's model output: when it starts, and each token with its scheduled time."""

    start: float
    tokens: tuple[str, ...]
    times: tuple[float, ...]

    @property
    def text(self) -> str:
        return "".join(self.tokens)


_WORDS = "the of to and a in is it you that he was for on are with as his they at be".split()  # noqa: SIM905
"""Plain words (no Markdown, no mentions) of 2.8 letters on average: a token is about four
characters with its space, and 400 tokens fit in one Discord message."""


def turns(scenario: Scenario) -> list[Turn]:
    """Every reply's tokens (about four characters each, plain words) and their times."""
    rng = random.Random(scenario.seed)
    result = []
    for _ in range(scenario.replies):
        start = rng.uniform(0, scenario.arrivals_over)
        first = start + scenario.first_token
        tokens = tuple(("" if i == 0 else " ") + rng.choice(_WORDS) for i in range(scenario.tokens))
        times = tuple(first + i / scenario.tokens_per_second for i in range(scenario.tokens))
        result.append(Turn(start, tokens, times))
    return result


# --- the policies ---------------------------------------------------------------------------

Events = asyncio.Queue[EngineEvent]
Bot = Callable[[int, Events, SimulatedSurface], Coroutine[Any, Any, None]]
"""Streams reply ``i`` into its surface: fed engine events, ending at ``TurnFinished``."""


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    make: Callable[[FakeClock], Bot]
    """A fresh bot for one run; what its replies share (a budget, a throttle) lives in it."""


def _scaled(factor: float) -> dict[str, Rate]:
    return {
        kind: Rate(per_second=rate.per_second * factor, burst=max(1.0, rate.burst * factor))
        for kind, rate in DEFAULT_RATES.items()
    }


def ours(factor: float = 1.0) -> Callable[[FakeClock], Bot]:
    def make(clock: FakeClock) -> Bot:
        budget = TokenBucketBudget(_scaled(factor), clock=clock)

        async def bot(index: int, events: Events, surface: SimulatedSurface) -> None:
            async with LiveReply(surface, budget, clock=clock, name=str(index)) as reply:
                while not isinstance(event := await events.get(), TurnFinished):
                    reply.feed(event)
                reply.feed(event)

        return bot

    return make


async def _until_landed(clock: FakeClock, call: Callable[[], Awaitable[T]]) -> T:
    """Make the call, and again after each 429's ``retry_after``, until it lands."""
    while True:
        try:
            return await call()
        except SurfaceRateLimited as error:
            await clock.sleep(error.retry_after)


def every_20_deltas(clock: FakeClock) -> Bot:
    async def bot(index: int, events: Events, surface: SimulatedSurface) -> None:
        text, count, ref = "", 0, None
        while isinstance(event := await events.get(), TextDelta):
            text, count = text + event.text, count + 1
            if ref is None:
                ref = await _until_landed(clock, functools.partial(surface.post, Draft(text=text)))
            elif count % 20 == 0:
                try:
                    await surface.edit(ref, Draft(text=text))
                except SurfaceRateLimited as error:
                    await clock.sleep(error.retry_after)
        assert ref is not None
        assert isinstance(event, TurnFinished)
        await _until_landed(
            clock, functools.partial(surface.edit, ref, Draft(text=event.text, final=True))
        )

    return bot


def one_edit_per_second_per_process(clock: FakeClock) -> Bot:
    last_edit = -math.inf  # shared by every reply of the process

    async def bot(index: int, events: Events, surface: SimulatedSurface) -> None:
        nonlocal last_edit
        text, ref = "", None
        editing: asyncio.Task[None] | None = None
        while isinstance(event := await events.get(), TextDelta):
            text += event.text
            if ref is None:
                ref = await _until_landed(clock, functools.partial(surface.post, Draft(text=text)))
                last_edit = clock.now()
            elif (editing is None or editing.done()) and clock.now() - last_edit >= 1.0:
                last_edit = clock.now()
                editing = asyncio.create_task(
                    _until_landed(clock, functools.partial(surface.edit, ref, Draft(text=text))),
                    name=f"1 edit/s reply {index}",
                )
        assert ref is not None
        assert isinstance(event, TurnFinished)
        if editing is not None:
            await editing
        last_edit = clock.now()
        await _until_landed(
            clock, functools.partial(surface.edit, ref, Draft(text=event.text, final=True))
        )

    return bot


OURS = "ours"
POLICIES = (
    Policy(OURS, ours()),
    Policy("every 20 deltas", every_20_deltas),
    Policy("1 edit/s/process", one_edit_per_second_per_process),
    Policy("ours, budget +50%", ours(1.5)),
    Policy("ours, budget -50%", ours(0.5)),
)
BASELINES = ("every 20 deltas", "1 edit/s/process")


# --- one run --------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Outcome:
    """What the platform saw of one policy on one scenario, and the model's side of it."""

    policy: str
    scenario: Scenario
    turns: list[Turn]
    arrivals: list[list[float]]
    """Per reply, the virtual time each token was fed to the bot."""
    landed: list[Landed]
    rejected: list[float]
    shown: dict[int, list[Draft]]
    """Per reply, what its messages finally show."""
    finished: bool = True

    @property
    def posts(self) -> int:
        return sum(call.op == "post" for call in self.landed)

    @property
    def edits(self) -> int:
        return sum(call.op == "edit" for call in self.landed)

    def intact(self) -> bool:
        """Every reply's messages finally show exactly its model's text, final, no status."""
        return self.finished and all(
            (drafts := self.shown.get(index))
            and "".join(draft.text for draft in drafts) == turn.text
            and drafts[-1].final
            and drafts[-1].status is None
            for index, turn in enumerate(self.turns)
        )

    def progress(self, index: int) -> list[tuple[float, int]]:
        """Reply ``index``'s landed calls: when each landed, and how many characters of the
        model's text its messages (read in order) had shown by then."""
        text, shown, result, most = self.turns[index].text, {}, [], 0
        for call in self._by_reply.get(index, []):
            shown[call.ref] = call.draft.text
            most = max(most, _common("".join(shown.values()), text))
            result.append((call.at, most))
        return result

    @functools.cached_property
    def _by_reply(self) -> dict[int, list[Landed]]:
        by_reply: dict[int, list[Landed]] = {}
        for call in self.landed:
            by_reply.setdefault(call.reply, []).append(call)
        return by_reply

    def staleness(self) -> list[float]:
        """For every token of every reply: its arrival until the first landed call showing it."""
        result = []
        for index, turn in enumerate(self.turns):
            progress = self.progress(index)
            shown = [chars for _, chars in progress]
            ends = accumulate(map(len, turn.tokens))
            for end, arrival in zip(ends, self.arrivals[index], strict=True):
                at = bisect_left(shown, end)
                result.append(progress[at][0] - arrival if at < len(progress) else math.inf)
        return result

    def done_at(self) -> float:
        """When the last reply's whole text had landed."""
        done = math.inf if not self.finished else 0.0
        for index, turn in enumerate(self.turns):
            landed = (at for at, chars in self.progress(index) if chars == len(turn.text))
            done = max(done, next(landed, math.inf))
        return done


def _common(shown: str, text: str) -> int:
    """How many characters of the model's ``text`` the shown text holds, from the start."""
    if text.startswith(shown):
        return len(shown)
    return next((i for i, (a, b) in enumerate(zip(shown, text, strict=False)) if a != b), len(text))


def simulate(scenario: Scenario, policy: Policy) -> Outcome:
    return asyncio.run(_simulate(scenario, policy))


async def _simulate(scenario: Scenario, policy: Policy) -> Outcome:
    clock = FakeClock()
    platform = SimulatedPlatform(PLATFORMS[scenario.platform], clock)
    bot = policy.make(clock)
    plan = turns(scenario)
    queues: list[Events] = [asyncio.Queue() for _ in plan]
    arrivals: list[list[float]] = [[] for _ in plan]
    tasks: list[asyncio.Task[None]] = []

    def deliver(index: int, event: EngineEvent | None) -> None:
        if event is None:
            surface = SimulatedSurface(platform, index)
            task = asyncio.create_task(bot(index, queues[index], surface), name=f"reply {index}")
            tasks.append(task)
            return
        if isinstance(event, TextDelta):
            arrivals[index].append(clock.now())
        queues[index].put_nowait(event)

    for at, index, event in _schedule(plan):
        if at > clock.now():
            await clock.advance(math.ceil(at / STEP - 1e-9) * STEP - clock.now())
        deliver(index, event)
    finished = await _drain(clock, tasks)
    shown: dict[int, list[Draft]] = {}
    for ref, draft in platform.shown.items():
        shown.setdefault(platform.owner[ref], []).append(draft)
    return Outcome(
        policy=policy.name,
        scenario=scenario,
        turns=plan,
        arrivals=arrivals,
        landed=platform.landed,
        rejected=platform.rejected,
        shown=shown,
        finished=finished,
    )


def _schedule(plan: Sequence[Turn]) -> Iterator[tuple[float, int, EngineEvent | None]]:
    """Every reply's start (``None``), tokens and end, in time order."""
    timeline: list[tuple[float, int, int, EngineEvent | None]] = []
    for index, turn in enumerate(plan):
        timeline.append((turn.start, index, -1, None))
        for order, (token, at) in enumerate(zip(turn.tokens, turn.times, strict=True)):
            timeline.append((at, index, order, TextDelta(text=token)))
        end = TurnFinished(text=turn.text, usage=Usage(), rounds=1)
        timeline.append((turn.times[-1] + 1e-6, index, len(turn.tokens), end))
    timeline.sort(key=lambda item: item[:3])
    for at, index, _, event in timeline:
        yield at, index, event


async def _drain(clock: FakeClock, tasks: list[asyncio.Task[None]]) -> bool:
    """Advance from deadline to deadline until every reply is done; False past ``HORIZON``
    (``asyncio.run`` then cancels what is left)."""
    while not all(task.done() for task in tasks):
        await settle()
        if (deadline := clock.next_deadline) is None:
            await settle(200)
            if (deadline := clock.next_deadline) is None and not all(t.done() for t in tasks):
                raise RuntimeError("replies wait on something the clock cannot wake")
            continue
        if deadline > HORIZON:
            return False
        await clock.advance(max(0.0, deadline - clock.now()))
    for task in tasks:
        task.result()  # a bot's failure is the benchmark's
    return True


# --- the report -----------------------------------------------------------------------------


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    policy: str
    calls: int
    posts: int
    edits: int
    errors: int
    p50: float
    p95: float
    intact: bool
    done_at: float

    @classmethod
    def of(cls, outcome: Outcome) -> Row:
        staleness = outcome.staleness()
        return cls(
            policy=outcome.policy,
            calls=len(outcome.landed) + len(outcome.rejected),
            posts=outcome.posts,
            edits=outcome.edits,
            errors=len(outcome.rejected),
            p50=statistics.median(staleness),
            p95=percentile(staleness, 0.95),
            intact=outcome.intact(),
            done_at=outcome.done_at(),
        )


@dataclass(kw_only=True)
class Result:
    scenario: Scenario
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    rows: dict[str, Row] = field(default_factory=dict)
    seconds: float = 0.0
    """Wall-clock seconds the whole scenario took to simulate."""


def run(
    scenario_list: Sequence[Scenario],
    *,
    policies: Sequence[Policy] = POLICIES,
    progress: Callable[[str], None] | None = None,
) -> list[Result]:
    results = []
    for scenario in scenario_list:
        result = Result(scenario=scenario)
        start = time.perf_counter()
        for policy in policies:
            if progress:
                progress(f"{scenario.platform} x{scenario.replies}: {policy.name}")
            outcome = simulate(scenario, policy)
            result.outcomes[policy.name] = outcome
            result.rows[policy.name] = Row.of(outcome)
        result.seconds = time.perf_counter() - start
        results.append(result)
    return results


def _seconds(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:.1f}"


def table(results: Sequence[Result]) -> str:
    lines: list[str] = []
    for result in results:
        lines.append(f"\n{result.scenario.title}  ({result.seconds:.1f} s to simulate)")
        lines.append(
            f"  {'policy':<18} {'calls':>6} {'posts':>6} {'edits':>6} {'429s':>6} "
            f"{'stale p50':>10} {'p95':>8} {'intact':>7} {'all done':>9}"
        )
        for row in result.rows.values():
            lines.append(
                f"  {row.policy:<18} {row.calls:6d} {row.posts:6d} {row.edits:6d} "
                f"{row.errors:6d} {_seconds(row.p50):>9}s {_seconds(row.p95):>7}s "
                f"{'yes' if row.intact else 'NO':>7} {_seconds(row.done_at):>8}s"
            )
        lines.extend(_ratios(result.rows))
    return "\n".join(lines)


def _ratios(rows: dict[str, Row]) -> list[str]:
    if OURS not in rows:
        return []
    ours_row, lines = rows[OURS], []
    for name in BASELINES:
        if (peer := rows.get(name)) is None:
            continue
        lines.append(
            f"  ours / {name}: p95 staleness {_ratio(ours_row.p95, peer.p95)}, "
            f"calls {_ratio(ours_row.calls, peer.calls)}, "
            f"429s {ours_row.errors} vs {peer.errors}"
        )
    return lines


def _ratio(ours_value: float, peer: float) -> str:
    if peer == 0 or math.isinf(peer) or math.isinf(ours_value):
        return "n/a"
    return f"{ours_value / peer:.2f}x"


def verdicts(result: Result) -> list[str]:
    """The issue's targets, each met or not, for one scenario."""
    rows, lines = result.rows, list[str]()
    if (ours_row := rows.get(OURS)) is None:
        return lines
    peers = [rows[name] for name in BASELINES if name in rows]
    lines.append(f"  right budget, zero 429s: {_met(ours_row.errors == 0)}")
    ratios = ", ".join(f"{_ratio(ours_row.p95, peer.p95)} of {peer.policy}" for peer in peers)
    lines.append(
        f"  right budget, p95 staleness below both baselines: "
        f"{_met(all(ours_row.p95 < peer.p95 for peer in peers))} ({ratios})"
    )
    wrong = [rows[name] for name in rows if name.startswith(OURS + ",")]
    lines.append(f"  wrong budgets, text intact: {_met(all(row.intact for row in wrong))}")
    return lines


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


# --- the plot -------------------------------------------------------------------------------


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


# --- the command ----------------------------------------------------------------------------


def scenarios(*, quick: bool = False) -> list[Scenario]:
    """Per platform: the issue's 200 replies starting within 30 s; 20 replies within 30 s; and
    60 replies within 3 minutes, a load that lasts longer than Slack's one-minute window."""
    if quick:
        return [Scenario(platform=p, replies=n, tokens=40) for p in PLATFORMS for n in (3, 12)]
    return [
        Scenario(platform=platform, replies=replies, arrivals_over=over)
        for platform in PLATFORMS
        for replies, over in ((200, 30.0), (20, 30.0), (60, 180.0))
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few replies and tokens")
    parser.add_argument(
        "--plot",
        nargs="?",
        const="bench/edits.png",
        metavar="PATH",
        help="save the PNG here (default bench/edits.png); without --plot, to a temp file",
    )
    args = parser.parse_args(argv)

    def progress(message: str) -> None:
        print(f"\r  {message:<70}", end="", file=sys.stderr, flush=True)

    scenario_list = scenarios(quick=args.quick)
    results = run(scenario_list, progress=progress if sys.stderr.isatty() else None)
    if sys.stderr.isatty():
        print(f"\r{'':<74}\r", end="", file=sys.stderr)
    print(
        f"Virtual time; every call takes {LATENCY:g} s; tokens fed every {STEP * 1000:g} ms; "
        "staleness = a token's arrival until a landed call shows it"
    )
    print(table(results))
    for result in results:
        print(f"\ntargets, {result.scenario.title}:")
        print("\n".join(verdicts(result)))
    path = args.plot or os.path.join(tempfile.gettempdir(), "bench-edits.png")
    print("\n" + plot(results, path))


if __name__ == "__main__":
    main()
