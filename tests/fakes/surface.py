"""A recording fake ``Surface``: every post, edit and delete as it reached the platform.

    surface = FakeSurface(limits=SurfaceLimits(max_length=2000, edit_interval=1.0), clock=clock)
    surface.fail_next("edit", SurfaceRateLimited("slow down", retry_after=2.0))
    ...
    assert surface.calls == [Call(0.0, "post", "m1", Draft(text="", status="Thinking…")), ...]
    assert surface.visible() == ["the whole answer"]

A scripted failure is recorded too, with the error's class name in ``failed``, so a test reads
the attempts in the order the platform saw them. Messages are ``m1``, ``m2``… in posting order.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from adapters.clock import Clock
from adapters.surface import Draft, MessageGone, MessageRef, SurfaceError, SurfaceLimits

__all__ = ["Call", "FakeSurface", "Op"]

Op = Literal["post", "edit", "delete"]


@dataclass(frozen=True, slots=True)
class Call:
    at: float
    op: Op
    ref: MessageRef
    draft: Draft | None = None
    failed: str | None = None


class FakeSurface:
    def __init__(
        self,
        *,
        limits: SurfaceLimits,
        clock: Clock,
        render: Callable[[str], str] = lambda markdown: markdown,
        latency: float = 0.0,
    ) -> None:
        self._limits = limits
        self._clock = clock
        self._render = render
        self._latency = latency
        self._failures: dict[Op, deque[SurfaceError]] = defaultdict(deque)
        self._posted = 0
        self.calls: list[Call] = []
        self.messages: dict[MessageRef, Draft] = {}
        """The live messages and what each shows now, in posting order."""

    @property
    def limits(self) -> SurfaceLimits:
        return self._limits

    def render(self, markdown: str) -> str:
        return self._render(markdown)

    def fail_next(self, op: Op, error: SurfaceError) -> None:
        """The next ``op`` call raises ``error`` (queued: call again for the one after)."""
        self._failures[op].append(error)

    def visible(self) -> list[str]:
        """The text of every live message, in order (status lines apart)."""
        return [draft.text for draft in self.messages.values()]

    def remove(self, ref: MessageRef) -> None:
        """Someone deletes the message by hand: later edits of it raise ``MessageGone``."""
        del self.messages[ref]

    async def post(self, draft: Draft) -> MessageRef:
        ref = f"m{self._posted + 1}"
        await self._call("post", ref, draft)
        self._posted += 1
        self.messages[ref] = draft
        return ref

    async def edit(self, ref: MessageRef, draft: Draft) -> None:
        await self._call("edit", ref, draft)
        self.messages[ref] = draft

    async def delete(self, ref: MessageRef) -> None:
        await self._call("delete", ref, None)
        del self.messages[ref]

    async def _call(self, op: Op, ref: MessageRef, draft: Draft | None) -> None:
        at = self._clock.now()
        if self._latency:
            await self._clock.sleep(self._latency)
        if self._failures[op]:
            error = self._failures[op].popleft()
            self.calls.append(Call(at, op, ref, draft, failed=type(error).__name__))
            raise error
        if op != "post" and ref not in self.messages:
            self.calls.append(Call(at, op, ref, draft, failed="MessageGone"))
            raise MessageGone("no such message")
        self.calls.append(Call(at, op, ref, draft))
