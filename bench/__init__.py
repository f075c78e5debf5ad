"""Benchmarks that print ratios against named peers measured in the same run.

``python -m bench.sse`` compares Server-Sent Events decoders on the same bytes;
``python -m bench.stream`` compares the CPU a whole streamed answer costs through
:class:`core.client.LLMClient` and through the official ``openai`` and ``anthropic`` SDKs.

Absolute numbers depend on the machine; the ratios between peers measured interleaved in one
run are what to read.
"""

from __future__ import annotations

import select
import statistics
import subprocess
import time
from collections.abc import Sequence

__all__ = ["gateway_url", "median_ratio", "stop_gateway"]


def median_ratio(ours: Sequence[float], theirs: Sequence[float]) -> float:
    """The median of the paired per-round ratios ``ours[i] / theirs[i]``: peers measured in the
    same round share that round's noise, so pairing cancels much of it."""
    return statistics.median(a / b for a, b in zip(ours, theirs, strict=True) if b > 0)


def gateway_url(process: subprocess.Popen[str], timeout: float) -> str:
    """The URL a ``python -m tests.fakes.llm_gateway`` process prints once it listens."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    line = ""
    while not line.startswith("LISTENING "):
        remaining = deadline - time.monotonic()
        ready, _, _ = select.select([process.stdout], [], [], max(remaining, 0))
        if not ready:
            raise RuntimeError(f"the gateway did not start within {timeout:g} s")
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"the gateway exited with status {process.wait()}")
    return line.split()[1]


def stop_gateway(process: subprocess.Popen[str]) -> None:
    """Wait for a gateway process told to terminate (killed after 5 s); close its pipe."""
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()
