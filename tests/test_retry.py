"""RetryPolicy is pure: which errors retry, after how long. And the retrying stream's voids."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from core.errors import (
    AuthError,
    BadRequest,
    ConnectFailed,
    ContextTooLong,
    DeadlineExceeded,
    InvalidResponse,
    LLMError,
    Overloaded,
    RateLimited,
    ServerError,
    StreamInterrupted,
    StreamStalled,
)
from core.events import AttemptVoid, ModelRetrying, StreamEnd, StreamEvent, TextDelta, Usage
from core.messages import ModelRequest, UserMessage
from core.retry import RetryPolicy, parse_retry_after, retrying_stream

POLICY = RetryPolicy(max_attempts=4, base_delay=1.0, max_delay=8.0, deadline=100.0)


def one() -> float:
    return 1.0


@pytest.mark.parametrize(
    "error",
    [
        RateLimited("x", status=429),
        Overloaded("x", status=529),
        ServerError("x", status=500),
        ServerError("x", status=408),
        ServerError("x", status=409),
        ConnectFailed("x"),
        StreamInterrupted("x"),
        StreamStalled("x"),
        InvalidResponse("x"),
    ],
)
def test_transient_errors_retry(error: LLMError) -> None:
    assert POLICY.delay(error, attempt=1, elapsed=0, rng=one) == 1.0


@pytest.mark.parametrize(
    "error",
    [
        AuthError("x", status=401),
        AuthError("x", status=403),
        BadRequest("x", status=400),
        ContextTooLong("x", status=400),
        DeadlineExceeded("x"),
        # the server cannot talk a permanent error into a retry
        AuthError("x", status=401, should_retry=True),
        BadRequest("x", status=400, retry_after=0.0),
    ],
)
def test_permanent_errors_never_retry(error: LLMError) -> None:
    assert POLICY.delay(error, attempt=1, elapsed=0, rng=one) is None


def test_backoff_is_exponential_with_full_jitter_and_capped() -> None:
    error = ServerError("x", status=503)
    ceilings = [POLICY.delay(error, attempt=n, elapsed=0, rng=one) for n in (1, 2, 3)]
    assert ceilings == [1.0, 2.0, 4.0]
    assert POLICY.delay(error, attempt=2, elapsed=0, rng=lambda: 0.25) == 0.5
    wide = RetryPolicy(max_attempts=10, base_delay=1.0, max_delay=8.0, deadline=1000)
    assert wide.delay(error, attempt=7, elapsed=0, rng=one) == 8.0


def test_attempts_are_bounded() -> None:
    error = ServerError("x", status=500)
    assert POLICY.delay(error, attempt=3, elapsed=0, rng=one) is not None
    assert POLICY.delay(error, attempt=4, elapsed=0, rng=one) is None


def test_total_deadline_bounds_the_wait() -> None:
    error = ServerError("x", status=500)
    assert POLICY.delay(error, attempt=1, elapsed=98.5, rng=one) is not None
    assert POLICY.delay(error, attempt=1, elapsed=99.5, rng=one) is None


def test_server_retry_after_is_honoured_up_to_a_cap() -> None:
    assert POLICY.delay(RateLimited("x", retry_after=7.5), attempt=1, elapsed=0) == 7.5
    assert POLICY.delay(RateLimited("x", retry_after=0.0), attempt=1, elapsed=0) == 0.0
    too_long = RateLimited("x", retry_after=POLICY.max_retry_after + 1)
    assert POLICY.delay(too_long, attempt=1, elapsed=0) is None


def test_x_should_retry_false_vetoes() -> None:
    assert POLICY.delay(ServerError("x", should_retry=False), attempt=1, elapsed=0) is None


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after": "Wed, 25 Nov 2026 12:00:30 GMT"}, 30.0),
        ({"retry-after": "Wed, 25 Nov 2026 11:00:00 GMT"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after-ms": "x"}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], seconds: float | None) -> None:
    noon = 1795608000.0  # Wed, 25 Nov 2026 12:00:00 GMT
    assert parse_retry_after(headers, now=noon) == seconds


REQUEST = ModelRequest(model="m", messages=(UserMessage(text="hi"),))


class ScriptedModel:
    """Each attempt replays a list of events, then raises its error (if any)."""

    def __init__(self, *attempts: tuple[list[StreamEvent], LLMError | None]) -> None:
        self.attempts = list(attempts)
        self.opened = 0

    @asynccontextmanager
    async def stream(self, request: ModelRequest) -> AsyncIterator[AsyncIterator[StreamEvent]]:
        events, error = self.attempts[self.opened]
        self.opened += 1

        async def replay() -> AsyncIterator[StreamEvent]:
            for event in events:
                yield event
            if error is not None:
                raise error

        yield replay()


async def collect(model: ScriptedModel, policy: RetryPolicy = POLICY) -> list[object]:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    seen: list[object] = []
    async with retrying_stream(model, REQUEST, policy, sleep=sleep, rng=one) as events:
        async for event in events:
            seen.append(event)
    return [*seen, ("waits", waits)]


END = StreamEnd(finish_reason="stop")


async def test_retry_after_output_voids_the_attempt_first() -> None:
    model = ScriptedModel(
        ([TextDelta(text="Hel")], StreamInterrupted("cut")),
        ([TextDelta(text="Hello"), END], None),
    )
    assert await collect(model) == [
        TextDelta(text="Hel"),
        AttemptVoid(attempt=1, reason="cut"),
        ModelRetrying(attempt=1, wait=1.0, reason="cut", busy=False),
        TextDelta(text="Hello"),
        END,
        ("waits", [1.0]),
    ]


async def test_retry_before_output_is_invisible() -> None:
    model = ScriptedModel(
        ([Usage(input_tokens=3)], ServerError("503", status=503)),
        ([], RateLimited("slow down", retry_after=0.2)),
        ([TextDelta(text="ok"), END], None),
    )
    assert await collect(model) == [
        Usage(input_tokens=3),
        ModelRetrying(attempt=1, wait=1.0, reason="503", busy=False),
        ModelRetrying(attempt=2, wait=0.2, reason="slow down", busy=True),
        TextDelta(text="ok"),
        END,
        ("waits", [1.0, 0.2]),
    ]


async def test_each_retry_is_announced_right_before_its_wait() -> None:
    seen: list[object] = []

    async def sleep(seconds: float) -> None:
        seen.append(("sleep", seconds))

    model = ScriptedModel(
        ([TextDelta(text="Hel")], Overloaded("overloaded", status=529)),
        ([TextDelta(text="Hello"), END], None),
    )
    async with retrying_stream(model, REQUEST, POLICY, sleep=sleep, rng=one) as events:
        async for event in events:
            seen.append(event)
    assert seen == [
        TextDelta(text="Hel"),
        AttemptVoid(attempt=1, reason="overloaded"),
        ModelRetrying(attempt=1, wait=1.0, reason="overloaded", busy=True),
        ("sleep", 1.0),
        TextDelta(text="Hello"),
        END,
    ]


async def test_gives_up_with_the_last_error() -> None:
    model = ScriptedModel(
        ([TextDelta(text="a")], StreamStalled("stalled")),
        ([TextDelta(text="b")], StreamStalled("stalled again")),
    )
    with pytest.raises(StreamStalled, match="stalled again"):
        await collect(model, RetryPolicy(max_attempts=2, base_delay=0))
    assert model.opened == 2


async def test_permanent_error_is_raised_at_once() -> None:
    model = ScriptedModel(([], AuthError("bad key", status=401)))
    with pytest.raises(AuthError):
        await collect(model)
    assert model.opened == 1
