"""A recording fake ``StreamTarget``: every start, append, stop, delete and replace as it
reached the platform, and the messages as a person would see them.

    target = FakeStreamTarget(limits=StreamLimits(start_scopes=("slack.stream.start:T1",)),
                              clock=clock)
    target.fail_next("append", SurfaceRateLimited("slow down", retry_after=2.0))
    target.expire("s1")      # its stream's lifetime passed: appends and stops raise StreamEnded
    target.press_stop("s1")  # the person pressed Stop: appends raise StoppedByUser, one stop goes
    ...
    assert target.visible() == ["the whole answer"]

Messages are ``s1``, ``s2``… in starting order. A scripted failure is recorded with the error's
class name in ``failed``. ``replace`` of a message still streaming fails as Slack's does
(``streaming_state_conflict``).
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from adapters.clock import Clock
from adapters.stream_reply import (
    Chunk,
    Markdown,
    StoppedByUser,
    StreamEnded,
    StreamLimits,
    TaskUpdate,
)
from adapters.surface import MessageGone, MessageRef, SurfaceError

__all__ = ["FakeStreamTarget", "Sent", "Shown", "StreamOp"]

StreamOp = Literal["start", "append", "stop", "delete", "replace"]


@dataclass(frozen=True, slots=True)
class Sent:
    at: float
    op: StreamOp
    ref: MessageRef
    markdown: str = ""
    chunks: tuple[Chunk, ...] = ()
    blocks: tuple[dict[str, Any], ...] = ()
    session_status: str | None = None
    failed: str | None = None


@dataclass(slots=True)
class Shown:
    """One message as it looks now: its text, its task cards by id, the blocks under it."""

    text: str = ""
    cards: dict[str, TaskUpdate] = field(default_factory=dict)
    blocks: tuple[dict[str, Any], ...] = ()
    streaming: bool = True
    stopped_by_user: bool = False
    session_ended: bool = False  # after the person's Stop, Slack still takes one stop


class FakeStreamTarget:
    def __init__(self, *, limits: StreamLimits, clock: Clock) -> None:
        self._limits = limits
        self._clock = clock
        self._failures: dict[StreamOp, deque[SurfaceError]] = defaultdict(deque)
        self._started = 0
        self.calls: list[Sent] = []
        self.messages: dict[MessageRef, Shown] = {}
        """The live messages, in starting order."""

    @property
    def limits(self) -> StreamLimits:
        return self._limits

    def fail_next(self, op: StreamOp, error: SurfaceError) -> None:
        """The next ``op`` call raises ``error`` (queued: call again for the one after)."""
        self._failures[op].append(error)

    def expire(self, ref: MessageRef) -> None:
        """The stream's lifetime passed: it keeps its text, but takes no more."""
        self.messages[ref].streaming = False

    def press_stop(self, ref: MessageRef) -> None:
        """The person pressed Slack's Stop: the platform ends the stream."""
        shown = self.messages[ref]
        shown.streaming, shown.stopped_by_user = False, True

    def visible(self) -> list[str]:
        """The text of every live message, in order."""
        return [shown.text for shown in self.messages.values()]

    def ops(self) -> list[tuple[StreamOp, MessageRef]]:
        """The calls that succeeded, as (operation, message) pairs."""
        return [(sent.op, sent.ref) for sent in self.calls if sent.failed is None]

    async def start(self, markdown: str, chunks: Sequence[Chunk]) -> MessageRef:
        ref = f"s{self._started + 1}"
        self._call(Sent(self._clock.now(), "start", ref, markdown, tuple(chunks)))
        self._started += 1
        self.messages[ref] = Shown()
        self._add(ref, markdown, chunks)
        return ref

    async def append(self, ref: MessageRef, *, markdown: str, chunks: Sequence[Chunk]) -> None:
        self._call(Sent(self._clock.now(), "append", ref, markdown, tuple(chunks)))
        self._add(ref, markdown, chunks)

    async def stop(
        self,
        ref: MessageRef,
        *,
        markdown: str,
        chunks: Sequence[Chunk],
        blocks: Sequence[dict[str, Any]],
        session_status: str | None,
    ) -> None:
        at = self._clock.now()
        self._call(Sent(at, "stop", ref, markdown, tuple(chunks), tuple(blocks), session_status))
        self._add(ref, markdown, chunks)
        self.messages[ref].streaming = False
        self.messages[ref].blocks = tuple(blocks)

    async def delete(self, ref: MessageRef) -> None:
        self._call(Sent(self._clock.now(), "delete", ref))
        del self.messages[ref]

    async def replace(self, ref: MessageRef, text: str, blocks: Sequence[dict[str, Any]]) -> None:
        self._call(Sent(self._clock.now(), "replace", ref, text, blocks=tuple(blocks)))
        shown = self.messages[ref]
        shown.text, shown.blocks = text, tuple(blocks)

    def _call(self, sent: Sent) -> None:
        """Record the call; raise what the platform would."""
        error = self._refusal(sent)
        if error is not None:
            self.calls.append(Sent(**{**_fields(sent), "failed": type(error).__name__}))
            raise error
        self.calls.append(sent)

    def _refusal(self, sent: Sent) -> SurfaceError | None:
        if self._failures[sent.op]:
            return self._failures[sent.op].popleft()
        if sent.op == "start":
            return None
        shown = self.messages.get(sent.ref)
        if shown is None:
            return MessageGone("message_not_found")
        if sent.op in ("append", "stop") and not shown.streaming:
            if shown.stopped_by_user and sent.op == "append":
                return StoppedByUser("stopped_by_user")
            if shown.stopped_by_user and not shown.session_ended:  # one stop ends the session
                shown.session_ended = sent.op == "stop"
                return None
            return StreamEnded("message_not_in_streaming_state")
        if sent.op == "replace" and shown.streaming:
            return SurfaceError("streaming_state_conflict")
        return None

    def _add(self, ref: MessageRef, markdown: str, chunks: Sequence[Chunk]) -> None:
        shown = self.messages[ref]
        shown.text += markdown
        for chunk in chunks:
            match chunk:
                case Markdown(text=text):
                    shown.text += text
                case TaskUpdate(id=card):
                    shown.cards[card] = chunk
                case _:
                    pass


def _fields(sent: Sent) -> dict[str, Any]:
    return {name: getattr(sent, name) for name in Sent.__slots__}
