"""``relaybot console``: chat with the model in a terminal.

The session is one conversation, kept in the configured store (SQLite by default); ``/reset``
starts a new one and ``/exit`` (or end of input) leaves. On a terminal the reply grows in
place, rendered with rich, and Ctrl-C stops the answer being written; piped, every line of
standard input is one message and every answer is printed once, as plain text.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import threading
import uuid
from collections.abc import Callable
from contextlib import aclosing, suppress

from rich.console import Console

from adapters.console_surface import ConsoleSurface
from adapters.live import LiveReply
from bots.replies import NEW_CONVERSATION, THINKING
from bots.runtime import Runtime, edit_budget
from bots.settings import Settings
from bots.tasks import running_task
from core.engine import TurnRequest
from core.messages import ConversationKey

__all__ = ["ConsoleBot", "run_console"]

HELP = "Type a message. /reset starts a new conversation, /exit leaves."
PROMPT = "[bold cyan]you \N{SINGLE RIGHT-POINTING ANGLE QUOTATION MARK}[/] "


class ConsoleBot:
    """The terminal chat loop over a running :class:`~bots.runtime.Runtime`."""

    def __init__(self, runtime: Runtime, console: Console, *, interactive: bool) -> None:
        self._runtime = runtime
        self._console = console
        self._interactive = interactive
        self._budget = edit_budget(runtime.settings)
        self._session = _new_session()

    async def run(self, read_line: Callable[[], str | None]) -> None:
        """Answer lines until ``/exit`` or end of input (``read_line`` returns ``None``)."""
        while (line := await _in_thread(read_line)) is not None:
            text = line.strip()
            if not text:
                continue
            if text in ("/exit", "/quit"):
                return
            if text == "/reset":
                self._session = _new_session()
                self._say(NEW_CONVERSATION)
                continue
            if text == "/help":
                self._say(HELP)
                continue
            await self.answer(text)

    async def answer(self, text: str) -> None:
        """One turn, rendered as it streams. Ctrl-C on a terminal stops it, not the program."""
        turn = running_task()
        surface = ConsoleSurface(self._console, live=self._interactive)
        reply = LiveReply(
            surface,
            self._budget,
            placeholder=THINKING if self._interactive else None,
            show_reasoning=self._runtime.settings.llm.show_reasoning,
            name=f"console {self._session}",
        )
        request = TurnRequest(
            key=ConversationKey(
                platform="console", workspace="local", channel="terminal", thread=self._session
            ),
            user_id="local",
            user_name="you",
            text=text,
            platform="a terminal chat",
        )
        with _stop_on_interrupt(turn, enabled=self._interactive):
            try:
                async with reply, aclosing(self._runtime.engine.run_turn(request)) as events:
                    async for event in events:
                        reply.feed(event)
            except asyncio.CancelledError:
                if turn.uncancel() > 0:  # cancelled from elsewhere, not by Ctrl-C
                    raise

    def _say(self, line: str) -> None:
        self._console.print(line, style="dim" if self._interactive else None, highlight=False)


async def run_console(settings: Settings, *, console: Console | None = None) -> int:
    """``relaybot console``. Returns the exit status."""
    console = console or Console()
    interactive = console.is_terminal and console.is_interactive

    def announce(line: str) -> None:
        style = "dim" if interactive else None
        console.print(f"relaybot: {line}", style=style, highlight=False, soft_wrap=True)

    async with Runtime.start(settings, announce=announce) as runtime:
        bot = ConsoleBot(runtime, console, interactive=interactive)
        if interactive:
            console.print(f"relaybot · {runtime.endpoint.model} · {HELP}", style="dim")
        await bot.run(_prompt_reader(console) if interactive else _plain_reader())
    return 0


def _new_session() -> str:
    return uuid.uuid4().hex[:12]


def _prompt_reader(console: Console) -> Callable[[], str | None]:
    def read() -> str | None:
        try:
            return console.input(PROMPT)
        except EOFError:
            return None

    return read


def _plain_reader() -> Callable[[], str | None]:
    def read() -> str | None:
        line = sys.stdin.readline()
        return line if line else None

    return read


async def _in_thread(read_line: Callable[[], str | None]) -> str | None:
    """Read a line without blocking the event loop, on a daemon thread (so a pending read
    never keeps the process alive at exit)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str | None] = loop.create_future()

    def work() -> None:
        try:
            result: str | None = read_line()
        except BaseException as error:  # handed to the waiting task
            loop.call_soon_threadsafe(_settle, future, None, error)
        else:
            loop.call_soon_threadsafe(_settle, future, result, None)

    threading.Thread(target=work, name="console input", daemon=True).start()
    return await future


def _settle(
    future: asyncio.Future[str | None], result: str | None, error: BaseException | None
) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class _stop_on_interrupt:
    """While a reply streams on a terminal, Ctrl-C cancels that turn instead of the program."""

    def __init__(self, task: asyncio.Task[object], *, enabled: bool) -> None:
        self._task = task
        self._enabled = enabled
        self._installed = False

    def __enter__(self) -> None:
        if self._enabled:
            with suppress(NotImplementedError, RuntimeError):
                asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self._task.cancel)
                self._installed = True

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)
