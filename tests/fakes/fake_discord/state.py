"""What the fake Discord holds — channels, threads, messages, ephemeral replies — and each
change to it, announced to the gateway's sessions as Discord announces it.

Sending in an archived, unlocked thread unarchives it, as Discord does. A thread started from
a message takes that message's id; a forum post's thread and its starter message share one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from tests.fakes.fake_discord import payloads
from tests.fakes.fake_discord.errors import DiscordError, missing_permissions, unknown
from tests.fakes.fake_discord.messages import Message, pinged
from tests.fakes.fake_discord.sessions import Sessions
from tests.fakes.fake_discord.world import (
    BOT,
    GUILD,
    GUILD_2,
    INTENT_GUILD_MESSAGES,
    INTENT_GUILDS,
    MANAGE_THREADS,
    MENTION_EVERYONE,
    SEND_MESSAGES,
    SEND_MESSAGES_IN_THREADS,
    VIEW_CHANNEL,
    FakeUser,
    guild_channels,
    now_iso,
    permissions,
)

DISCORD_EPOCH_MS = 1_420_070_400_000


@dataclass(frozen=True, kw_only=True)
class Thread:
    """A thread channel as Discord keeps it; ``id`` is its starter message's id when it was
    started from one."""

    id: int
    parent_id: int
    owner_id: int
    name: str
    guild_id: int = GUILD
    type: int = 11
    archived: bool = False
    locked: bool = False
    auto_archive_duration: int = 1440
    created: str = ""
    archive_timestamp: str = ""
    message_count: int = 0
    last_message_id: int | None = None

    def payload(self) -> dict[str, Any]:
        last = None if self.last_message_id is None else str(self.last_message_id)
        return {
            "id": str(self.id), "type": self.type, "guild_id": str(self.guild_id),
            "parent_id": str(self.parent_id), "owner_id": str(self.owner_id), "name": self.name,
            "last_message_id": last, "message_count": self.message_count,
            "member_count": 2, "total_message_sent": self.message_count,
            "rate_limit_per_user": 0, "flags": 0, "applied_tags": [],
            "thread_metadata": {
                "archived": self.archived, "locked": self.locked,
                "auto_archive_duration": self.auto_archive_duration,
                "archive_timestamp": self.archive_timestamp or self.created,
                "create_timestamp": self.created, "invitable": True,
            },
        }  # fmt: skip


class State:
    """The guilds' channels (ids as ints), their threads, every channel's messages oldest
    first, and the ephemeral replies no channel shows."""

    def __init__(self, sessions: Sessions, *, second_guild: bool = False) -> None:
        self.guilds = (GUILD, GUILD_2) if second_guild else (GUILD,)
        self.channels: dict[int, dict[str, Any]] = {
            c["id"]: c for c in guild_channels(second_guild=second_guild)
        }
        self.threads: dict[int, Thread] = {}
        self.messages: dict[int, dict[int, Message]] = {}
        self.deleted: set[int] = set()
        self.ephemeral: list[Message] = []
        self._sessions = sessions
        self._last_id = 0

    def snowflake(self) -> int:
        stamp = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last_id = max(self._last_id + 1, stamp)
        return self._last_id

    def dm_channel(self, user: FakeUser) -> int:
        """The id of the DM channel between ``user`` and the bot (created on first use)."""
        for cid, channel in self.channels.items():
            if channel["type"] == 1 and channel["recipients"][0]["id"] == str(user.id):
                return cid
        cid = self.snowflake()
        self.channels[cid] = {"id": cid, "type": 1, "recipients": [user.payload()],
                              "last_message_id": None, "flags": 0}  # fmt: skip
        return cid

    # --- looking up, as Discord refuses --------------------------------------------------------

    def permissions(self, user: FakeUser, channel_id: int) -> int:
        thread = self.threads.get(channel_id)
        return permissions(user, self.channels.get(thread.parent_id if thread else channel_id))

    def channel_payload(self, channel_id: int) -> dict[str, Any]:
        if (thread := self.threads.get(channel_id)) is not None:
            return thread.payload()
        return payloads.channel(self.channels[channel_id])

    def guild_create(self, guild_id: int, *, members: bool) -> dict[str, Any]:
        kept = [c for c in self.channels.values() if c.get("guild_id") == guild_id]
        threads = sorted(self.threads.values(), key=lambda t: t.id)
        active = [t.payload() for t in threads if not t.archived and t.guild_id == guild_id]
        return payloads.guild_create(
            channels=[payloads.channel(c) for c in kept],
            threads=active,
            members=members,
            guild_id=guild_id,
        )

    def existing(self, channel_id: int) -> int:
        if channel_id in self.deleted or (
            channel_id not in self.channels and channel_id not in self.threads
        ):
            raise unknown("Channel", 10003)
        return channel_id

    def thread_of(self, channel_id: int) -> Thread:
        self.existing(channel_id)
        if (thread := self.threads.get(channel_id)) is None:
            raise DiscordError(400, 50024, "Cannot execute action on this channel type")
        return thread

    def writable(self, channel_id: int, *, bot: bool = False) -> None:
        """The channel exists and (for the bot) it may send there."""
        self.existing(channel_id)
        if channel_id in self.channels and self.channels[channel_id]["type"] == 15:
            raise DiscordError(400, 50008, "Cannot send messages in a non-text channel")
        if bot:
            needed = SEND_MESSAGES_IN_THREADS if channel_id in self.threads else SEND_MESSAGES
            perms = self.permissions(BOT, channel_id)
            if not perms & VIEW_CHANNEL:
                raise DiscordError(403, 50001, "Missing Access")
            if not perms & needed:
                raise missing_permissions()
            thread = self.threads.get(channel_id)
            if thread is not None and thread.locked and not perms & MANAGE_THREADS:
                raise DiscordError(403, 160005, "Thread is locked")

    def not_archived(self, channel_id: int) -> None:
        if (thread := self.threads.get(channel_id)) is not None and thread.archived:
            raise DiscordError(400, 50083, "Thread is archived")

    def message_in(self, channel_id: int, message_id: int) -> Message:
        self.existing(channel_id)
        if (message := self.messages.get(channel_id, {}).get(message_id)) is None:
            raise unknown("Message", 10008)
        return message

    def find_message(self, message_id: int) -> Message:
        for kept in self.messages.values():
            if message_id in kept:
                return kept[message_id]
        raise KeyError(message_id)

    def find_reply(self, message_id: int | None) -> Message | None:
        """A message in any channel, or an ephemeral reply."""
        if message_id is None:
            return None
        if shown := [m for m in self.ephemeral if m.id == message_id]:
            return shown[0]
        try:
            return self.find_message(message_id)
        except KeyError:
            return None

    # --- making messages -----------------------------------------------------------------------

    def new_message(
        self,
        channel_id: int,
        author: FakeUser,
        content: str,
        *,
        allowed: dict[str, Any] | None = None,
        reply_to: int | None = None,
    ) -> Message:
        """``author``'s message in the channel, not yet kept, pinging whom Discord would."""
        guild_id = self.guild_of(channel_id)
        reference = None
        replied = None if reply_to is None else self.message_in(channel_id, reply_to)
        if replied is not None:
            reference = {"type": 0, "message_id": str(reply_to), "channel_id": str(channel_id)}
            if guild_id is not None:
                reference["guild_id"] = str(guild_id)
        mentions, roles, everyone = self._pinged(channel_id, author, content, allowed, replied)
        return Message(id=self.snowflake(), channel_id=channel_id, guild_id=guild_id,
                       author=author, content=content, mentions=mentions,
                       mention_roles=roles, mention_everyone=everyone, allowed_mentions=allowed,
                       reference=reference, timestamp=now_iso(),
                       type=19 if reply_to is not None else 0)  # fmt: skip

    def edited(self, old: Message, body: Mapping[str, Any]) -> Message:
        """The message after a PATCH: what the body leaves out stays as it was."""
        content = str(body["content"] or "") if "content" in body else old.content
        allowed = body.get("allowed_mentions", old.allowed_mentions)
        mentions, roles, everyone = self._pinged(old.channel_id, old.author, content, allowed)
        return replace(
            old, content=content, allowed_mentions=allowed, mentions=mentions,
            mention_roles=roles, mention_everyone=everyone,
            components=list(body["components"] or []) if "components" in body else old.components,
            embeds=list(body["embeds"] or []) if "embeds" in body else old.embeds,
            edited_timestamp=now_iso(),
        )  # fmt: skip

    def guild_of(self, channel_id: int) -> int | None:
        """The guild of a channel or thread; ``None`` for a DM."""
        if (thread := self.threads.get(channel_id)) is not None:
            return thread.guild_id
        return self.channels.get(channel_id, {}).get("guild_id")

    def _pinged(
        self,
        channel_id: int,
        author: FakeUser,
        content: str,
        allowed: Mapping[str, Any] | None,
        replied: Message | None = None,
    ) -> tuple[tuple[FakeUser, ...], tuple[int, ...], bool]:
        may_mention_everyone = self.guild_of(channel_id) is None or bool(
            self.permissions(author, channel_id) & MENTION_EVERYONE
        )
        replied_author = None if replied is None else replied.author
        return pinged(content, allowed=allowed, replied=replied_author,
                      may_mention_everyone=may_mention_everyone)  # fmt: skip

    # --- changes, each dispatched --------------------------------------------------------------

    async def post(self, message: Message) -> None:
        """Keeps a new message; MESSAGE_CREATE."""
        self.messages.setdefault(message.channel_id, {})[message.id] = message
        if (thread := self.threads.get(message.channel_id)) is not None:
            self.threads[thread.id] = replace(
                thread, message_count=thread.message_count + 1, last_message_id=message.id
            )
        elif message.channel_id in self.channels:
            self.channels[message.channel_id]["last_message_id"] = message.id
        await self._sessions.dispatch_message("MESSAGE_CREATE", message)

    async def post_reply(self, message: Message) -> None:
        """An interaction's reply: kept aside when ephemeral (flag 64), else posted."""
        if message.flags & 64:
            self.ephemeral.append(message)
        else:
            await self.post(message)

    async def update_message(self, message: Message) -> None:
        """Keeps the message's new state; MESSAGE_UPDATE."""
        self.messages[message.channel_id][message.id] = message
        await self._sessions.dispatch_message("MESSAGE_UPDATE", message)

    async def delete_message(self, message: Message) -> None:
        """MESSAGE_DELETE."""
        del self.messages[message.channel_id][message.id]
        await self._sessions.dispatch_delete(message)

    async def open_thread(
        self,
        parent_id: int,
        owner: FakeUser,
        name: str,
        *,
        message_id: int | None = None,
        thread_id: int | None = None,
        kind: int = 11,
        auto_archive: int = 1440,
    ) -> Thread:
        """A thread from ``message_id`` (taking its id), or with ``thread_id``, or a new id;
        THREAD_CREATE, and MESSAGE_UPDATE of the starter message."""
        self.existing(parent_id)
        starter = None if message_id is None else self.message_in(parent_id, message_id)
        tid = message_id or thread_id or self.snowflake()
        thread = Thread(id=tid, parent_id=parent_id, owner_id=owner.id, name=name, type=kind,
                        guild_id=self.channels[parent_id]["guild_id"],
                        auto_archive_duration=auto_archive, created=now_iso())  # fmt: skip
        self.threads[tid] = thread
        payload = thread.payload() | {"newly_created": True}
        if owner.id == BOT.id:
            payload["member"] = payloads.thread_member(tid, BOT.id)
        await self._sessions.dispatch("THREAD_CREATE", payload, INTENT_GUILDS)
        if starter is not None:
            starter = replace(starter, thread_id=tid)
            self.messages[parent_id][starter.id] = starter
            body = starter.payload(gateway=True) | {"thread": thread.payload(), "flags": 32}
            await self._sessions.dispatch("MESSAGE_UPDATE", body, INTENT_GUILD_MESSAGES)
        return thread

    async def update_thread(self, thread: Thread) -> None:
        """Keeps the thread's new state; THREAD_UPDATE."""
        self.threads[thread.id] = thread
        await self._sessions.dispatch("THREAD_UPDATE", thread.payload(), INTENT_GUILDS)

    async def unarchive_for_message(self, channel_id: int) -> None:
        """Sending in an archived, unlocked thread unarchives it, as Discord does."""
        thread = self.threads.get(channel_id)
        if thread is not None and thread.archived and not thread.locked:
            await self.update_thread(replace(thread, archived=False))

    async def delete_channel(self, channel_id: int) -> None:
        """Later REST on it is ``404 Unknown Channel``; THREAD_DELETE or CHANNEL_DELETE."""
        if (thread := self.threads.pop(channel_id, None)) is not None:
            body = {"id": str(thread.id), "guild_id": str(thread.guild_id),
                    "parent_id": str(thread.parent_id), "type": thread.type}  # fmt: skip
            event = "THREAD_DELETE"
        elif (channel := self.channels.pop(channel_id, None)) is not None:
            body, event = payloads.channel(channel), "CHANNEL_DELETE"
        else:
            raise KeyError(channel_id)
        self.deleted.add(channel_id)
        self.messages.pop(channel_id, None)
        await self._sessions.dispatch(event, body, INTENT_GUILDS)
