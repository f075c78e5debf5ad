"""``TaskOwner``: the tasks a bot starts outside a request — kept, named, logged, cancelled.

A chat platform wants its event acknowledged at once, so a bot answers in a task of its own.
Each such task is started through a ``TaskOwner``, which keeps a reference to it (asyncio only
holds weak ones), gives it a name, logs its failure (a cancellation is not a failure) and
cancels whatever still runs when the bot shuts down::

    owner = TaskOwner(log)
    owner.spawn(answer(message), name=f"slack turn {key}")
    ...
    await owner.close()

Beside it, :func:`running_task` (the task running the caller, for a Stop to cancel) and
:func:`cancel_and_wait` (cancel tasks and wait until they have ended).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["TaskOwner", "cancel_and_wait", "running_task"]

T = TypeVar("T")


class TaskOwner:
    def __init__(self, log: logging.Logger) -> None:
        self._log = log
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def __len__(self) -> int:
        """How many tasks still run."""
        return len(self._tasks)

    def spawn(self, work: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
        """Run ``work`` in a task this owner keeps until it ends."""
        if self._closed:
            work.close()
            raise RuntimeError(f"cannot start {name!r}: the bot is shutting down")
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            self._log.error("%s failed", task.get_name(), exc_info=error)

    async def wait(self) -> None:
        """Wait until every task has ended, those started meanwhile included."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def close(self) -> None:
        """Cancel every task still running and wait for them to end."""
        self._closed = True
        while self._tasks:
            await cancel_and_wait(*self._tasks)


def running_task() -> asyncio.Task[Any]:
    """The task running the caller (a coroutine run by ``asyncio.run`` or a task has one)."""
    task = asyncio.current_task()
    if task is None:
        raise RuntimeError("this must run in an asyncio task")
    return task


async def cancel_and_wait(*tasks: asyncio.Task[Any]) -> None:
    """Cancel ``tasks`` and wait until each has ended. Their results and errors are left on
    the tasks (not raised here); a cancellation of the caller still propagates."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
