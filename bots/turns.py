"""``TurnWorker``: every accepted message answered once, in order, by whichever process is alive.

A bot accepts a message in the store's turn journal (``store.accept``: claim, question, queued
turn — one transaction) and calls :meth:`TurnWorker.wake` with its thread. From there the
worker, not the bot, keeps the promise:

- **One thread, one turn at a time, in the platform's order.** Each thread with work has one
  drainer task that takes the thread's turns (``store.take``) until none is left; a turn
  accepted while another runs is queued behind it, never dropped. The platform's placeholder
  is posted only once the turn is taken, so replies appear in question order.
- **Answering a turn.** The platform prepares it (:meth:`Platform.prepare`: names, a thread
  rebuilt from the platform — or a notice instead of an answer), then the engine runs it into
  a reply (:class:`~adapters.stream_reply.Reply`: an editing ``LiveReply`` on the platform's
  surface, or a natively streamed ``StreamReply``), while the lease is renewed.
  The reply's messages are saved as soon as each is posted (``store.save_refs``), and the turn
  is marked ``delivered`` once its final text is on the platform.
- **Stop** (:meth:`stop`) cancels that one answer; the thread's next turn still runs. A Stop
  pressed on any process reaches it through ``stops`` (:mod:`bots.stops`), which the worker
  watches while it runs; a Stop requested before the answer began is honoured once its
  first event is out.
- **Shutdown** (:meth:`shutdown`) within a grace: no more turns are taken; an answer being
  written that ran no tool goes back to the queue (``store.release``), its message saying
  :data:`~bots.replies.RESTARTING`, and the next process runs it again; one that ran a tool
  ends with :data:`~bots.replies.INTERRUPTED` (a tool never runs twice); an answer that is
  complete is delivered. Final texts go first in the edit budget; what is not shown when the
  grace is over is left for the next process's recovery.
- **Recovery**, at start and then every ``lease_seconds / 2``: a turn whose worker died
  (``store.stranded``) is taken over. One that ran no tool is answered again in its old
  message (the reply adopts it: :meth:`~adapters.stream_reply.Reply.adopt`); one that ran a tool
  ends with :data:`~bots.replies.INTERRUPTED` in its old message (a tool never runs twice);
  an answered turn that was not delivered is delivered; queued turns left behind are taken.
  A turn accepted longer than ``recovery_max_age`` ago is not answered any more:
  :data:`~bots.replies.OFFLINE` says so.
- **Retention**, with ``retention_seconds`` set: history and finished turns older than that are
  deleted (``store.prune``) at start and then at most every :data:`PRUNE_INTERVAL`, from the
  recovery loop.

Only a turn's own worker writes to it: each write carries the lease's fencing token, and a
worker whose lease was taken over (``LeaseLost``) stops that answer without a word.

Every turn the worker ends — answered, failed, stopped, handed back, refused, recovered — is
reported once (:mod:`bots.turn_log`: a ``turn finished`` line and the turn metrics), and every
line logged while it is answered carries its id (:func:`bots.logs.turn_context`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass
from typing import Literal, Protocol

from adapters.budget import EditBudget
from adapters.stream_reply import Reply
from adapters.surface import Draft, MessageRef, Surface
from bots.logs import turn_context
from bots.replies import BROKEN, INTERRUPTED, OFFLINE, RESTARTING
from bots.stops import LocalStops, Stops
from bots.tasks import TaskOwner, cancel_and_wait, running_task
from bots.turn_log import Outcome, TurnRecord, failure_kind, report
from core.engine import STOPPED as STOPPED_ERROR
from core.engine import ConversationEngine
from core.events import ToolStarted, TurnFailed, TurnFinished, Usage
from core.lease import dead_on_this_host, keep_lease, owner_id, taken_over
from core.limits import UsageLimits, check, estimate_tokens
from core.messages import ConversationKey
from core.settings import StoreSettings
from core.store import ConversationStore, Lease, LeaseLost, StoreError, Turn
from core.store.channels import ChannelSettings
from core.store.journal import nobody_is_dead
from core.store.usage import user_key

__all__ = ["PRUNE_INTERVAL", "Platform", "TurnWorker", "WorkerTiming", "worker_timing"]

log = logging.getLogger("relaybot.turns")

PRUNE_INTERVAL = 3600.0
"""Seconds between two deletions of history older than the retention."""
DAY = 86400.0


class Platform(Protocol):
    """What the worker needs of a platform to show a turn's answer in its thread.

    :meth:`surface` and :meth:`reply` are also called for turns that were never prepared here
    (recovery: replacing what a dead worker showed, delivering a saved answer); :meth:`finished`
    follows :meth:`prepare` only.
    """

    async def prepare(self, lease: Lease) -> Lease | str:
        """Ready the taken turn: the lease to answer (its question revised with names, say),
        or a notice to show instead of an answer (too long, say: the turn then ends ``failed``
        with it, and its question is not kept in the thread's history)."""
        ...

    async def surface(self, turn: Turn) -> Surface:
        """Where the turn's reply is shown; its Stop button (if any) carries ``turn.id``."""
        ...

    def reply(
        self,
        turn: Turn,
        surface: Surface,
        *,
        on_gone: Callable[[], None],
        on_posted: Callable[[tuple[MessageRef, ...]], Awaitable[None]],
    ) -> Reply:
        """A live reply of the turn on ``surface``, with the platform's placeholder."""
        ...

    async def finished(self, turn: Turn) -> None:
        """The worker is done with the turn (answered, failed, stopped or taken over): drop
        what :meth:`prepare` kept for it (a typing indicator, say)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerTiming:
    """``[store]`` settings: how long a lease lasts unrenewed, the oldest turn answered after a
    restart, and how long history is kept (``None``: forever); ``now`` and ``sleep`` are the
    store's clock and the recovery loop's; ``monotonic`` times a turn for its report."""

    lease_seconds: float = 30.0
    recovery_max_age: float = 3600.0
    retention_seconds: float | None = None
    now: Callable[[], float] = time.time
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    monotonic: Callable[[], float] = time.monotonic


def worker_timing(store: StoreSettings) -> WorkerTiming:
    """The ``[store]`` settings as a worker's timing, on the real clock."""
    days = store.retention_days
    return WorkerTiming(
        lease_seconds=store.lease_seconds,
        recovery_max_age=store.recovery_max_age,
        retention_seconds=None if days is None else days * DAY,
    )


@dataclass(slots=True, eq=False)
class _Answer:
    """An answer being written: its task, its record, its reply once streaming, and how a
    shutdown ends it (``restart``: back to the queue; ``interrupt``: ended, a tool ran) or why
    it was cancelled otherwise (``cause``: not Stop but its message gone or its lease lost)."""

    task: asyncio.Task[None]
    turn: Turn
    record: TurnRecord
    reply: Reply | None = None
    ran_tool: bool = False
    complete: bool = False  # the engine ended the turn: only its delivery is left
    ending: Literal["restart", "interrupt"] | None = None
    cause: Literal["gone", "taken_over"] | None = None


class TurnWorker:
    """The journal's turns answered on one platform (see the module docstring)."""

    def __init__(
        self,
        *,
        store: ConversationStore,
        engine: ConversationEngine,
        platform: Platform,
        budget: EditBudget,
        timing: WorkerTiming = WorkerTiming(),
        owner: str | None = None,
        name: str = "turns",
        stops: Stops | None = None,
        limits: UsageLimits | None = None,
    ) -> None:
        self._store = store
        self._engine = engine
        self._platform = platform
        self._budget = budget
        self._timing = timing
        self.owner = owner or owner_id()
        self._name = name
        self._tasks = TaskOwner(log)
        self._recovery = TaskOwner(log)  # the loop apart: ``busy`` counts turns only
        self._draining: set[str] = set()
        self._woken: set[str] = set()
        self._answers: dict[int, _Answer] = {}
        self._replies: set[Reply] = set()  # every reply being written, for a shutdown
        self._stopping = False
        self._pruned_at: float | None = None  # when old history was last deleted
        self._model = engine.model  # for the turn reports
        self._stops = stops if stops is not None else LocalStops()
        self._limits = limits or UsageLimits()  # none: nobody is limited

    @property
    def busy(self) -> int:
        """Threads being worked on right now (answers being written among them)."""
        return len(self._tasks)

    async def idle(self) -> None:
        """Wait until no thread is being worked on (the recovery loop aside)."""
        await self._tasks.wait()

    def answering(self, turn_id: int) -> Turn | None:
        """The turn, while this worker is writing its answer."""
        running = self._answers.get(turn_id)
        return running.turn if running is not None else None

    def answering_in(self, key: ConversationKey) -> Turn | None:
        """The thread's turn whose answer this worker is writing, if any (one at a time)."""
        return next((a.turn for a in self._answers.values() if a.turn.key == key), None)

    def answering_ids(self) -> list[int]:
        """The turns whose answers this worker is writing."""
        return list(self._answers)

    def stop(self, turn_id: int) -> bool:
        """Stop writing that answer (it ends "Stopped."); False when it is not being written."""
        running = self._answers.get(turn_id)
        if running is None:
            return False
        running.task.cancel()
        return True

    def wake(self, key: ConversationKey) -> None:
        """The thread has a new accepted turn: answer it when its turn comes."""
        if self._stopping:
            return  # it stays queued: the next process takes it
        thread = str(key)
        self._woken.add(thread)
        if thread not in self._draining:
            self._draining.add(thread)
            self._tasks.spawn(self._drain(key), name=f"{self._name} {thread}")

    async def start(self) -> None:
        """Recover what a previous process left (its turns are taken at once, not after their
        lease) and delete history older than the retention, then keep recovering every
        ``lease_seconds / 2`` (and deleting every :data:`PRUNE_INTERVAL`) until :meth:`close`."""
        self._stops.watch(self)
        await self.recover(is_dead=lambda owner: dead_on_this_host(owner, me=self.owner))
        await self._prune()
        self._recovery.spawn(self._recovering(), name=f"{self._name} recovery")

    async def close(self) -> None:
        """Stop every answer being written (each ends "Stopped.") and the recovery loop."""
        self._stops.unwatch(self)
        await self._recovery.close()
        await self._tasks.close()

    async def shutdown(self, grace: float) -> None:
        """Stop within ``grace`` seconds (on the timing's clock), as the module docstring
        says: no more turns taken, the answers being written ended or handed back, complete
        ones delivered — then whatever is still being shown is given up."""
        self._stopping = True
        self._stops.unwatch(self)
        await self._recovery.close()
        for answer in list(self._answers.values()):
            self._end_for_shutdown(answer)
        timer = asyncio.create_task(self._graced(grace), name=f"{self._name} grace")
        idle = asyncio.create_task(self._tasks.wait(), name=f"{self._name} idle")
        try:
            await asyncio.wait({timer, idle}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait(timer, idle)
        if self._tasks:
            log.warning("%d replies were not shown whole within the %g s shutdown grace; "
                        "the next start finishes them", len(self._replies), grace)  # fmt: skip
            for reply in list(self._replies):
                reply.abort()
        await self._tasks.close()

    async def _graced(self, grace: float) -> None:
        await self._timing.sleep(grace)

    def _end_for_shutdown(self, answer: _Answer) -> None:
        if answer.complete:
            return  # its final text is being delivered: let it land
        if answer.ran_tool:
            answer.ending = "interrupt"
            if answer.reply is not None:
                answer.reply.end_with(INTERRUPTED, keep_text=True, error=True)
        else:
            answer.ending = "restart"
            if answer.reply is not None:
                answer.reply.end_with(RESTARTING)
        answer.task.cancel()

    # --- a thread's turns --------------------------------------------------------------------

    async def _drain(self, key: ConversationKey, first: Lease | None = None) -> None:
        thread = str(key)
        try:
            lease = first
            while True:
                if lease is not None:
                    await self.answer(lease)
                self._woken.discard(thread)
                if self._stopping:
                    return  # what is queued stays queued: the next process takes it
                lease = await self._store.take(
                    key, owner=self.owner, lease_seconds=self._timing.lease_seconds
                )
                if lease is None and thread not in self._woken:
                    return  # nothing queued (or another worker's turn runs)
        finally:
            self._draining.discard(thread)

    async def answer(self, lease: Lease) -> None:
        """Answer one taken turn, in a task of its own so that Stop ends that answer only
        (a bot that answers as it reads, like the terminal, calls this after ``take``)."""
        turn = lease.turn
        record = self._record(turn)
        with turn_context(turn.id):  # the task copies it, and so do the tasks it starts
            answer = asyncio.create_task(self._answer(lease), name=f"{self._name} turn {turn.id}")
        self._answers[turn.id] = _Answer(task=answer, turn=turn, record=record)
        try:
            await asyncio.wait([answer])
        except asyncio.CancelledError:
            await cancel_and_wait(answer)
            raise
        finally:
            del self._answers[turn.id]
        if not answer.cancelled() and (error := answer.exception()) is not None:
            log.error("turn %d of %s failed", turn.id, turn.key, exc_info=error)

    async def _answer(self, lease: Lease) -> None:
        turn = lease.turn
        running = self._answers[turn.id]
        record = running.record
        try:
            if turn.accepted_at < self._timing.now() - self._timing.recovery_max_age:
                record.delivered = await self._end_with(lease, OFFLINE)
                record.settle("expired")
                return
            if (refusal := await self._over_limit(turn)) is not None:
                record.delivered = await self._end_with(lease, refusal)
                record.settle("refused")
                await self._store.forget_message(turn.key, turn.order)
                return
            try:
                # Preparing may take long (files downloaded): the lease is kept meanwhile. A
                # lease lost needs no action here: the next fenced write refuses it.
                async with keep_lease(
                    self._store, lease, lease_seconds=self._timing.lease_seconds,
                    on_lost=_ignored, sleep=self._timing.sleep,
                ):  # fmt: skip
                    prepared = await self._platform.prepare(lease)
            except LeaseLost:
                raise
            except Exception as error:
                log.exception("could not prepare turn %d of %s", turn.id, turn.key)
                record.settle("failed", failure=failure_kind(error, default="platform"))
                prepared = BROKEN
            if isinstance(prepared, str):  # refused: the question is not kept as history
                record.delivered = await self._end_with(lease, prepared)
                record.settle("refused")
                await self._store.forget_message(turn.key, turn.order)
                return
            await self._stream(prepared)
        except LeaseLost as lost:
            record.settle("taken_over")
            log.info("turn %d of %s was taken over: %s", turn.id, turn.key, lost)
        except Exception as error:
            record.settle("failed", failure=failure_kind(error))
            log.exception("turn %d of %s failed", turn.id, turn.key)
            record.delivered = await self._broken(lease) or record.delivered
        except asyncio.CancelledError:
            if running.ending == "restart" and (handed := await self._hand_back(lease)):
                record.settle(handed)
            record.settle(running.cause or _CANCELLED[running.ending])
            raise
        finally:
            report(record, self._timing.monotonic())
            await self._platform.finished(turn)

    def _record(self, turn: Turn) -> TurnRecord:
        return TurnRecord.begin(turn, model=self._model, now=self._timing.monotonic())

    async def _hand_back(self, lease: Lease) -> Outcome | None:
        """Put a turn stopped by a shutdown back in the queue, or — if a tool ran after all —
        end it interrupted; how it ended (``None``: the store failed, it is left as it is)."""
        turn = lease.turn
        try:
            if await self._store.release(lease):
                log.info("turn %d of %s goes back to the queue", turn.id, turn.key)
                return "restarting"
            await self._end_with(lease, INTERRUPTED)
            return "interrupted"
        except StoreError as error:  # LeaseLost included: it ended, or moved on
            log.warning("turn %d of %s could not be handed back: %s", turn.id, turn.key, error)
            return None

    async def _broken(self, lease: Lease) -> bool:
        """Something failed around the answer (not in it: the engine ends a turn itself): end
        the turn with :data:`~bots.replies.BROKEN` rather than leave it to be retried forever.
        A turn the engine ended already (answered, its delivery failed) is left to recovery.
        True when the notice is shown."""
        try:
            return await self._end_with(lease, BROKEN)
        except StoreError as error:  # LeaseLost included: it ended, or moved on
            log.info("turn %d is not ended as broken: %s", lease.turn.id, error)
            return False

    async def _stream(self, lease: Lease) -> None:
        """The engine's events into a live reply; the turn ``delivered`` once it is shown."""
        task = running_task()
        turn = lease.turn
        surface = await self._platform.surface(turn)

        answer = self._answers[turn.id]
        record = answer.record

        def gone() -> None:
            answer.cause = answer.cause or "gone"
            task.cancel()

        def lost() -> None:  # nothing more is sent: the turn may be another worker's now
            answer.cause = answer.cause or "taken_over"
            if answer.reply is not None:
                answer.reply.abort()
            task.cancel()

        async def posted(refs: tuple[MessageRef, ...]) -> None:
            try:
                await self._store.save_refs(lease, refs)
            except LeaseLost:
                if await taken_over(self._store, lease):
                    lost()
            except StoreError:
                log.exception("could not save the messages of turn %d", turn.id)

        channel = await self._channel_settings(turn)
        reply = answer.reply = self._platform.reply(turn, surface, on_gone=gone, on_posted=posted)
        reply.adopt(turn.refs)  # what a run cut short left (a crash, a restart) becomes this one
        finished = False
        timing = self._timing
        self._replies.add(reply)
        try:
            async with (
                keep_lease(
                    self._store, lease, lease_seconds=timing.lease_seconds, on_lost=lost,
                    sleep=timing.sleep,
                ),
                reply,
                aclosing(
                    self._engine.run_turn(
                        lease, model=channel.model, instructions=channel.prompt,
                        stop_error=lambda: _stop_error(answer),
                    )
                ) as events,
            ):  # fmt: skip
                first = True
                async for event in events:
                    if first:  # the engine runs the turn now: a Stop made before lands in it
                        first = False
                        if await self._stops.requested(turn.id):
                            task.cancel()
                    reply.feed(event)
                    record.see(event, timing.monotonic())
                    answer.ran_tool = answer.ran_tool or isinstance(event, ToolStarted)
                    answer.complete = isinstance(event, TurnFinished | TurnFailed)
                    finished = isinstance(event, TurnFinished)
                    if isinstance(event, TurnFinished | TurnFailed):
                        await self._count_usage(turn, event)
        finally:
            self._replies.discard(reply)
            record.delivered = reply.delivered
        if finished and reply.delivered:
            try:
                await self._store.delivered(turn.id, reply.messages)
            except StoreError as error:  # its message deleted meanwhile, or the store failing
                log.warning("turn %d of %s is shown but not saved as delivered: %s", turn.id,
                            turn.key, error)  # fmt: skip

    async def _channel_settings(self, turn: Turn) -> ChannelSettings:
        """The turn's channel's model and instructions (set by its admins; the defaults when
        the store cannot say: an answer matters more than the channel's choice)."""
        key = turn.key
        try:
            return await self._store.channel_settings(key.platform, key.workspace, key.channel)
        except StoreError as error:
            log.warning("turn %d answers with the default model and prompt: %s", turn.id, error)
            return ChannelSettings()

    async def _over_limit(self, turn: Turn) -> str | None:
        """The refusal to show when the asker has used up their token budget (``[limits]``),
        else ``None``. A ledger that cannot be read lets the turn run."""
        author = turn.question.author_id
        if not self._limits.active or not author:
            return None
        key = turn.key
        now = self._timing.now()
        try:
            used = await self._store.usage(user_key(key.platform, key.workspace, author), now=now)
        except StoreError as error:
            log.warning("turn %d runs without its asker's usage checked: %s", turn.id, error)
            return None
        refusal = check(used, self._limits, author, now=now)
        return None if refusal is None else refusal.message

    async def _count_usage(self, turn: Turn, ended: TurnFinished | TurnFailed) -> None:
        """Add the turn's tokens to its asker's day and month: the gateway's count, or an
        estimate from the text when it gave none."""
        author = turn.question.author_id
        if not author:
            return
        if isinstance(ended, TurnFinished):
            usage = ended.usage
            tokens = usage.input_tokens + usage.output_tokens or estimate_tokens(ended.text)
        else:
            tokens = estimate_tokens(ended.partial_text)
        key = turn.key
        try:
            await self._store.add_usage(user_key(key.platform, key.workspace, author), tokens)
        except StoreError as error:
            log.warning("the tokens of turn %d were not counted: %s", turn.id, error)

    async def _end_with(self, lease: Lease, notice: str) -> bool:
        """End the turn ``failed`` with ``notice``, shown in its old message or a new one;
        True when it is shown."""
        await self._store.failed(lease, messages=[], error=notice)
        return await self._show(lease.turn, notice)

    async def _show(self, turn: Turn, text: str) -> bool:
        """``text`` as the turn's whole, final reply: in its first message (the others
        deleted, the Stop button gone), or posted when it has none; False when it could not
        be shown."""
        draft = Draft(text=text, final=True)
        try:
            surface = await self._platform.surface(turn)
            first, *rest = turn.refs or (None,)
            for ref in rest:
                await surface.delete(ref)
            if first is None:
                await self._budget.acquire(surface.limits.scopes_for(post=True), urgent=True)
                await surface.post(draft)
            else:
                await self._budget.acquire(surface.limits.scopes_for(post=False), urgent=True)
                await surface.edit(first, draft)
        except Exception as error:  # a notice is shown if it can be; the turn ended anyway
            log.warning("could not show turn %d's notice in %s: %r", turn.id, turn.key, error)
            return False
        return True

    # --- recovery ----------------------------------------------------------------------------

    async def _recovering(self) -> None:
        while True:
            await self._timing.sleep(self._timing.lease_seconds / 2)
            try:
                await self.recover()
            except StoreError:
                log.exception("recovery could not read the journal")
            await self._prune()

    async def _prune(self) -> None:
        """Delete history older than the retention, if it is set and the last deletion was
        :data:`PRUNE_INTERVAL` ago or more. A store that fails is logged and asked again an
        interval later: old history can wait."""
        retention = self._timing.retention_seconds
        if retention is None:
            return
        now = self._timing.now()
        if self._pruned_at is not None and now < self._pruned_at + PRUNE_INTERVAL:
            return
        self._pruned_at = now
        days = retention / DAY
        try:
            deleted = await self._store.prune(older_than=now - retention)
        except StoreError:
            log.exception("could not delete history older than retention_days (%g)", days)
            return
        if deleted:
            log.info("deleted %d messages older than retention_days (%g)", deleted, days)

    async def recover(self, *, is_dead: Callable[[str], bool] = nobody_is_dead) -> None:
        """Take over every stranded turn (see the module docstring)."""
        for turn in await self._store.stranded(is_dead=is_dead):
            if turn.state == "queued":
                self.wake(turn.key)
                continue
            lease = await self._store.take_over(
                turn.id,
                owner=self.owner,
                lease_seconds=self._timing.lease_seconds,
                force=turn.owner is not None and is_dead(turn.owner),
            )
            if lease is None:
                continue  # another worker was quicker
            log.info("recovering turn %d of %s (%s)", turn.id, turn.key, turn.state)
            self._tasks.spawn(self._recovered(lease), name=f"{self._name} recover {turn.id}")

    async def _recovered(self, lease: Lease) -> None:
        turn = lease.turn
        if turn.state == "answered":
            await self._reported(turn, "answered", self._redeliver(lease))
        elif turn.tool_started:
            await self._reported(turn, "interrupted", self._end_with(lease, INTERRUPTED))
        else:
            key = turn.key
            if str(key) in self._draining:  # a drainer is waiting on this turn: let it run it
                await self.answer(lease)
            else:
                self._draining.add(str(key))
                await self._drain(key, first=lease)
                return
        self.wake(turn.key)  # the thread's next turns

    async def _reported(self, turn: Turn, outcome: Outcome, ending: Awaitable[bool]) -> None:
        """Await a recovered turn's ``ending`` (True: shown) under the turn's id, and report
        the turn as ``outcome`` — or as failed or stopped if it does not end."""
        record = self._record(turn)
        with turn_context(turn.id):
            try:
                record.delivered = await ending
                record.settle(outcome)
            except Exception as error:
                record.settle("failed", failure=failure_kind(error))
                raise
            except asyncio.CancelledError:
                record.settle("stopped")
                raise
            finally:
                report(record, self._timing.monotonic())

    async def _redeliver(self, lease: Lease) -> bool:
        """Show an answered turn's saved text in place of whatever its worker left; True when
        it is shown."""
        turn = lease.turn
        surface = await self._platform.surface(turn)
        reply = self._platform.reply(turn, surface, on_gone=lambda: None, on_posted=_nothing)
        reply.adopt(turn.refs)  # its final text goes where its worker left off
        self._replies.add(reply)
        try:
            async with reply:
                reply.feed(TurnFinished(text=turn.final_text or "", usage=Usage(), rounds=1))
        finally:
            self._replies.discard(reply)
        if reply.delivered:
            await self._store.delivered(turn.id, reply.messages)
        return reply.delivered


_CANCELLED: dict[Literal["restart", "interrupt"] | None, Outcome] = {
    "restart": "restarting",
    "interrupt": "interrupted",
    None: "stopped",
}
"""How a cancelled answer ended, by its shutdown ending (``None``: Stop, or the bot closing)."""


def _stop_error(answer: _Answer) -> str | None:
    """What a stopped turn ends ``failed`` with; ``None`` for one a shutdown hands back, or
    whose lease is (or may be) another worker's now: the journal's recovery ends that one."""
    if answer.cause == "taken_over":
        return None
    match answer.ending:
        case "restart":
            return None
        case "interrupt":
            return INTERRUPTED
        case None:
            return STOPPED_ERROR


async def _nothing(refs: tuple[MessageRef, ...]) -> None:
    """Redelivered messages are saved by ``delivered``."""


def _ignored() -> None:
    """A lease lost while a turn is prepared: the next fenced write refuses it."""
