"""``Surface``: one platform's way of showing a reply — post, edit, delete — and its limits.

A surface translates; it does not decide. Every timing and length decision lives in
``adapters.live`` and ``adapters.text``: a surface's ``edit`` is one platform call. Each surface
maps its platform's failures, once, into the errors below; nothing outside a surface catches a
platform's own exceptions.

    SurfaceError            a platform call failed (a 5xx, a network error): worth retrying
    ├── SurfaceRateLimited  the platform said slow down; ``retry_after`` seconds
    ├── MessageGone         the message (or its thread) was deleted: stop that reply quietly
    ├── MessageTooLong      the platform counts the message longer than its limit: split
                            smaller and send again
    └── SurfaceForbidden    the bot may not write here any more: bot removed, channel archived,
                            token revoked, thread locked — nothing more is posted
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

__all__ = [
    "Draft",
    "MessageGone",
    "MessageRef",
    "MessageTooLong",
    "Surface",
    "SurfaceError",
    "SurfaceForbidden",
    "SurfaceLimits",
    "SurfaceRateLimited",
]

MessageRef = str
"""A platform's id of a posted message (a Slack ``ts``, a Discord message id)."""


class SurfaceError(Exception):
    """A platform call failed. The message is short and never holds a token."""


class SurfaceRateLimited(SurfaceError):
    def __init__(self, message: str, *, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class MessageGone(SurfaceError):
    pass


class MessageTooLong(SurfaceError):
    """The platform refused a message as too long, though it was within ``limits.max_length``
    as we count it (a platform counting bytes, entities or rendered blocks differently)."""


class SurfaceForbidden(SurfaceError):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class SurfaceLimits:
    """What a platform allows.

    ``max_length`` counts the characters of one message as the platform counts them (the
    rendered text plus the status line). ``edit_interval`` is the shortest gap between two edits
    of one message. ``budget_scopes`` name the shared rate budgets every edit of this reply
    spends from, broadest last, e.g. ``("discord.channel:123", "discord.global")``.
    ``post_scopes`` are those a new message spends from, when they differ (Slack limits
    ``chat.postMessage`` apart from the workspace's ``chat.update``); ``None`` means the same.
    """

    max_length: int
    edit_interval: float
    budget_scopes: tuple[str, ...] = ()
    post_scopes: tuple[str, ...] | None = None

    def scopes_for(self, *, post: bool) -> tuple[str, ...]:
        if post and self.post_scopes is not None:
            return self.post_scopes
        return self.budget_scopes


@dataclass(frozen=True, slots=True, kw_only=True)
class Draft:
    """What one message should show now.

    ``text`` is the message's Markdown, already split to fit and made safe to render;
    ``status`` is a short activity line ("Checking the weather in Paris…") or ``None``;
    ``final`` is true for the last version of the message (a surface drops its Stop button
    then); ``error`` marks a final draft whose status is an error to show as such;
    ``closing`` marks the last message of an answer the model finished (not stopped, not
    failed, not a notice): a surface may put under it what belongs under an answer (Slack: the
    feedback buttons).
    """

    text: str
    status: str | None = None
    final: bool = False
    error: bool = False
    closing: bool = field(default=False, compare=False)  # implied by the others: never resent


class Surface(Protocol):
    """Where one reply is shown: a thread in Slack or Discord, or a terminal."""

    @property
    def limits(self) -> SurfaceLimits: ...

    async def post(self, draft: Draft) -> MessageRef:
        """Post a new message of this reply (the first, or a continuation after overflow)."""
        ...

    async def edit(self, ref: MessageRef, draft: Draft) -> None: ...

    async def delete(self, ref: MessageRef) -> None: ...

    def render(self, markdown: str) -> str:
        """The model's Markdown in this platform's dialect (e.g. tables as code blocks), and
        its length as the platform counts it is what ``limits.max_length`` bounds."""
        ...
