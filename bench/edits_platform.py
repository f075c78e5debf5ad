"""The platform side of ``bench.edits``: its own sliding-window limits, not our token bucket.

The platforms, as modelled (``PLATFORMS``):

- Slack: ``chat.update`` at most 50 per 60 s per workspace (Tier 3). ``chat.postMessage`` has
  its own limit, about one a second per channel with short bursts allowed; the replies are
  threads spread over ``SLACK_CHANNELS`` channels and posts get a window of 60 per 60 s per
  channel, which this load never fills: posts are effectively not limited. Slack's
  ``Retry-After`` is in whole seconds.
- Discord: 5 creates or edits per 5 s per channel, and 50 requests a second per bot (global).
  ``retry_after`` has millisecond precision.

Every call takes ``LATENCY`` seconds; the platform counts it, and the text is visible, when it
lands. A call over a window is answered ``SurfaceRateLimited(retry_after=...)`` with the time
until the window frees, and every accepted call is recorded with its virtual time and text.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from adapters.surface import Draft, MessageGone, MessageRef, SurfaceLimits, SurfaceRateLimited
from tests.support.clock import FakeClock

__all__ = [
    "LATENCY",
    "PLATFORMS",
    "Landed",
    "Op",
    "Platform",
    "SimulatedPlatform",
    "SimulatedSurface",
    "Window",
]

LATENCY = 0.1
"""Seconds from a call's start until the platform has it (and the text shows)."""
SLACK_CHANNELS = 10

Op = Literal["post", "edit"]


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
