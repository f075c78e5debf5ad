"""What the two wire-protocol tests share: literal SSE bytes fed through a protocol's stream
decoder, and the tool both request bodies declare."""

from __future__ import annotations

import pytest

from core.errors import LLMError
from core.events import StreamEvent
from core.messages import ToolSpec
from core.protocols import StreamDecoder
from core.sse import SSEDecoder

__all__ = ["WEATHER", "decoded", "fed", "raises_in_band"]

WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather for a city.",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)


def fed(decoder: StreamDecoder, wire: bytes, *, step: int = 0) -> list[StreamEvent]:
    """The events ``decoder`` gives for a response body fed in one piece, or ``step`` bytes at
    a time; the decoder is left open."""
    sse = SSEDecoder()
    events: list[StreamEvent] = []
    pieces = [wire[i : i + step] for i in range(0, len(wire), step)] if step else [wire]
    for piece in pieces:
        for event in sse.feed(piece):
            events.extend(decoder.feed(event))
    return events


def decoded(decoder: StreamDecoder, wire: bytes, *, step: int = 0) -> list[StreamEvent]:
    """Every event of a whole response body, as :func:`fed`, the decoder closed at the end."""
    return fed(decoder, wire, step=step) + decoder.close()


def raises_in_band(
    decoder: StreamDecoder,
    *,
    before: bytes,
    shown: list[StreamEvent],
    wire: bytes,
    error: type[LLMError],
    message: str,
) -> None:
    """``before`` decodes to ``shown``; then the one event in ``wire`` raises exactly ``error``
    with ``message``."""
    sse = SSEDecoder()
    assert [e for ev in sse.feed(before) for e in decoder.feed(ev)] == shown
    (event,) = sse.feed(wire)
    with pytest.raises(error) as raised:
        decoder.feed(event)
    assert type(raised.value) is error
    assert raised.value.message == message
