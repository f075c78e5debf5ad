"""Slack's native streaming as a ``StreamTarget``: ``chat.startStream`` / ``appendStream`` /
``stopStream`` for one reply in one thread, ``chat.update`` and ``chat.delete`` around them.

Our chunks (:mod:`adapters.stream_reply`) become slack_sdk's chunk models here and only here.
Task cards use the ``timeline`` display. Outside a DM Slack needs the recipient (the person
asked, and their team) on ``chat.startStream``. When a call carries task cards, its text goes
as a ``markdown_text`` chunk before them. Every call sends chunks, text alone included: a stream
keeps the form it was opened with, and task cards may come at any time.

Slack errors are mapped here, once, as :mod:`adapters.slack_surface` maps its own (rate limits,
gone, too long, forbidden, anything else), and further:
``message_not_in_streaming_state`` → ``StreamEnded``; ``stopped_by_user`` → ``StoppedByUser``;
``not_agent_app`` / ``feature_disabled`` / ``channel_type_not_supported`` →
``StreamingRefused`` (the caller falls back to edits). As for surfaces, the client must not
retry 429s itself: the reply pauses the shared budget instead.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.models.messages.chunk import Chunk as SlackChunk
from slack_sdk.models.messages.chunk import MarkdownTextChunk, PlanUpdateChunk, TaskUpdateChunk
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack_surface import MAX_LENGTH, blocks_for, fallback, slack_errors
from adapters.stream_reply import (
    Chunk,
    Markdown,
    PlanUpdate,
    StoppedByUser,
    StreamEnded,
    StreamingRefused,
    StreamLimits,
    TaskUpdate,
)
from adapters.surface import Draft, MessageRef

__all__ = ["ENDED", "REFUSED", "SlackStream", "slack_chunks"]

ENDED = "message_not_in_streaming_state"
STOPPED_BY_USER = "stopped_by_user"
REFUSED = frozenset({"not_agent_app", "feature_disabled", "channel_type_not_supported"})
"""Slack errors saying this app or conversation cannot stream: fall back to edits."""


class SlackStream:
    """One streamed reply in one Slack thread. ``recipient`` is ``(user, team)`` of the person
    asked, required outside a DM (``None`` in a DM)."""

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        channel: str,
        thread_ts: str,
        team: str,
        recipient: tuple[str, str] | None = None,
        rollover_chars: int = MAX_LENGTH,
        append_interval: float = 1.0,
    ) -> None:
        if any(isinstance(h, AsyncRateLimitErrorRetryHandler) for h in client.retry_handlers):
            raise ValueError("a stream's Slack client must not retry 429s: StreamReply does")
        self._client = client
        self._channel = channel
        self._thread_ts = thread_ts
        self._recipient = recipient
        self._limits = StreamLimits(
            rollover_chars=rollover_chars,
            append_interval=append_interval,
            start_scopes=(f"slack.stream.start:{team}",),
            stop_scopes=(f"slack.stream.stop:{team}",),
            append_scopes=(f"slack.stream.append:{team}",),
            edit_scopes=(f"slack.workspace:{team}",),
        )

    @property
    def limits(self) -> StreamLimits:
        return self._limits

    async def start(self, markdown: str, chunks: Sequence[Chunk]) -> MessageRef:
        user, team = self._recipient or (None, None)
        with _stream_errors("chat.startStream"):
            response = await self._client.chat_startStream(
                channel=self._channel,
                thread_ts=self._thread_ts,
                recipient_user_id=user,
                recipient_team_id=team,
                task_display_mode="timeline",
                **_content(markdown, chunks),
            )
        return str(response["ts"])

    async def append(self, ref: MessageRef, *, markdown: str, chunks: Sequence[Chunk]) -> None:
        with _stream_errors("chat.appendStream"):
            await self._client.chat_appendStream(
                channel=self._channel, ts=ref, **_content(markdown, chunks)
            )

    async def stop(
        self,
        ref: MessageRef,
        *,
        markdown: str,
        chunks: Sequence[Chunk],
        blocks: Sequence[dict[str, Any]],
        session_status: str | None,
    ) -> None:
        with _stream_errors("chat.stopStream"):
            await self._client.chat_stopStream(
                channel=self._channel,
                ts=ref,
                blocks=list(blocks) or None,
                session_status=session_status,
                **_content(markdown, chunks),
            )

    async def delete(self, ref: MessageRef) -> None:
        with _stream_errors("chat.delete"):
            await self._client.chat_delete(channel=self._channel, ts=ref)

    async def replace(self, ref: MessageRef, text: str, blocks: Sequence[dict[str, Any]]) -> None:
        draft = Draft(text=text, final=True)
        with _stream_errors("chat.update"):
            await self._client.chat_update(
                channel=self._channel,
                ts=ref,
                text=fallback(draft),
                blocks=[*blocks_for(draft), *blocks],
            )


def _content(markdown: str, chunks: Sequence[Chunk]) -> dict[str, Any]:
    """A call's text and task cards, always as chunks: a stream keeps the form it was opened
    with (Slack answers ``streaming_mode_mismatch`` to ``markdown_text`` in a stream opened with
    chunks, and the other way round), and task cards can only come as chunks."""
    parts: list[Chunk] = [Markdown(text=markdown)] if markdown else []
    parts += chunks
    return {"chunks": slack_chunks(parts)} if parts else {}


def slack_chunks(chunks: Sequence[Chunk]) -> list[SlackChunk]:
    """Our chunks as slack_sdk's models."""
    converted: list[SlackChunk] = []
    for chunk in chunks:
        match chunk:
            case Markdown(text=text):
                converted.append(MarkdownTextChunk(text=text))
            case TaskUpdate(id=id_, title=title, status=status, details=details, output=output):
                converted.append(
                    TaskUpdateChunk(
                        id=id_, title=title, status=status, details=details, output=output
                    )
                )
            case PlanUpdate(title=title):
                converted.append(PlanUpdateChunk(title=title))
    return converted


@contextmanager
def _stream_errors(method: str) -> Iterator[None]:
    """The streaming errors first; every other failure as a surface maps it (and counts it)."""
    with slack_errors(method):
        try:
            yield
        except SlackApiError as error:
            code = _code(error)
            if code == STOPPED_BY_USER:
                raise StoppedByUser(f"{method}: {code}") from None
            if code == ENDED:
                raise StreamEnded(f"{method}: {code}") from None
            if code in REFUSED:
                raise StreamingRefused(f"{method}: {code}", code=code) from None
            raise


def _code(error: SlackApiError) -> str:
    data = error.response.data
    return str(data.get("error") or "") if isinstance(data, dict) else ""
