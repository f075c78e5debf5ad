"""``StreamReply``: one answer streamed with a platform's native, append-only streaming.

Slack's ``chat.startStream`` / ``appendStream`` / ``stopStream`` cannot replace a draft the way
``chat.update`` does, so this is a second reply driver beside :class:`~adapters.live.LiveReply`,
fed the same engine events and driven the same way by the bot (:class:`Reply`). One flusher task
makes every platform call, one at a time, on a :class:`StreamTarget`:

- text is appended as raw Markdown, in batches (at most one append per
  ``limits.append_interval``, each within the shared append budget): no placeholder, no status
  line, no interim Markdown healing (an appended closing fence would stay for good);
- mass mentions are neutralized on the whole text, and a short tail that could still become
  one (``<!he`` waiting for ``re>``) is held back until the next delta or the end;
- tools show as task cards: ``in_progress`` with their activity line, then ``complete`` with
  their one-line summary, or ``error``;
- a message past ``limits.rollover_chars``, one the platform calls too long, or a stream past
  its lifetime (:class:`StreamEnded`) continues in a new stream, nothing lost or repeated; a
  code fence cut open is closed at the end of one message and reopened in the next;
- an ``AttemptVoid`` that takes back streamed text stops that stream and deletes it before the
  answer continues in a replacement message: never two visible copies;
- the final text always lands: the last stop carries it (with ``blocks`` under it and the
  session's status); a stream that can no longer be stopped is finished with ``replace``;
- a rate limit is back-pressure, never a failure (as in ``LiveReply``); ``MessageGone`` and
  ``SurfaceForbidden`` end the reply quietly (``on_gone``); :class:`StoppedByUser` calls
  ``on_stop`` (the bot cancels the turn through its Stop path) and nothing more is appended.

When the platform refuses streaming (:class:`StreamingRefused`) before anything was shown, the
reply falls back: with a ``fallback`` factory (an editing ``LiveReply``, say), every event fed
so far is replayed into it and the rest goes there too — ``messages``, ``delivered`` and the
``async with`` exit are then the fallback's; ``on_refused`` hears of it (to remember it for the
workspace). Without a fallback the reply ends undelivered and :attr:`StreamReply.refused` holds
the error.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
from collections.abc import Awaitable, Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Protocol, assert_never

from adapters.budget import EditBudget
from adapters.clock import Clock, RealClock
from adapters.live import STOPPED, outlast_cancellation
from adapters.surface import (
    MessageGone,
    MessageRef,
    MessageTooLong,
    SurfaceError,
    SurfaceForbidden,
    SurfaceRateLimited,
)
from adapters.text import close_markdown, neutralize_mentions
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

__all__ = [
    "FAILED",
    "SESSION_DONE",
    "Chunk",
    "Markdown",
    "PlanUpdate",
    "Reply",
    "StoppedByUser",
    "StreamEnded",
    "StreamLimits",
    "StreamReply",
    "StreamTarget",
    "StreamingRefused",
    "TaskUpdate",
]

log = logging.getLogger("relaybot.stream")

FAILED = "Something went wrong."
EMPTY = "(no answer)"
"""What an answer with no text and no notice ends as (a platform refuses an empty message)."""
SESSION_DONE = "active"
"""The agent session's status once the answer is over: out of ``processing``, still open."""
HOLD = 16
"""Characters at the end of the text that may still become a mass mention (``<!everyone|`` is
11): from the first ``<`` or ``@`` among them, the text waits for the next delta."""
FENCE_ROOM = 8
"""Characters of a message kept for the fence marker that closes it when it rolls over."""
SHRINK = 0.8
SHRINK_FLOOR = 1_000
"""After ``MessageTooLong`` the reply rolls over at 80 % of its length, down to this."""


# --- what a target is sent --------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Markdown:
    """Raw Markdown appended to the message."""

    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskUpdate:
    """A task card; a later update with the same ``id`` changes the same card."""

    id: str
    title: str
    status: Literal["pending", "in_progress", "complete", "error"]
    details: str | None = None
    output: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanUpdate:
    """The title of the plan the task cards belong to."""

    title: str


Chunk = Markdown | TaskUpdate | PlanUpdate


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamLimits:
    """What a platform allows one streamed reply.

    ``rollover_chars`` is the longest message (Slack: 12,000, its per-call ``markdown_text``
    limit). ``start_scopes`` are the budgets a start spends from (Slack: Tier 2, per
    workspace), ``stop_scopes`` a stop's (Tier 2, a window of its own; the start's when
    empty), ``append_scopes`` an append's (Tier 4), ``edit_scopes`` a delete's or a
    replace's (``chat.update``'s workspace budget). ``append_interval`` is the shortest gap
    between two appends of one reply.
    """

    rollover_chars: int = 12_000
    append_interval: float = 1.0
    start_scopes: tuple[str, ...] = ()
    stop_scopes: tuple[str, ...] = ()
    append_scopes: tuple[str, ...] = ()
    edit_scopes: tuple[str, ...] = ()


class StreamEnded(SurfaceError):
    """The message is out of streaming state (its lifetime passed, or it was stopped)."""


class StoppedByUser(StreamEnded):
    """The person pressed the platform's own Stop: the stream is over and the turn must be."""


class StreamingRefused(SurfaceError):
    """The platform will not stream for this app or conversation (``code`` says why): the caller
    falls back to edits."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


class StreamTarget(Protocol):
    """Where one streamed reply is shown: one platform call per method, errors mapped to
    ``adapters.surface``'s and the ones above."""

    @property
    def limits(self) -> StreamLimits: ...

    async def start(self, markdown: str, chunks: Sequence[Chunk]) -> MessageRef: ...

    async def append(self, ref: MessageRef, *, markdown: str, chunks: Sequence[Chunk]) -> None: ...

    async def stop(
        self,
        ref: MessageRef,
        *,
        markdown: str,
        chunks: Sequence[Chunk],
        blocks: Sequence[dict[str, Any]],
        session_status: str | None,
    ) -> None: ...

    async def delete(self, ref: MessageRef) -> None: ...

    async def replace(self, ref: MessageRef, text: str, blocks: Sequence[dict[str, Any]]) -> None:
        """The whole message's text, with an ordinary edit: only once it is out of streaming
        state."""
        ...


class Reply(Protocol):
    """What the turn worker drives: a ``LiveReply`` or a ``StreamReply``."""

    @property
    def messages(self) -> tuple[MessageRef, ...]: ...

    @property
    def delivered(self) -> bool: ...

    @property
    def gone(self) -> bool: ...

    async def __aenter__(self) -> Reply: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def feed(self, event: EngineEvent) -> None: ...

    def end_with(self, notice: str, *, keep_text: bool = False, error: bool = False) -> None: ...

    def abort(self) -> None: ...

    def adopt(self, refs: Sequence[MessageRef]) -> None: ...


# --- the flusher's calls ----------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Message:
    """One streamed message: ``raw`` is the answer's text it holds (from ``start`` in it),
    ``text`` what it shows (``raw`` and fence markers). ``closed``: this reply stopped its
    stream to roll over (its fence closed), so nothing more goes in it."""

    ref: MessageRef
    start: int
    raw: str = ""
    text: str = ""
    streaming: bool = True
    full: bool = False  # rolls over: stopped (its fence closed) before the next one starts
    closed: bool = False
    reopen: str = ""  # what the next message starts with when this one closed a fence


@dataclass(frozen=True, slots=True)
class _Start:
    head: str  # the reopened fence it starts with
    raw: str
    cards: tuple[TaskUpdate, ...]


@dataclass(frozen=True, slots=True)
class _Append:
    raw: str
    cards: tuple[TaskUpdate, ...] = ()
    fills: bool = False  # the message is full after it: stopped next, its fence closed


@dataclass(frozen=True, slots=True)
class _Stop:
    message: _Message
    raw: str = ""
    close: str = ""
    cards: tuple[TaskUpdate, ...] = ()
    final: bool = False


@dataclass(frozen=True, slots=True)
class _Replace:
    message: _Message
    raw: str


@dataclass(frozen=True, slots=True)
class _Delete:
    ref: MessageRef


_Call = _Start | _Append | _Stop | _Replace | _Delete


@dataclass(slots=True)
class _Fallback:
    make: Callable[[], Reply]
    reply: Reply | None = None
    adopted: tuple[MessageRef, ...] = ()  # adopted before the fallback starts, as it must be
    fed: list[Callable[[Reply], None]] = field(default_factory=list)


class StreamReply:
    """One reply streamed natively (see the module docstring). The options are
    ``LiveReply``'s, and: ``blocks`` go under the finished answer (feedback buttons);
    ``session_status`` is what the last stop sets the agent session to (``None``: leave it);
    ``on_stop`` is called once when the person stops the stream on the platform;
    ``fallback`` / ``on_refused`` handle a platform that refuses to stream; ``start_paid``:
    the caller took the first start's token itself (``EditBudget.try_acquire``)."""

    def __init__(
        self,
        target: StreamTarget,
        budget: EditBudget,
        *,
        clock: Clock | None = None,
        blocks: Sequence[dict[str, Any]] = (),
        session_status: str | None = SESSION_DONE,
        on_gone: Callable[[], None] | None = None,
        on_stop: Callable[[], None] | None = None,
        on_posted: Callable[[tuple[MessageRef, ...]], Awaitable[None]] | None = None,
        fallback: Callable[[], Reply] | None = None,
        on_refused: Callable[[StreamingRefused], None] | None = None,
        start_paid: bool = False,
        name: str = "reply",
        final_attempts: int = 6,
        retry_delay: float = 1.0,
    ) -> None:
        self._target = target
        self._budget = budget
        self._clock: Clock = clock or RealClock()
        self._blocks = list(blocks)
        self._session_status = session_status
        self._on_gone = on_gone
        self._on_stop = on_stop
        self._on_posted = on_posted
        self._fallback = _Fallback(fallback) if fallback is not None else None
        self._on_refused = on_refused
        self._start_paid = start_paid  # the caller took the first start's token (try_acquire)
        self._name = name
        self._final_attempts = final_attempts
        self._retry_delay = retry_delay
        # What the events said.
        self._body = ""
        self._mark = 0  # len(body) when the current model call began
        self._activity: dict[str, str] = {}  # tool call id -> its activity line
        self._cards: dict[str, TaskUpdate] = {}  # updates not sent yet, by card id
        self._notice: str | None = None
        self._error = False
        self._final = False
        self._changed = asyncio.Event()
        # What the platform shows.
        self._rollover = target.limits.rollover_chars
        self._messages: list[_Message] = []
        self._superseded: list[_Message] = []  # to stop (if streaming) and delete
        self._finished = False  # the final text landed
        self._last_append = -math.inf
        self._failures = 0
        self._final_failures = 0
        self._gone = False
        self._gave_up = False
        self._halted = False  # stopped by the person: nothing more is appended
        self._last_words_by_append: bool | None = None  # see _words_by_append
        self._refused: StreamingRefused | None = None
        self._flusher: asyncio.Task[None] | None = None

    # --- the bot's side ----------------------------------------------------------------------

    @property
    def messages(self) -> tuple[MessageRef, ...]:
        if (fallen := self._fallen_back()) is not None:
            return fallen.messages
        return tuple(m.ref for m in self._messages)

    @property
    def delivered(self) -> bool:
        if (fallen := self._fallen_back()) is not None:
            return fallen.delivered
        return self._finished and not (self._gone or self._gave_up)

    @property
    def gone(self) -> bool:
        if (fallen := self._fallen_back()) is not None:
            return fallen.gone
        return self._gone

    @property
    def refused(self) -> StreamingRefused | None:
        """Why the platform refused to stream, when it did."""
        return self._refused

    async def __aenter__(self) -> StreamReply:
        self._flusher = asyncio.create_task(self._run(), name=f"stream reply {self._name}")
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
        if not (self._gone or self._final or self._refused):
            if isinstance(exc, asyncio.CancelledError):
                self._end(self._body, STOPPED, error=False)
            else:
                self._end(self._body, FAILED, error=True)
        cancelled = await outlast_cancellation(self._flusher)
        if (fallen := self._fallen_back()) is not None:
            await fallen.__aexit__(exc_type, exc, tb)
        if cancelled and not isinstance(exc, asyncio.CancelledError):
            raise asyncio.CancelledError

    def adopt(self, refs: Sequence[MessageRef]) -> None:
        """Take over what an earlier run of this answer left: a streamed message cannot be
        continued by another stream, so those messages are deleted before this one starts."""
        if self._flusher is not None:
            raise RuntimeError("a reply adopts messages before it starts")
        self._superseded = [_Message(ref, start=0, streaming=False) for ref in refs]
        if self._fallback is not None:
            self._fallback.adopted = tuple(refs)

    def end_with(self, notice: str, *, keep_text: bool = False, error: bool = False) -> None:
        """End the reply with ``notice`` after what was said (when ``keep_text``)."""
        if (fallen := self._fallen_back()) is not None:
            fallen.end_with(notice, keep_text=keep_text, error=error)
            return
        self._remember(lambda reply: reply.end_with(notice, keep_text=keep_text, error=error))
        if not (self._gone or self._final):
            self._end(self._body if keep_text else "", notice, error=error)

    def abort(self) -> None:
        """Stop making platform calls now, whatever is left undelivered."""
        if (fallen := self._fallen_back()) is not None:
            fallen.abort()
        if self._flusher is not None:
            self._flusher.cancel()

    def feed(self, event: EngineEvent) -> None:
        """Take one engine event into the reply's state; never blocks, never raises."""
        if (fallen := self._fallen_back()) is not None:
            fallen.feed(event)
            return
        self._remember(lambda reply: reply.feed(event))
        if self._gone or self._final:
            return
        match event:
            case TextDelta(text=text) if text:
                self._body += text
            case AttemptVoid():
                self._body = self._body[: self._mark]
            case ToolStarted(call_id=call_id, activity=activity):
                self._mark = len(self._body)  # text before a tool is from a finished call
                self._activity[call_id] = activity
                self._card(TaskUpdate(id=call_id, title=activity, status="in_progress"))
            case ToolFinished(call_id=call_id, name=name, ok=ok, summary=summary):
                title = self._activity.get(call_id, name)
                status: Literal["complete", "error"] = "complete" if ok else "error"
                self._card(TaskUpdate(id=call_id, title=title, status=status, output=summary))
            case TurnFinished(text=text, stopped=stopped):
                self._end(text, STOPPED if stopped else None, error=False)
            case TurnFailed(message=message, partial_text=partial):
                self._end(self._body or partial, message, error=True)
            case TextDelta() | ReasoningDelta() | ModelRetrying() | WaitingForSlot():
                return  # no status line: the stream simply pauses
            case _:
                assert_never(event)
        self._changed.set()

    def _card(self, update: TaskUpdate) -> None:
        self._cards.pop(update.id, None)
        self._cards[update.id] = update  # the newest last, in the order they happened

    def _end(self, body: str, notice: str | None, *, error: bool) -> None:
        self._body, self._notice, self._error, self._final = body, notice, error, True
        self._changed.set()

    def _remember(self, step: Callable[[Reply], None]) -> None:
        if self._fallback is not None and self._fallback.reply is None:
            self._fallback.fed.append(step)

    def _fallen_back(self) -> Reply | None:
        return self._fallback.reply if self._fallback is not None else None

    # --- what the messages should hold -------------------------------------------------------

    def _text(self) -> str:
        """The answer as it should read in the end, as far as it is known: mass mentions
        neutralized; once final, with its notice (an open fence or bold closed first)."""
        text = neutralize_mentions(self._body)
        if not self._final:
            return text
        if self._notice is None:
            return text or EMPTY
        notice = neutralize_mentions(self._notice)
        line = f":warning: _{notice}_" if self._error else f"_{notice}_"
        return f"{text}{_closers(text)}\n\n{line}" if text else line

    def _ready(self, text: str) -> str:
        """What may be sent of ``text`` now: all of it once final, else up to the first ``<``
        or ``@`` of its last :data:`HOLD` characters."""
        if self._final:
            return text
        tail = len(text) - HOLD
        held = [i for i in (text.find("<", tail), text.find("@", tail)) if i >= max(tail, 0)]
        return text[: min(held)] if held else text

    def _shown(self) -> str:
        return "".join(m.raw for m in self._messages)

    def _reconcile(self) -> None:
        """After a rewind, the messages from the first that no longer reads as the answer on
        are superseded: the answer continues from there in a replacement. While the new model
        call may still say the same again, nothing is taken back yet."""
        text, shown = self._text(), self._shown()
        if text.startswith(shown) or (shown.startswith(text) and not self._final):
            return
        for index, message in enumerate(self._messages):
            if text[message.start : message.start + len(message.raw)] != message.raw:
                self._superseded += self._messages[index:]
                del self._messages[index:]
                log.info("stream reply %s: a retried model call took back streamed text; "
                         "replacing %d message(s)", self._name, len(self._superseded))  # fmt: skip
                return

    def _next_call(self) -> _Call | None:
        """The next call that brings the platform closer to the newest state."""
        if self._finished:
            return None
        if self._superseded:
            old = self._superseded[0]
            return _Stop(old) if old.streaming else _Delete(old.ref)
        text = self._text()
        pending = self._ready(text)[len(self._shown()) :]
        current = self._messages[-1] if self._messages else None
        cards = tuple(self._cards.values())
        if current is not None and current.streaming and current.full:
            return _Stop(current, close=_fence_marks(current.text)[0])
        if current is None or not current.streaming:
            return self._opening(current, pending, cards)
        room = self._rollover - len(current.text)
        if len(pending) > room:
            if room - FENCE_ROOM < 1:
                return _Stop(current, close=_fence_marks(current.text)[0])
            return _Append(_cut(pending, room - FENCE_ROOM), cards, fills=True)
        if self._final and (pending or cards) and not self._halted and self._words_by_append():
            return _Append(pending, cards=cards)
        if self._final:
            return _Stop(current, pending, cards=cards, final=True)
        if self._halted or not (pending or cards):
            return None
        return _Append(pending, cards=cards)

    def _words_by_append(self) -> bool:
        """Whether the last words go as an append, the stop carrying nothing — decided once,
        when the answer ends. They go with the stop, saving an append of the budget every
        stream of the workspace shares, when a stop is free right then; else as an append
        (Tier 4, plentiful), so the whole answer shows at once while only the stop waits on
        Tier 2, which every start and stop of the workspace shares."""
        if self._last_words_by_append is None:
            scopes = self._scopes(_Stop(self._messages[-1]))
            self._last_words_by_append = not all(self._budget.available(s) >= 1 for s in scopes)
        return self._last_words_by_append

    def _opening(
        self, last: _Message | None, pending: str, cards: tuple[TaskUpdate, ...]
    ) -> _Call | None:
        """No stream is open: start one — or, at the end, finish a message whose stream the
        platform ended with an ordinary edit, when the rest fits in it."""
        fits = last is not None and len(last.text) + len(pending) <= self._rollover
        if self._final and last is not None and not last.closed and fits:
            return _Replace(last, pending)
        if not (pending or cards or (self._final and last is None)):
            return None
        if self._halted and not self._final:
            return None
        head = "" if last is None else last.reopen if last.closed else _fence_marks(last.text)[1]
        room = self._rollover - len(head) - FENCE_ROOM
        return _Start(head, pending if len(pending) <= room else _cut(pending, room), cards)

    # --- the flusher -------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while not (self._gone or self._gave_up or self._refused):
                self._reconcile()
                if self._next_call() is None:
                    if self._final:
                        return  # delivered
                    self._changed.clear()
                    await self._changed.wait()
                    continue
                await self._flush()
        except Exception:
            log.exception("stream reply %s: the flusher failed", self._name)
        if self._refused is not None:
            await self._fall_back()

    async def _flush(self) -> None:
        """Make the next call within its budget; the newest state is planned after the wait."""
        planned = self._next_call()
        if isinstance(planned, _Append) and not self._final:  # the last words go at once
            await self._pace()
        scopes = self._scopes(planned)
        if self._start_paid and isinstance(planned, _Start):
            self._start_paid = False  # paid for when the reply was chosen
        else:
            await self._budget.acquire(scopes, urgent=self._final)
        self._reconcile()
        call = self._next_call()
        if call is not None and self._scopes(call) == scopes:  # else plan again, and wait
            await self._send(call)

    async def _pace(self) -> None:
        """At most one append per ``append_interval``: the text between goes in one batch."""
        due = self._last_append + self._target.limits.append_interval
        if (wait := due - self._clock.now()) > 0:
            await self._clock.sleep(wait)

    def _scopes(self, call: _Call | None) -> tuple[str, ...]:
        limits = self._target.limits
        match call:
            case _Append():
                return limits.append_scopes
            case _Start():
                return limits.start_scopes
            case _Stop():
                return limits.stop_scopes or limits.start_scopes
            case _Replace() | _Delete():
                return limits.edit_scopes
            case None:
                return ()

    async def _send(self, call: _Call) -> None:
        final = self._final
        try:
            await self._perform(call)
        except SurfaceRateLimited as error:  # back-pressure, never a failure: wait, then resend
            self._budget.pause(self._scopes(call)[:1], error.retry_after)
            log.debug("stream reply %s: rate limited for %.1f s", self._name, error.retry_after)
            await self._clock.sleep(error.retry_after)
            return
        except StreamingRefused as error:
            if not self._messages:
                self._refuse(error)
                return
            self._failed(error, final)  # refused mid-answer: nothing to fall back to
        except StreamEnded as error:
            self._ended(call, error)
            return
        except (MessageGone, SurfaceForbidden) as error:
            if self._superseding(call):
                self._superseded.pop(0)  # gone already: what we wanted
                return
            self._lose(error)
            return
        except MessageTooLong as error:
            if self._shrink(call):
                return
            self._failed(error, final)
        except SurfaceError as error:
            self._failed(error, final)
        else:
            self._failures = self._final_failures = 0
            return
        await self._back_off()

    def _superseding(self, call: _Call) -> bool:
        """Whether ``call`` stops or deletes a superseded message."""
        if not self._superseded:
            return False
        old = self._superseded[0]
        return (isinstance(call, _Stop) and call.message is old) or (
            isinstance(call, _Delete) and call.ref == old.ref
        )

    async def _perform(self, call: _Call) -> None:
        target = self._target
        match call:
            case _Start(head=head, raw=raw, cards=cards):
                start = len(self._shown())
                ref = await target.start(head + raw, cards)
                self._last_append = self._clock.now()
                self._messages.append(_Message(ref, start, raw, head + raw))
                self._sent(cards)
                await self._posted()
            case _Append(raw=raw, cards=cards, fills=fills):
                message = self._messages[-1]
                self._last_append = self._clock.now()
                await target.append(message.ref, markdown=raw, chunks=cards)
                message.raw += raw
                message.text += raw
                message.full = fills
                self._sent(cards)
            case _Stop(message=message, raw=raw, close=close, cards=cards, final=final):
                await target.stop(
                    message.ref,
                    markdown=raw + close,
                    chunks=cards,
                    blocks=self._blocks if final else (),
                    session_status=self._session_status if final else None,
                )
                message.streaming = False
                if self._superseding(call):
                    return  # deleted next
                message.raw += raw
                message.reopen = _fence_marks(message.text + raw)[1]
                message.text += raw + close
                message.closed = True
                self._sent(cards)
                self._finished = final
            case _Replace(message=message, raw=raw):
                await target.replace(message.ref, message.text + raw, self._blocks)
                message.raw += raw
                message.text += raw
                self._finished = True
            case _Delete(ref=ref):
                with suppress(MessageGone):
                    await target.delete(ref)
                self._superseded.pop(0)
                await self._posted()
            case _:
                assert_never(call)

    def _sent(self, cards: tuple[TaskUpdate, ...]) -> None:
        for card in cards:
            if self._cards.get(card.id) == card:
                del self._cards[card.id]

    def _ended(self, call: _Call, error: StreamEnded) -> None:
        """The stream is over: a lifetime passed (roll over to a new stream), or the person
        stopped it (``on_stop``; nothing more is appended, the final text still lands)."""
        if isinstance(call, _Stop | _Replace):
            message = call.message
        elif isinstance(call, _Append):
            message = self._messages[-1]
        else:
            self._failed(error, self._final)  # a stream that never began cannot have ended
            return
        # An append refused because the person stopped the stream leaves it open to one stop:
        # Slack takes chat.stopStream then, to end the session (and shows what it carries).
        message.streaming = isinstance(error, StoppedByUser) and isinstance(call, _Append)
        if self._superseding(call):
            return
        if isinstance(error, StoppedByUser) and not self._halted:
            self._halted = True
            log.info("stream reply %s: stopped by the person", self._name)
            if self._on_stop is not None:
                self._on_stop()
        else:
            log.info("stream reply %s: its stream ended (%s); continuing", self._name, error)

    def _shrink(self, call: _Call) -> bool:
        """The platform counts the message longer than we do: roll over sooner."""
        if self._rollover <= SHRINK_FLOOR:
            return False
        self._rollover = max(SHRINK_FLOOR, int(self._rollover * SHRINK))
        if isinstance(call, _Append) and self._messages:
            self._messages[-1].full = True
        log.info("stream reply %s: message too long; rolling over at %d characters",
                 self._name, self._rollover)  # fmt: skip
        return True

    def _failed(self, error: SurfaceError, final: bool) -> None:
        log.info("stream reply %s: a call failed (%s); retrying", self._name, error)
        self._failures += 1
        self._final_failures += final
        if self._final_failures >= self._final_attempts:
            log.warning("stream reply %s: gave up delivering its final text after %d attempts",
                        self._name, self._final_failures)  # fmt: skip
            self._gave_up = True

    async def _back_off(self) -> None:
        if not self._gave_up:
            await self._clock.sleep(self._retry_delay * 2 ** min(self._failures - 1, 3))

    def _refuse(self, error: StreamingRefused) -> None:
        self._refused = error
        log.info("stream reply %s: the platform refused to stream (%s)%s", self._name,
                 error.code, "; falling back" if self._fallback else "")  # fmt: skip
        if self._on_refused is not None:
            self._on_refused(error)

    async def _fall_back(self) -> None:
        """Replay what was fed into the fallback reply, which takes over from here."""
        if self._fallback is None:
            return
        reply = self._fallback.make()
        if self._fallback.adopted:
            reply.adopt(self._fallback.adopted)
        await reply.__aenter__()
        for step in self._fallback.fed:
            step(reply)
        self._fallback.fed.clear()
        self._fallback.reply = reply

    async def _posted(self) -> None:
        if self._on_posted is not None:
            try:
                await self._on_posted(self.messages)
            except Exception:
                log.exception("stream reply %s: on_posted failed", self._name)

    def _lose(self, error: SurfaceError) -> None:
        self._gone = True
        if isinstance(error, SurfaceForbidden):
            log.warning("stream reply %s: may not write here any more (%s)", self._name, error)
        else:
            log.info("stream reply %s: its message is gone; stopping the turn", self._name)
        if self._on_gone is not None:
            self._on_gone()


# --- text helpers -----------------------------------------------------------------------------

_FENCE_OPENING = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*([^\s`]*)", re.MULTILINE)


def _fence_marks(text: str) -> tuple[str, str]:
    """The marker closing the code fence ``text`` leaves open, and the one reopening it in
    the next message (``("", "")`` when none is open). ``close_markdown`` finds the fence;
    its opening line gives the language."""
    closed = close_markdown(text)
    added = closed[len(text) :] if closed.startswith(text) else ""
    run = added.lstrip("\n")
    if len(run) < 3 or run.strip(run[0]) or run[0] not in "`~":
        return "", ""
    openings = [m for m in _FENCE_OPENING.finditer(text) if m[1] == run]
    language = openings[-1][2] if openings else ""
    return added, f"{run}{language}\n"


def _cut(text: str, room: int) -> str:
    """The head of ``text`` that fills ``room``: up to its last paragraph break, line break
    or space in the second half of the room, else exactly ``room`` characters."""
    room = max(room, 1)
    for boundary in ("\n\n", "\n", " "):
        at = text.rfind(boundary, room // 2, room)
        if at >= 0:
            return text[: at + len(boundary)]
    return text[:room]


def _closers(text: str) -> str:
    """What closes the fence, code span or bold ``text`` leaves open: a stopped or failed
    answer's notice must not end up inside them. Appended, so what was sent stays."""
    closed = close_markdown(text)
    if closed.startswith(text):
        return closed[len(text) :]
    body = text.rstrip()
    return closed[len(body) : len(closed) - (len(text) - len(body))]
