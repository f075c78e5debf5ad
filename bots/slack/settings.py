"""The ``[slack]`` settings: the Slack bot's tokens, where it answers, and how its replies are
paced. ``bots.settings`` puts this section into relaybot's settings."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from core.settings import HttpUrl, Secret, Section, TokenVariable

__all__ = ["LOADING_MESSAGES", "SUGGESTED_PROMPTS", "SlackSettings", "SuggestedPrompt"]


class SuggestedPrompt(Section):
    """A prompt Slack offers in the bot's messages tab: its button ``title``, and the
    ``message`` sent when it is pressed."""

    title: str = Field(min_length=1, max_length=75)
    message: str = Field(min_length=1, max_length=2000)


SUGGESTED_PROMPTS = (
    SuggestedPrompt(title="What's the weather in Paris?", message="What's the weather in Paris?"),
    SuggestedPrompt(
        title="Explain a concept", message="Explain Server-Sent Events in a paragraph."
    ),
    SuggestedPrompt(title="Draft a message", message="Help me draft a short, friendly reply."),
)
"""What the messages tab offers unless ``suggested_prompts`` says otherwise."""
LOADING_MESSAGES = ("Thinking…", "Reading the thread…", "Working on an answer…")
"""The rotating status shown under a thread until the answer's first words."""


class SlackSettings(Section):
    """The Slack bot: tokens, where it answers, and how its replies are paced."""

    bot_token: Annotated[Secret, TokenVariable("SLACK_BOT_TOKEN")] = None
    app_token: Annotated[Secret, TokenVariable("SLACK_APP_TOKEN")] = None
    signing_secret: Annotated[Secret, TokenVariable("SLACK_SIGNING_SECRET")] = None
    api_url: HttpUrl | None = None
    allowed_channels: tuple[str, ...] = ()
    allowed_users: tuple[str, ...] = ()
    command_admins: tuple[str, ...] = ()
    """User ids (U..., W...) who may change a channel's model and prompt with ``/relaybot``
    besides the workspace's admins and owners."""
    direct_messages: bool = True
    follow_ups: bool = True
    max_input_chars: int = Field(default=8000, ge=100)
    edit_interval: float = Field(default=1.0, gt=0)
    user_cache_seconds: float = Field(default=3600.0, ge=0)
    streaming: Literal["auto", "native", "edit"] = "auto"
    """How an answer grows: ``native`` with Slack's streaming methods, ``edit`` by editing one
    message with ``chat.update``; ``auto`` streams natively in DMs and agent threads while the
    workspace's start budget allows, and edits in channel threads."""
    loading_messages: tuple[str, ...] = Field(default=LOADING_MESSAGES, max_length=10)
    suggested_prompts: tuple[SuggestedPrompt, ...] = Field(default=SUGGESTED_PROMPTS, max_length=4)
