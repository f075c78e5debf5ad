"""The platform side of ``bench.edits``: its own sliding-window limits, not our token bucket.

The platforms, as modelled (``PLATFORMS``):

- Slack: ``chat.update`` at most 50 per 60 s per workspace (Tier 3). ``chat.postMessage`` has
  its own limit, about one a second per channel with short bursts allowed; the replies are
  threads spread over ``SLACK_CHANNELS`` channels and posts get a window of 60 per 60 s per
  channel, which this load never fills: posts are effectively not limited. Slack's
  ``Retry-After`` is in whole seconds.
- Slack's native streaming (``Platform.stream``): ``chat.startStream`` and ``chat.stopStream``
  at most 20 per 60 s per workspace each (Tier 2; Slack counts each method in its own window),
  ``chat.appendStream`` at most 100 per 60 s per workspace (Tier 4). A stream's message shows
  what was started and appended; a stopped stream is final. A stream lives ``STREAM_LIFETIME``
  seconds: an append or stop after that is answered ``message_not_in_streaming_state``
  (:class:`~adapters.stream_reply.StreamEnded`) and the message keeps what it had until a
  ``chat.update`` replaces it. ``chat.delete`` has its own Tier 3 window (50 per 60 s).
- Discord: 5 creates or edits per 5 s per channel, and 50 requests a second per bot (global).
  ``retry_after`` has millisecond precision. Discord has no native streaming.

Every call takes ``LATENCY`` seconds; the platform counts it, and the text is visible, when it
lands. A call over a window is answered ``SurfaceRateLimited(retry_after=...)`` with the time
until the window frees, and every accepted call is recorded with its virtual time and the
whole text its message shows after it (for a stream: everything appended so far).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from adapters.stream_reply import Chunk, StreamEnded, StreamLimits
from adapters.surface import (
    Draft,
    MessageGone,
    MessageRef,
    SurfaceError,
    SurfaceLimits,
    SurfaceRateLimited,
)
from tests.support.clock import FakeClock

__all__ = [
    "LATENCY",
    "PLATFORMS",
    "STREAM_LIFETIME",
    "STREAM_OPS",
    "Landed",
    "Op",
    "Platform",
    "SimulatedPlatform",
    "SimulatedStream",
    "SimulatedSurface",
    "Window",
]

LATENCY = 0.1
"""Seconds from a call's start until the platform has it (and the text shows)."""
SLACK_CHANNELS = 10
STREAM_LIFETIME = 300.0
"""Seconds a Slack stream accepts appends and its stop (Slack: "about 5 minutes")."""

Op = Literal["post", "edit", "delete", "start", "append", "stop"]
"""``post`` / ``edit`` / ``delete`` a message; ``start`` / ``append`` / ``stop`` a stream."""
STREAM_OPS: tuple[Op, ...] = ("start", "append", "stop")


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
    stream: StreamLimits | None = None
    """What our stream target declares, where the platform streams natively."""


def _slack_windows(op: Op, reply: int) -> tuple[Window, ...]:
    match op:
        case "post":
            return (Window(f"chat.postMessage:C{reply % SLACK_CHANNELS}", 60, 60.0),)
        case "edit":
            return (Window("chat.update:T1", 50, 60.0),)
        case "delete":
            return (Window("chat.delete:T1", 50, 60.0),)
        case "start":
            return (Window("chat.startStream:T1", 20, 60.0),)
        case "stop":
            return (Window("chat.stopStream:T1", 20, 60.0),)
        case "append":
            return (Window("chat.appendStream:T1", 100, 60.0),)


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
        stream=StreamLimits(
            rollover_chars=12_000,
            append_interval=1.0,  # as the Slack bot sets it: its edit_interval
            start_scopes=("slack.stream.start:T1",),
            stop_scopes=("slack.stream.stop:T1",),
            append_scopes=("slack.stream.append:T1",),
            edit_scopes=("slack.workspace:T1",),
        ),
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
        self.streaming: dict[MessageRef, float] = {}
        """Streams not stopped yet, and when each started."""

    async def call(self, op: Op, reply: int, ref: MessageRef, draft: Draft) -> None:
        """A post or an edit: the message shows ``draft`` once it lands."""
        windows = await self._admit(op, reply)
        if op == "edit" and ref not in self.shown:
            raise MessageGone("no such message")
        if op == "edit" and self._live(ref):
            raise SurfaceError("streaming_state_conflict")  # chat.update on a live stream
        self._land(op, reply, ref, draft, windows)

    async def stream(self, op: Op, reply: int, ref: MessageRef, markdown: str) -> None:
        """A streaming call: ``start`` shows ``markdown``, ``append`` adds it, ``stop`` adds
        it and makes the message final; ``delete`` removes the message."""
        windows = await self._admit(op, reply)
        if op != "start" and ref not in self.shown:
            raise MessageGone("no such message")
        if op in ("append", "stop") and not self._live(ref):
            raise StreamEnded("message_not_in_streaming_state")
        if op == "delete":
            self._land(op, reply, ref, Draft(text="", final=True), windows)
            del self.shown[ref]
            self.streaming.pop(ref, None)
            return
        text = markdown if op == "start" else self.shown[ref].text + markdown
        if op == "start":
            self.streaming[ref] = self._clock.now()
        elif op == "stop":
            del self.streaming[ref]
        self._land(op, reply, ref, Draft(text=text, final=op == "stop"), windows)

    def _live(self, ref: MessageRef) -> bool:
        """Whether ``ref`` is a stream still within its lifetime (one past it is ended now)."""
        started = self.streaming.get(ref)
        if started is not None and self._clock.now() - started > STREAM_LIFETIME:
            del self.streaming[ref]
            return False
        return started is not None

    async def _admit(self, op: Op, reply: int) -> tuple[Window, ...]:
        """Wait the call's latency; then a 429 if a window it counts in is full."""
        await self._clock.sleep(LATENCY)
        now = self._clock.now()
        windows = self.platform.windows(op, reply)
        wait = max(self._wait(window, now) for window in windows)
        if wait > 0:
            self.rejected.append(now)
            if self.platform.whole_seconds:
                wait = math.ceil(wait)
            raise SurfaceRateLimited(f"{op} rate limited", retry_after=wait)
        return windows

    def _land(
        self, op: Op, reply: int, ref: MessageRef, draft: Draft, windows: tuple[Window, ...]
    ) -> None:
        now = self._clock.now()
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
        raise NotImplementedError("no editing reply here deletes a message")

    def stream(self) -> SimulatedStream:
        """The same thread, for a reply that streams natively (only where the platform can)."""
        return SimulatedStream(self._platform, self._reply)


class SimulatedStream:
    """One reply's thread as a ``StreamTarget``: each call one simulated streaming call.

    Task cards (``chunks``) are not text: the bench's replies call no tools, and a card would
    not count towards what a reader sees of the answer anyway."""

    def __init__(self, platform: SimulatedPlatform, reply: int) -> None:
        if platform.platform.stream is None:
            raise ValueError(f"{platform.platform.name} has no native streaming")
        self._platform = platform
        self._limits = platform.platform.stream
        self._reply = reply
        self._started = 0

    @property
    def limits(self) -> StreamLimits:
        return self._limits

    async def start(self, markdown: str, chunks: Sequence[Chunk]) -> MessageRef:
        ref = f"r{self._reply}s{self._started + 1}"
        await self._platform.stream("start", self._reply, ref, markdown)
        self._started += 1
        return ref

    async def append(self, ref: MessageRef, *, markdown: str, chunks: Sequence[Chunk]) -> None:
        await self._platform.stream("append", self._reply, ref, markdown)

    async def stop(
        self,
        ref: MessageRef,
        *,
        markdown: str,
        chunks: Sequence[Chunk],
        blocks: Sequence[dict[str, Any]],
        session_status: str | None,
    ) -> None:
        await self._platform.stream("stop", self._reply, ref, markdown)

    async def delete(self, ref: MessageRef) -> None:
        await self._platform.stream("delete", self._reply, ref, "")

    async def replace(self, ref: MessageRef, text: str, blocks: Sequence[dict[str, Any]]) -> None:
        await self._platform.call("edit", self._reply, ref, Draft(text=text, final=True))
