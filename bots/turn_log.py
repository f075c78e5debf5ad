"""One record per turn a worker ends: a ``turn finished`` log line and the turn metrics.

The worker is the one place that sees a whole turn, so it keeps a :class:`TurnRecord` per turn,
feeds it the engine's events, settles its outcome on whichever path the turn ends, and
:func:`report` writes it once: an INFO line on ``relaybot.turns`` whose fields are the record's
(:meth:`TurnRecord.fields`), and the ``relaybot_turns`` counter and time-to-first-text
histogram of :mod:`core.metrics`.

What a record holds is safe to ship to any log store: counts, names of tools, durations and a
short hash of the conversation key — never the question, the answer, a user or channel id, or a
secret.

Outcomes (the counter's ``outcome`` label is the outcome, or ``failed_<kind>``):

- ``answered`` — the engine finished the answer (``delivered`` says whether it is on the
  platform whole);
- ``failed`` — with a ``failure`` kind: ``model`` (the gateway or the model's answer), ``store``
  (the journal), ``platform`` (the chat platform, or preparing the turn) or ``other``;
- ``stopped`` — Stop, or the bot closing; ``gone`` — its message was deleted or may no longer
  be written; ``taken_over`` — another worker took its lease, or it went unrenewed too long (the
  journal's recovery ends the turn: another worker, or this one once the lease expired);
- ``restarting`` — a shutdown handed it back to the queue; ``interrupted`` — it ran a tool
  and could not finish (a shutdown, or its worker died);
- ``refused`` — the platform answered it with a notice instead (too long, say); ``expired`` —
  it waited longer than ``recovery_max_age`` and was not answered.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from typing import Literal

from adapters.surface import SurfaceError
from core.engine import NO_HISTORY, NO_TOOL_RECORD
from core.errors import LLMError
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
from core.messages import ConversationKey
from core.metrics import FIRST_TEXT_SECONDS, TURNS
from core.store import StoreError, Turn

__all__ = [
    "FailureKind",
    "Outcome",
    "TurnRecord",
    "conversation_hash",
    "failure_kind",
    "report",
]

log = logging.getLogger("relaybot.turns")

Outcome = Literal[
    "answered",
    "failed",
    "stopped",
    "gone",
    "taken_over",
    "restarting",
    "interrupted",
    "refused",
    "expired",
]
FailureKind = Literal["model", "store", "platform", "other"]

_STORE_FAILURES = frozenset({NO_HISTORY, NO_TOOL_RECORD})
"""The engine's own words for a turn it ended because the journal failed it."""


def conversation_hash(key: ConversationKey) -> str:
    """12 hex digits that tell a conversation's lines apart without naming its team, channel
    or thread."""
    return hashlib.sha256(str(key).encode()).hexdigest()[:12]


def failure_kind(error: BaseException, *, default: FailureKind = "other") -> FailureKind:
    """Which part failed, from the error's family (core's and adapters' hierarchies)."""
    if isinstance(error, StoreError):
        return "store"
    if isinstance(error, SurfaceError):
        return "platform"
    if isinstance(error, LLMError):
        return "model"
    return default


@dataclass(slots=True, kw_only=True)
class TurnRecord:
    """What is known of one turn so far; times are seconds on the worker's monotonic clock.

    ``rounds`` counts the model calls seen in the events until ``TurnFinished`` gives the
    exact number (a call that failed before any output is not seen). Tokens are known only
    for a finished answer: the engine reports usage with ``TurnFinished``.
    """

    turn_id: int
    platform: str
    conversation: str
    model: str
    started: float
    rounds: int = 0
    tools: list[str] = field(default_factory=list)
    input_tokens: int | None = None
    output_tokens: int | None = None
    first_text: float | None = None
    retries: int = 0
    outcome: Outcome | None = None
    failure: FailureKind | None = None
    delivered: bool = False
    _phase: Literal["between", "model", "tools started", "tools running"] = "between"

    @classmethod
    def begin(cls, turn: Turn, *, model: str, now: float) -> TurnRecord:
        """The record of ``turn``, taken at ``now``."""
        return cls(
            turn_id=turn.id,
            platform=turn.key.platform.lower(),
            conversation=conversation_hash(turn.key),
            model=model,
            started=now,
        )

    def see(self, event: EngineEvent, now: float) -> None:
        """Take in one engine event of the turn, as it is fed to the reply at ``now``."""
        match event:
            case TextDelta(text=text):
                self._model_output()
                if text and self.first_text is None:
                    self.first_text = now
            case ReasoningDelta() | AttemptVoid():
                self._model_output()
            case ModelRetrying():
                self._model_output()
                self.retries += 1
            case WaitingForSlot():
                pass
            case ToolStarted(name=name):
                if self._phase in ("between", "tools running"):  # a call that only asked tools
                    self.rounds += 1
                self._phase = "tools started"
                if name not in self.tools:
                    self.tools.append(name)
            case ToolFinished():
                self._phase = "tools running"
            case TurnFinished(usage=usage, rounds=rounds):
                self.rounds = rounds
                self.input_tokens, self.output_tokens = usage.input_tokens, usage.output_tokens
                self.settle("answered")
            case TurnFailed(message=message):
                kind: FailureKind = "store" if message in _STORE_FAILURES else "model"
                self.settle("failed", failure=kind)

    def _model_output(self) -> None:
        if self._phase != "model":
            self.rounds += 1
            self._phase = "model"

    def settle(self, outcome: Outcome, *, failure: FailureKind | None = None) -> None:
        """End the turn with ``outcome``, unless it has one: the first ending stands (a turn
        answered and then cancelled while being delivered was answered)."""
        if self.outcome is None:
            self.outcome = outcome
            self.failure = failure if outcome == "failed" else None

    def fields(self, now: float) -> dict[str, object]:
        """The log line's fields, the turn ending at ``now``."""
        first_text = None if self.first_text is None else round(self.first_text - self.started, 3)
        return {
            "turn_id": self.turn_id,
            "platform": self.platform,
            "conversation": self.conversation,
            "model": self.model,
            "rounds": self.rounds,
            "tools": list(self.tools),
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "first_text_seconds": first_text,
            "total_seconds": round(now - self.started, 3),
            "outcome": self.outcome or "failed",
            "failure": self.failure if self.outcome else "other",
            "retries": self.retries,
            "delivered": self.delivered,
        }


def report(record: TurnRecord, now: float) -> None:
    """Write the turn's ``turn finished`` line and count it in the metrics."""
    fields = record.fields(now)
    log.info("turn finished", extra={"fields": fields})
    outcome = str(fields["outcome"])
    label = f"failed_{fields['failure']}" if outcome == "failed" else outcome
    TURNS.labels(platform=record.platform, outcome=label).inc()
    if record.first_text is not None:
        FIRST_TEXT_SECONDS.labels(platform=record.platform).observe(
            record.first_text - record.started
        )
