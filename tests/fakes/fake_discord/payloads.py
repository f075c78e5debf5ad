"""The guild-level JSON objects the fake answers and dispatches: the guild, its roles and
channels, a thread member, the application. (A user, member, message and thread each give
their own: ``payload()``.)"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tests.fakes.fake_discord.world import (
    APP_ID,
    BOT,
    BOT_ROLE,
    CHANNEL,
    GRACE,
    GUILD,
    GUILD_2,
    MOD_ROLE,
    ROLES,
    USERS,
    app_flags,
    now_iso,
)


def guild(guild_id: int = GUILD) -> dict[str, Any]:
    """The guild object, as ``GET /guilds/{id}`` answers it. :data:`GUILD_2` has the same
    roles, its @everyone under its own id."""
    roles = [role(rid) for rid in ROLES]
    if guild_id != GUILD:
        roles[0]["id"] = str(guild_id)  # @everyone's id is its guild's
    return {
        "id": str(guild_id), "name": "G2" if guild_id == GUILD_2 else "G1", "icon": None,
        "splash": None, "banner": None, "discovery_splash": None, "description": None,
        "owner_id": str(GRACE.id),
        "afk_channel_id": None, "afk_timeout": 300, "verification_level": 0,
        "default_message_notifications": 1, "explicit_content_filter": 0, "mfa_level": 0,
        "nsfw_level": 0, "premium_tier": 0, "premium_subscription_count": 0,
        "premium_progress_bar_enabled": False,
        "system_channel_id": str(CHANNEL) if guild_id == GUILD else None,
        "system_channel_flags": 0, "rules_channel_id": None,
        "public_updates_channel_id": None, "safety_alerts_channel_id": None,
        "preferred_locale": "en-US", "features": [], "vanity_url_code": None,
        "max_members": 500_000, "max_video_channel_users": 25, "application_id": None,
        "roles": roles, "emojis": [], "stickers": [],
        "joined_at": "2024-01-01T00:00:00.000000+00:00", "large": False,
        "unavailable": False, "presences": [], "voice_states": [], "stage_instances": [],
        "guild_scheduled_events": [], "soundboard_sounds": [], "embedded_activities": [],
        "lazy": True,
    }  # fmt: skip


def guild_create(
    *,
    channels: Iterable[dict[str, Any]],
    threads: Iterable[dict[str, Any]],
    members: bool,
    guild_id: int = GUILD,
) -> dict[str, Any]:
    """GUILD_CREATE's guild: with its channels, active threads and members (all of them with
    the GUILD_MEMBERS intent, else only the bot)."""
    shown = list(USERS.values()) if members else [BOT]
    return guild(guild_id) | {
        "member_count": len(USERS), "members": [u.member() for u in shown],
        "channels": list(channels), "threads": list(threads),
    }  # fmt: skip


def role(role_id: int) -> dict[str, Any]:
    name, perms, position = ROLES[role_id]
    body: dict[str, Any] = {
        "id": str(role_id), "name": name, "permissions": str(perms), "position": position,
        "color": 0, "colors": {"primary_color": 0, "secondary_color": None,
                               "tertiary_color": None},
        "hoist": False, "managed": role_id == BOT_ROLE, "mentionable": role_id == MOD_ROLE,
        "icon": None, "unicode_emoji": None, "flags": 0,
    }  # fmt: skip
    if role_id == BOT_ROLE:
        body["tags"] = {"bot_id": str(BOT.id)}
    return body


def channel(kept: Mapping[str, Any]) -> dict[str, Any]:
    """A channel the fake keeps (ids as ints), as the channel object (ids as strings)."""
    body = dict(kept)
    for key in ("id", "guild_id", "last_message_id"):
        if body.get(key) is not None:
            body[key] = str(body[key])
    return body


def thread_member(thread_id: int, user_id: int) -> dict[str, Any]:
    return {"id": str(thread_id), "user_id": str(user_id), "join_timestamp": now_iso(),
            "flags": 1}  # fmt: skip


def application(privileged_intents: int) -> dict[str, Any]:
    """The application object, as ``GET /oauth2/applications/@me`` answers it."""
    return {
        "id": str(APP_ID), "name": "relaybot", "description": "", "icon": None,
        "bot_public": True, "bot_require_code_grant": False, "verify_key": "0" * 64,
        "owner": GRACE.payload(), "team": None, "flags": app_flags(privileged_intents),
        "bot": BOT.payload(), "interactions_endpoint_url": None, "redirect_uris": [],
        "tags": [], "approximate_guild_count": 1,
    }  # fmt: skip
