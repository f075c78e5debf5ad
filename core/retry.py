"""Retrying a model call: the policy (pure) and the retrying stream.

:class:`RetryPolicy` answers one question — after this error, on this attempt, this long into
the call, wait how long before trying again, or give up? — and does no I/O. The server's word
comes first: ``x-should-retry: false`` vetoes a retry, and ``retry-after-ms`` / ``Retry-After``
set the wait (up to ``max_retry_after``; a longer demand gives up rather than retrying early
into the same limit). Otherwise the wait is exponential backoff with full jitter. Permanent
errors (a rejected key, a bad request, a context that does not fit) never retry.

:func:`retrying_stream` re-opens the request after a retryable failure. When the failed attempt
had already produced output, it first yields :class:`~core.events.AttemptVoid`, so a renderer
rewrites the message back to where this model call began instead of showing text twice. Before
every wait it yields :class:`~core.events.ModelRetrying`, so a renderer can say why the answer
pauses instead of leaving its placeholder up with no word of why.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Protocol

from core.errors import LLMError, Overloaded, RateLimited
from core.events import AttemptVoid, ModelRetrying, StreamEvent, Usage
from core.messages import ModelRequest

__all__ = ["ModelStream", "RetryPolicy", "parse_retry_after", "retrying_stream"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Which failures retry, and after how long. Every delay is in seconds."""

    max_attempts: int = 4
    base_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0
    deadline: float = 180.0

    def delay(
        self,
        error: LLMError,
        *,
        attempt: int,
        elapsed: float,
        rng: Callable[[], float] = random.random,
    ) -> float | None:
        """Seconds to wait before the attempt after ``attempt`` (1-based), or ``None``."""
        if not error.retryable or error.should_retry is False:
            return None
        if attempt >= self.max_attempts:
            return None
        if error.retry_after is not None:
            if error.retry_after > self.max_retry_after:
                return None
            wait = max(0.0, error.retry_after)
        else:
            wait = rng() * min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        if elapsed + wait > self.deadline:
            return None
        return wait


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds the server asks to wait: ``retry-after-ms``, else ``Retry-After`` given as
    seconds or as an HTTP date. ``None`` when absent or unreadable. Keys are lower-case."""
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class ModelStream(Protocol):
    """What the retrying stream re-opens: ``LLMClient`` satisfies it."""

    def stream(
        self, request: ModelRequest
    ) -> AbstractAsyncContextManager[AsyncIterator[StreamEvent]]: ...


@asynccontextmanager
async def retrying_stream(
    client: ModelStream,
    request: ModelRequest,
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    rng: Callable[[], float] = random.random,
    on_retry: Callable[[LLMError, int, float], None] | None = None,
) -> AsyncIterator[AsyncIterator[StreamEvent]]:
    """``async with retrying_stream(client, request, policy) as events: async for ...``.

    Raises the last attempt's error when the policy gives up. ``on_retry(error, attempt, wait)``
    is called before each wait (for logging).
    """
    events = _retrying_events(client, request, policy, sleep, clock, rng, on_retry)
    try:
        yield events
    finally:
        await events.aclose()


async def _retrying_events(
    client: ModelStream,
    request: ModelRequest,
    policy: RetryPolicy,
    sleep: Callable[[float], Awaitable[object]],
    clock: Callable[[], float],
    rng: Callable[[], float],
    on_retry: Callable[[LLMError, int, float], None] | None,
) -> AsyncGenerator[StreamEvent, None]:
    started = clock()
    attempt = 1
    while True:
        produced_output = False
        try:
            async with client.stream(request) as events:
                async for event in events:
                    if not isinstance(event, Usage):
                        produced_output = True
                    yield event
            return
        except LLMError as error:
            wait = policy.delay(error, attempt=attempt, elapsed=clock() - started, rng=rng)
            if wait is None:
                raise
            if on_retry is not None:
                on_retry(error, attempt, wait)
            if produced_output:
                yield AttemptVoid(attempt=attempt, reason=error.message)
            busy = isinstance(error, RateLimited | Overloaded)
            yield ModelRetrying(attempt=attempt, wait=wait, reason=error.message, busy=busy)
            await sleep(wait)
            attempt += 1
