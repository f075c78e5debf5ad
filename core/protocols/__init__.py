"""The wire protocols the LLM gateway speaks, sans-IO: request bodies in, events out.

``protocol_for("openai")`` or ``protocol_for("anthropic")`` gives the :class:`WireProtocol`
that ``core.client`` drives; its ``decoder()`` turns one response's SSE events into
:mod:`core.events`.
"""

from __future__ import annotations

from core.protocols.anthropic import AnthropicProtocol
from core.protocols.base import StreamDecoder, WireProtocol
from core.protocols.openai import OpenAIProtocol

__all__ = [
    "AnthropicProtocol",
    "OpenAIProtocol",
    "StreamDecoder",
    "WireProtocol",
    "protocol_for",
]


def protocol_for(name: str) -> WireProtocol:
    """The wire protocol called ``name`` (``"openai"`` or ``"anthropic"``, any case)."""
    match name.strip().lower():
        case "openai":
            return OpenAIProtocol()
        case "anthropic":
            return AnthropicProtocol()
    raise ValueError(f"unknown wire protocol {name!r}: expected 'openai' or 'anthropic'")
