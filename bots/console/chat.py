"""``relaybot console``: chat with the model in a terminal.

The session is one conversation, kept in the configured store (SQLite by default); ``/new``
(or ``/reset``) starts a new one and ``/exit`` (or end of input) leaves. ``/attach PATH`` adds a
local file to the next message (:mod:`bots.console.files`: read and prepared at once, so a
file that cannot be sent is said then; the prompt names what is attached), ``/attach`` alone
lists them and ``/detach`` drops them. The other ``/…`` lines
are relaybot's commands (:mod:`bots.commands`: ``/model``, ``/prompt``, ``/usage``, ``/help``),
run with the console as its own admin; an unknown one gets the help and never reaches the
model. On a terminal the reply grows in
place, rendered with rich, and Ctrl-C stops the answer being written; keys typed while it
is written are neither shown nor kept (see :func:`_keys_held`). Piped, every line of standard
input is one message and every answer is printed once, as plain text.

Each line goes through the store's turn journal as a chat platform's message does: accepted
(``console:<session>:<n>``), taken by this process's :class:`~bots.turns.TurnWorker`, and
answered by it. So a console killed mid-answer leaves its turn in the store, and the next
console started on the same store finishes it before reading its first line: the answer is
written again and printed (a turn whose tool had run is not run again: it ends with
:data:`~bots.replies.INTERRUPTED`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from rich.console import Console
from rich.markup import escape

from adapters.budget import EditBudget
from adapters.console_surface import ConsoleSurface
from adapters.live import LiveReply
from adapters.surface import MessageRef, Surface
from bots.commands import NAMES, Commands, Invoker, Where, parse
from bots.console.files import ATTACH_HELP, Attached
from bots.replies import BROKEN, NEW_CONVERSATION, THINKING
from bots.runtime import Runtime
from bots.settings import Settings
from bots.turns import TurnWorker, worker_timing
from core.messages import ConversationKey, UserMessage
from core.store import Lease, StoreError, Turn

if sys.platform != "win32":
    import termios

__all__ = ["ConsoleBot", "run_console"]

log = logging.getLogger("relaybot.console")

HELP = "Type a message. /new (or /reset) starts a new conversation, /exit leaves."
WORKSPACE, CHANNEL, USER = "local", "terminal", "local"
"""The console's conversation key parts and its one user (who is its own admin)."""
PROMPT = "[bold cyan]you{attached} \N{SINGLE RIGHT-POINTING ANGLE QUOTATION MARK}[/] "
PLATFORM = "a terminal"
CLAIM_TTL = 24 * 3600.0
EARLIER = "relaybot: the answer to “{question}”, left unfinished by an earlier session:"


class ConsoleBot:
    """The terminal chat loop over a running :class:`~bots.runtime.Runtime`."""

    def __init__(self, runtime: Runtime, console: Console, *, interactive: bool) -> None:
        self._runtime = runtime
        self._console = console
        self._interactive = interactive
        self._session = _new_session()
        self._asked = 0  # lines accepted in this session
        settings = runtime.settings
        self._attached = Attached(settings.attachments)  # files for the next message
        self._screen = _Screen(
            console, runtime.budget, interactive=interactive,
            show_reasoning=settings.llm.show_reasoning, session=lambda: self._session,
        )  # fmt: skip
        self._timing = worker_timing(settings.store)
        self._worker = TurnWorker(
            store=runtime.store, engine=runtime.engine, platform=self._screen,
            budget=self._screen.budget, timing=self._timing, name="console",
            limits=runtime.settings.limits.usage_limits(),
        )  # fmt: skip
        self._commands = Commands(
            store=runtime.store, models=runtime.models,
            limits=runtime.settings.limits.usage_limits(), admins=frozenset({USER}),
            stops=runtime.stops, worker=self._worker,
        )  # fmt: skip

    async def run(self, read_line: Callable[[], str | None]) -> None:
        """Finish what an earlier console left in the store, then answer lines until
        ``/exit`` or end of input (``read_line`` returns ``None``)."""
        await self._worker.start()
        try:
            await self._recovered()
            while (line := await _in_thread(read_line)) is not None:
                text = line.strip()
                if not text:
                    continue
                if text in ("/exit", "/quit"):
                    return
                if text in ("/new", "/reset"):
                    self._session, self._asked = _new_session(), 0
                    self._say(NEW_CONVERSATION)
                    continue
                if text == "/detach":
                    self._say(self._attached.detach())
                    continue
                if text == "/attach" or text.startswith("/attach "):
                    self._say(await self._attached.add(text.removeprefix("/attach")))
                    continue
                if text.startswith("/"):
                    await self._command(text)
                    continue
                await self.answer(text)
        finally:
            await self._worker.close()

    def prompt(self) -> str:
        """The prompt's rich markup, naming the files that go with the next message."""
        names = self._attached.names()
        return PROMPT.format(attached=f" [dim]{escape(f'[{names}]')}[/dim]" if names else "")

    async def answer(self, text: str) -> None:
        """One turn, rendered as it streams. Ctrl-C on a terminal stops it, not the program."""
        try:
            lease = await self._accepted(text)
        except StoreError:
            log.exception("could not accept a line of session %s", self._session)
            self._say(BROKEN)
            return
        interactive = self._interactive
        stop = _stop_on_interrupt(lambda: self._worker.stop(lease.turn.id), enabled=interactive)
        with _keys_held(enabled=interactive), stop:
            await self._worker.answer(lease)

    async def _command(self, text: str) -> None:
        """A ``/…`` line: one of relaybot's commands, never a message to the model."""
        command = parse(text)
        where = Where(
            platform="console", workspace=WORKSPACE, channel=CHANNEL, thread=self._session
        )
        try:
            answer = await self._commands.run(
                command, where=where, invoker=Invoker(user=USER, admin=True)
            )
        except StoreError:
            log.exception("could not run the command %r", command.name)
            self._say(BROKEN)
            return
        helped = command.name == "help" or command.name not in NAMES
        if helped:
            self._say(HELP)
        self._say(answer.text)
        if helped:  # after relaybot's commands: the console's own
            self._say(ATTACH_HELP)

    async def _accepted(self, text: str) -> Lease:
        """The line, with the files attached to it, as a turn of the journal, taken by this
        console's worker. The files are let go once it is accepted."""
        store = self._runtime.store
        self._asked += 1
        key = ConversationKey(
            platform="console", workspace=WORKSPACE, channel=CHANNEL, thread=self._session
        )
        question = UserMessage(
            text=text, author_id=USER, author_name="you", attachments=self._attached.message()
        )
        turn = await store.accept(
            event_id=f"console:{self._session}:{self._asked}", key=key,
            order=f"{self._asked:012d}", platform=PLATFORM, claim_ttl=CLAIM_TTL,
            question=question,
        )  # fmt: skip
        self._attached.clear()
        lease = await store.take(
            key, owner=self._worker.owner, lease_seconds=self._timing.lease_seconds
        )
        if turn is None or lease is None or lease.turn.id != turn.id:
            raise StoreError(f"the line could not be accepted and taken in session {key}")
        return lease

    async def _recovered(self) -> None:
        """Wait until what the worker's recovery started at start (an earlier console's
        turns) is done, so that it is printed before the first prompt."""
        await self._worker.idle()

    def _say(self, line: str) -> None:
        style = "dim" if self._interactive else None
        self._console.print(line, style=style, highlight=False, markup=False)


class _Screen:
    """The terminal as the worker's :class:`~bots.turns.Platform`. A turn it prepared (this
    session's) streams in place on a terminal; the notices and answers recovery shows for an
    earlier console print once, as plain text — what that console drew is on its own screen,
    nothing here to take back — under a line naming the question."""

    def __init__(
        self,
        console: Console,
        budget: EditBudget,
        *,
        interactive: bool,
        show_reasoning: bool,
        session: Callable[[], str],
    ) -> None:
        self._console = console
        self.budget = budget
        self._interactive = interactive
        self._show_reasoning = show_reasoning
        self._session = session
        self._prepared: set[int] = set()
        self._announced: set[int] = set()

    async def prepare(self, lease: Lease) -> Lease:
        self._prepared.add(lease.turn.id)
        return lease

    async def surface(self, turn: Turn) -> ConsoleSurface:
        if turn.key.thread != self._session() and turn.id not in self._announced:
            self._announced.add(turn.id)
            question = " ".join(turn.question.text.split())
            question = question if len(question) <= 60 else question[:59] + "…"
            style = "dim" if self._interactive else None
            line = EARLIER.format(question=question)
            self._console.print(line, style=style, highlight=False, markup=False, soft_wrap=True)
        live = self._interactive and turn.id in self._prepared
        return ConsoleSurface(self._console, live=live)

    def reply(
        self,
        turn: Turn,
        surface: Surface,
        *,
        on_gone: Callable[[], None],
        on_posted: Callable[[tuple[MessageRef, ...]], Awaitable[None]],
    ) -> LiveReply:
        live = self._interactive and turn.id in self._prepared
        return LiveReply(
            surface, self.budget, placeholder=THINKING if live else None,
            show_reasoning=self._show_reasoning, on_gone=on_gone, on_posted=on_posted,
            name=f"console {turn.key.thread} turn {turn.id}",
        )  # fmt: skip

    async def finished(self, turn: Turn) -> None:
        self._prepared.discard(turn.id)


async def run_console(settings: Settings, *, console: Console | None = None) -> int:
    """``relaybot console``. Returns the exit status."""
    console = console or Console()
    interactive = console.is_terminal and console.is_interactive

    notices = Console(stderr=True)  # as ``relaybot ask``: piped, stdout holds only answers

    def announce(line: str) -> None:
        style = "dim" if interactive else None
        notices.print(f"relaybot: {line}", style=style, highlight=False, soft_wrap=True)

    # A terminal shows every token as it comes: its reads are not gathered.
    async with Runtime.start(settings, announce=announce, read_interval=0.0) as runtime:
        bot = ConsoleBot(runtime, console, interactive=interactive)
        if interactive:
            console.print(f"relaybot · {runtime.endpoint.model} · {HELP}", style="dim")
        await bot.run(_prompt_reader(console, bot.prompt) if interactive else _plain_reader())
    return 0


def _new_session() -> str:
    return uuid.uuid4().hex[:12]


def _prompt_reader(console: Console, prompt: Callable[[], str]) -> Callable[[], str | None]:
    def read() -> str | None:
        try:
            return console.input(prompt())
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
    """While a reply streams on a terminal, Ctrl-C stops that answer instead of the program."""

    def __init__(self, stop: Callable[[], object], *, enabled: bool) -> None:
        self._stop = stop
        self._enabled = enabled
        self._installed = False

    def __enter__(self) -> None:
        if self._enabled:
            with suppress(NotImplementedError, RuntimeError):
                asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self._stop)
                self._installed = True

    def __exit__(self, *exc: object) -> None:
        if self._installed:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)


@contextmanager
def _keys_held(*, enabled: bool) -> Iterator[None]:
    """While a reply streams on a terminal, the terminal echoes no key, and what was typed is
    dropped when the reply ends.

    rich redraws the reply by moving the cursor up the lines it drew; an echoed key (Ctrl-C's
    ``^C`` too, which lands past the last column and wraps) moves the cursor under it, so the
    next redraw starts a line low and leaves a copy of the reply's first line. Keys typed
    meanwhile are dropped rather than kept: the prompt's ``input()`` cannot show them again,
    so kept keys would be an invisible start of the next message.
    """
    saved = _echo_off() if enabled else None
    try:
        yield
    finally:
        if saved is not None:
            _restore(*saved)


def _echo_off() -> tuple[int, list[Any]] | None:
    """Turn off standard input's echo; its descriptor and former mode, or ``None`` when it is
    not a terminal. Ctrl-C still sends SIGINT: only echo changes."""
    if sys.platform == "win32":
        return None
    try:
        fd = sys.stdin.fileno()
        if not os.isatty(fd):
            return None
        saved = termios.tcgetattr(fd)
        quiet = [*saved]
        quiet[3] &= ~termios.ECHO  # the local modes
        termios.tcsetattr(fd, termios.TCSANOW, quiet)
    except (AttributeError, ValueError, OSError, termios.error):
        return None
    return fd, saved


def _restore(fd: int, saved: list[Any]) -> None:
    """Drop the keys typed since :func:`_echo_off`, then give the terminal its mode back."""
    if sys.platform == "win32":
        return
    with suppress(OSError, termios.error):
        termios.tcflush(fd, termios.TCIFLUSH)
        termios.tcsetattr(fd, termios.TCSANOW, saved)
