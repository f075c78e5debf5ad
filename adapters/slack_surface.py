"""Slack as a ``Surface``: one reply in one thread, as Block Kit messages the bot posts and edits.

A message is the answer's standard Markdown in a ``markdown`` block (Slack renders it; all the
markdown blocks of one message hold at most 12,000 characters), the status line in a
``context`` block (italic; ``:warning:`` first for an error), and while the reply streams an
``actions`` block with a red Stop button (``action_id`` :data:`STOP_ACTION`, ``value`` the
``stop_value`` the bot gave) that goes away with the final edit. ``text`` is the notification
fallback: the answer's first words as plain text, or the status. (``markdown_text`` would
render the same Markdown but cannot be combined with ``blocks`` or ``text``.)

Slack errors are mapped here, once, into ``adapters.surface`` errors: ``ratelimited`` / HTTP
429 → ``SurfaceRateLimited`` (``Retry-After``, 1 s when absent); ``message_not_found`` /
``thread_not_found`` → ``MessageGone``; ``msg_too_long`` / ``msg_blocks_too_long`` →
``MessageTooLong``; an error no retry can cure (bot removed, channel archived or gone, token
revoked, a missing scope, see :data:`FORBIDDEN`) → ``SurfaceForbidden``; any other Slack error,
HTTP 5xx, timeout or network failure → ``SurfaceError``. Messages name the method and Slack's
error code, never the token; the SDK's exception is not chained.

The client must not retry 429s itself. ``LiveReply`` owns that: it pauses the workspace's
shared budget for ``Retry-After`` and then sends the newest text, instead of one reply sleeping
inside a call with a stale draft while the others keep spending. slack_sdk applies a client's
``retry_handlers`` to every call, ``api_call`` included (there is no per-call opt-out), so the
choice is made with the client: give surfaces an ``AsyncWebClient`` with the default handlers
(``AsyncConnectionErrorRetryHandler``: one retry of a dropped connection) and keep
``AsyncRateLimitErrorRetryHandler`` for the bot's other calls (``users.info``,
``conversations.replies``) on a second client. ``SlackSurface`` refuses a client that retries
429s, so the mistake shows at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

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

__all__ = [
    "FORBIDDEN",
    "MAX_LENGTH",
    "STOP_ACTION",
    "SlackSurface",
    "blocks_for",
    "fallback",
    "slack_errors",
]

MAX_LENGTH = 12_000
"""The cumulative limit of a message's markdown blocks."""
STOP_ACTION = "relaybot_stop"
"""The ``action_id`` of the Stop button."""
FALLBACK_LENGTH = 150
"""The longest notification fallback ``text``, in characters."""
EMPTY = "(no answer)"
"""What a message with no text and no status shows (Slack refuses an empty message)."""

GONE = frozenset({"message_not_found", "thread_not_found"})
TOO_LONG = frozenset({"msg_too_long", "msg_blocks_too_long"})
FORBIDDEN = frozenset(
    {
        "channel_not_found", "not_in_channel", "is_archived", "restricted_action",
        "restricted_action_read_only_channel", "restricted_action_thread_only_channel",
        "cant_update_message", "cant_delete_message", "edit_window_closed",
        "not_authed", "invalid_auth", "token_revoked", "token_expired", "account_inactive",
        "missing_scope", "no_permission", "team_access_not_granted", "ekm_access_denied",
    }
)  # fmt: skip
"""Slack errors after which nothing more can be written to this reply; retrying cannot help
(``missing_scope`` included: the app must be reinstalled)."""


class SlackSurface:
    """One reply in one Slack thread. Make one per reply; share the client (see the module's
    docstring for which client). With ``stop_value=None`` no Stop button is shown;
    ``answer_blocks`` go under a finished answer's last message (the feedback buttons)."""

    def __init__(
        self,
        client: AsyncWebClient,
        *,
        channel: str,
        thread_ts: str,
        team: str,
        stop_value: str | None = None,
        answer_blocks: Sequence[dict[str, Any]] = (),
        edit_interval: float = 1.0,
    ) -> None:
        if any(isinstance(h, AsyncRateLimitErrorRetryHandler) for h in client.retry_handlers):
            raise ValueError("a surface's Slack client must not retry 429s: LiveReply does")
        self._client = client
        self._channel = channel
        self._thread_ts = thread_ts
        self._stop_value = stop_value
        self._answer_blocks = list(answer_blocks)
        self._limits = SurfaceLimits(
            max_length=MAX_LENGTH,
            edit_interval=edit_interval,
            budget_scopes=(f"slack.workspace:{team}",),
            # chat.postMessage is limited per channel, apart from chat.update's workspace
            post_scopes=(f"slack.channel:{channel}",),
        )

    @property
    def limits(self) -> SurfaceLimits:
        return self._limits

    def render(self, markdown: str) -> str:
        """Unchanged: the markdown block renders standard Markdown (mass mentions are already
        neutralized by ``LiveReply``)."""
        return markdown

    async def post(self, draft: Draft) -> MessageRef:
        with slack_errors("chat.postMessage"):
            response = await self._client.chat_postMessage(
                channel=self._channel,
                thread_ts=self._thread_ts,
                text=fallback(draft),
                blocks=self._blocks(draft),
                unfurl_links=False,
                unfurl_media=False,
            )
        return str(response["ts"])

    async def edit(self, ref: MessageRef, draft: Draft) -> None:
        with slack_errors("chat.update"):
            await self._client.chat_update(
                channel=self._channel,
                ts=ref,
                text=fallback(draft),
                blocks=self._blocks(draft),
            )

    def _blocks(self, draft: Draft) -> list[dict[str, Any]]:
        """The draft's blocks, and ``answer_blocks`` under the last message of a finished
        answer."""
        under = self._answer_blocks if draft.closing else []
        return [*blocks_for(draft, self._stop_value), *under]

    async def delete(self, ref: MessageRef) -> None:
        with slack_errors("chat.delete"):
            await self._client.chat_delete(channel=self._channel, ts=ref)


def blocks_for(draft: Draft, stop_value: str | None = None) -> list[dict[str, Any]]:
    """The Block Kit blocks showing ``draft``: its Markdown, its status, a Stop button while it
    is not final (when there is a ``stop_value``)."""
    blocks: list[dict[str, Any]] = []
    if draft.text:
        blocks.append({"type": "markdown", "text": draft.text})
    status = draft.status if draft.status or draft.text else EMPTY  # Slack needs something
    if status:
        line = f":warning: _{_escaped(status)}_" if draft.error else f"_{_escaped(status)}_"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": line}]})
    if not draft.final and stop_value is not None:
        button = {
            "type": "button",
            "action_id": STOP_ACTION,
            "text": {"type": "plain_text", "text": "Stop"},
            "style": "danger",
            "value": stop_value,
        }
        blocks.append({"type": "actions", "elements": [button]})
    return blocks


_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_MARKUP = re.compile(r"[*~`]+|(?<!\w)_+|_+(?!\w)|^[ \t]*(?:#{1,6}|>+)[ \t]*", re.MULTILINE)


def fallback(draft: Draft) -> str:
    """The notification text: the answer's first words as plain text, else the status."""
    plain = " ".join(_MARKUP.sub("", _LINK.sub(r"\1", draft.text)).split())
    if len(plain) > FALLBACK_LENGTH:
        cut = plain.rfind(" ", 0, FALLBACK_LENGTH)
        plain = plain[: cut if cut > FALLBACK_LENGTH // 2 else FALLBACK_LENGTH - 1] + "…"
    return _escaped(plain or draft.status or EMPTY)


def _escaped(text: str) -> str:
    """``text`` as literal characters in Slack's mrkdwn: no link, mention or command."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@contextmanager
def slack_errors(method: str) -> Iterator[None]:
    """Slack's failures in the block leave it as ``SurfaceError``s, the SDK's error dropped.
    Each call is counted by method and result (``relaybot_platform_calls``)."""
    try:
        yield
    except SlackApiError as error:
        mapped = _mapped(method, error)
        _count(method, "rate_limited" if isinstance(mapped, SurfaceRateLimited) else "error")
        raise mapped from None
    except (SlackClientError, aiohttp.ClientError, TimeoutError) as error:
        _count(method, "error")
        raise SurfaceError(f"{method}: {type(error).__name__}") from None
    _count(method, "ok")


def _count(method: str, result: str) -> None:
    PLATFORM_CALLS.labels(platform="slack", method=method, result=result).inc()


def _mapped(method: str, error: SlackApiError) -> SurfaceError:
    response = error.response
    status = response.status_code
    data = response.data if isinstance(response.data, dict) else {}
    code = str(data.get("error") or "")
    http = f"HTTP {status}" if status != 200 else ""
    message = f"{method}: {code} ({http})" if code and http else f"{method}: {code or http}"
    if status == 429 or code == "ratelimited":
        return SurfaceRateLimited(message, retry_after=_retry_after(response.headers))
    if code in GONE:
        return MessageGone(message)
    if code in TOO_LONG:
        return MessageTooLong(message)
    if code in FORBIDDEN:
        return SurfaceForbidden(message)
    return SurfaceError(message)


def _retry_after(headers: Any) -> float:
    try:
        return max(0.0, float(headers.get("Retry-After", 1)))
    except (TypeError, ValueError):
        return 1.0
