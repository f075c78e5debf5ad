"""Local files attached to the console's next message: ``/attach PATH``.

A file is read and prepared when it is attached (:func:`core.attachments.prepare`), so the
person learns at once what the model will be sent ("an image, 640 by 480 PNG") or why the file
cannot go (not found, a folder, over the size cap, a type relaybot does not read) — and a file
that cannot go is not attached: the person is right there to choose another. The size cap is
checked before reading, and no more than the cap is ever read (a file that grows meanwhile, a
device). The prepared files wait in memory until the next message takes them
(:meth:`Attached.message`, with the message's text limit applied); nothing is written anywhere.

A path may start with ``~`` and may be quoted (``/attach "my notes.txt"``, as a shell or a
file manager's copied path gives it); a path with spaces also works unquoted.
"""

from __future__ import annotations

import asyncio
import mimetypes
import stat
from pathlib import Path

from core.attachments import (
    AttachmentSettings,
    Prepared,
    Skipped,
    as_attachment,
    describe,
    display_name,
    fit_message,
    prepare,
)
from core.messages import Attachment

__all__ = ["ATTACH_HELP", "MAX_FILES", "Attached"]

ATTACH_HELP = (
    "/attach PATH adds a file (an image, a PDF, a text or code file) to your next message; "
    "/attach alone lists them, /detach drops them."
)
MAX_FILES = 10
"""Files that go with one message (Discord's limit too)."""
_PROMPT_NAMES = 3
"""File names the prompt shows; more read "+2"."""


class Attached:
    """The files that go with the next message, prepared (see the module docstring). Each
    method returns the line to show the person, when there is one."""

    def __init__(self, settings: AttachmentSettings) -> None:
        self._settings = settings
        self._files: list[Prepared] = []

    async def add(self, argument: str) -> str:
        """``/attach ARGUMENT``: the file at that path attached, or why it is not; with no
        argument, the files attached so far."""
        if not argument.strip():
            return self.listing()
        if len(self._files) >= MAX_FILES:
            return f"One message takes {MAX_FILES} files at most; /detach drops them."
        path = _path(argument)
        name = display_name(path.name or str(path))
        try:
            data = await asyncio.to_thread(_read, path, self._settings.max_file_bytes)
        except _NotRead as error:
            return f'Cannot attach "{name}": {error}.'
        mime, _ = mimetypes.guess_type(path.name)
        prepared = await prepare(name, mime, data, settings=self._settings)
        if isinstance(prepared, Skipped):
            return f"{prepared.note[:-1]}, so it is not attached."
        self._files.append(prepared)
        return f'Attached "{prepared.name}": {describe(prepared)}. It goes with your next message.'

    def listing(self) -> str:
        if not self._files:
            return "No files attached. " + ATTACH_HELP
        lines = [f'"{part.name}": {describe(part)}' for part in self._files]
        return "Attached to your next message: " + "; ".join(lines) + "."

    def names(self) -> str:
        """The attached files' names, for the prompt ("" when none)."""
        names = [part.name for part in self._files[:_PROMPT_NAMES]]
        more = len(self._files) - len(names)
        return ", ".join(names) + (f" +{more}" if more else "")

    def message(self) -> tuple[Attachment, ...]:
        """What the next message carries, under the message's text limit."""
        fitted = fit_message(self._files, limit=self._settings.max_message_chars)
        return tuple(as_attachment(part) for part in fitted)

    def clear(self) -> None:
        """The message took them."""
        self._files.clear()

    def detach(self) -> str:
        """``/detach``: drop every attached file."""
        count = len(self._files)
        self._files.clear()
        if not count:
            return "No files were attached."
        return f"Dropped {count} attached file{'s' if count != 1 else ''}."


class _NotRead(Exception):
    """Why a path cannot be attached, in a person's words."""


def _path(argument: str) -> Path:
    """The path the argument names: surrounding quotes removed, ``~`` expanded."""
    text = argument.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    return Path(text).expanduser()


def _read(path: Path, cap: int) -> bytes:
    """At most ``cap`` bytes of a regular file (runs in a worker thread)."""
    try:
        info = path.stat()
        if stat.S_ISDIR(info.st_mode):
            raise _NotRead("it is a folder")
        if not stat.S_ISREG(info.st_mode):
            raise _NotRead("it is not a regular file")
        if info.st_size > cap:
            raise _NotRead(f"it is {_megabytes(info.st_size)}, over the {_megabytes(cap)} limit")
        with path.open("rb") as file:
            data = file.read(cap + 1)
    except FileNotFoundError:
        raise _NotRead("there is no such file") from None
    except PermissionError:
        raise _NotRead("permission to read it is denied") from None
    except OSError as error:
        raise _NotRead(error.strerror or type(error).__name__) from None
    if len(data) > cap:
        raise _NotRead(f"it is over the {_megabytes(cap)} limit")
    return data


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"
