"""Discord messages as the bot reads them: plain words for the model, and a thread's name.

Pure functions over a message's text and the names discord.py knows, no I/O. Discord writes
a user mention as ``<@id>`` (``<@!id>`` from older clients), a role as ``<@&id>``, a channel
as ``<#id>``, a custom emoji as ``<:name:id>`` (``<a:name:id>`` animated), a time as
``<t:unix>`` or ``<t:unix:style>`` and a slash command as ``</name:id>``. :func:`plain_text`
drops the bot's own mention (and its managed role's: people pick either from the menu) and
writes the rest as a person reads it — ``@Ada``, ``@Moderators``, ``#general``, ``:party:``,
``2024-05-01 14:00 UTC``, ``/ask`` — so the model never sees a snowflake.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

__all__ = ["THREAD_NAME_LENGTH", "Names", "plain_text", "thread_name"]

THREAD_NAME_LENGTH = 100
"""The longest thread name Discord accepts."""

_TOKEN = re.compile(
    r"<(?:(?P<kind>@!?|@&|#)(?P<id>\d{15,21})"
    r"|a?:(?P<emoji>\w{2,32}):\d{15,21}"
    r"|t:(?P<time>-?\d{1,13})(?::[tTdDfFR])?"
    r"|/(?P<command>[\w -]{1,100}):\d{15,21})>"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Names:
    """What the ids in a message are called: users by display name, roles, channels."""

    users: Mapping[int, str] = field(default_factory=dict)
    roles: Mapping[int, str] = field(default_factory=dict)
    channels: Mapping[int, str] = field(default_factory=dict)


def plain_text(text: str, *, bot_id: int, bot_role_id: int | None = None, names: Names) -> str:
    """``text`` without the bot's mention, every other token in words (see the module
    docstring). An id ``names`` does not know reads ``@unknown-user``, ``@unknown-role`` or
    ``#unknown-channel``, as Discord shows it."""
    mine = [rf"<@!?{bot_id}>"] + ([rf"<@&{bot_role_id}>"] if bot_role_id is not None else [])
    text = re.sub(rf"[ \t]?(?:{'|'.join(mine)})[:,]?", "", text)
    return _TOKEN.sub(lambda token: _words(token, names), text).strip()


def _words(token: re.Match[str], names: Names) -> str:
    if token["id"] is not None:
        key, kind = int(token["id"]), token["kind"]
        if kind == "#":
            return "#" + names.channels.get(key, "unknown-channel")
        if kind == "@&":
            return "@" + names.roles.get(key, "unknown-role")
        return "@" + names.users.get(key, "unknown-user")
    if token["emoji"] is not None:
        return f":{token['emoji']}:"
    if token["command"] is not None:
        return "/" + token["command"]
    try:
        moment = datetime.fromtimestamp(int(token["time"]), UTC)
    except (OverflowError, OSError, ValueError):
        return token[0]
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def thread_name(question: str, *, fallback: str) -> str:
    """A thread's name from the question that opened it: one line, at most
    :data:`THREAD_NAME_LENGTH` characters, cut at a word with "…" when longer; ``fallback``
    when the question has no words."""
    name = " ".join(question.split())
    if not name:
        return fallback[:THREAD_NAME_LENGTH]
    if len(name) <= THREAD_NAME_LENGTH:
        return name
    room = THREAD_NAME_LENGTH - 1
    cut = name.rfind(" ", 0, room + 1)
    return name[: cut if cut > room // 2 else room].rstrip() + "…"
