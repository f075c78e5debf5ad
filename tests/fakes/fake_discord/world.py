"""The fake's fixed world — guild "G1", its channels, roles and users — with Discord's
permission and intent bits and the permission arithmetic Discord does.

Guild :data:`GUILD` ("G1", owner Grace) with text channels :data:`CHANNEL` ("general") and
:data:`NO_THREADS_CHANNEL` ("announcements": the bot may send there but not create threads),
forum :data:`FORUM` ("help"); roles @everyone (id :data:`GUILD`), :data:`MOD_ROLE` (Manage
Messages, Manage Threads, Mention Everyone) and :data:`BOT_ROLE` (Mention Everyone too, so only
``allowed_mentions`` keeps a model's ``@everyone`` quiet); users (:class:`FakeUser`)
:data:`BOT` ("relaybot"; its id is the application id), :data:`ADA`, :data:`JEANNE`,
:data:`GRACE` (moderator, owner) and :data:`OTHER_BOT`.

A second guild, :data:`GUILD_2` ("G2", text channel :data:`CHANNEL_2`, the same users and
roles), exists only when the fake is asked for it; its id puts it on the other shard of two
(:func:`shard_of`), so a test can tell which shard hears which guild.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

# --- permissions and intents (Discord's bit values) ----------------------------------------------

ADD_REACTIONS, VIEW_CHANNEL, SEND_MESSAGES = 1 << 6, 1 << 10, 1 << 11
MANAGE_MESSAGES, EMBED_LINKS, ATTACH_FILES = 1 << 13, 1 << 14, 1 << 15
READ_MESSAGE_HISTORY, MENTION_EVERYONE, USE_EXTERNAL_EMOJIS = 1 << 16, 1 << 17, 1 << 18
ADMINISTRATOR, MANAGE_THREADS, CREATE_PUBLIC_THREADS = 1 << 3, 1 << 34, 1 << 35
SEND_MESSAGES_IN_THREADS = 1 << 38
ALL_PERMISSIONS = (1 << 51) - 1
EVERYONE_PERMISSIONS = (
    VIEW_CHANNEL | SEND_MESSAGES | READ_MESSAGE_HISTORY | ADD_REACTIONS | EMBED_LINKS
    | ATTACH_FILES | USE_EXTERNAL_EMOJIS | CREATE_PUBLIC_THREADS | SEND_MESSAGES_IN_THREADS
)  # fmt: skip
DM_PERMISSIONS = VIEW_CHANNEL | SEND_MESSAGES | READ_MESSAGE_HISTORY | EMBED_LINKS

INTENT_GUILDS, INTENT_GUILD_MEMBERS, INTENT_GUILD_PRESENCES = 1 << 0, 1 << 1, 1 << 8
INTENT_GUILD_MESSAGES, INTENT_DIRECT_MESSAGES, INTENT_MESSAGE_CONTENT = 1 << 9, 1 << 12, 1 << 15
PRIVILEGED_INTENTS = INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES | INTENT_MESSAGE_CONTENT
_APP_FLAG_FOR_INTENT = {INTENT_GUILD_PRESENCES: 1 << 12, INTENT_GUILD_MEMBERS: 1 << 14,
                        INTENT_MESSAGE_CONTENT: 1 << 18}  # fmt: skip


def app_flags(privileged_intents: int) -> int:
    """The application's flags: one for each privileged intent it is allowed."""
    return sum(flag for intent, flag in _APP_FLAG_FOR_INTENT.items() if intent & privileged_intents)


# --- the guild and its people ------------------------------------------------------------------

GUILD = 1_150_000_000_000_000_001
"""Guild "G1"; also the id of its @everyone role."""
CHANNEL = 1_150_000_000_000_000_002
"""Text channel "general": everyone, the bot included, may create public threads."""
NO_THREADS_CHANNEL = 1_150_000_000_000_000_003
"""Text channel "announcements": the bot may send but not create public threads."""
FORUM = 1_150_000_000_000_000_004
"""Forum channel "help"."""
GUILD_2 = GUILD + (1 << 22)
"""Guild "G2": on shard 1 of 2, where :data:`GUILD` is on shard 0 (see :func:`shard_of`)."""
CHANNEL_2 = GUILD_2 + 1
"""Text channel "general" of :data:`GUILD_2`."""
MOD_ROLE = 1_150_000_000_000_000_010
BOT_ROLE = 1_150_000_000_000_000_011


@dataclass(frozen=True, kw_only=True)
class FakeUser:
    """A Discord user and their roles in :data:`GUILD`."""

    id: int
    username: str
    global_name: str | None = None
    bot: bool = False
    roles: tuple[int, ...] = ()

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"

    def payload(self) -> dict[str, Any]:
        """The user object."""
        body: dict[str, Any] = {
            "id": str(self.id), "username": self.username, "global_name": self.global_name,
            "discriminator": "0", "avatar": None, "public_flags": 0, "flags": 0,
        }  # fmt: skip
        if self.bot:
            body["bot"] = True
        return body

    def member(self, *, with_user: bool = True) -> dict[str, Any]:
        """The guild member object."""
        body: dict[str, Any] = {
            "roles": [str(r) for r in self.roles], "nick": None, "avatar": None, "banner": None,
            "joined_at": "2024-01-01T00:00:00.000000+00:00", "premium_since": None,
            "deaf": False, "mute": False, "flags": 0, "pending": False,
            "communication_disabled_until": None,
        }  # fmt: skip
        if with_user:
            body["user"] = self.payload()
        return body


BOT = FakeUser(id=1_150_000_000_000_000_100, username="relaybot", bot=True, roles=(BOT_ROLE,))
"""The bot user; its id is also the application id."""
ADA = FakeUser(id=1_150_000_000_000_000_101, username="ada", global_name="Ada")
JEANNE = FakeUser(id=1_150_000_000_000_000_102, username="jeanne", global_name="Jeanne")
GRACE = FakeUser(
    id=1_150_000_000_000_000_103, username="grace", global_name="Grace", roles=(MOD_ROLE,)
)
"""A moderator (Manage Messages) and the guild's owner."""
OTHER_BOT = FakeUser(id=1_150_000_000_000_000_104, username="otherbot", bot=True)
USERS: Mapping[int, FakeUser] = MappingProxyType(
    {u.id: u for u in (BOT, ADA, JEANNE, GRACE, OTHER_BOT)}
)
APP_ID = BOT.id

ROLES = {
    GUILD: ("@everyone", EVERYONE_PERMISSIONS, 0),
    MOD_ROLE: ("Moderators", MANAGE_MESSAGES | MANAGE_THREADS | MENTION_EVERYONE, 2),
    BOT_ROLE: ("relaybot", EVERYONE_PERMISSIONS | MENTION_EVERYONE, 1),
}
"""Each role's name, permissions and position."""


def shard_of(guild_id: int | None, shard_count: int) -> int:
    """The shard that hears a guild, by Discord's rule; DMs go to shard 0."""
    return 0 if guild_id is None else (guild_id >> 22) % shard_count


def guild_channels(*, second_guild: bool = False) -> list[dict[str, Any]]:
    """The guilds' channels as the fake starts them (ids as ints): :data:`GUILD`'s, and
    :data:`CHANNEL_2` with ``second_guild``."""
    no_threads = str(CREATE_PUBLIC_THREADS)
    base: dict[str, Any] = {
        "guild_id": GUILD, "parent_id": None, "nsfw": False, "rate_limit_per_user": 0,
        "last_message_id": None, "topic": None, "flags": 0,
        "default_auto_archive_duration": 1440,
    }  # fmt: skip
    second = [base | {"id": CHANNEL_2, "guild_id": GUILD_2, "type": 0, "name": "general",
                      "position": 0, "permission_overwrites": []}]  # fmt: skip
    return [
        base | {"id": CHANNEL, "type": 0, "name": "general", "position": 0,
                "permission_overwrites": []},
        base | {"id": NO_THREADS_CHANNEL, "type": 0, "name": "announcements", "position": 1,
                "permission_overwrites": [
                    {"id": str(GUILD), "type": 0, "allow": "0", "deny": no_threads},
                    {"id": str(BOT_ROLE), "type": 0, "allow": "0", "deny": no_threads}]},
        base | {"id": FORUM, "type": 15, "name": "help", "position": 2,
                "permission_overwrites": [], "available_tags": [],
                "default_reaction_emoji": None, "default_sort_order": None,
                "default_forum_layout": 0, "default_thread_rate_limit_per_user": 0},
    ] + (second if second_guild else [])  # fmt: skip


def permissions(user: FakeUser, channel: Mapping[str, Any] | None) -> int:
    """``user``'s permissions in ``channel`` (for a thread: its parent), computed as Discord
    does: owner, roles, then the channel's overwrites for @everyone, roles and the member.
    Outside the guild (a DM) it is what a DM allows."""
    if channel is None or channel.get("guild_id") is None:
        return DM_PERMISSIONS
    if user.id == GRACE.id:
        return ALL_PERMISSIONS
    perms = ROLES[GUILD][1]
    for role in user.roles:
        perms |= ROLES[role][1]
    if perms & ADMINISTRATOR:
        return ALL_PERMISSIONS
    overwrites = {int(o["id"]): o for o in channel.get("permission_overwrites", [])}
    for layer in ([GUILD], [r for r in user.roles if r in overwrites], [user.id]):
        deny = allow = 0
        for o in (overwrites[oid] for oid in layer if oid in overwrites):
            deny, allow = deny | int(o["deny"]), allow | int(o["allow"])
        perms = (perms & ~deny) | allow
    return perms


def now_iso() -> str:
    """Now, as Discord writes a timestamp."""
    return datetime.now(UTC).isoformat(timespec="microseconds")
