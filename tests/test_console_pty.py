"""``relaybot console`` on a pseudo-terminal, read as a screen: what a user of a terminal sees.

The console runs as a real process on a pty (its controlling terminal, so Ctrl-C is the byte
``\\x03`` and the kernel sends SIGINT), with the offline model pacing its words. Its output
goes through :class:`Screen`, a small terminal (80 columns, the cursor moves rich's ``Live``
uses, and the wrap an xterm makes after the last column), because rich redraws the reply many
times: only the screen tells whether a line was left behind twice.
"""

from __future__ import annotations

import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
from collections.abc import Callable, Iterator
from fcntl import ioctl
from pathlib import Path

import pytest

from bots.offline.model import INTRO
from bots.replies import STOPPED

COLUMNS, ROWS = 80, 24
WAIT = 30.0
"""The bound on every wait for the console: a Python start-up, on a machine that may be loaded."""
PROMPT = "you \N{SINGLE RIGHT-POINTING ANGLE QUOTATION MARK}"
QUESTION = "count to 50"
ANSWER = INTRO + " " + ", ".join(str(n) for n in range(1, 51)) + "."
CONTROLLING_TTY = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)
"""Run as ``python -c``: make the pty (standard input, in a new session) this process's
controlling terminal, then become ``python -m bots console``."""

_CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])|\x1b\][^\x07]*\x07|\x1b[^\[\]]")


class Screen:
    """A terminal that keeps every line (no scrolling away) and understands what rich sends."""

    def __init__(self, columns: int = COLUMNS, rows: int = ROWS) -> None:
        self.lines: list[list[str]] = [[]]
        self._columns, self._rows = columns, rows
        self._row = self._column = 0
        self._wrap_pending = False  # after the last column, as an xterm: the next glyph wraps

    def feed(self, text: str) -> None:
        at = 0
        for match in _CSI.finditer(text):
            self._glyphs(text[at : match.start()])
            self._control(match[1] or "", match[2] or "")
            at = match.end()
        self._glyphs(text[at:])

    def text(self) -> list[str]:
        return ["".join(line).rstrip() for line in self.lines]

    def _glyphs(self, text: str) -> None:
        for char in text:
            if char == "\r":
                self._column, self._wrap_pending = 0, False
            elif char == "\n":
                self._move_to(self._row + 1)
            elif char == "\b":
                self._column, self._wrap_pending = max(0, self._column - 1), False
            elif char >= " ":
                self._put(char)

    def _put(self, char: str) -> None:
        if self._wrap_pending:
            self._move_to(self._row + 1)
            self._column, self._wrap_pending = 0, False
        line = self.lines[self._row]
        line.extend(" " * (self._column + 1 - len(line)))
        line[self._column] = char
        if self._column == self._columns - 1:
            self._wrap_pending = True
        else:
            self._column += 1

    def _control(self, params: str, final: str) -> None:
        count = int(params) if params.isdigit() else 1
        if final == "A":  # cursor up, never above the top of the visible rows
            self._move_to(max(self._row - count, len(self.lines) - self._rows, 0))
        elif final == "K":  # erase in line: 2 whole, else from the cursor
            del self.lines[self._row][0 if params == "2" else self._column :]
        elif final == "G":  # cursor to a column
            self._column = count - 1
        else:  # colours, showing the cursor: nothing moves
            return
        self._wrap_pending = False

    def _move_to(self, row: int) -> None:
        self._row = row
        self.lines.extend([] for _ in range(row + 1 - len(self.lines)))


class Terminal:
    """``python -m bots console`` on a pty, and the screen its output draws."""

    def __init__(self, process: subprocess.Popen[bytes], master: int) -> None:
        self.process = process
        self.screen = Screen()
        self._master = master

    def type(self, keys: str) -> None:
        os.write(self._master, keys.encode())

    def wait_for(self, seen: Callable[[list[str]], bool], what: str) -> list[str]:
        """Read output until ``seen(screen lines)``; fail after :data:`WAIT` seconds."""
        while not seen(self.screen.text()):
            ready, _, _ = select.select([self._master], [], [], WAIT)
            chunk = self._read() if ready else b""
            if not chunk:
                pytest.fail(f"never saw {what}; the screen:\n" + "\n".join(self.screen.text()))
            self.screen.feed(chunk.decode(errors="replace"))
        return self.screen.text()

    def exit(self) -> int:
        self.type("/exit\r")
        while chunk := self._read():  # until the console closes the pty
            self.screen.feed(chunk.decode(errors="replace"))
        return self.process.wait(WAIT)

    def _read(self) -> bytes:
        try:
            return os.read(self._master, 65536)
        except OSError:  # EIO: the console is gone
            return b""


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[Terminal]:
    master, slave = os.openpty()
    ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    dropped = ("RELAYBOT_", "OFOX_", "TTY_", "FORCE_COLOR", "NO_COLOR", "COLUMNS", "LINES")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env |= {
        "TERM": "xterm-256color",
        "RELAYBOT_STORE__URL": f"sqlite:///{tmp_path / 'relaybot.db'}",
        "RELAYBOT_LLM__OFFLINE_PACE": "0.1",
    }
    argv = [sys.executable, "-c", CONTROLLING_TTY, "-m", "bots", "console"]
    process = subprocess.Popen(
        argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
    )
    os.close(slave)
    try:
        terminal = Terminal(process, master)
        terminal.wait_for(lambda lines: lines[-1].startswith(PROMPT), "the first prompt")
        yield terminal
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(WAIT)
        os.close(master)


def prompts(lines: list[str]) -> list[int]:
    return [i for i, line in enumerate(lines) if line.startswith(PROMPT)]


def reply_after(lines: list[str], question: int) -> list[str]:
    """The lines between the prompt at ``question`` and the next prompt."""
    return lines[question + 1 : next(i for i in prompts(lines) if i > question)]


def prompted(times: int) -> Callable[[list[str]], bool]:
    return lambda lines: len(prompts(lines)) == times


def showing(words: str) -> Callable[[list[str]], bool]:
    """``words`` in the reply to the last question asked."""
    return lambda lines: words in " ".join(lines[prompts(lines)[-1] + 1 :])


def answered(lines: list[str]) -> bool:
    """The reply ended and the next prompt waits on the last line."""
    return len(prompts(lines)) >= 2 and lines[-1] == PROMPT


def test_ctrl_c_mid_answer_leaves_the_partial_answer_once_then_stopped(
    terminal: Terminal,
) -> None:
    for round_ in range(2):
        terminal.type(QUESTION + "\r")
        terminal.wait_for(showing("simple. 1, 2,"), "the answer under way")
        terminal.type("\x03")
        lines = terminal.wait_for(prompted(2 * round_ + 2), "a prompt")
        question = prompts(lines)[2 * round_]
        assert lines[question] == f"{PROMPT} {QUESTION}"
        *partial, stopped = reply_after(lines, question)
        assert stopped == STOPPED
        shown = " ".join(partial)
        assert ANSWER.startswith(shown), f"the partial answer once, as it was: {partial}"
        terminal.type("/reset\r")
        terminal.wait_for(prompted(2 * round_ + 3), "a prompt")

    assert terminal.exit() == 0
    lines = terminal.screen.text()
    assert " ".join(lines).count(INTRO) == 2, "one partial answer per question"
    assert lines.count(STOPPED) == 2
    assert lines[-2] == f"{PROMPT} /exit", "echo is back at the prompt"


def test_keys_typed_while_the_answer_streams_are_not_drawn_into_it(terminal: Terminal) -> None:
    terminal.type(QUESTION + "\r")
    terminal.wait_for(showing("simple. 1, 2,"), "the answer under way")
    terminal.type("xyz")
    terminal.wait_for(showing("5, 6,"), "more of the answer")
    terminal.type("abc\r")
    lines = terminal.wait_for(answered, "the end of the answer and a prompt")

    assert " ".join(reply_after(lines, prompts(lines)[0])) == ANSWER
    assert not any(key in line for line in lines for key in ("xyz", "abc"))
    assert terminal.exit() == 0, "the typed-ahead keys were dropped: the line is /exit"
    assert terminal.screen.text()[-2] == f"{PROMPT} /exit"
