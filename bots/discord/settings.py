"""The ``[discord]`` settings: the Discord bot's token, endpoints, where it answers, and how its
replies are paced. ``bots.settings`` puts this section into relaybot's settings."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from core.settings import HttpUrl, Secret, Section, TokenVariable, url_with_scheme

__all__ = ["DiscordSettings"]

WebSocketUrl = Annotated[str, url_with_scheme("ws", "wss")]


class DiscordSettings(Section):
    """The Discord bot: token, endpoints, where it answers, and how its replies are paced.
    Allowlists hold Discord ids (snowflakes); empty means everywhere."""

    bot_token: Annotated[Secret, TokenVariable("DISCORD_BOT_TOKEN")] = None
    api_url: HttpUrl | None = None
    gateway_url: WebSocketUrl | None = None
    allowed_guilds: tuple[int, ...] = ()
    allowed_channels: tuple[int, ...] = ()
    allowed_roles: tuple[int, ...] = ()
    direct_messages: bool = True
    command_admins: tuple[str, ...] = ()
    """User ids that may change a channel's model and prompt (``/relaybot model``, ``prompt``)
    besides the members with Manage Server or Administrator."""
    max_input_chars: int = Field(default=8000, ge=100)
    dm_idle_hours: float = Field(default=6.0, gt=0)
    edit_interval: float = Field(default=1.0, gt=0)
    identify_spacing: float = Field(default=5.0, gt=0)
    """Seconds between two IDENTIFYs of one bucket, across every process sharing
    ``redis.url`` (Discord's limit is one per 5 s); only a test server allows less."""
