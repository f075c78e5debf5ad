"""Discord as a ``Surface``: one reply in one channel, thread or DM, as messages the bot sends
and edits.

A message's content is the answer in Discord Markdown (:func:`render`: tables as code blocks,
headings past ``###`` as bold lines), then the status line on a line of its own as subtext
(``-# Checking the weather in Paris…``, small and grey), or ``⚠️`` and the status for an error;
an empty answer shows only the status line. Either decoration adds at most 4 characters, the
room ``LiveReply`` keeps between the text and the status. While the reply streams, the last
message carries the bot's Stop button (a fresh ``discord.ui.View`` from ``stop_view`` for each
message that shows it); the final edit takes it away and stops that View.

Every send and edit passes ``AllowedMentions.none()``: nothing the model writes pings a user,
a role, ``@everyone`` or the person asked (set it as the client's default too). Messages are
sent with embeds suppressed, so links the model cites do not unfurl while the text grows; the
flag stays through every edit. An edit goes through ``channel.get_partial_message``: no fetch.

discord.py waits out a 429 itself, inside the call (up to ``max_ratelimit_timeout``), so a slow
edit is backpressure: ``LiveReply`` renders the newest state right before each call, so the
edit after a slow one carries all the text that arrived meanwhile.

Discord's failures are mapped here, once, into ``adapters.surface`` errors:

    ``NotFound`` (404; codes 10003 Unknown Channel, 10008 Unknown Message)  → MessageGone
    ``Forbidden`` (403), HTTP 401, or a code in :data:`FORBIDDEN`
        (missing access or permissions, archived or locked thread, …)     → SurfaceForbidden
    50035 Invalid Form Body, the content longer than allowed               → MessageTooLong
    ``RateLimited`` (a wait past ``max_ratelimit_timeout``), HTTP 429      → SurfaceRateLimited
    any other HTTP error, 5xx, timeout or network failure                  → SurfaceError

Messages name the action, the HTTP status and Discord's error code, never a token; the
library's exception is not chained.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol, TypedDict

import aiohttp
import discord

from adapters.surface import (
    Draft,
    MessageGone,
    MessageRef,
    MessageTooLong,
    SurfaceError,
    SurfaceForbidden,
    SurfaceLimits,
    SurfaceRateLimited,
)
from core.metrics import PLATFORM_CALLS

__all__ = ["FORBIDDEN", "MAX_LENGTH", "DiscordSurface", "MessageChannel", "content_for", "render"]

MAX_LENGTH = 2_000
"""Characters in one message's content."""
EMPTY = "(no answer)"
"""What a final message with no text and no status shows (Discord refuses an empty one)."""

GONE = frozenset({10003, 10008})  # Unknown Channel (the thread was deleted), Unknown Message
FORBIDDEN = frozenset(
    {
        50001,  # Missing Access
        50013,  # Missing Permissions
        50005,  # Cannot edit a message authored by another user
        50007,  # Cannot send messages to this user (DMs closed)
        50008,  # Cannot send messages in a non-text channel
        50024,  # Cannot execute action on this channel type
        40058,  # Cannot send messages in a forum channel
        50083,  # Operation on an archived thread
        160002,  # Cannot reply without permission to read message history
        160005,  # Thread is locked
    }
)
"""Discord error codes after which nothing more can be written to this reply (most arrive as
400, not 403); retrying cannot help."""
INVALID_FORM_BODY = 50035


class MessageChannel(Protocol):
    """Where a reply is written: a ``TextChannel``, ``Thread``, ``DMChannel``, ``VoiceChannel``,
    ``StageChannel`` or ``PartialMessageable`` (``client.get_partial_messageable(id)``)."""

    @property
    def id(self) -> int: ...

    async def send(
        self,
        content: str | None = ...,
        *,
        allowed_mentions: discord.AllowedMentions = ...,
        reference: discord.MessageReference = ...,
        view: discord.ui.View = ...,
        suppress_embeds: bool = ...,
    ) -> discord.Message: ...

    def get_partial_message(self, message_id: int, /) -> discord.PartialMessage: ...


class _SendOptions(TypedDict, total=False):
    reference: discord.MessageReference
    view: discord.ui.View


class _EditOptions(TypedDict, total=False):
    view: discord.ui.View | None


class DiscordSurface:
    """One reply in one Discord channel or thread. Make one per reply.

    ``stop_view`` makes the View with the Stop button; it is called once for each message that
    shows it while the reply streams (a View belongs to one message), and ``None`` shows no
    button. ``reply_to`` is the user's message the first message answers, when the bot replies
    inline instead of in a thread; the reply goes through even if that message was deleted.
    The budget scopes are the channel's (a thread is a channel of its own) and the bot's.
    """

    def __init__(
        self,
        channel: MessageChannel,
        *,
        stop_view: Callable[[], discord.ui.View] | None = None,
        reply_to: discord.PartialMessage | None = None,
        edit_interval: float = 1.0,
    ) -> None:
        self._channel = channel
        self._stop_view = stop_view
        self._reference = reply_to.to_reference(fail_if_not_exists=False) if reply_to else None
        self._views: dict[MessageRef, discord.ui.View] = {}  # the messages showing a Stop button
        self._limits = SurfaceLimits(
            max_length=MAX_LENGTH,
            edit_interval=edit_interval,
            # Discord counts creates and edits in one per-channel bucket: post_scopes stays None.
            budget_scopes=(f"discord.channel:{channel.id}", "discord.global"),
        )

    @property
    def limits(self) -> SurfaceLimits:
        return self._limits

    def render(self, markdown: str) -> str:
        return render(markdown)

    async def post(self, draft: Draft) -> MessageRef:
        options = _SendOptions()
        if self._reference is not None:
            options["reference"] = self._reference
        view = self._new_view(draft)
        if view is not None:
            options["view"] = view
        with _discord_errors("send message"):
            message = await self._channel.send(
                content_for(draft),
                allowed_mentions=discord.AllowedMentions.none(),
                suppress_embeds=True,
                **options,
            )
        ref = str(message.id)
        self._reference = None  # only the first message is a reply
        if view is not None:
            self._views[ref] = view
        return ref

    async def edit(self, ref: MessageRef, draft: Draft) -> None:
        options = _EditOptions()
        view = None if ref in self._views else self._new_view(draft)
        if draft.final:
            options["view"] = None  # the Stop button goes
        elif view is not None:
            options["view"] = view  # a message shown final before streams again (a rewind)
        with _discord_errors("edit message"):
            await self._channel.get_partial_message(int(ref)).edit(
                content=content_for(draft),
                allowed_mentions=discord.AllowedMentions.none(),
                **options,
            )
        if draft.final:
            self._drop_view(ref)
        elif view is not None:
            self._views[ref] = view

    async def delete(self, ref: MessageRef) -> None:
        try:
            with _discord_errors("delete message"):
                await self._channel.get_partial_message(int(ref)).delete()
        finally:
            self._drop_view(ref)

    def _new_view(self, draft: Draft) -> discord.ui.View | None:
        return None if draft.final or self._stop_view is None else self._stop_view()

    def _drop_view(self, ref: MessageRef) -> None:
        if (view := self._views.pop(ref, None)) is not None:
            view.stop()


def content_for(draft: Draft) -> str:
    """The content of a message showing ``draft``: its text, then its status line."""
    status = " ".join(draft.status.split()) if draft.status else ""
    if not (draft.text or status):
        status = EMPTY
    if not status:
        return draft.text
    line = f"⚠️ {status}" if draft.error else f"-# {status}"
    return f"{draft.text.rstrip()}\n{line}" if draft.text else line


# --- Discord Markdown ------------------------------------------------------------------------

_FENCE = re.compile(r"[ \t]*(`{3,}|~{3,})(.*)")
_HEADING = re.compile(r" {0,3}#{4,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*")
_DELIMITER_CELL = re.compile(r"[ \t]*:?-+:?[ \t]*")
_CELL_SEPARATOR = re.compile(r"(?<!\\)\|")
_CELL_MARKUP = re.compile(r"`+|\*\*")


def render(markdown: str) -> str:
    """``markdown`` in Discord's dialect. Pure; applying it twice changes nothing.

    A GitHub-style pipe table (a header row, a delimiter row of as many cells, the rows up to
    the first line without a ``|``) becomes the same table in a code block, its columns padded
    to line up (CJK characters count double), cells stripped of code and bold markers. A
    heading of level 4 to 6, which Discord shows as plain ``####``, becomes a bold line.
    Everything else — code blocks above all — is left as it is.

    While an answer streams, a table's column widths follow its widest row so far: earlier
    rows may be re-padded as it grows.
    """
    lines = markdown.split("\n")
    out: list[str] = []
    fence: str | None = None  # the run of the open code fence
    i = 0
    while i < len(lines):
        line = lines[i]
        if fence is not None:
            out.append(line)
            if (m := _FENCE.fullmatch(line)) and _closes(fence, m):
                fence = None
            i += 1
        elif m := _FENCE.fullmatch(line):
            if m[1][0] == "~" or "`" not in m[2]:
                fence = m[1]
            out.append(line)
            i += 1
        elif end := _table_end(lines, i):
            out.extend(_table_block(lines[i:end]))
            i = end
        else:
            heading = _HEADING.fullmatch(line)
            out.append(_bold(heading[1]) if heading and heading[1] else line)
            i += 1
    return "\n".join(out)


def _closes(run: str, m: re.Match[str]) -> bool:
    return m[1][0] == run[0] and len(m[1]) >= len(run) and not m[2].strip()


def _bold(title: str) -> str:
    return title if title.startswith("**") and title.endswith("**") else f"**{title}**"


def _table_end(lines: list[str], start: int) -> int:
    """The index after the table starting at ``lines[start]``, or 0 if none starts there."""
    if start + 1 >= len(lines) or "|" not in lines[start] or "|" not in lines[start + 1]:
        return 0
    delimiter = _cells(lines[start + 1])
    if not all(_DELIMITER_CELL.fullmatch(cell) for cell in delimiter):
        return 0
    if len(_cells(lines[start])) != len(delimiter):
        return 0
    end = start + 2
    while end < len(lines) and "|" in lines[end] and not _FENCE.fullmatch(lines[end]):
        end += 1
    return end


def _cells(line: str) -> list[str]:
    row = line.strip()
    row = row[1:] if row.startswith("|") else row
    row = row[:-1] if row.endswith("|") and not row.endswith("\\|") else row
    return _CELL_SEPARATOR.split(row)


def _table_block(rows: list[str]) -> list[str]:
    header, delimiter, *body = rows
    table = [[_cell_text(cell) for cell in _cells(row)] for row in (header, *body)]
    columns = max(map(len, table))
    table = [row + [""] * (columns - len(row)) for row in table]
    widths = [max(1, *(_width(row[c]) for row in table)) for c in range(columns)]
    aligns = [_alignment(cell) for cell in _cells(delimiter)]
    aligns += ["<"] * (columns - len(aligns))
    lines = [_table_row(row, widths, aligns) for row in table]
    rule = "|" + "|".join("-" * (width + 2) for width in widths) + "|"
    return ["```", lines[0], rule, *lines[1:], "```"]


def _alignment(delimiter: str) -> str:
    """``<``, ``>`` or ``^``: a delimiter cell's ``:---``, ``---:`` or ``:---:``."""
    cell = delimiter.strip()
    if cell.endswith(":"):
        return "^" if cell.startswith(":") else ">"
    return "<"


def _cell_text(cell: str) -> str:
    return _CELL_MARKUP.sub("", cell.strip().replace("\\|", "|"))


def _table_row(cells: list[str], widths: list[int], aligns: list[str]) -> str:
    padded = []
    for cell, width, align in zip(cells, widths, aligns, strict=True):
        room = width - _width(cell)
        left = {"<": 0, ">": room, "^": room // 2}[align]
        padded.append(" " * left + cell + " " * (room - left))
    return "| " + " | ".join(padded) + " |"


def _width(text: str) -> int:
    """Columns ``text`` takes in a monospace font: wide characters two, combining marks none."""
    return sum(
        0 if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf")
        else 2 if unicodedata.east_asian_width(ch) in ("W", "F")
        else 1
        for ch in text
    )  # fmt: skip


# --- errors ----------------------------------------------------------------------------------


@contextmanager
def _discord_errors(action: str) -> Iterator[None]:
    """Discord's failures in the block leave it as ``SurfaceError``s, the library's dropped.
    Each call is counted by action and result (``relaybot_platform_calls``); a 429 that
    discord.py waited out itself is not seen here, only one it gave up on or never handled."""
    try:
        yield
    except discord.RateLimited as error:
        _count(action, "rate_limited")
        message = f"{action}: rate limited for {error.retry_after:.1f} s"
        raise SurfaceRateLimited(message, retry_after=error.retry_after) from None
    except discord.HTTPException as error:
        mapped = _mapped(action, error)
        _count(action, "rate_limited" if isinstance(mapped, SurfaceRateLimited) else "error")
        raise mapped from None
    except (aiohttp.ClientError, OSError, TimeoutError) as error:
        _count(action, "error")
        raise SurfaceError(f"{action}: {type(error).__name__}") from None
    _count(action, "ok")


def _count(action: str, result: str) -> None:
    PLATFORM_CALLS.labels(platform="discord", method=action, result=result).inc()


def _mapped(action: str, error: discord.HTTPException) -> SurfaceError:
    message = f"{action}: HTTP {error.status}" + (
        f", Discord code {error.code}" if error.code else ""
    )
    if error.status == 429:  # not discord.py's own wait: a proxy's or Cloudflare's refusal
        return SurfaceRateLimited(message, retry_after=_retry_after(error.response))
    if isinstance(error, discord.NotFound) or error.code in GONE:
        return MessageGone(message)
    if isinstance(error, discord.Forbidden) or error.status == 401 or error.code in FORBIDDEN:
        return SurfaceForbidden(message)
    if error.code == INVALID_FORM_BODY and _content_too_long(error):
        return MessageTooLong(message)
    return SurfaceError(message)


def _content_too_long(error: discord.HTTPException) -> bool:
    """Whether Discord's field errors say the content is too long (``BASE_TYPE_MAX_LENGTH``).

    discord.py keeps the structured errors only as ``_errors`` (its ``text`` holds them as
    English sentences), so that is read, defensively."""
    errors: Any = getattr(error, "_errors", None)
    content = errors.get("content") if isinstance(errors, dict) else None
    found = content.get("_errors") if isinstance(content, dict) else None
    return isinstance(found, list) and any(
        isinstance(e, dict) and e.get("code") == "BASE_TYPE_MAX_LENGTH" for e in found
    )


def _retry_after(response: Any) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", 1)))
    except (AttributeError, TypeError, ValueError):
        return 1.0
