"""The bot-token REST routes: users, the application, the gateway's address, the guild,
channels, threads and messages. (Interaction callbacks and webhooks are in
:mod:`tests.fakes.fake_discord.interactions`.)

``GET /users/@me``, ``GET /users/{id}``, ``POST /users/@me/channels``, ``GET /gateway``,
``GET /gateway/bot``, ``GET /oauth2/applications/@me`` (login asks it), ``GET
/applications/@me``, ``GET /guilds/{id}``, ``GET /guilds/{id}/members/{uid}``, ``GET|PATCH|DELETE
/channels/{id}`` (PATCH and DELETE: threads), ``GET|POST /channels/{id}/messages``,
``GET|PATCH|DELETE /channels/{id}/messages/{mid}``, ``POST
/channels/{id}/messages/{mid}/threads``, ``POST /channels/{id}/threads``, ``POST
/channels/{id}/typing``. The bot's writes come back over the gateway as MESSAGE_CREATE /
MESSAGE_UPDATE / MESSAGE_DELETE and THREAD_CREATE / THREAD_UPDATE / THREAD_DELETE, as on
Discord.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from tests.fakes.fake_discord import payloads
from tests.fakes.fake_discord.errors import DiscordError, invalid_form, missing_permissions, unknown
from tests.fakes.fake_discord.messages import check_content
from tests.fakes.fake_discord.ratelimits import MESSAGES
from tests.fakes.fake_discord.router import Answer, Params, Query, Route
from tests.fakes.fake_discord.state import State
from tests.fakes.fake_discord.world import (
    BOT,
    CREATE_PUBLIC_THREADS,
    MANAGE_MESSAGES,
    MANAGE_THREADS,
    USERS,
    now_iso,
)

_SENDABLE_FLAGS = 4 | 4096  # SUPPRESS_EMBEDS, SUPPRESS_NOTIFICATIONS


class Rest:
    """The routes' handlers, over the fake's :class:`~tests.fakes.fake_discord.state.State`."""

    def __init__(
        self,
        state: State,
        *,
        privileged_intents: int,
        application_flags: int | None = None,
        shards: int = 1,
        max_concurrency: int = 1,
    ) -> None:
        self.gateway_url = ""
        """Where ``GET /gateway`` sends a client; set once the fake is serving."""
        self._state, self._privileged = state, privileged_intents
        self._application_flags = application_flags
        self._shards, self._max_concurrency = shards, max_concurrency

    def routes(self) -> list[Route]:
        channel, message = "/channels/{channel_id}", "/channels/{channel_id}/messages/{message_id}"
        return [
            Route("GET", "/users/@me", self._get_me),
            Route("GET", "/users/{user_id}", self._get_user),
            Route("POST", "/users/@me/channels", self._create_dm),
            Route("GET", "/gateway", self._get_gateway),
            Route("GET", "/gateway/bot", self._get_gateway_bot),
            Route("GET", "/oauth2/applications/@me", self._get_application),
            Route("GET", "/applications/@me", self._get_application),
            Route("GET", "/guilds/{guild_id}", self._get_guild),
            Route("GET", "/guilds/{guild_id}/members/{user_id}", self._get_member),
            Route("GET", channel, self._get_channel),
            Route("PATCH", channel, self._edit_thread),
            Route("DELETE", channel, self._delete_thread),
            Route("GET", channel + "/messages", self._history),
            Route("POST", channel + "/messages", self._create_message, bucket=MESSAGES),
            Route("GET", message, self._get_message),
            Route("PATCH", message, self._edit_message, bucket=MESSAGES),
            Route("DELETE", message, self._delete_message),
            Route("POST", message + "/threads", self._thread_from_message),
            Route("POST", channel + "/threads", self._thread_without_message),
            Route("POST", channel + "/typing", self._typing),
        ]

    # --- users, application, gateway, guild ---------------------------------------------------

    async def _get_me(self, p: Params, body: Any, q: Query) -> Answer:
        return 200, BOT.payload() | {"verified": True, "mfa_enabled": False, "email": None}

    async def _get_user(self, p: Params, body: Any, q: Query) -> Answer:
        if (user := USERS.get(p["user_id"])) is None:
            raise unknown("User", 10013)
        return 200, user.payload()

    async def _create_dm(self, p: Params, body: Any, q: Query) -> Answer:
        if (user := USERS.get(int((body or {}).get("recipient_id", 0)))) is None:
            raise unknown("User", 10013)
        return 200, self._state.channel_payload(self._state.dm_channel(user))

    async def _get_gateway(self, p: Params, body: Any, q: Query) -> Answer:
        return 200, {"url": self.gateway_url}

    async def _get_gateway_bot(self, p: Params, body: Any, q: Query) -> Answer:
        limit = {"total": 1000, "remaining": 999, "reset_after": 14_400_000,
                 "max_concurrency": self._max_concurrency}  # fmt: skip
        return 200, {"url": self.gateway_url, "shards": self._shards, "session_start_limit": limit}

    async def _get_application(self, p: Params, body: Any, q: Query) -> Answer:
        application = payloads.application(self._privileged)
        if self._application_flags is not None:
            application["flags"] = self._application_flags
        return 200, application

    async def _get_guild(self, p: Params, body: Any, q: Query) -> Answer:
        if p["guild_id"] not in self._state.guilds:
            raise unknown("Guild", 10004)
        return 200, payloads.guild(p["guild_id"])

    async def _get_member(self, p: Params, body: Any, q: Query) -> Answer:
        if p["guild_id"] not in self._state.guilds:
            raise unknown("Guild", 10004)
        if (user := USERS.get(p["user_id"])) is None:
            raise unknown("Member", 10007)
        return 200, user.member()

    # --- channels and threads ------------------------------------------------------------------

    async def _get_channel(self, p: Params, body: Any, q: Query) -> Answer:
        return 200, self._state.channel_payload(self._state.existing(p["channel_id"]))

    async def _edit_thread(self, p: Params, body: Any, q: Query) -> Answer:
        """Only threads can be edited here: ``name``, ``archived``, ``locked``."""
        thread = self._state.thread_of(p["channel_id"])
        body = body or {}
        can_manage = bool(self._state.permissions(BOT, thread.id) & MANAGE_THREADS)
        if not (can_manage or thread.owner_id == BOT.id or set(body) <= {"archived"}):
            raise missing_permissions()
        if thread.locked and not can_manage:
            raise missing_permissions()
        changed = replace(
            thread,
            name=str(body.get("name", thread.name))[:100],
            archived=bool(body.get("archived", thread.archived)),
            locked=bool(body.get("locked", thread.locked)),
        )
        if changed.archived != thread.archived:
            changed = replace(changed, archive_timestamp=now_iso())
        await self._state.update_thread(changed)
        return 200, changed.payload()

    async def _delete_thread(self, p: Params, body: Any, q: Query) -> Answer:
        thread = self._state.thread_of(p["channel_id"])
        can_manage = self._state.permissions(BOT, thread.id) & MANAGE_THREADS
        if thread.owner_id != BOT.id and not can_manage:
            raise missing_permissions()
        await self._state.delete_channel(thread.id)
        return 200, thread.payload()

    async def _thread_from_message(self, p: Params, body: Any, q: Query) -> Answer:
        channel_id, body = p["channel_id"], body or {}
        starter = self._state.message_in(channel_id, p["message_id"])
        if self._state.channels.get(channel_id, {}).get("type") not in (0, 5):
            raise DiscordError(400, 50024, "Cannot execute action on this channel type")
        if not self._state.permissions(BOT, channel_id) & CREATE_PUBLIC_THREADS:
            raise missing_permissions()
        if starter.thread_id is not None:
            raise DiscordError(400, 160004, "A thread has already been created for this message")
        thread = await self._state.open_thread(
            channel_id, BOT, _thread_name(body), message_id=starter.id,
            auto_archive=int(body.get("auto_archive_duration") or 1440),
        )  # fmt: skip
        return 201, thread.payload() | {"member": payloads.thread_member(thread.id, BOT.id)}

    async def _thread_without_message(self, p: Params, body: Any, q: Query) -> Answer:
        """A thread in a text channel, or a post (thread and starter message) in a forum."""
        channel_id, body, state = p["channel_id"], body or {}, self._state
        parent = state.channels.get(channel_id)
        if parent is None or channel_id in state.deleted:
            raise unknown("Channel", 10003)
        if not state.permissions(BOT, channel_id) & CREATE_PUBLIC_THREADS:
            raise missing_permissions()
        name = _thread_name(body)
        if parent["type"] != 15:
            thread = await state.open_thread(channel_id, BOT, name, kind=int(body.get("type", 12)))
            return 201, thread.payload()
        thread_id = state.snowflake()
        first = body.get("message") or {}
        starter = replace(state.new_message(thread_id, BOT, str(first.get("content", "")),
                                            allowed=first.get("allowed_mentions")),
                          id=thread_id, components=list(first.get("components", [])))  # fmt: skip
        check_content(starter)
        thread = await state.open_thread(channel_id, BOT, name, thread_id=thread_id)
        await state.post(starter)
        return 201, state.threads[thread.id].payload() | {"message": starter.payload()}

    async def _typing(self, p: Params, body: Any, q: Query) -> Answer:
        self._state.writable(p["channel_id"])
        return 204, None

    # --- messages ------------------------------------------------------------------------------

    async def _history(self, p: Params, body: Any, q: Query) -> Answer:
        """Newest first, as Discord answers; ``after`` takes the oldest ``limit`` after it."""
        channel_id = self._state.existing(p["channel_id"])
        found = list(self._state.messages.get(channel_id, {}).values())
        limit = min(int(q.get("limit", 50)), 100)
        if "before" in q:
            found = [m for m in found if m.id < int(q["before"])]
        if "after" in q:
            found = [m for m in found if m.id > int(q["after"])][:limit]
        return 200, [m.payload() for m in reversed(found[-limit:])]

    async def _get_message(self, p: Params, body: Any, q: Query) -> Answer:
        return 200, self._state.message_in(p["channel_id"], p["message_id"]).payload()

    async def _create_message(self, p: Params, body: Any, q: Query) -> Answer:
        channel_id, body = p["channel_id"], body or {}
        self._state.writable(channel_id, bot=True)
        reply_to = (body.get("message_reference") or {}).get("message_id")
        message = self._state.new_message(
            channel_id, BOT, str(body.get("content") or ""), allowed=body.get("allowed_mentions"),
            reply_to=int(reply_to) if reply_to else None,
        )  # fmt: skip
        message = replace(message, components=list(body.get("components") or []),
                          embeds=list(body.get("embeds") or []),
                          flags=int(body.get("flags") or 0) & _SENDABLE_FLAGS)  # fmt: skip
        check_content(message)
        await self._state.unarchive_for_message(channel_id)
        await self._state.post(message)
        return 200, message.payload()

    async def _edit_message(self, p: Params, body: Any, q: Query) -> Answer:
        old = self._state.message_in(p["channel_id"], p["message_id"])
        if old.author.id != BOT.id:
            raise DiscordError(403, 50005, "Cannot edit a message authored by another user")
        self._state.not_archived(old.channel_id)
        new = self._state.edited(old, body or {})
        check_content(new)
        await self._state.update_message(new)
        return 200, new.payload()

    async def _delete_message(self, p: Params, body: Any, q: Query) -> Answer:
        message = self._state.message_in(p["channel_id"], p["message_id"])
        if message.author.id != BOT.id and not (
            self._state.permissions(BOT, message.channel_id) & MANAGE_MESSAGES
        ):
            raise missing_permissions()
        await self._state.delete_message(message)
        return 204, None


def _thread_name(body: Mapping[str, Any]) -> str:
    name = str(body.get("name") or "")
    if not 1 <= len(name) <= 100:
        raise invalid_form("name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
    return name
