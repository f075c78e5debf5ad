"""Benchmarks that print ratios against named peers measured in the same run.

``python -m bench.sse`` compares Server-Sent Events decoders on the same bytes;
``python -m bench.stream`` compares the CPU a whole streamed answer costs through
:class:`core.client.LLMClient` and through the official ``openai`` and ``anthropic`` SDKs.

Absolute numbers depend on the machine; the ratios between peers measured interleaved in one
run are what to read.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

__all__ = ["median_ratio"]


def median_ratio(ours: Sequence[float], theirs: Sequence[float]) -> float:
    """The median of the paired per-round ratios ``ours[i] / theirs[i]``: peers measured in the
    same round share that round's noise, so pairing cancels much of it."""
    return statistics.median(a / b for a, b in zip(ours, theirs, strict=True) if b > 0)
