"""The bots ``bench.edits`` compares, each streaming every reply of one run (``POLICIES``):

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

Where the platform streams natively (Slack; on Discord these two do not run):

- ``native`` — every reply a :class:`adapters.stream_reply.StreamReply` on the simulated stream
  (``chat.startStream`` / ``appendStream`` / ``stopStream``), one ``TokenBucketBudget`` at
  ``DEFAULT_RATES`` shared by every reply: starts and stops from ``slack.stream.start``, appends
  from ``slack.stream.append``, at most one append a second per reply.
- ``auto`` — ``[slack] streaming = "auto"`` as the Slack bot decides it when an answer begins
  (``bots.slack.answers``: a DM, or an agent thread, streams natively while
  :class:`adapters.reply_mix.ReplyMix` finds the appends' budget no more crowded than the
  edits' and the workspace's ``slack.stream.start`` window has a start free, else it is an
  edited ``LiveReply``), both kinds on one shared budget.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from adapters.budget import DEFAULT_RATES, Rate, TokenBucketBudget
from adapters.live import LiveReply
from adapters.reply_mix import ReplyMix
from adapters.stream_reply import Reply, StreamReply
from adapters.surface import Draft, SurfaceRateLimited
from bench.edits_platform import SimulatedSurface
from core.events import EngineEvent, TextDelta, TurnFinished
from tests.support.clock import FakeClock

__all__ = [
    "AUTO",
    "BASELINES",
    "NATIVE",
    "OURS",
    "PER_PROCESS",
    "POLICIES",
    "Bot",
    "Events",
    "Policy",
]

T = TypeVar("T")

Events = asyncio.Queue[EngineEvent]
Bot = Callable[[int, Events, SimulatedSurface], Coroutine[Any, Any, None]]
"""Streams reply ``i`` into its surface: fed engine events, ending at ``TurnFinished``."""


@dataclass(frozen=True, slots=True)
class Policy:
    name: str
    make: Callable[[FakeClock], Bot]
    """A fresh bot for one run; what its replies share (a budget, a throttle) lives in it."""
    streams: bool = False
    """It streams natively: it runs only on a platform that can."""


def _scaled(factor: float) -> dict[str, Rate]:
    return {
        kind: Rate(per_second=rate.per_second * factor, burst=max(1.0, rate.burst * factor))
        for kind, rate in DEFAULT_RATES.items()
    }


def ours(factor: float = 1.0) -> Callable[[FakeClock], Bot]:
    def make(clock: FakeClock) -> Bot:
        budget = TokenBucketBudget(_scaled(factor), clock=clock)

        async def bot(index: int, events: Events, surface: SimulatedSurface) -> None:
            await _answer(LiveReply(surface, budget, clock=clock, name=str(index)), events)

        return bot

    return make


async def _answer(reply: Reply, events: Events) -> None:
    """Feed ``reply`` its events, as the turn worker does, until the turn is over."""
    async with reply:
        while not isinstance(event := await events.get(), TurnFinished):
            reply.feed(event)
        reply.feed(event)


def native(clock: FakeClock) -> Bot:
    budget = TokenBucketBudget(clock=clock)

    async def bot(index: int, events: Events, surface: SimulatedSurface) -> None:
        target = surface.stream()
        await _answer(StreamReply(target, budget, clock=clock, name=str(index)), events)

    return bot


def auto(clock: FakeClock) -> Bot:
    budget = TokenBucketBudget(clock=clock)
    mix = ReplyMix(budget)

    async def bot(index: int, events: Events, surface: SimulatedSurface) -> None:
        def edited() -> LiveReply:
            return LiveReply(surface, budget, clock=clock, name=str(index))

        target = surface.stream()
        limits = target.limits
        append, edit = limits.append_scopes[0], limits.edit_scopes[0]
        if await mix.streams(start=limits.start_scopes, append=append, edit=edit):
            reply: Reply = StreamReply(
                target, budget, clock=clock, fallback=edited, start_paid=True, name=str(index)
            )
            scope = append
        else:
            reply, scope = edited(), edit
        with mix.live(scope):
            await _answer(reply, events)

    return bot


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
NATIVE = "native"
AUTO = "auto"
PER_PROCESS = "1 edit/s/process"
POLICIES = (
    Policy(OURS, ours()),
    Policy("every 20 deltas", every_20_deltas),
    Policy(PER_PROCESS, one_edit_per_second_per_process),
    Policy("ours, budget +50%", ours(1.5)),
    Policy("ours, budget -50%", ours(0.5)),
    Policy(NATIVE, native, streams=True),
    Policy(AUTO, auto, streams=True),
)
BASELINES = ("every 20 deltas", PER_PROCESS)
