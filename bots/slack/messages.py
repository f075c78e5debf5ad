"""Slack message events as the bot reads them: who wrote what, where — and in plain words.

Pure functions over Slack's payloads, no I/O:

- :func:`user_message` turns an ``app_mention`` or ``message`` event into a
  :class:`SlackMessage`, or ``None`` when it is not a person's new message (a bot, the bot
  itself, an edit, a deletion, a join...). ``file_share`` and ``thread_broadcast`` are a
  person's messages.
- :func:`plain_text` turns Slack's markup into what a model should read: the bot's own mention
  removed, ``<@U1>`` → ``@Ada``, ``<#C1|general>`` → ``#general``, ``<https://x|label>`` →
  ``label (https://x)``, and ``&lt;`` ``&gt;`` ``&amp;`` unescaped. A person whose name was
  not looked up may read as ``@unknown`` (:data:`UNKNOWN`).
- :func:`remote_files` reads the ``files`` of a message (an event's, or one read back): each
  file's name, type, reported size and ``url_private_download`` for :mod:`bots.downloads`.
- :func:`deletion` reads a ``message_deleted`` event: which message of which thread is gone.
- :func:`thread_history` turns a thread read back from ``conversations.replies`` into the
  conversation's messages: the bot's answers as assistant turns, everyone else's as user
  turns — never the bot's placeholder, notices or an answer still being written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from bots.downloads import RemoteFile
from core.messages import AssistantMessage, Message, UserMessage

__all__ = [
    "PERSON_SUBTYPES",
    "UNKNOWN",
    "Deletion",
    "SlackMessage",
    "authors",
    "deletion",
    "mentioned_users",
    "message_markdown",
    "plain_text",
    "remote_files",
    "thread_history",
    "user_message",
]

PERSON_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})
"""Message subtypes a person sends; every other subtype (edits, deletions, joins, bot
messages...) is something that happened to a message, not a new one."""
UNKNOWN = "unknown"
"""The name of a mentioned person whose name was not looked up (``@unknown``)."""

_TOKEN = re.compile(r"<([^<>]*)>")
_USER_TOKEN = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^<>]*)?>")
_UNESCAPE = (("&lt;", "<"), ("&gt;", ">"), ("&amp;", "&"))
_FIELD = re.compile(r"\{[^{}]*\}")


@dataclass(frozen=True, slots=True, kw_only=True)
class SlackMessage:
    """A person's message the bot may answer.

    ``thread_ts`` is the thread it was posted in (``None`` at the top level); ``mentions_bot``
    says it @mentions the bot; ``parent_user`` is the author of the thread's first message,
    when Slack says so; ``files`` are its attached files. ``files_left_out``: the event says
    the message has files (Slack's ``upload`` field) but lists none — an ``app_mention`` may
    leave them out — so they are read back from the message itself.
    """

    team: str
    channel: str
    channel_type: str
    user: str
    ts: str
    thread_ts: str | None
    text: str
    mentions_bot: bool
    parent_user: str | None = None
    files: tuple[RemoteFile, ...] = ()
    files_left_out: bool = False

    @property
    def thread(self) -> str:
        """The thread the answer goes to: the one it is in, or the one under it."""
        return self.thread_ts or self.ts

    @property
    def direct(self) -> bool:
        """A direct message between one person and the bot."""
        return self.channel_type == "im"

    @property
    def in_thread(self) -> bool:
        """A reply inside a thread (not the message that starts one)."""
        return self.thread_ts is not None and self.thread_ts != self.ts


def user_message(
    event: Mapping[str, Any], *, team: str, bot_user_id: str | None
) -> SlackMessage | None:
    """The person's message in ``event`` (``app_mention`` or ``message``), or ``None``."""
    kind = event.get("type")
    if kind not in ("app_mention", "message") or event.get("subtype") not in PERSON_SUBTYPES:
        return None
    user, channel, ts = event.get("user"), event.get("channel"), event.get("ts")
    if not (isinstance(user, str) and isinstance(channel, str) and isinstance(ts, str)):
        return None
    if event.get("bot_id") or event.get("bot_profile") or user == bot_user_id:
        return None
    text = event.get("text") or ""
    files = remote_files(event.get("files"))
    mentions = kind == "app_mention" or (
        bot_user_id is not None and bot_user_id in mentioned_users(text)
    )
    return SlackMessage(
        team=team,
        channel=channel,
        channel_type=str(event.get("channel_type") or _channel_type(channel)),
        user=user,
        ts=ts,
        thread_ts=event.get("thread_ts"),
        text=text,
        mentions_bot=mentions,
        parent_user=event.get("parent_user_id"),
        files=files,
        files_left_out=not files and "upload" in event,
    )


def remote_files(files: object) -> tuple[RemoteFile, ...]:
    """The files of a message payload's ``files`` (anything else: none). A file Slack gives no
    download URL for (deleted, hidden by the plan's limits, a Slack Connect file needing
    ``files.info``) keeps an empty URL: the downloader names it in a note."""
    if not isinstance(files, list):
        return ()
    found = []
    for file in files:
        if not isinstance(file, Mapping):
            continue
        url = file.get("url_private_download") or file.get("url_private") or ""
        size = file.get("size")
        found.append(
            RemoteFile(
                name=str(file.get("name") or file.get("title") or "a file"),
                mime=str(file["mimetype"]) if file.get("mimetype") else None,
                url=str(url),
                size=size if isinstance(size, int) and not isinstance(size, bool) else None,
            )
        )
    return tuple(found)


@dataclass(frozen=True, slots=True, kw_only=True)
class Deletion:
    """A message deleted from a conversation: ``ts`` in the thread ``thread`` of ``channel``."""

    channel: str
    thread: str
    ts: str


def deletion(event: Mapping[str, Any]) -> Deletion | None:
    """The message a ``message_deleted`` event says is gone, or ``None`` for any other event.
    Its thread is the deleted message's ``thread_ts`` (``previous_message``), else its own ts."""
    if event.get("type") != "message" or event.get("subtype") != "message_deleted":
        return None
    channel, ts = event.get("channel"), event.get("deleted_ts")
    if not (isinstance(channel, str) and isinstance(ts, str)):
        return None
    previous = event.get("previous_message")
    thread = previous.get("thread_ts") if isinstance(previous, Mapping) else None
    return Deletion(channel=channel, thread=thread if isinstance(thread, str) else ts, ts=ts)


def _channel_type(channel: str) -> str:
    """``app_mention`` events carry no ``channel_type``; the id's first letter tells."""
    return {"D": "im", "G": "group"}.get(channel[:1], "channel")


def mentioned_users(text: str) -> list[str]:
    """The user ids ``text`` mentions (``<@U123>``), in order, each once."""
    return list(dict.fromkeys(_USER_TOKEN.findall(text)))


def plain_text(
    text: str, *, bot_user_id: str | None, names: Mapping[str, str], unknown: str | None = None
) -> str:
    """Slack markup as plain words (see the module docstring). ``names`` maps user ids to
    display names; an id not in it keeps the label Slack gave, else reads as ``unknown`` — or,
    when that is ``None``, as the id."""
    if bot_user_id:
        text = re.sub(rf"[ \t]?<@{re.escape(bot_user_id)}(?:\|[^<>]*)?>[:,]?", "", text)
    pieces: list[str] = []
    end = 0
    for token in _TOKEN.finditer(text):
        pieces.append(_unescape(text[end : token.start()]))
        pieces.append(_token_text(token.group(1), names, unknown))
        end = token.end()
    pieces.append(_unescape(text[end:]))
    return "".join(pieces).strip()


def _token_text(token: str, names: Mapping[str, str], unknown: str | None) -> str:
    target, _, label = token.partition("|")
    label = _unescape(label)
    if target.startswith("@"):
        user = target[1:]
        return "@" + (names.get(user) or label.lstrip("@") or unknown or user)
    if target.startswith("#"):
        return "#" + (label or target[1:])
    if target.startswith("!"):
        special = target[1:].split("^")[0]
        if special in ("here", "channel", "everyone"):
            return "@" + special
        return label or special
    link = _unescape(target)
    if not label or label == link:
        return link
    if link.startswith("mailto:") and label == link.removeprefix("mailto:"):
        return label
    return f"{label} ({link})"


def _unescape(text: str) -> str:
    for escaped, char in _UNESCAPE:
        text = text.replace(escaped, char)
    return text


def message_markdown(message: Mapping[str, Any]) -> str:
    """What a posted message says: its ``markdown`` blocks (the bot's replies), else its
    ``text``."""
    blocks = [
        str(block.get("text") or "")
        for block in message.get("blocks") or ()
        if isinstance(block, Mapping) and block.get("type") == "markdown"
    ]
    return "\n\n".join(b for b in blocks if b) or str(message.get("text") or "")


def thread_history(
    replies: Iterable[Mapping[str, Any]],
    *,
    before: str,
    bot_user_id: str | None,
    bot_id: str | None,
    names: Mapping[str, str],
    notices: Collection[str] = (),
) -> list[Message]:
    """The messages of a thread read back from Slack that were posted before ``before`` (the
    message being answered): the bot's answers as assistant turns, people's as user turns.

    Left out: edits, joins and other bots' messages; and of the bot's own, any that is not an
    answer — one still being written (it carries a button: a placeholder, a growing answer),
    one that is only a status line, and one that says one of ``notices`` (templates such as
    ``"too long ({length:,} characters)"`` match whatever fills their fields)."""
    is_notice = _notice_matcher(notices)
    history: list[Message] = []
    for reply in sorted(replies, key=lambda r: _ts(r.get("ts"))):
        if _ts(reply.get("ts")) >= _ts(before):
            break
        is_bot = (bot_id is not None and reply.get("bot_id") == bot_id) or (
            bot_user_id is not None and reply.get("user") == bot_user_id
        )
        if is_bot:
            text = message_markdown(reply).strip()
            if text and _is_answer(reply) and not is_notice(text):
                history.append(AssistantMessage(text=text))
            continue
        if reply.get("bot_id") or reply.get("subtype") not in PERSON_SUBTYPES:
            continue
        user = str(reply.get("user") or "")
        text = plain_text(str(reply.get("text") or ""), bot_user_id=bot_user_id, names=names)
        if user and text:
            history.append(UserMessage(text=text, author_id=user, author_name=names.get(user)))
    return history


def _is_answer(message: Mapping[str, Any]) -> bool:
    """A bot message that is a finished answer: no button (a Stop button means it is still
    being written, or its writer died), and some Markdown when it has blocks at all."""
    blocks = [b for b in message.get("blocks") or () if isinstance(b, Mapping)]
    if any(block.get("type") == "actions" for block in blocks):
        return False
    return not blocks or any(b.get("type") == "markdown" and b.get("text") for b in blocks)


def _notice_matcher(notices: Collection[str]) -> Callable[[str], bool]:
    """Whether a text is one of ``notices``, a ``{field}`` of a template matching any text."""
    if not notices:
        return lambda text: False
    patterns = (
        ".+?".join(re.escape(part) for part in _FIELD.split(notice.strip())) for notice in notices
    )
    matcher = re.compile("|".join(f"(?:{pattern})" for pattern in patterns), re.DOTALL)
    return lambda text: matcher.fullmatch(text.strip()) is not None


def _ts(value: object) -> Decimal:
    """A Slack timestamp (``"1700000000.000100"``) as a number that orders exactly."""
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return Decimal(0)


def authors(replies: Sequence[Mapping[str, Any]]) -> set[str]:
    """Every user id a thread's people wrote as or mentioned (to look their names up)."""
    found: set[str] = set()
    for reply in replies:
        if isinstance(user := reply.get("user"), str):
            found.add(user)
        found.update(mentioned_users(str(reply.get("text") or "")))
    return found
