"""Channel settings: the model and the system prompt a channel's admins chose for it.

A channel is named as a conversation key names it — ``(platform, workspace, channel)``, the
first three parts of a :class:`~core.messages.ConversationKey` — so every thread of the
channel reads the same settings, from its next turn on. A channel nobody has set reads as
:class:`ChannelSettings` ``()``: no model and no prompt of its own (the configured defaults
apply), never set by anyone.

:meth:`ChannelSettingsStore.set_channel_settings` changes one field or both: a field given as
``None`` goes back to the default, a field left :data:`UNCHANGED` keeps what it was (``None``
is a value here, so "not given" needs a sentinel of its own, as httpx's ``USE_CLIENT_DEFAULT``
does). Each change records who made it and when, by the store's clock.

A prompt is at most :data:`MAX_PROMPT_CHARS` characters. The store checks it — every backend,
with :func:`check_prompt`, before anything is written — and refuses a longer one with
:class:`PromptTooLong`, a ``ValueError`` whose message can be shown to the person who typed it.
A command layer that wants to refuse earlier calls :func:`check_prompt` itself. Which model
names are allowed is the command layer's business (the store does not know the configuration):
here a model is any non-blank name.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, Literal, Protocol

__all__ = [
    "MAX_PROMPT_CHARS",
    "UNCHANGED",
    "ChannelSettings",
    "ChannelSettingsStore",
    "PromptTooLong",
    "Unchanged",
    "check_change",
    "check_prompt",
]

MAX_PROMPT_CHARS: Final = 4_000
"""The longest channel prompt, in characters: room for real instructions, and a bound on what
every turn of the channel sends to the model on top of the conversation."""


class Unchanged(enum.Enum):
    """The type of :data:`UNCHANGED`."""

    UNCHANGED = "UNCHANGED"

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = Unchanged.UNCHANGED
"""Leave this field as it is (``None`` resets it to the default)."""

Change = str | None | Literal[Unchanged.UNCHANGED]


class PromptTooLong(ValueError):
    """A channel prompt longer than :data:`MAX_PROMPT_CHARS`; its message is fit to show."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelSettings:
    """What a channel has chosen; ``None`` fields mean the configured default."""

    model: str | None = None
    """The name of a configured model (``[[llm.models]] name``)."""
    prompt: str | None = None
    """The channel's system instructions."""
    updated_by: str | None = None
    """The platform user id of the last change (``None``: never changed)."""
    updated_at: float | None = None
    """When it was last changed, by the store's clock."""


class ChannelSettingsStore(Protocol):
    """The channel-settings part of a store (memory, SQLite and Postgres: one contract test
    suite)."""

    async def channel_settings(
        self, platform: str, workspace: str, channel: str
    ) -> ChannelSettings:
        """The channel's settings; ``ChannelSettings()`` for a channel never set."""
        ...

    async def set_channel_settings(
        self,
        platform: str,
        workspace: str,
        channel: str,
        *,
        model: Change = UNCHANGED,
        prompt: Change = UNCHANGED,
        by: str,
    ) -> ChannelSettings:
        """Change the channel's model, prompt or both (``None`` resets a field, ``UNCHANGED``
        keeps it), recording ``by`` (a platform user id) and the store's time; the settings
        as they now are. ``ValueError`` (:class:`PromptTooLong` for a long prompt) when the
        change cannot be made, with nothing written."""
        ...


def change_parameters(
    platform: str, workspace: str, channel: str, model: Change, prompt: Change, *, by: str
) -> dict[str, object]:
    """A change as the SQL stores write it (checked first: ``ValueError`` if it cannot be
    made): each field's new value, whether to set it, who made it."""
    check_change(model, prompt)
    return {
        "platform": platform,
        "workspace": workspace,
        "channel": channel,
        "model": None if model is UNCHANGED else model,
        "prompt": None if prompt is UNCHANGED else prompt,
        "set_model": model is not UNCHANGED,
        "set_prompt": prompt is not UNCHANGED,
        "by": by,
    }


def check_change(model: Change, prompt: Change) -> None:
    """Raise ``ValueError`` for a change no store accepts: nothing to change, a blank model
    or prompt (reset a field with ``None``), a prompt over :data:`MAX_PROMPT_CHARS`."""
    if model is UNCHANGED and prompt is UNCHANGED:
        raise ValueError("a channel settings change needs a model or a prompt (None resets one)")
    if isinstance(model, str) and not model.strip():
        raise ValueError("a channel's model needs a name; None goes back to the default model")
    if isinstance(prompt, str):
        check_prompt(prompt)


def check_prompt(prompt: str) -> None:
    """Raise :class:`PromptTooLong` or ``ValueError`` for a prompt no channel may have."""
    if not prompt.strip():
        raise ValueError("a channel prompt cannot be blank; reset it to go back to the default")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise PromptTooLong(
            f"A channel prompt can be at most {MAX_PROMPT_CHARS:,} characters;"
            f" this one has {len(prompt):,}."
        )
