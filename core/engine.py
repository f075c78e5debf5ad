"""``ConversationEngine``: one conversation turn — history, model calls, tools, saving.

A turn loads the thread's history, streams the model, runs the tools it asks for, feeds their
results back, and repeats until the model answers without tools (at most ``max_rounds`` model
calls; the last one is asked to answer without tools). It yields :data:`~core.events.EngineEvent`
values as they happen and ends with exactly one ``TurnFinished`` or ``TurnFailed``; every
failure becomes a short message fit to show a user, never an exception.

Turns of one conversation run one at a time, in arrival order (the store's ``turn_lock``).
Cancelling the task that consumes a turn (or closing the generator) stops the model stream and
the running tools, and saves what was said, marked ``stopped``. A process-wide semaphore caps
concurrent gateway requests; tools run outside it. Nothing a turn waits for is unbounded: the
model call has the client's timeouts and the retry deadline, each tool call its timeout, and
every wait is cancellable; a tool that fails in any way (its result or summary included) is an
error result the model reads.

Consume a turn with ``contextlib.aclosing`` so it is closed even when left early::

    async with aclosing(engine.run_turn(request)) as events:
        async for event in events: ...
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import assert_never
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core.assembly import MessageAssembler
from core.errors import (
    AuthError,
    BadRequest,
    ContextTooLong,
    DeadlineExceeded,
    LLMError,
    RateLimited,
)
from core.events import (
    AttemptVoid,
    EngineEvent,
    ReasoningDelta,
    ReasoningRedacted,
    ReasoningSignature,
    StreamEnd,
    TextDelta,
    ToolCallDelta,
    ToolCallReady,
    ToolCallStarted,
    ToolFinished,
    ToolStarted,
    TurnFailed,
    TurnFinished,
    Usage,
)
from core.messages import (
    AssistantMessage,
    ConversationKey,
    Message,
    ModelRequest,
    ToolCall,
    ToolResult,
    UserMessage,
)
from core.retry import ModelStream, RetryPolicy, retrying_stream
from core.store.base import ConversationStore
from core.store.trim import estimate_tokens, trim
from core.tools import ToolContext, ToolOutcome, ToolRegistry

__all__ = ["ConversationEngine", "EngineConfig", "TurnRequest", "user_message_for"]

log = logging.getLogger("relaybot.engine")

ROUND_SEPARATOR = "\n\n"
LENGTH_NOTE = "\n\n_(The answer was cut off because it reached the length limit.)_"
STOPPED_NOTE = "the turn was stopped before it finished"


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnRequest:
    """A user's message to a conversation. ``timezone`` is an IANA name when the platform
    gives one (Slack does)."""

    key: ConversationKey
    user_id: str
    user_name: str
    text: str
    platform: str
    timezone: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    model: str
    system_prompt: str
    max_tokens: int = 4096
    temperature: float | None = None
    max_rounds: int = 8
    context_budget_tokens: int = 100_000
    max_concurrent_requests: int = 32


class ConversationEngine:
    def __init__(
        self,
        *,
        client: ModelStream,
        store: ConversationStore,
        tools: ToolRegistry,
        config: EngineConfig,
        retry: RetryPolicy,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        request_gate: asyncio.Semaphore | None = None,
    ) -> None:
        self._client = client
        self._store = store
        self._tools = tools
        self._config = config
        self._retry = retry
        self._now = now
        self._gate = request_gate or asyncio.Semaphore(config.max_concurrent_requests)

    async def run_turn(self, request: TurnRequest) -> AsyncGenerator[EngineEvent, None]:
        """The events of one turn; see the module docstring."""
        async with self._store.turn_lock(request.key):
            turn = _Turn(self, request, await self._store.load(request.key))
            try:
                async with aclosing(turn.run()) as events:
                    async for event in events:
                        yield event
            finally:
                await turn.save()

    # Used by _Turn: one model call with the request gate held.
    def _model_request(self, messages: Sequence[Message], *, budget: int, last: bool,
                       request: TurnRequest) -> ModelRequest:  # fmt: skip
        window = trim(_attributed(messages), budget)
        return ModelRequest(
            model=self._config.model,
            messages=tuple(window),
            system=self._system_prompt(request),
            tools=self._tools.specs(),
            tool_choice="none" if last else "auto",
            max_tokens=self._config.max_tokens,
            temperature=self._config.temperature,
        )

    def _system_prompt(self, request: TurnRequest) -> str:
        now = self._now()
        lines = [
            self._config.system_prompt.strip(),
            "",
            f"Current date and time: {now.astimezone(UTC):%A, %d %B %Y, %H:%M} UTC.",
        ]
        zone = _zone(request.timezone)
        if zone is not None:
            local = now.astimezone(zone)
            lines.append(
                f"The user's time zone is {request.timezone}; their local time is {local:%A %H:%M}."
            )
        lines.append(f"You are answering {request.user_name} on {request.platform}.")
        return "\n".join(lines)


class _Turn:
    """The state of one running turn: what it has said so far, and what must be saved."""

    def __init__(
        self, engine: ConversationEngine, request: TurnRequest, history: list[Message]
    ) -> None:
        self.engine = engine
        self.request = request
        self.history = history
        self.new: list[Message] = [
            UserMessage(text=request.text, author_id=request.user_id, author_name=request.user_name)
        ]
        self.shown: list[str] = []  # text deltas of finished model calls
        self.assembler = MessageAssembler()
        self.usage = Usage()
        self.budget = engine._config.context_budget_tokens
        self.completed = False
        self.context = ToolContext(
            key=request.key,
            user_id=request.user_id,
            user_name=request.user_name,
            platform=request.platform,
        )

    async def run(self) -> AsyncGenerator[EngineEvent, None]:
        config = self.engine._config
        rounds = 0
        shrunk = False
        while rounds < config.max_rounds:
            rounds += 1
            last = rounds == config.max_rounds
            try:
                async with aclosing(self._model_call(last=last)) as events:
                    async for event in events:
                        yield event
            except ContextTooLong:
                self.assembler = MessageAssembler()
                if shrunk:
                    yield self._failed("This thread is too long for me to continue. "
                                       "Please start a new thread.")  # fmt: skip
                    return
                shrunk, rounds = True, rounds - 1
                self.budget = max(1, min(self.budget, self._window_tokens()) // 2)
                log.info("context too long for %s; trimming to %d tokens", self.request.key,
                         self.budget)  # fmt: skip
                continue
            except LLMError as error:
                log.warning("turn failed for %s: %s", self.request.key, error)
                yield self._failed(user_message_for(error))
                return
            message = self.assembler.message()
            self.assembler = MessageAssembler()
            self.new.append(message)
            self.usage = _add(self.usage, message)
            if message.tool_calls and not last:
                async with aclosing(self._run_tools(message.tool_calls)) as events:
                    async for event in events:
                        yield event
                continue
            self.new.extend(_not_run(call) for call in message.tool_calls)
            async with aclosing(self._finish(message, rounds)) as events:
                async for event in events:
                    yield event
            return

    async def _model_call(self, *, last: bool) -> AsyncGenerator[EngineEvent, None]:
        engine = self.engine
        request = engine._model_request(
            [*self.history, *self.new], budget=self.budget, last=last, request=self.request
        )
        separator = bool("".join(self.shown))
        attempt_text: list[str] = []
        stream = retrying_stream(engine._client, request, engine._retry, on_retry=self._retrying)
        async with engine._gate, stream as events:
            async for event in events:
                self.assembler.feed(event)
                match event:
                    case TextDelta(text=text) if text:
                        if separator and not attempt_text:
                            attempt_text.append(ROUND_SEPARATOR)
                            yield TextDelta(text=ROUND_SEPARATOR)
                        attempt_text.append(text)
                        yield event
                    case ReasoningDelta():
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

    async def _run_tools(self, calls: Sequence[ToolCall]) -> AsyncGenerator[EngineEvent, None]:
        """Run one round's calls concurrently; report each as it finishes."""
        tools = self.engine._tools
        for call in calls:
            yield ToolStarted(
                call_id=call.id, name=call.name, arguments=call.arguments,
                activity=tools.activity(call),
            )  # fmt: skip
        outcomes: dict[int, ToolOutcome] = {}
        try:
            async with aclosing(tools.run_each(calls, self.context)) as finished:
                async for index, outcome in finished:
                    outcomes[index] = outcome
                    yield ToolFinished(
                        call_id=calls[index].id, name=calls[index].name, ok=outcome.ok,
                        summary=outcome.summary, elapsed=outcome.elapsed,
                    )  # fmt: skip
        finally:  # the tools have ended: run_each cancels and awaits those still running
            self.new.extend(
                outcomes[index].result if index in outcomes else _stopped_result(call)
                for index, call in enumerate(calls)
            )

    async def _finish(
        self, message: AssistantMessage, rounds: int
    ) -> AsyncGenerator[EngineEvent, None]:
        truncated = message.finish_reason == "length"
        if truncated:
            self.shown.append(LENGTH_NOTE)
            yield TextDelta(text=LENGTH_NOTE)
        text = "".join(self.shown)
        if not text.strip():
            yield self._failed(_empty_answer(message))
            return
        self.completed = True
        yield TurnFinished(text=text, usage=self.usage, rounds=rounds, truncated=truncated)

    def _retrying(self, error: LLMError, attempt: int, wait: float) -> None:
        log.info("retrying a model call for %s in %.2f s after attempt %d: %s",
                 self.request.key, wait, attempt, error)  # fmt: skip

    def _failed(self, message: str) -> TurnFailed:
        self.completed = True
        return TurnFailed(message=message, partial_text="".join(self.shown))

    def _window_tokens(self) -> int:
        return sum(estimate_tokens(message) for message in [*self.history, *self.new])

    async def save(self) -> None:
        """Save the turn. Cancelled or closed early: keep what was said, marked stopped."""
        if not self.completed:
            partial = self.assembler.message()
            self.new.append(AssistantMessage(text=partial.text, usage=partial.usage, stopped=True))
        try:
            await self.engine._store.append(self.request.key, self.new)
        except Exception:
            log.exception("could not save the turn of %s", self.request.key)


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


def _zone(name: str | None) -> ZoneInfo | None:
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
