"""The fake Slack's streamed messages: ``chat.startStream`` / ``appendStream`` / ``stopStream``
as Slack keeps them, and the payloads Slack sends about them.

:class:`Streams` holds every stream's state and applies the three methods' arguments to it; it
does no I/O and knows no HTTP (:class:`tests.fakes.slack_api.FakeSlack` finds the message,
checks the channel and the limits, and calls it). What it follows, from Slack's method
reference (docs.slack.dev/reference/methods/chat.*Stream) and from what apps have measured:

- A stream is locked to the shape of its first content: opened (or first continued) with
  ``markdown_text`` it takes only ``markdown_text``, with ``chunks`` only chunks
  (``streaming_mode_mismatch``). Both in one call is
  ``cannot_provide_both_markdown_text_and_chunks``; an append with neither is
  ``markdown_text_or_chunks_required``.
- Chunks: ``markdown_text{text}``, ``task_update{id, title, status, details?, output?,
  sources?}`` (status ``pending|in_progress|complete|error``; the same ``id`` updates the same
  card, in place), ``plan_update{title}``, ``blocks{blocks}``; anything else ``invalid_chunks``.
  Each ``markdown_text`` (argument or chunk) holds at most 12,000 characters (``msg_too_long``).
- A stream lives ``lifetime`` seconds from its start whatever its traffic; past that, and once
  stopped, appends and stops answer ``message_not_in_streaming_state`` (the text stays).
- The person's Stop (:meth:`Streams.stop_by_user`): an append answers ``stopped_by_user``. A
  stop is still accepted once — Slack's ``agent_session_stopped`` page tells the app to end
  the session with ``chat.stopStream`` after the click, and ``stopped_by_user`` is not among
  ``chat.stopStream``'s errors.

Payload builders for tests: :func:`agent_session_stopped`, :func:`app_home_opened` (events, as
the ``event`` of an ``event_callback``) and :func:`feedback_press` (the ``block_actions``
payload of a press on a ``feedback_buttons`` element).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Literal, Protocol

__all__ = [
    "MARKDOWN_LIMIT",
    "TASK_STATUSES",
    "Opening",
    "Refused",
    "Stream",
    "Streams",
    "TaskCard",
    "agent_session_stopped",
    "app_home_opened",
    "feedback_press",
]

MARKDOWN_LIMIT = 12_000
"""Characters in one ``markdown_text``, as an argument or a chunk."""
TASK_STATUSES = frozenset({"pending", "in_progress", "complete", "error"})
DISPLAY_MODES = frozenset({"timeline", "plan", "dense"})

Mode = Literal["markdown_text", "chunks"]


class Refused(Exception):
    """Slack's answer ``{"ok": false, "error": code}`` to the call being handled."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclass(frozen=True, kw_only=True)
class TaskCard:
    """One task card as shown now: a ``task_update`` with the same ``id`` replaces its fields
    (``details`` and ``output`` left out keep theirs)."""

    title: str
    status: str
    details: str | None = None
    output: str | None = None


@dataclass(frozen=True, kw_only=True)
class Stream:
    """A streamed message's state, frozen when read. ``text`` is every ``markdown_text`` so far
    joined; ``cards`` are the task cards by ``id`` in first-seen order; ``blocks`` are those the
    stop set under the message (``chunk_blocks`` those sent as ``blocks`` chunks);
    ``streaming`` is whether it still takes appends now; ``appends`` counts accepted appends."""

    channel: str
    ts: str
    text: str
    cards: Mapping[str, TaskCard]
    plan_title: str | None
    blocks: tuple[dict[str, Any], ...]
    chunk_blocks: tuple[dict[str, Any], ...]
    session_status: str | None
    streaming: bool
    stopped: bool
    stopped_by_user: bool
    expired: bool
    appends: int
    task_display_mode: str
    recipient: tuple[str, str] | None
    """``(recipient_team_id, recipient_user_id)`` as given at the start, if given."""


@dataclass(kw_only=True)
class _Live:
    """A stream's mutable state while the fake holds it."""

    channel: str
    ts: str
    started_at: float
    task_display_mode: str
    recipient: tuple[str, str] | None
    mode: Mode | None = None
    text: str = ""
    cards: dict[str, TaskCard] = field(default_factory=dict)
    plan_title: str | None = None
    blocks: list[dict[str, Any]] = field(default_factory=list)
    chunk_blocks: list[dict[str, Any]] = field(default_factory=list)
    session_status: str | None = None
    stopped: bool = False
    stopped_by_user: bool = False
    appends: int = 0


@dataclass(frozen=True)
class _Content:
    """What one call brings: its shape (``None`` when it brings no text or chunks) and its
    chunks, a ``markdown_text`` argument turned into one chunk."""

    mode: Mode | None
    chunks: tuple[dict[str, Any], ...]


@dataclass(frozen=True, kw_only=True)
class Opening:
    """A ``chat.startStream`` call's arguments, checked."""

    content: _Content
    task_display_mode: str
    recipient: tuple[str, str] | None


class Streams:
    """Every stream the fake started, by ``(channel, ts)``, on the fake's clock."""

    def __init__(self, *, lifetime: float) -> None:
        if lifetime <= 0:
            raise ValueError(f"stream_lifetime must be positive, not {lifetime}")
        self.lifetime = lifetime
        self._live: dict[tuple[str, str], _Live] = {}

    @staticmethod
    def opening(args: Mapping[str, Any]) -> Opening:
        """A start's arguments checked as Slack checks them, before any message is stored."""
        content = _content(args)
        mode = str(args.get("task_display_mode") or "timeline")
        if mode not in DISPLAY_MODES:
            raise Refused("invalid_arguments")
        team, user = args.get("recipient_team_id"), args.get("recipient_user_id")
        recipient = (str(team), str(user)) if team and user else None
        return Opening(content=content, task_display_mode=mode, recipient=recipient)

    def start(self, channel: str, ts: str, opening: Opening, now: float) -> None:
        """Open the stream of the message ``ts`` just stored."""
        live = _Live(channel=channel, ts=ts, started_at=now,
                     task_display_mode=opening.task_display_mode,
                     recipient=opening.recipient)  # fmt: skip
        _apply(live, opening.content)
        self._live[channel, ts] = live

    def append(self, channel: str, ts: str, args: Mapping[str, Any], now: float) -> None:
        content = _content(args)
        if content.mode is None:
            raise Refused("markdown_text_or_chunks_required")
        live = self._streaming(channel, ts, now, user_stop_refuses=True)
        _apply(live, content)
        live.appends += 1

    def stop(self, channel: str, ts: str, args: Mapping[str, Any], now: float) -> None:
        content = _content(args)
        blocks = _blocks(args.get("blocks", []))
        live = self._streaming(channel, ts, now, user_stop_refuses=False)
        _apply(live, content)
        live.blocks = blocks
        live.session_status = str(args.get("session_status") or "active")
        live.stopped = True

    def stop_by_user(self, channel: str, ts: str) -> None:
        """The person pressed Slack's Stop on this stream."""
        if (live := self._live.get((channel, ts))) is None:
            raise KeyError(f"no stream {channel}/{ts}")
        live.stopped_by_user = True

    def streaming(self, channel: str, ts: str, now: float) -> bool:
        """Whether the message is in streaming state now (``chat.update`` is refused then)."""
        live = self._live.get((channel, ts))
        return live is not None and self._takes_more(live, now)

    def get(self, channel: str, ts: str, now: float) -> Stream | None:
        if (live := self._live.get((channel, ts))) is None:
            return None
        return Stream(
            channel=live.channel, ts=live.ts, text=live.text,
            cards=MappingProxyType(dict(live.cards)), plan_title=live.plan_title,
            blocks=tuple(live.blocks), chunk_blocks=tuple(live.chunk_blocks),
            session_status=live.session_status, streaming=self._takes_more(live, now),
            stopped=live.stopped, stopped_by_user=live.stopped_by_user,
            expired=self._expired(live, now), appends=live.appends,
            task_display_mode=live.task_display_mode, recipient=live.recipient,
        )  # fmt: skip

    def shown(self, channel: str, ts: str) -> tuple[str, list[dict[str, Any]]] | None:
        """The streamed text and the blocks under it, for the stored message; ``None`` when
        ``ts`` was never streamed."""
        if (live := self._live.get((channel, ts))) is None:
            return None
        return live.text, [*live.chunk_blocks, *live.blocks]

    def _streaming(self, channel: str, ts: str, now: float, *, user_stop_refuses: bool) -> _Live:
        live = self._live.get((channel, ts))
        if live is None:
            raise Refused("message_not_in_streaming_state")
        if live.stopped_by_user and not live.stopped and user_stop_refuses:
            raise Refused("stopped_by_user")
        if live.stopped or self._expired(live, now):
            raise Refused("message_not_in_streaming_state")
        return live

    def _takes_more(self, live: _Live, now: float) -> bool:
        return not (live.stopped or live.stopped_by_user or self._expired(live, now))

    def _expired(self, live: _Live, now: float) -> bool:
        return now - live.started_at >= self.lifetime


def _content(args: Mapping[str, Any]) -> _Content:
    """The text or chunks a call brings, checked as Slack checks them."""
    text, raw = args.get("markdown_text"), args.get("chunks")
    if text is not None and raw is not None:
        raise Refused("cannot_provide_both_markdown_text_and_chunks")
    if text is not None:
        return _Content("markdown_text", (_markdown(text),))
    if raw is None:
        return _Content(None, ())
    chunks = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(chunks, list) or not chunks:
        raise Refused("invalid_chunks")
    return _Content("chunks", tuple(_chunk(c) for c in chunks))


def _markdown(text: object) -> dict[str, Any]:
    if not isinstance(text, str):
        raise Refused("invalid_arguments")
    if len(text) > MARKDOWN_LIMIT:
        raise Refused("msg_too_long")
    return {"type": "markdown_text", "text": text}


def _chunk(chunk: object) -> dict[str, Any]:
    """One chunk, its required fields present and typed, else ``invalid_chunks``."""
    if not isinstance(chunk, dict):
        raise Refused("invalid_chunks")
    match chunk.get("type"):
        case "markdown_text" if isinstance(chunk.get("text"), str):
            return _markdown(chunk["text"])
        case "task_update" if _is_task(chunk):
            return chunk
        case "plan_update" if isinstance(chunk.get("title"), str):
            return chunk
        case "blocks":
            return {"type": "blocks", "blocks": _blocks(chunk.get("blocks"), "invalid_chunks")}
    raise Refused("invalid_chunks")


def _is_task(chunk: dict[str, Any]) -> bool:
    strings = all(isinstance(chunk.get(k), str) for k in ("id", "title", "status"))
    optional = all(isinstance(chunk.get(k), str | None) for k in ("details", "output"))
    return strings and optional and chunk["status"] in TASK_STATUSES


def _blocks(raw: object, refusal: str = "invalid_blocks") -> list[dict[str, Any]]:
    blocks = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(blocks, list):
        raise Refused(refusal)
    if not all(isinstance(b, dict) and isinstance(b.get("type"), str) for b in blocks):
        raise Refused(refusal)
    if len(blocks) > 50:
        raise Refused("msg_blocks_too_many")
    return blocks


def _apply(live: _Live, content: _Content) -> None:
    """Apply a call's content to the stream, its shape first set or checked."""
    if content.mode is None:
        return
    if live.mode not in (None, content.mode):
        raise Refused("streaming_mode_mismatch")
    live.mode = content.mode
    for chunk in content.chunks:
        match chunk["type"]:
            case "markdown_text":
                live.text += chunk["text"]
            case "task_update":
                _update_card(live.cards, chunk)
            case "plan_update":
                live.plan_title = chunk["title"]
            case "blocks":
                live.chunk_blocks.extend(chunk["blocks"])


def _update_card(cards: dict[str, TaskCard], chunk: dict[str, Any]) -> None:
    new = TaskCard(title=chunk["title"], status=chunk["status"],
                   details=chunk.get("details"), output=chunk.get("output"))  # fmt: skip
    if (old := cards.get(chunk["id"])) is not None:
        new = replace(new, details=new.details or old.details, output=new.output or old.output)
    cards[chunk["id"]] = new


# --- what Slack sends -----------------------------------------------------------------------------


def agent_session_stopped(
    channel: str, thread_ts: str, user: str, streaming_message_ts: Sequence[str] = (),
    *, event_ts: str = "1700000100.000100",
) -> dict[str, Any]:  # fmt: skip
    """The ``agent_session_stopped`` event (docs.slack.dev/reference/events/agent_session_stopped):
    ``user`` pressed Stop on the session of ``thread_ts``; ``streaming_message_ts`` lists the
    app's streams Slack stopped for it (empty when none was running)."""
    return {"type": "agent_session_stopped", "channel": channel, "thread_ts": thread_ts,
            "user": user, "streaming_message_ts": list(streaming_message_ts),
            "event_ts": event_ts}  # fmt: skip


def app_home_opened(
    user: str, channel: str, tab: str = "messages", *, event_ts: str = "1700000100.000200"
) -> dict[str, Any]:
    """The ``app_home_opened`` event: ``user`` opened the app's ``tab`` (``messages`` is where
    the agent's chat and its suggested prompts live; ``home`` the Home tab), ``channel`` being
    their DM with the app."""
    return {"type": "app_home_opened", "user": user, "channel": channel, "tab": tab,
            "event_ts": event_ts}  # fmt: skip


class Shown(Protocol):
    """A message as the fake shows it (:class:`tests.fakes.slack_api.Message`)."""

    @property
    def channel(self) -> str: ...
    @property
    def ts(self) -> str: ...
    @property
    def thread_ts(self) -> str | None: ...
    @property
    def blocks(self) -> list[dict[str, Any]]: ...
    def payload(self) -> dict[str, Any]: ...


def feedback_press(
    user: str, message: Shown, *, positive: bool, team: str = "T1"
) -> dict[str, Any]:
    """The ``block_actions`` payload Slack sends when ``user`` presses one of the feedback
    buttons under ``message``: the action is its ``feedback_buttons`` element, with the pressed
    button's ``value`` and ``text`` (docs.slack.dev: bolt-js ``FeedbackButtonsAction``)."""
    block, element = _feedback_element(message.blocks)
    button = element["positive_button" if positive else "negative_button"]
    action = {"type": "feedback_buttons", "action_id": element.get("action_id", ""),
              "block_id": block.get("block_id", ""), "value": button["value"],
              "text": button["text"], "action_ts": "1700000101.000000"}  # fmt: skip
    return {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "team_id": team},
        "api_app_id": "A1",
        "token": "legacy-verification-token",
        "container": {"type": "message", "message_ts": message.ts, "channel_id": message.channel,
                      "is_ephemeral": False, "thread_ts": message.thread_ts},
        "trigger_id": "1.2.3",
        "team": {"id": team, "domain": "team-one"},
        "channel": {"id": message.channel, "name": "general"},
        "message": message.payload(),
        "response_url": "https://hooks.slack.com/actions/T1/1/x",
        "actions": [action],
    }  # fmt: skip


def _feedback_element(blocks: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    for block in blocks:
        if block.get("type") == "context_actions":
            for element in block.get("elements", []):
                if element.get("type") == "feedback_buttons":
                    return block, element
    raise ValueError("the message has no feedback_buttons element in a context_actions block")
