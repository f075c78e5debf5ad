"""One run of ``bench.edits``: a policy streams a scenario's replies, in virtual time, and what
the platform saw of it.

Nothing sleeps on the wall clock: a :class:`~tests.support.clock.FakeClock` is advanced in small
steps (``STEP``) while the model's tokens are fed at their scheduled times, then from deadline
to deadline until every reply is done.

Staleness is, for every token, the time from its arrival until the first accepted call whose
text contains it — an edit's whole text, or a stream's text as started and appended so far, so
an edited and a streamed reply are measured alike. A reply is intact when its messages finally
show exactly the model's text, the last one final (an edit marked final, or a stopped stream).
"""

from __future__ import annotations

import asyncio
import functools
import math
import random
import statistics
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate

from adapters.surface import Draft
from bench.edits_platform import PLATFORMS, STREAM_OPS, Landed, SimulatedPlatform, SimulatedSurface
from bench.edits_policies import POLICIES, Events, Policy
from core.events import EngineEvent, TextDelta, TurnFinished, Usage
from tests.support.clock import FakeClock, settle

__all__ = ["STEP", "Outcome", "Result", "Row", "Scenario", "Turn", "run", "simulate"]

STEP = 0.02
"""Seconds between two feeds of the model's tokens while they stream."""
HORIZON = 3 * 3600.0
"""Virtual seconds after which a run is cut short (its replies then count as not intact)."""


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


# --- what the platform saw ------------------------------------------------------------------


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

    @property
    def streamed(self) -> int:
        """Landed calls of the streaming methods (start, append, stop)."""
        return sum(call.op in STREAM_OPS for call in self.landed)

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


# --- one run --------------------------------------------------------------------------------


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
    for at, index, event in _schedule(plan):
        if at > clock.now():
            await clock.advance(math.ceil(at / STEP - 1e-9) * STEP - clock.now())
        if event is None:  # the reply starts: its bot gets its own thread
            reply = bot(index, queues[index], SimulatedSurface(platform, index))
            tasks.append(asyncio.create_task(reply, name=f"reply {index}"))
            continue
        if isinstance(event, TextDelta):
            arrivals[index].append(clock.now())
        queues[index].put_nowait(event)
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


# --- every policy on every scenario ---------------------------------------------------------


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """One policy's numbers on one scenario."""

    policy: str
    calls: int
    posts: int
    edits: int
    streamed: int
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
            streamed=outcome.streamed,
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
        streams = PLATFORMS[scenario.platform].stream is not None
        for policy in (p for p in policies if streams or not p.streams):
            if progress:
                progress(f"{scenario.platform} x{scenario.replies}: {policy.name}")
            outcome = simulate(scenario, policy)
            result.outcomes[policy.name] = outcome
            result.rows[policy.name] = Row.of(outcome)
        result.seconds = time.perf_counter() - start
        results.append(result)
    return results
