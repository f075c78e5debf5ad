"""A message as Discord shows it, whom it pings, and what Discord refuses in one.

Pings are read from the content as Discord reads them (``<@id>``, ``<@&id>``, ``@everyone``,
``@here``), plus the author of the message replied to; ``allowed_mentions`` then keeps only
what it allows.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.fake_discord.cdn import Attachment
from tests.fakes.fake_discord.errors import DiscordError, invalid_form
from tests.fakes.fake_discord.world import APP_ID, ROLES, USERS, FakeUser

MAX_CONTENT = 2000


@dataclass(frozen=True, kw_only=True)
class Message:
    """A message as Discord shows it now. ``mentions``, ``mention_roles`` and
    ``mention_everyone`` are who it actually pings, after ``allowed_mentions``."""

    id: int
    channel_id: int
    guild_id: int | None
    author: FakeUser
    content: str = ""
    components: list[dict[str, Any]] = field(default_factory=list)
    embeds: list[dict[str, Any]] = field(default_factory=list)
    mentions: tuple[FakeUser, ...] = ()
    mention_roles: tuple[int, ...] = ()
    mention_everyone: bool = False
    allowed_mentions: dict[str, Any] | None = None
    reference: dict[str, Any] | None = None
    timestamp: str = ""
    edited_timestamp: str | None = None
    thread_id: int | None = None
    flags: int = 0
    type: int = 0
    interaction_id: int | None = None
    attachments: tuple[Attachment, ...] = ()

    @property
    def edited(self) -> bool:
        return self.edited_timestamp is not None

    @property
    def pings(self) -> bool:
        """Whether it notifies anyone."""
        return bool(self.mentions or self.mention_roles or self.mention_everyone)

    @property
    def custom_ids(self) -> list[str]:
        """The ``custom_id`` of every component, in order."""
        return [c["custom_id"] for c in walk_components(self.components) if "custom_id" in c]

    def payload(self, *, gateway: bool = False) -> dict[str, Any]:
        """The message object; ``gateway`` adds ``guild_id`` and ``member`` as events carry."""
        body: dict[str, Any] = {
            "id": str(self.id), "channel_id": str(self.channel_id), "type": self.type,
            "author": self.author.payload(), "content": self.content,
            "timestamp": self.timestamp, "edited_timestamp": self.edited_timestamp,
            "tts": False, "mention_everyone": self.mention_everyone,
            "mentions": [u.payload() for u in self.mentions],
            "mention_roles": [str(r) for r in self.mention_roles],
            "attachments": [a.payload() for a in self.attachments], "embeds": self.embeds,
            "components": self.components, "pinned": False, "flags": self.flags,
        }  # fmt: skip
        if self.reference is not None:
            body["message_reference"] = self.reference
        if self.author.id == APP_ID and self.interaction_id is not None:
            body |= {"webhook_id": str(APP_ID), "application_id": str(APP_ID)}
        if gateway and self.guild_id is not None:
            body["guild_id"] = str(self.guild_id)
            if self.author.id in USERS:
                body["member"] = self.author.member(with_user=False)
        return body


def walk_components(components: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    """Every component, nested ones and accessories included, in order."""
    for component in components:
        yield component
        yield from walk_components(component.get("components", []))
        if isinstance(component.get("accessory"), dict):
            yield component["accessory"]


_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")


def pinged(
    content: str,
    *,
    allowed: Mapping[str, Any] | None,
    replied: FakeUser | None,
    may_mention_everyone: bool,
) -> tuple[tuple[FakeUser, ...], tuple[int, ...], bool]:
    """The users, roles and whether everyone a message pings: what its content mentions
    (``@everyone`` and ``@here`` only from who may mention everyone), the ``replied`` author,
    then ``allowed_mentions`` applied as Discord applies it."""
    users = [int(m) for m in _USER_MENTION.findall(content)]
    roles = [int(m) for m in _ROLE_MENTION.findall(content)]
    everyone = may_mention_everyone and ("@everyone" in content or "@here" in content)
    if replied is not None:
        users.append(replied.id)
    if allowed is not None:
        parse = set(allowed.get("parse") or [])
        for kind in ("users", "roles"):
            if kind in parse and allowed.get(kind):
                message = f'parse:["{kind}"] and {kind}: [ids...] are mutually exclusive.'
                code = "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE"
                raise invalid_form("allowed_mentions", code, message)
        listed_users = {int(u) for u in allowed.get("users") or []}
        listed_roles = {int(r) for r in allowed.get("roles") or []}
        pinged_replied = [replied.id] if replied is not None and allowed.get("replied_user") else []
        users = [u for u in users if "users" in parse or u in listed_users] + pinged_replied
        roles = [r for r in roles if "roles" in parse or r in listed_roles]
        everyone = everyone and "everyone" in parse
    return (
        tuple(USERS[u] for u in dict.fromkeys(users) if u in USERS),
        tuple(r for r in dict.fromkeys(roles) if r in ROLES),
        everyone,
    )


def check_content(message: Message) -> None:
    """Raises what Discord answers to a message it refuses: too long, empty, or a
    ``custom_id`` over 100 characters."""
    if len(message.content) > MAX_CONTENT:
        raise invalid_form("content", "BASE_TYPE_MAX_LENGTH",
                           f"Must be {MAX_CONTENT} or fewer in length.")  # fmt: skip
    if not (message.content or message.components or message.embeds or message.flags & 128):
        raise DiscordError(400, 50006, "Cannot send an empty message")
    for component in walk_components(message.components):
        if len(str(component.get("custom_id", ""))) > 100:
            raise invalid_form("components", "BASE_TYPE_MAX_LENGTH",
                               "Must be 100 or fewer in length.")  # fmt: skip
