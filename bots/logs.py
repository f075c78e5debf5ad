"""Log lines as text or as one JSON object each, every line written during a turn tagged with it.

An operator following one answer greps its turn id: the worker sets :data:`TURN_ID` while it
answers a turn (:func:`turn_context`), and :class:`TurnIdFilter`, installed on the handler by
:func:`configure_logging`, copies it onto every record logged meanwhile — by the engine, the
live reply, a surface or the store alike, none of which need to know about it. asyncio tasks
copy the context they are created in, so tasks an answer starts (its live reply's flusher, its
tools) carry the id too.

Structured lines pass their fields as ``extra={"fields": {...}}``: JSON puts them beside
``time``, ``level``, ``logger`` and ``message``; text appends them as ``key=value`` pairs. Other
``extra`` attributes (aiohttp's access log has some) reach JSON only, so text lines stay as they
always were.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal, TextIO

__all__ = [
    "TURN_ID",
    "JsonFormatter",
    "LogFormat",
    "TextFormatter",
    "TurnIdFilter",
    "configure_logging",
    "log_handler",
    "set_log_format",
    "turn_context",
]

LogFormat = Literal["text", "json"]

TURN_ID: ContextVar[int | None] = ContextVar("relaybot_turn_id", default=None)
"""The journal id of the turn being answered by the current task, if any."""

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


@contextmanager
def turn_context(turn_id: int) -> Iterator[None]:
    """Tag the lines logged inside the block (and by tasks it starts) with ``turn_id``."""
    token = TURN_ID.set(turn_id)
    try:
        yield
    finally:
        TURN_ID.reset(token)


class TurnIdFilter(logging.Filter):
    """Adds ``turn_id`` to a record logged while a turn is answered (never removes one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        turn_id = TURN_ID.get()
        if turn_id is not None and not hasattr(record, "turn_id"):
            record.turn_id = turn_id
        return True


def _fields(record: logging.LogRecord) -> Mapping[str, object]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, Mapping) else {}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``message``,
    the turn id, the record's fields and any other extras, and ``exception`` when there is one.
    A value JSON cannot hold is written as its ``str``."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRIBUTES and name != "fields":
                line.setdefault(name, value)
        for name, value in _fields(record).items():
            line.setdefault(name, value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The classic ``time LEVEL logger: message`` line, then the record's fields as
    ``key=value`` pairs, or ``[turn N]`` on a plain line logged during a turn."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = _fields(record)
        if fields:
            return line + "".join(f" {name}={_text_value(value)}" for name, value in fields.items())
        turn_id = getattr(record, "turn_id", None)
        return line if turn_id is None else f"{line} [turn {turn_id}]"


def _text_value(value: object) -> str:
    """A value that reads as one token: lists comma-joined, ``-`` for none, text with spaces
    or quotes in JSON quotes."""
    if value is None:
        return "-"
    if isinstance(value, list | tuple):
        return ",".join(str(item) for item in value) or "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    text = str(value)
    if not text or any(c.isspace() or c in '"=' for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text


def _formatter(log_format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def log_handler(log_format: LogFormat = "text", stream: TextIO | None = None) -> logging.Handler:
    """A handler writing to ``stream`` (stderr) in ``log_format``, turn ids added."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(_formatter(log_format))
    handler.addFilter(TurnIdFilter())
    return handler


def configure_logging(*, level: int | str, log_format: LogFormat) -> None:
    """Log to stderr at ``level`` in ``log_format`` — unless the root logger has handlers
    already (an embedding program's, or pytest's), as :func:`logging.basicConfig` does."""
    logging.basicConfig(level=level, handlers=[log_handler(log_format)])


def set_log_format(log_format: LogFormat) -> None:
    """Switch the handlers :func:`configure_logging` installed to ``log_format`` (once the
    settings, which may name it, have been read)."""
    for handler in logging.getLogger().handlers:
        if any(isinstance(f, TurnIdFilter) for f in handler.filters):
            handler.setFormatter(_formatter(log_format))
