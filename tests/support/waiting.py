"""Waiting on a fake's state: the fakes keep state and send no events, so a test polls."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

__all__ = ["until"]


async def until(
    condition: Callable[[], object], what: str = "the condition", *, within: float | None = 20.0
) -> None:
    """Wait until ``condition()`` holds, at most ``within`` seconds (``None``: the caller bounds
    the wait); past that, an ``AssertionError`` names ``what`` was awaited."""
    try:
        async with asyncio.timeout(within):
            while not condition():  # noqa: ASYNC110 (nothing to wait on but the fakes' state)
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"not within {within} s: {what}") from None
