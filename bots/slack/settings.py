"""The ``[slack]`` settings: the Slack bot's tokens, where it answers, and how its replies are
paced. ``bots.settings`` puts this section into relaybot's settings."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from core.settings import HttpUrl, Secret, Section, TokenVariable

__all__ = ["SlackSettings"]


class SlackSettings(Section):
    """The Slack bot: tokens, where it answers, and how its replies are paced."""

    bot_token: Annotated[Secret, TokenVariable("SLACK_BOT_TOKEN")] = None
    app_token: Annotated[Secret, TokenVariable("SLACK_APP_TOKEN")] = None
    signing_secret: Annotated[Secret, TokenVariable("SLACK_SIGNING_SECRET")] = None
    api_url: HttpUrl | None = None
    allowed_channels: tuple[str, ...] = ()
    allowed_users: tuple[str, ...] = ()
    direct_messages: bool = True
    follow_ups: bool = True
    max_input_chars: int = Field(default=8000, ge=100)
    edit_interval: float = Field(default=1.0, gt=0)
    user_cache_seconds: float = Field(default=3600.0, ge=0)
