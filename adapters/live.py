"""``LiveReply``: one answer streamed into a chat platform by editing its message as it grows.

The bot feeds engine events; ``feed`` only updates a little state and wakes the flusher, so the
model stream is never slowed by the platform. One flusher task per reply makes every platform
call, one at a time:

- the placeholder at once, the first text as soon as it arrives, later edits at most once per
  ``limits.edit_interval`` (from the previous call's start), each call within the shared
  ``EditBudget``; the newest state is rendered right before each call, and a message whose
  draft has not changed is never sent again;
- text past a message's limit continues in a new message; the full ones are frozen (sent once
  more, final) and the status line and Stop button stay on the last; ``MessageTooLong`` (the
  platform counts longer than we do) lowers this reply's limit to 80 % and sends again, re-split
  — down to ``SHRINK_FLOOR``, after which it counts as a failed call;
- a rate limit is back-pressure, never a failure: ``SurfaceRateLimited`` pauses the budget,
  waits its ``retry_after``, then sends the newest text, however many times it takes; the final
  state acquires the budget ``urgent``, ahead of other replies' interim edits;
- ``MessageGone`` / ``SurfaceForbidden`` end the reply (``on_gone``, one log line, nothing more
  sent); other ``SurfaceError`` retry with backoff, the final state at most ``final_attempts``
  times.

Leaving the ``async with`` block waits until the final state is delivered: the answer, a short
error when the turn failed or the block raised, "Stopped." when it was cancelled, or what
:meth:`LiveReply.end_with` said. :meth:`LiveReply.abort` gives up at once (a shutdown's grace
is over).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from types import TracebackType
from typing import assert_never

from adapters.budget import EditBudget
from adapters.clock import Clock, RealClock
from adapters.surface import (
    Draft,
    MessageGone,
    MessageRef,
    MessageTooLong,
    Surface,
    SurfaceError,
    SurfaceForbidden,
    SurfaceRateLimited,
)
from adapters.text import close_markdown, neutralize_mentions, split_message
from core.events import (
    AttemptVoid,
    EngineEvent,
    ModelRetrying,
    ReasoningDelta,
    TextDelta,
    ToolFinished,
    ToolStarted,
    TurnFailed,
    TurnFinished,
    WaitingForSlot,
)
from core.metrics import BUDGET_WAIT_SECONDS

__all__ = [
    "MODEL_BUSY",
    "MODEL_RETRYING",
    "MODEL_SLOW",
    "STOPPED",
    "THINKING",
    "WAITING_FOR_SLOT",
    "LiveReply",
    "outlast_cancellation",
]

log = logging.getLogger("relaybot.live")

STATUS_ROOM = 200
"""Characters of every message kept for the status line (at most a quarter of the message).
The text is split to the rest whatever the status, so a frozen message never moves."""
STATUS_GAP = 4
"""What a surface may add between the text and the status line (a blank line, emphasis)."""
REASONING_SHOWN = 80
FAILED = "Something went wrong."
STOPPED = "Stopped."
THINKING = "Thinking…"
"""The placeholder a reply shows until its first words arrive."""
MODEL_BUSY = "The model is busy — retrying…"
"""Shown while a rate-limited or overloaded model call waits to be tried again."""
MODEL_RETRYING = "Lost the model's connection — retrying…"
"""Shown while a model call that failed otherwise waits to be tried again."""
MODEL_SLOW = "Still waiting for the model…"
WAITING_FOR_SLOT = "Waiting for a free slot…"
"""The status while every concurrent model request of the process is taken
(``llm.max_concurrent_requests``) and this answer waits in line for one."""
"""Shown when the model has said nothing for ``patience`` seconds, until it does."""
_WAIT_EXPLAINED = (MODEL_BUSY, MODEL_RETRYING, MODEL_SLOW, WAITING_FOR_SLOT)
"""Statuses that already say why the model is silent: no slow notice replaces them."""
RUNNING = "…"
SHRINK = 0.8
"""After ``MessageTooLong``, the reply's messages are split to this share of their limit."""
SHRINK_FLOOR = 500
"""The length ``MessageTooLong`` never lowers a reply's limit below."""


@dataclass(frozen=True, slots=True)
class _Post:
    index: int
    draft: Draft


@dataclass(frozen=True, slots=True)
class _Edit:
    index: int
    draft: Draft


@dataclass(frozen=True, slots=True)
class _Delete:
    index: int


_Call = _Post | _Edit | _Delete

_ADOPTED = Draft(text="\x00 shown by an earlier run")
"""What an adopted message shows, as far as the reply knows: unlike any draft it makes."""


class LiveReply:
    """One reply, kept in step with the engine events fed to it (see the module docstring).

    ``on_gone`` is called once when the platform says the reply can no longer be written (the
    bot cancels the turn); ``on_posted`` is awaited with every message of the reply each time a
    message is posted or deleted (a bot saves them, so a crash leaves nothing it cannot find;
    it must not raise); ``name`` names the flusher task and the log lines.
    ``patience`` is how long the model may stay silent before the status line says so (``None``:
    never).
    """

    def __init__(
        self,
        surface: Surface,
        budget: EditBudget,
        *,
        clock: Clock | None = None,
        placeholder: str | None = THINKING,
        show_reasoning: bool = False,
        on_gone: Callable[[], None] | None = None,
        on_posted: Callable[[tuple[MessageRef, ...]], Awaitable[None]] | None = None,
        name: str = "reply",
        final_attempts: int = 6,
        retry_delay: float = 1.0,
        patience: float | None = 5.0,
    ) -> None:
        self._surface = surface
        self._budget = budget
        self._clock: Clock = clock or RealClock()
        self._placeholder = placeholder
        self._show_reasoning = show_reasoning
        self._on_gone = on_gone
        self._on_posted = on_posted
        self._name = name
        self._final_attempts = final_attempts
        self._retry_delay = retry_delay
        self._patience = patience
        # What the events said.
        self._heard: float | None = None  # when the last event came
        self._body = ""
        self._mark = 0  # len(body) when the current model call began
        self._tools: dict[str, tuple[str, str]] = {}  # call id -> (activity, "…" | " — done")
        self._reasoning = ""
        self._status: str | None = None
        self._error = False
        self._final = False
        self._changed = asyncio.Event()
        # What the platform shows.
        self._max_length = surface.limits.max_length  # lowered by MessageTooLong
        self._drafted: tuple[object, ...] = ()  # the state _draft_cache was made for
        self._draft_cache: list[Draft] = []
        self._refs: list[MessageRef] = []
        self._sent: list[Draft] = []
        self._last_call = -math.inf
        self._failures = 0
        self._final_failures = 0
        self._gone = False
        self._gave_up = False
        self._flusher: asyncio.Task[None] | None = None

    @property
    def messages(self) -> tuple[MessageRef, ...]:
        """The messages posted so far, in order."""
        return tuple(self._refs)

    @property
    def delivered(self) -> bool:
        """The final state is on the platform, whole (after the ``async with`` block: the
        reply was not lost, and its final text was not given up on)."""
        return self._final and not (self._gone or self._gave_up) and self._next_call(0) is None

    @property
    def gone(self) -> bool:
        """The platform said the message is gone or the bot may not write here."""
        return self._gone

    async def __aenter__(self) -> LiveReply:
        self._flusher = asyncio.create_task(self._run(), name=f"live reply {self._name}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Deliver the final state (even while being cancelled), then let ``exc`` propagate."""
        if self._flusher is None:
            return
        if not (self._gone or self._final):
            if isinstance(exc, asyncio.CancelledError):
                self._end(self._body, STOPPED, error=False)
            else:
                self._end(self._body, FAILED, error=True)
        cancelled = await outlast_cancellation(self._flusher)
        if cancelled and not isinstance(exc, asyncio.CancelledError):
            raise asyncio.CancelledError

    def adopt(self, refs: Sequence[MessageRef]) -> None:
        """Take over the messages an earlier run of this answer left (a crash, a restart),
        before the reply starts: the first is edited into this reply instead of a new one
        posted, the others deleted — within the budget, like any call. One found gone is
        posted anew."""
        if self._flusher is not None:
            raise RuntimeError("a reply adopts messages before it starts")
        self._refs = list(refs)
        self._sent = [_ADOPTED] * len(self._refs)

    def end_with(self, notice: str, *, keep_text: bool = False, error: bool = False) -> None:
        """End the reply with ``notice`` as its status line, after what was said so far when
        ``keep_text`` (else the notice alone); later events change nothing. For the bot's own
        reasons to end a reply (a restart, say), where "Stopped." would be wrong."""
        if not (self._gone or self._final):
            self._end(self._body if keep_text else "", notice, error=error)

    def abort(self) -> None:
        """Stop making platform calls now, whatever is left undelivered."""
        if self._flusher is not None:
            self._flusher.cancel()

    # --- the events --------------------------------------------------------------------------

    def feed(self, event: EngineEvent) -> None:
        """Take one engine event into the reply's state; never blocks, never raises."""
        if self._gone or self._final:
            return
        self._heard_from_model()
        match event:
            case TextDelta(text=text) if text:
                self._body += text
                self._tools.clear()
                self._reasoning = ""
                self._status = None
            case AttemptVoid():
                self._body = self._body[: self._mark]
            case ModelRetrying(busy=busy):
                self._status = MODEL_BUSY if busy else MODEL_RETRYING
            case WaitingForSlot():
                self._status = WAITING_FOR_SLOT
            case ToolStarted(call_id=call_id, activity=activity):
                if RUNNING not in (state for _, state in self._tools.values()):
                    self._tools.clear()  # a new round of tools
                self._tools[call_id] = (activity, RUNNING)
                self._tool_status()
            case ToolFinished(call_id=call_id, name=name, ok=ok):
                activity = self._tools.get(call_id, (name, ""))[0]
                self._tools[call_id] = (activity, " — done" if ok else " — failed")
                self._tool_status()
            case ReasoningDelta(text=text) if self._show_reasoning:
                self._reasoning = (self._reasoning + text)[-REASONING_SHOWN:]
                self._status = "Thinking: " + " ".join(self._reasoning.split())
            case TurnFinished(text=text, stopped=stopped):
                self._end(text, STOPPED if stopped else None, error=False)
            case TurnFailed(message=message, partial_text=partial):
                self._end(self._body or partial, message, error=True)
            case TextDelta() | ReasoningDelta():  # empty text, or reasoning not shown
                return
            case _:
                assert_never(event)
        self._changed.set()

    def _tool_status(self) -> None:
        self._mark = len(self._body)  # text before a tool is from a finished model call
        self._status = " · ".join(activity + state for activity, state in self._tools.values())

    def _heard_from_model(self) -> None:
        """Any event ends the model's silence, and with it the status that spoke of it."""
        self._heard = self._clock.now()
        if self._status == MODEL_SLOW:
            self._status = None
            self._changed.set()

    def _end(self, body: str, status: str | None, *, error: bool) -> None:
        self._body, self._status, self._error, self._final = body, status, error, True
        self._changed.set()

    # --- what the messages should show -------------------------------------------------------

    def _drafts(self) -> list[Draft]:
        """Every message's draft for the newest state: the frozen pieces, then the last one.
        Rendering the whole text is the costly part of a reply, and a pass over the messages
        asks several times between two events: the drafts are kept until the state changes."""
        state = (self._body, self._status, self._final, self._error, self._max_length)
        if state != self._drafted:
            self._drafted, self._draft_cache = state, self._make_drafts()
        return self._draft_cache

    def _make_drafts(self) -> list[Draft]:
        status = self._status
        if status is None and not self._body and not self._final:
            status = self._placeholder
        text = neutralize_mentions(self._surface.render(self._body))
        if not (text or status or self._final):
            return []
        max_length = self._max_length
        room = min(STATUS_ROOM, max_length // 4)
        *frozen, last = (split_message(text, max_length - room) if text else None) or [""]
        if not self._final or status is not None:  # a stopped or failed answer ends mid-text
            last = close_markdown(last)
        status = _clip(status, max_length - len(last) - STATUS_GAP)
        closing = self._final and status is None and not self._error
        return [
            *(Draft(text=piece, final=True) for piece in frozen),
            Draft(text=last, status=status, final=self._final, error=self._error, closing=closing),
        ]

    def _next_call(self, start: int) -> _Call | None:
        """The first call, from message ``start`` on, that brings the platform to the newest
        state; surplus messages (after a rewind) go first."""
        drafts = self._drafts()
        if not drafts:
            return None  # nothing to show: what is shown stays until there is
        if len(self._refs) > len(drafts):
            return _Delete(len(self._refs) - 1)
        for index in range(min(start, len(self._refs)), len(drafts)):
            if index == len(self._refs):
                return _Post(index, drafts[index])
            if drafts[index] != self._sent[index]:
                return _Edit(index, drafts[index])
        return None

    # --- the flusher -------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while not (self._gone or self._gave_up):
                if self._next_call(0) is None:
                    if self._final:
                        return  # delivered
                    self._changed.clear()
                    await self._wait_for_news()
                    continue
                await self._pace()
                await self._flush()
        except Exception:
            log.exception("live reply %s: the flusher failed", self._name)

    async def _wait_for_news(self) -> None:
        """Wait for the next event. While the reply waits on the model, ``patience`` seconds of
        silence are news too: the status says so, where a stalled gateway would leave the
        placeholder up for minutes with no word of why."""
        left = self._patience_left()
        if left is None:
            await self._changed.wait()
            return
        if left > 0:
            await self._wait_at_most(left)
            left = self._patience_left()
        if left is not None and left <= 0:
            self._status = MODEL_SLOW

    def _patience_left(self) -> float | None:
        """Seconds of silence left before the status speaks of it; ``None`` when nothing waits
        on the model or the status already explains the wait (a running tool, a retry)."""
        if self._patience is None or self._final or self._status in _WAIT_EXPLAINED:
            return None
        if RUNNING in (state for _, state in self._tools.values()):
            return None
        return self._silence_began() + self._patience - self._clock.now()

    def _silence_began(self) -> float:
        """When the model last spoke — or, before it has, when the reply first waited for it."""
        if self._heard is None:
            self._heard = self._clock.now()
        return self._heard

    async def _wait_at_most(self, seconds: float) -> None:
        """Wait for an event, or ``seconds`` on the reply's clock. Its one timer task has ended
        when this returns — woken, timed out or cancelled — so none outlives the reply."""
        timer = asyncio.create_task(self._ring_after(seconds), name=f"patience {self._name}")
        try:
            await self._changed.wait()
        finally:
            timer.cancel()
            if not timer.done():
                await asyncio.wait([timer])

    async def _ring_after(self, seconds: float) -> None:
        await self._clock.sleep(seconds)
        self._changed.set()

    async def _pace(self) -> None:
        """Wait out the edit interval since the last call — except for the first text."""
        if self._body and not any(d.text for d in self._sent if d is not _ADOPTED):
            return
        due = self._last_call + self._surface.limits.edit_interval
        if (wait := due - self._clock.now()) > 0:
            await self._clock.sleep(wait)

    async def _flush(self) -> None:
        """One pass over the messages, in order: one call for each that differs. The wait for
        the budget is observed by the narrowest scope's kind, never its id."""
        index = 0
        while (planned := self._next_call(index)) is not None:
            scopes = self._scopes(planned)
            waited = self._clock.now()
            await self._budget.acquire(scopes, urgent=self._final)
            if scopes:
                kind = scopes[0].partition(":")[0]
                BUDGET_WAIT_SECONDS.labels(scope_kind=kind).observe(self._clock.now() - waited)
            call = self._next_call(index)  # the newest state, after waiting for the budget
            if call is None or not await self._send(call):
                return
            index = min(index, len(self._refs)) if isinstance(call, _Delete) else call.index + 1

    def _scopes(self, call: _Call) -> tuple[str, ...]:
        return self._surface.limits.scopes_for(post=isinstance(call, _Post))

    async def _send(self, call: _Call) -> bool:
        """Make one platform call. False when it failed: the wait it asked for is over (or the
        reply is gone, or the final state was given up)."""
        final = self._final
        self._last_call = self._clock.now()
        try:
            await self._perform(call)
        except SurfaceRateLimited as error:  # back-pressure, never a failure: wait, then resend
            self._budget.pause(self._scopes(call)[:1], error.retry_after)
            log.debug("live reply %s: rate limited for %.1f s", self._name, error.retry_after)
            await self._clock.sleep(error.retry_after)
            return False
        except MessageGone as error:
            if isinstance(call, _Edit) and self._sent[call.index] is _ADOPTED:
                await self._forget(call.index)  # an earlier run's message, gone: post anew
            else:
                self._lose(error)
            return False
        except SurfaceForbidden as error:
            self._lose(error)
            return False
        except SurfaceError as error:
            if isinstance(error, MessageTooLong) and self._shrink():
                return False  # sent again, split smaller: not a failure
            delay = self._retry_delay * 2 ** min(self._failures, 3)
            log.info("live reply %s: %s failed (%s); retrying in %.1f s",
                     self._name, type(call).__name__.strip("_").lower(), error, delay)  # fmt: skip
        else:
            self._failures = self._final_failures = 0
            return True
        self._failures += 1
        self._final_failures += final
        if self._final_failures >= self._final_attempts:
            log.warning("live reply %s: gave up delivering its final text after %d attempts",
                        self._name, self._final_failures)  # fmt: skip
            self._gave_up = True
            return False
        await self._clock.sleep(delay)
        return False

    async def _perform(self, call: _Call) -> None:
        match call:
            case _Post(draft=draft):
                self._refs.append(await self._surface.post(draft))
                self._sent.append(draft)
                await self._posted()
            case _Edit(index=index, draft=draft):
                await self._surface.edit(self._refs[index], draft)
                self._sent[index] = draft
            case _Delete(index=index):
                with suppress(MessageGone):  # already what we wanted
                    await self._surface.delete(self._refs[index])
                await self._forget(index)

    async def _forget(self, index: int) -> None:
        del self._refs[index], self._sent[index]
        await self._posted()

    async def _posted(self) -> None:
        if self._on_posted is not None:
            try:
                await self._on_posted(tuple(self._refs))
            except Exception:
                log.exception("live reply %s: on_posted failed", self._name)

    def _shrink(self) -> bool:
        """Lower this reply's message limit after ``MessageTooLong``; False at the floor."""
        if self._max_length <= SHRINK_FLOOR:
            return False
        self._max_length = max(SHRINK_FLOOR, int(self._max_length * SHRINK))
        log.info("live reply %s: message too long; splitting to %d characters",
                 self._name, self._max_length)  # fmt: skip
        return True

    def _lose(self, error: SurfaceError) -> None:
        self._gone = True
        if isinstance(error, SurfaceForbidden):
            log.warning("live reply %s: may not write here any more (%s)", self._name, error)
        else:
            log.info("live reply %s: its message is gone; stopping the turn", self._name)
        if self._on_gone is not None:
            self._on_gone()


def _clip(status: str | None, width: int) -> str | None:
    if status is None or len(status) <= width:
        return status
    return status[: max(width - 1, 0)] + "…"


async def outlast_cancellation(task: asyncio.Task[None]) -> bool:
    """Wait for ``task`` to end, even while the caller is being cancelled (the final delivery
    is bounded by ``final_attempts``). True when a cancellation arrived meanwhile."""
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = cancelled or not task.done()
    return cancelled
