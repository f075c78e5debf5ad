"""Every Prometheus metric relaybot exports, in one registry of its own.

The registry is not prometheus_client's global one, so a process that embeds relaybot (or a
test) sees exactly relaybot's metrics and nothing another library registered. Where the
OpenTelemetry GenAI semantic conventions name a metric, its Prometheus form is used verbatim
so dashboards built for those conventions work unchanged; everything else is `relaybot_…`.

Labels stay low-cardinality on purpose: no user ids, thread ids, budget scope ids or message
text ever become a label value, because each distinct value is a new time series kept forever.
Counters are declared without `_total`; prometheus_client appends it.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = [
    "BUDGET_WAIT_SECONDS",
    "FALLBACKS",
    "FEEDBACK",
    "FIRST_TEXT_SECONDS",
    "JOURNAL_OLDEST_QUEUED_SECONDS",
    "JOURNAL_QUEUED",
    "MODEL_RETRIES",
    "OPERATION_DURATION_SECONDS",
    "PLATFORM_CALLS",
    "REGISTRY",
    "SECONDS_BUCKETS",
    "TIME_TO_FIRST_CHUNK_SECONDS",
    "TOKEN_BUCKETS",
    "TOKEN_USAGE",
    "TOOL_CALLS",
    "TOOL_SECONDS",
    "TURNS",
    "ModelCallMetrics",
    "exposition",
]

REGISTRY = CollectorRegistry()

# The GenAI conventions' advisory buckets: tokens in powers of 4 up to 64 Mi, durations doubling
# from 10 ms to 81.92 s (prometheus_client's defaults stop at 10 s, short of a long answer).
TOKEN_BUCKETS = tuple(float(4**power) for power in range(14))
SECONDS_BUCKETS = tuple(0.01 * 2**power for power in range(14))

_GEN_AI_LABELS = ("gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model")

TOKEN_USAGE = Histogram(
    "gen_ai_client_token_usage",
    "Tokens used per model call, by input and output.",
    [*_GEN_AI_LABELS, "gen_ai_token_type"],
    buckets=TOKEN_BUCKETS,
    registry=REGISTRY,
)
OPERATION_DURATION_SECONDS = Histogram(
    "gen_ai_client_operation_duration_seconds",
    "Duration of one model call, from request to the end of its stream.",
    _GEN_AI_LABELS,
    buckets=SECONDS_BUCKETS,
    registry=REGISTRY,
)
TIME_TO_FIRST_CHUNK_SECONDS = Histogram(
    "gen_ai_client_operation_time_to_first_chunk_seconds",
    "Time from a model call's request to its first text, reasoning or tool-call chunk.",
    _GEN_AI_LABELS,
    buckets=SECONDS_BUCKETS,
    registry=REGISTRY,
)

TURNS = Counter(
    "relaybot_turns",
    "Turns ended, by platform and outcome.",
    ["platform", "outcome"],
    registry=REGISTRY,
)
FIRST_TEXT_SECONDS = Histogram(
    "relaybot_time_to_first_text_seconds",
    "Time from a turn's start to its first visible text.",
    ["platform"],
    buckets=SECONDS_BUCKETS,
    registry=REGISTRY,
)
PLATFORM_CALLS = Counter(
    "relaybot_platform_calls",
    "Chat platform API calls, by method and result (ok, rate_limited, error).",
    ["platform", "method", "result"],
    registry=REGISTRY,
)
BUDGET_WAIT_SECONDS = Histogram(
    "relaybot_budget_wait_seconds",
    "Time a live reply waited for its shared edit budget, by scope kind.",
    ["scope_kind"],
    buckets=SECONDS_BUCKETS,
    registry=REGISTRY,
)
JOURNAL_QUEUED = Gauge(
    "relaybot_journal_queued_turns",
    "Turns accepted and not yet started, read from the journal at scrape time.",
    registry=REGISTRY,
)
JOURNAL_OLDEST_QUEUED_SECONDS = Gauge(
    "relaybot_journal_oldest_queued_seconds",
    "Seconds since the oldest queued turn was accepted (0 when none is queued).",
    registry=REGISTRY,
)
TOOL_CALLS = Counter(
    "relaybot_tool_calls",
    "Tool calls, by tool and outcome (ok, error).",
    ["tool", "outcome"],
    registry=REGISTRY,
)
TOOL_SECONDS = Histogram(
    "relaybot_tool_duration_seconds",
    "Duration of one tool call.",
    ["tool"],
    buckets=SECONDS_BUCKETS,
    registry=REGISTRY,
)
MODEL_RETRIES = Counter(
    "relaybot_model_retries",
    "Model calls retried, by reason (busy: rate limited or overloaded; other).",
    ["reason"],
    registry=REGISTRY,
)
FALLBACKS = Counter(
    "relaybot_model_fallbacks",
    "Model calls moved to a fallback model.",
    ["from_model", "to_model"],
    registry=REGISTRY,
)
FEEDBACK = Counter(
    "relaybot_feedback",
    "New votes on answers, by rating (positive, negative); a changed vote is not counted again.",
    ["rating"],
    registry=REGISTRY,
)


class ModelCallMetrics:
    """The GenAI metrics of one model call (all of its attempts), timed on ``clock``
    (monotonic seconds) from when it is made.

    Only a call that ends with a whole answer records its duration and tokens: the conventions
    tell a failed call apart by an ``error_type`` label, which these histograms do not carry,
    and a failed call's few seconds would otherwise pass for a fast answer."""

    def __init__(self, *, provider: str, model: str, clock: Callable[[], float]) -> None:
        self._labels = {
            "gen_ai_operation_name": "chat",
            "gen_ai_provider_name": provider,
            "gen_ai_request_model": model,
        }
        self._clock = clock
        self._started = clock()
        self._chunked = False

    def chunk(self) -> None:
        """A text, reasoning or tool-call chunk arrived; the first one is timed."""
        if not self._chunked:
            self._chunked = True
            elapsed = self._clock() - self._started
            TIME_TO_FIRST_CHUNK_SECONDS.labels(**self._labels).observe(elapsed)

    def finished(self, *, input_tokens: int, output_tokens: int) -> None:
        """The call's stream ended; the tokens are those its answer reported."""
        OPERATION_DURATION_SECONDS.labels(**self._labels).observe(self._clock() - self._started)
        for kind, tokens in (("input", input_tokens), ("output", output_tokens)):
            TOKEN_USAGE.labels(**self._labels, gen_ai_token_type=kind).observe(tokens)


def exposition() -> tuple[bytes, str]:
    """The registry in Prometheus text format, with the content type to serve it under."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
