"""``ConversationEngine``: one journal turn — history, model calls, tools, its outcome saved.

A turn reads its history from the journal (it ends with the turn's question), streams the
model, runs the tools it asks for, feeds their results back, and repeats until the model
answers without tools (at most ``max_rounds`` model calls; the last one is asked to answer
without tools). It yields :data:`~core.events.EngineEvent` values as they happen and ends with
exactly one ``TurnFinished`` or ``TurnFailed``; every failure becomes a short message fit to
show a user, never an exception.

The caller holds the turn's :class:`~core.store.journal.Lease` (it took the turn, and renews
the lease while the turn runs: :func:`core.lease.keep_lease`); the lease, not this engine,
keeps turns of a thread one at a time. The engine writes to the journal:

- before a round's tools run, :meth:`~core.store.journal.TurnJournal.tool_started` for each of
  its calls, so a recovered turn never runs a tool twice;
- once, at the end, the outcome: ``answered`` (the turn's new messages, its final text and
  finish reason) before ``TurnFinished`` is yielded, or ``failed`` with the message the user is
  shown before ``TurnFailed`` is. Cancelling the task that consumes a turn (or closing the
  generator) stops the model stream and the running tools, and ends the turn ``failed``
  (``"stopped"``, or what the caller's ``stop_error`` says) with what was said, the partial
  answer marked ``stopped``; that write is finished even if the task is cancelled again
  meanwhile. A caller that hands the turn back to the queue (a shutdown) asks for no write.

**Exceptions.** :class:`~core.store.journal.LeaseLost` is the only exception ``run_turn``
raises: another worker took the turn over, so this one stops at once and writes nothing more.
Lost at the final write, it is only logged: the events are unchanged, as they are when the
final write fails with another :class:`~core.store.errors.StoreError` (logged). A store that
fails to give the history or to record a tool call ends the turn failed, before any tool runs.

**Models.** A turn asks the model the caller names (``run_turn(lease, model="fast")``, a
channel's choice) or the registry's default (:mod:`core.models`). When that model's call fails
for good — its retries spent — with a retryable error (rate limited, overloaded, a server
error, a broken or stalled stream, no connection) before the turn showed any text or a model
call of it completed (so no tool ran), the next model of the fallback chain is asked: with the
history trimmed to its own ``context_budget_tokens`` and without the reasoning blocks another
model made. A :class:`~core.events.ModelRetrying` (``wait`` 0, ``busy``) marks the switch, and
the answer ends with a note naming both models. Never on a rejected key, a bad request or a
context too long: another model would only hide the mistake. The note is part of the shown
and saved final text, but not of the assistant message in the history, like the length note:
it is for the user, and a model that reads its own past notes starts writing them.

**Images.** A model that cannot take images (its setting, or its gateway's 400 saying so, after
which the call is asked once more without them) reads a note per image instead
(:mod:`core.vision`); the answer then ends with a line telling the user, once per conversation.

A process-wide semaphore caps concurrent gateway requests; tools run outside it. Nothing a
turn waits for is unbounded: the model call has the client's timeouts and the retry deadline,
each tool call its timeout, and every wait is cancellable; a tool that fails in any way (its
result or summary included) is an error result the model reads.

Consume a turn with ``contextlib.aclosing`` so it is closed even when left early::

    async with aclosing(engine.run_turn(lease)) as events:
        async for event in events: ...
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, assert_never
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core import metrics
from core.assembly import MessageAssembler
from core.client import LLMClient
from core.errors import (
    AuthError,
    BadRequest,
    ContextTooLong,
    DeadlineExceeded,
    LLMError,
    Overloaded,
    RateLimited,
)
from core.events import (
    AttemptVoid,
    EngineEvent,
    ModelRetrying,
    ReasoningDelta,
    ReasoningRedacted,
    ReasoningSignature,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCallDelta,
    ToolCallReady,
    ToolCallStarted,
    ToolFinished,
    ToolStarted,
    TurnFailed,
    TurnFinished,
    Usage,
    WaitingForSlot,
)
from core.messages import (
    AssistantMessage,
    ConversationBreak,
    Message,
    ModelRequest,
    ToolCall,
    ToolResult,
    UserMessage,
)
from core.models import ConfiguredModel, ModelRegistry
from core.retry import ModelStream, RetryPolicy, retrying_stream
from core.store.base import ConversationStore
from core.store.errors import StoreError
from core.store.journal import Lease, LeaseLost, Turn
from core.store.trim import estimate_tokens, trim
from core.tools import ToolContext, ToolOutcome, ToolRegistry
from core.vision import UNSEEN_NOTE, ImageSupport, carries_images, refuses_images, without_images

__all__ = ["STOPPED", "ConversationEngine", "EngineConfig", "user_message_for"]

log = logging.getLogger("relaybot.engine")

ROUND_SEPARATOR = "\n\n"
LENGTH_NOTE = "\n\n_(The answer was cut off because it reached the length limit.)_"
FALLBACK_NOTE = "\n\n_(answered by {model}: {primary} is unavailable)_"
STOPPED_NOTE = "the turn was stopped before it finished"
STOPPED = "stopped"
"""The error of a turn that was cancelled or closed before it ended."""
NO_HISTORY = "I couldn't read this conversation from my storage. Please try again."
NO_TOOL_RECORD = "I couldn't save my progress, so I stopped before using a tool. Please try again."


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    """How turns run. ``model`` and ``context_budget_tokens`` describe the one model of an
    engine built with a bare ``client``; with a registry, each model has its own."""

    model: str
    system_prompt: str
    max_tokens: int = 4096
    temperature: float | None = None
    max_rounds: int = 8
    context_budget_tokens: int = 100_000
    max_concurrent_requests: int = 1000


class ConversationEngine:
    """Runs journal turns (see the module docstring). It asks ``models``, or the one model
    behind ``client`` (named ``default``; give one or the other). ``now`` dates the system
    prompt; ``sleep`` and ``clock`` (monotonic seconds) time the retries of a model call, so a
    test lets a 30-second ``Retry-After`` pass in virtual time."""

    def __init__(
        self,
        *,
        client: ModelStream | None = None,
        models: ModelRegistry | None = None,
        store: ConversationStore,
        tools: ToolRegistry,
        config: EngineConfig,
        retry: RetryPolicy,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        request_gate: asyncio.Semaphore | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if models is None:
            if client is None:
                raise TypeError("ConversationEngine needs a client or a registry of models")
            models = ModelRegistry.single(
                client, model=config.model, context_budget_tokens=config.context_budget_tokens
            )
        elif client is not None:
            raise TypeError("ConversationEngine takes a client or a registry of models, not both")
        self._models = models
        self._client = models.default.client  # the default model's (tests reuse it)
        self._store = store
        self._tools = tools
        self._config = config
        self._retry = retry
        self._now = now
        self._sleep = sleep
        self._clock = clock
        self._gate = request_gate or asyncio.Semaphore(config.max_concurrent_requests)
        self._images = ImageSupport()  # models that cannot take images; threads told so

    @property
    def model(self) -> str:
        """The id of the model its turns ask unless told otherwise (the default model's)."""
        return self._models.default.endpoint.model

    @property
    def models(self) -> ModelRegistry:
        """The models its turns may ask."""
        return self._models

    async def run_turn(
        self,
        lease: Lease,
        *,
        model: str | None = None,
        instructions: str | None = None,
        stop_error: Callable[[], str | None] | None = None,
    ) -> AsyncGenerator[EngineEvent, None]:
        """The events of the leased turn; see the module docstring. ``model`` names the
        configured model to ask (``None``: the default); ``instructions`` are the channel's own,
        added to the system prompt after relaybot's. ``stop_error``, asked when the turn
        is cancelled or closed early, gives the error it ends ``failed`` with (``"stopped"``
        without it), or ``None`` to write nothing: the caller hands the turn back to the queue
        itself (a shutdown)."""
        chain = self._chain(model, lease.turn)
        turn = _Turn(
            self, lease, chain, instructions=instructions, stop_error=stop_error or _stopped
        )
        try:
            async with aclosing(turn.run()) as events:
                async for event in events:
                    if isinstance(event, TurnFinished | TurnFailed):
                        await turn.end(event)
                    yield event
        except LeaseLost as lost:
            turn.lost = True
            log.info("stopped turn %d of %s: %s", lease.turn.id, lease.turn.key, lost)
            raise
        finally:
            if not turn.ended and not turn.lost:
                await _finished(turn.end_stopped(), name=f"save stopped turn {lease.turn.id}")

    def _chain(self, name: str | None, turn: Turn) -> tuple[ConfiguredModel, ...]:
        """The models the turn may ask. A name no longer configured (a channel's choice from
        before a configuration change) gets the default: an answer, not an error per turn."""
        if name is not None and name not in self._models:
            log.warning("turn %d of %s asks for the model %r, which is not configured; the "
                        "default model answers", turn.id, turn.key, name)  # fmt: skip
            name = None
        return self._models.chain(name)

    # Used by _Turn: one model call with the request gate held.
    def _model_request(
        self, model: str, messages: Sequence[Message], *, budget: int, last: bool, turn: Turn,
        instructions: str | None,
    ) -> ModelRequest:  # fmt: skip
        window = trim(_attributed(messages), budget)
        return ModelRequest(
            model=model,
            messages=tuple(window),
            system=self._system_prompt(turn, instructions),
            tools=self._tools.specs(turn.key),
            tool_choice="none" if last else "auto",
            max_tokens=self._config.max_tokens,
            temperature=self._config.temperature,
        )

    def _system_prompt(self, turn: Turn, instructions: str | None = None) -> str:
        now = self._now()
        lines = [self._config.system_prompt.strip(), ""]
        if instructions and instructions.strip():
            lines += ["Instructions for this channel, from its admins:", instructions.strip(), ""]
        lines.append(f"Current date and time: {now.astimezone(UTC):%A, %d %B %Y, %H:%M} UTC.")
        zone = _zone(turn.timezone)
        if zone is not None:
            local = now.astimezone(zone)
            lines.append(
                f"The user's time zone is {turn.timezone}; their local time is {local:%A %H:%M}."
            )
        lines.append(f"You are answering {_asker(turn)} on {turn.platform}.")
        return "\n".join(lines)


class _Turn:
    """The state of one running turn: what it has said so far, and what must be saved."""

    def __init__(
        self,
        engine: ConversationEngine,
        lease: Lease,
        chain: tuple[ConfiguredModel, ...],
        *,
        instructions: str | None = None,
        stop_error: Callable[[], str | None],
    ) -> None:
        self.engine = engine
        self.instructions = instructions  # the channel's, in the system prompt
        self.chain = chain  # the model asked, then the fallback models
        self.model = chain[0]  # the model answering now
        self.stop_error = stop_error
        self.lease = lease
        self.turn = lease.turn
        self.history: list[Message] = []  # read when the turn starts; ends with the question
        self.new: list[Message] = []  # what the turn said: assistant and tool messages
        self.shown: list[str] = []  # text deltas of finished model calls
        self.assembler = MessageAssembler()
        self.usage = Usage()
        self.finish_reason: str | None = None  # of the last model message
        self.budget = self.model.endpoint.context_budget_tokens
        self.shrunk = False  # the context was trimmed harder once for this model
        self.text_seen = False  # a text delta was shown, even of a call later voided
        self.unseen_images = False  # a model call was sent notes instead of images
        self.attempts = 0  # attempts of the current model call (for the fallback's event)
        self.completed = False  # the final event was made
        self.ended = False  # the final write was made (or tried)
        self.lost = False  # the lease was taken over: nothing more may be written
        self.context = ToolContext(
            key=self.turn.key,
            user_id=self.turn.question.author_id or "",
            user_name=_asker(self.turn),
            platform=self.turn.platform,
        )

    async def run(self) -> AsyncGenerator[EngineEvent, None]:
        try:
            self.history = _since_last_break(await self.engine._store.history(self.lease))
        except LeaseLost:
            raise
        except StoreError:
            log.exception("could not read the history of turn %d of %s", self.turn.id,
                          self.turn.key)  # fmt: skip
            yield self._failed(NO_HISTORY)
            return
        config = self.engine._config
        rounds = 0
        while rounds < config.max_rounds:
            rounds += 1
            last = rounds == config.max_rounds
            try:
                async with aclosing(self._model_call(last=last)) as events:
                    async for event in events:
                        yield event
            except ContextTooLong:
                self.assembler = MessageAssembler()
                if self.shrunk:
                    yield self._failed("This thread is too long for me to continue. "
                                       "Please start a new thread.")  # fmt: skip
                    return
                self.shrunk, rounds = True, rounds - 1
                self.budget = max(1, min(self.budget, self._window_tokens()) // 2)
                log.info("context too long for %s; trimming to %d tokens", self.turn.key,
                         self.budget)  # fmt: skip
                continue
            except LLMError as error:
                if self._images_refused(error):
                    rounds -= 1
                    continue
                if (switch := self._fallback(error)) is not None:
                    yield switch
                    rounds -= 1
                    continue
                log.warning("turn failed for %s: %s", self.turn.key, error)
                yield self._failed(user_message_for(error))
                return
            message = self.assembler.message()
            self.assembler = MessageAssembler()
            self.new.append(message)
            self.usage = _add(self.usage, message)
            self.finish_reason = message.finish_reason
            if message.tool_calls and not last:
                async with aclosing(self._run_tools(message.tool_calls)) as events:
                    async for event in events:
                        yield event
                if self.completed:  # the calls could not be recorded: none ran
                    return
                continue
            self.new.extend(_not_run(call) for call in message.tool_calls)
            async with aclosing(self._finish(message, rounds)) as events:
                async for event in events:
                    yield event
            return

    async def _model_call(self, *, last: bool) -> AsyncGenerator[EngineEvent, None]:
        engine = self.engine
        client = self.model.client
        messages = [*self.history, *self.new]
        if not engine._images.sees_images(self.model.endpoint) and carries_images(messages):
            self.unseen_images = True
            messages = [without_images(message) for message in messages]
        request = engine._model_request(
            self.model.endpoint.model, messages, budget=self.budget,
            last=last, turn=self.turn, instructions=self.instructions,
        )  # fmt: skip
        separator = bool("".join(self.shown))
        attempt_text: list[str] = []
        measured = metrics.ModelCallMetrics(
            provider=_provider_name(client), model=request.model, clock=engine._clock
        )
        self.attempts = 1
        stream = retrying_stream(
            client, request, engine._retry, sleep=engine._sleep, clock=engine._clock,
            on_retry=self._retrying,
        )  # fmt: skip
        if engine._gate.locked():  # every slot taken: say so, then wait in line for one
            yield WaitingForSlot()
        async with engine._gate, stream as events:
            async for event in events:
                self.assembler.feed(event)
                if _is_chunk(event):
                    measured.chunk()
                match event:
                    case TextDelta(text=text) if text:
                        if separator and not attempt_text:
                            attempt_text.append(ROUND_SEPARATOR)
                            yield TextDelta(text=ROUND_SEPARATOR)
                        attempt_text.append(text)
                        self.text_seen = True
                        yield event
                    case ReasoningDelta() | ModelRetrying():
                        yield event
                    case AttemptVoid():
                        attempt_text.clear()
                        yield event
                    case (
                        TextDelta() | ReasoningSignature() | ReasoningRedacted() | ToolCallStarted()
                        | ToolCallDelta() | ToolCallReady() | Usage() | StreamEnd()
                    ):  # fmt: skip
                        pass  # an empty delta, or for the assembler only
                    case _:
                        assert_never(event)
        self.shown.extend(attempt_text)
        usage = self.assembler.message().usage
        measured.finished(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens)

    async def _run_tools(self, calls: Sequence[ToolCall]) -> AsyncGenerator[EngineEvent, None]:
        """Record the round's calls as started, then run them concurrently; report each as it
        finishes."""
        if not await self._record_started(calls):
            self.new.extend(_stopped_result(call) for call in calls)
            yield self._failed(NO_TOOL_RECORD)
            return
        tools = self.engine._tools
        for call in calls:
            yield ToolStarted(
                call_id=call.id, name=call.name, arguments=call.arguments,
                activity=tools.activity(call, self.turn.key),
            )  # fmt: skip
        outcomes: dict[int, ToolOutcome] = {}
        try:
            async with aclosing(tools.run_each(calls, self.context)) as finished:
                async for index, outcome in finished:
                    outcomes[index] = outcome
                    _count_tool(tools, calls[index].name, outcome)
                    yield ToolFinished(
                        call_id=calls[index].id, name=calls[index].name, ok=outcome.ok,
                        summary=outcome.summary, elapsed=outcome.elapsed,
                    )  # fmt: skip
        finally:  # the tools have ended: run_each cancels and awaits those still running
            for index, call in enumerate(calls):
                if index not in outcomes:
                    _count_stopped_tool(tools, call.name)
            self.new.extend(
                outcomes[index].result if index in outcomes else _stopped_result(call)
                for index, call in enumerate(calls)
            )

    async def _record_started(self, calls: Sequence[ToolCall]) -> bool:
        """Durably record every call of the round before any runs; False if the store failed
        (:class:`LeaseLost` propagates)."""
        try:
            for call in calls:
                await self.engine._store.tool_started(self.lease, call.id)
        except LeaseLost:
            raise
        except StoreError:
            log.exception("could not record a tool call of turn %d of %s", self.turn.id,
                          self.turn.key)  # fmt: skip
            return False
        return True

    async def _finish(
        self, message: AssistantMessage, rounds: int
    ) -> AsyncGenerator[EngineEvent, None]:
        truncated = message.finish_reason == "length"
        if truncated:
            self.shown.append(LENGTH_NOTE)
            yield TextDelta(text=LENGTH_NOTE)
        if self.model is not self.chain[0] and "".join(self.shown).strip():
            note = FALLBACK_NOTE.format(model=self.model.name, primary=self.chain[0].name)
            self.shown.append(note)
            yield TextDelta(text=note)
        if (
            self.unseen_images
            and "".join(self.shown).strip()
            and self.engine._images.first_notice(self.turn.key)
        ):
            note = UNSEEN_NOTE.format(model=self.model.name)
            self.shown.append(note)
            yield TextDelta(text=note)
        text = "".join(self.shown)
        if not text.strip():
            yield self._failed(_empty_answer(message))
            return
        self.completed = True
        yield TurnFinished(text=text, usage=self.usage, rounds=rounds, truncated=truncated)

    def _fallback(self, error: LLMError) -> ModelRetrying | None:
        """Switch to the next model of the chain if ``error`` allows it (see the module
        docstring): the event that says so, or ``None`` to fail the turn."""
        position = self.chain.index(self.model)
        if not error.retryable or self.text_seen or self.new or position + 1 == len(self.chain):
            return None
        failed, self.model = self.model, self.chain[position + 1]
        log.warning("model %s is unavailable for %s (%s); asking %s", failed.name,
                    self.turn.key, error, self.model.name)  # fmt: skip
        metrics.FALLBACKS.labels(from_model=failed.name, to_model=self.model.name).inc()
        self.history = [_for_model(message, self.model) for message in self.history]
        self.budget = self.model.endpoint.context_budget_tokens
        self.shrunk = False
        self.assembler = MessageAssembler()  # what the failed call began (usage) is void
        reason = f"{failed.name} is unavailable ({error.message}); asking {self.model.name}"
        return ModelRetrying(attempt=self.attempts, wait=0.0, reason=reason, busy=True)

    def _images_refused(self, error: LLMError) -> bool:
        """The gateway said the model cannot take images, and the call carried some: remember
        the model as image-less (every later call to it gets notes instead) and ask again."""
        endpoint = self.model.endpoint
        images = self.engine._images
        if not (refuses_images(error) and images.sees_images(endpoint)):
            return False
        if not carries_images([*self.history, *self.new]):
            return False
        images.refused(endpoint)
        log.warning("model %s cannot take images (%s); asking it again without them",
                    self.model.name, error)  # fmt: skip
        self.assembler = MessageAssembler()
        return True

    def _retrying(self, error: LLMError, attempt: int, wait: float) -> None:
        self.attempts = attempt + 1
        busy = isinstance(error, RateLimited | Overloaded)
        metrics.MODEL_RETRIES.labels(reason="busy" if busy else "other").inc()
        log.info("retrying a model call for %s in %.2f s after attempt %d: %s",
                 self.turn.key, wait, attempt, error)  # fmt: skip

    def _failed(self, message: str) -> TurnFailed:
        self.completed = True
        return TurnFailed(message=message, partial_text="".join(self.shown))

    def _window_tokens(self) -> int:
        return sum(estimate_tokens(message) for message in [*self.history, *self.new])

    async def end(self, event: TurnFinished | TurnFailed) -> None:
        """The turn's one outcome write, made before its final event is yielded."""
        store = self.engine._store
        self.ended = True
        match event:
            case TurnFinished(text=text):
                write = store.answered(
                    self.lease, messages=self.new, text=text, finish_reason=self.finish_reason
                )
            case TurnFailed(message=message):
                write = store.failed(self.lease, messages=self.new, error=message)
        await _finished(self._saving(write), name=f"save turn {self.turn.id}")

    async def end_stopped(self) -> None:
        """Cancelled or closed early: keep what was said, the partial answer marked stopped
        (unless ``stop_error`` says to write nothing)."""
        self.ended = True
        if (error := self.stop_error()) is None:
            return
        partial = self.assembler.message()
        self.new.append(AssistantMessage(text=partial.text, usage=partial.usage, stopped=True))
        await self._saving(self.engine._store.failed(self.lease, messages=self.new, error=error))

    async def _saving(self, write: Awaitable[None]) -> None:
        try:
            await write
        except LeaseLost as lost:
            log.info("turn %d of %s ended under a lost lease: %s", self.turn.id, self.turn.key,
                     lost)  # fmt: skip
        except Exception:
            log.exception("could not save turn %d of %s", self.turn.id, self.turn.key)


async def _finished(write: Coroutine[Any, Any, None], *, name: str) -> None:
    """Run ``write`` to its end even if the caller is cancelled meanwhile; then let the
    cancellation through. (A turn's last write must not be lost to a second Stop.)"""
    task = asyncio.create_task(write, name=name)
    cancelled = False
    while not task.done():
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            cancelled = True
    task.result()
    if cancelled:
        raise asyncio.CancelledError


def _stopped() -> str:
    return STOPPED


def _provider_name(client: ModelStream) -> str:
    """The GenAI provider label: the wire protocol the client speaks (``openai`` for any
    OpenAI-compatible gateway), ``unknown`` for a client that is not an :class:`LLMClient`."""
    return client.protocol.name if isinstance(client, LLMClient) else "unknown"


def _is_chunk(event: StreamEvent) -> bool:
    """Whether ``event`` is model output that counts as the call's first chunk."""
    if isinstance(event, TextDelta):
        return bool(event.text)
    return isinstance(event, ReasoningDelta | ToolCallStarted)


def _tool_label(tools: ToolRegistry, name: str) -> str:
    """The tool's name as a metric label; a name the model invented is ``unknown``, so a
    model cannot mint new time series."""
    return name if name in tools else "unknown"


def _count_tool(tools: ToolRegistry, name: str, outcome: ToolOutcome) -> None:
    label = _tool_label(tools, name)
    metrics.TOOL_CALLS.labels(tool=label, outcome="ok" if outcome.ok else "error").inc()
    metrics.TOOL_SECONDS.labels(tool=label).observe(outcome.elapsed)


def _count_stopped_tool(tools: ToolRegistry, name: str) -> None:
    metrics.TOOL_CALLS.labels(tool=_tool_label(tools, name), outcome=STOPPED).inc()


def user_message_for(error: LLMError) -> str:
    """What the user reads when a model call failed for good."""
    if isinstance(error, AuthError):
        return ("I can't reach the language model: the gateway rejected my credentials. "
                "An admin needs to check the API key.")  # fmt: skip
    if isinstance(error, RateLimited):
        return "The language model is rate limited right now. Please try again in a minute."
    if isinstance(error, DeadlineExceeded):
        return "The answer took too long, so I stopped it. Please try again."
    if isinstance(error, BadRequest):
        return f"The language model rejected the request: {error.message}"
    return f"The language model is unavailable right now ({error.message}). Please try again."


def _empty_answer(message: AssistantMessage) -> str:
    if message.finish_reason == "content_filter":
        return "The model declined to answer this."
    if message.tool_calls:
        return "I ran out of tool steps before I could answer. Please ask more narrowly."
    return "The model returned an empty answer. Please try again."


def _stopped_result(call: ToolCall) -> ToolResult:
    return ToolResult(call_id=call.id, name=call.name, content=STOPPED_NOTE, is_error=True)


def _not_run(call: ToolCall) -> ToolResult:
    """A call made in the last round, which may not call tools: answered, never left open."""
    return ToolResult(
        call_id=call.id, name=call.name, content="not run: the turn reached its tool-call limit",
        is_error=True,
    )  # fmt: skip


def _add(total: Usage, message: AssistantMessage) -> Usage:
    return Usage(
        input_tokens=total.input_tokens + message.usage.input_tokens,
        output_tokens=total.output_tokens + message.usage.output_tokens,
        cached_input_tokens=total.cached_input_tokens + message.usage.cached_input_tokens,
    )


def _since_last_break(history: Sequence[Message]) -> list[Message]:
    """The conversation the model reads: what follows the thread's last
    :class:`~core.messages.ConversationBreak` (the ``new`` command), or all of it."""
    breaks = [i for i, message in enumerate(history) if isinstance(message, ConversationBreak)]
    return list(history[breaks[-1] + 1 :] if breaks else history)


def _for_model(message: Message, model: ConfiguredModel) -> Message:
    """``message`` as a fallback model may read it: without the reasoning another model wrote
    (its thinking blocks are signed for that model, and a gateway refuses foreign ones).

    Images are left in: each model call replaces them with notes for a model that cannot take
    them (``_Turn._model_call``, :mod:`core.vision`), whichever model of the chain it is."""
    if isinstance(message, AssistantMessage) and (message.thinking or message.reasoning):
        return message.model_copy(update={"thinking": (), "reasoning": ""})
    return message


def _attributed(messages: Sequence[Message]) -> list[Message]:
    """In a thread with several people, each user message says who wrote it."""
    authors = {
        m.author_id or m.author_name
        for m in messages
        if isinstance(m, UserMessage) and (m.author_id or m.author_name)
    }
    if len(authors) < 2:
        return list(messages)
    return [
        m.model_copy(update={"text": f"{m.author_name}: {m.text}"})
        if isinstance(m, UserMessage) and m.author_name
        else m
        for m in messages
    ]


def _asker(turn: Turn) -> str:
    """Who asked, in words the model reads."""
    return turn.question.author_name or turn.question.author_id or "someone"


def _zone(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
