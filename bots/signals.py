"""``until_stopped()``: a long-running bot's wait for SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from contextlib import suppress

__all__ = ["until_stopped"]


async def until_stopped() -> None:
    """Wait for SIGINT or SIGTERM (Ctrl-C alone where signal handlers are unavailable)."""
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    installed = []
    for number in (signal.SIGINT, signal.SIGTERM):
        with suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(number, stopped.set)
            installed.append(number)
    try:
        await stopped.wait()
    finally:
        for number in installed:
            loop.remove_signal_handler(number)
