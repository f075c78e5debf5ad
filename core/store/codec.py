"""How a message is written in a store: one JSON document per message, through pydantic.

Both stores use it, so the memory store fails on exactly the messages the SQLite store would
fail on, and a loaded message is always a fresh object.
"""

from __future__ import annotations

from pydantic import TypeAdapter, ValidationError

from core.messages import Message

__all__ = ["decode_message", "encode_message", "explain"]

_MESSAGE: TypeAdapter[Message] = TypeAdapter(Message)


def encode_message(message: Message) -> str:
    """The message as JSON text; raises ``PydanticSerializationError`` for a value JSON cannot
    hold (such as an arbitrary object in a tool call's arguments)."""
    return _MESSAGE.dump_json(message).decode()


def decode_message(text: str | bytes) -> Message:
    """The message back from its JSON text; raises ``ValidationError``."""
    return _MESSAGE.validate_json(text)


def explain(error: ValidationError) -> str:
    """The first problem of a validation error, on one line: ``tool_calls.0.id: Field required``."""
    first = error.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"])
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{where or 'message'}: {first['msg']}{more}"
