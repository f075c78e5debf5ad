"""Component presses, and the bot's answers to them.

A press is dispatched as INTERACTION_CREATE (type 3). The bot answers once, within
``interaction_deadline``, at ``POST /interactions/{id}/{token}/callback``: type 4 replies, 5
defers a reply (a "thinking…" message), 6 defers an update of the pressed message, 7 updates
it. With the interaction's token (valid for 15 minutes) it then sends follow-ups at ``POST
/webhooks/{app}/{token}`` and reads, edits and deletes its replies at ``GET|PATCH|DELETE
/webhooks/{app}/{token}/messages/{mid|@original}``. An ephemeral reply (flag 64) is shown to
one user and kept aside, never in a channel.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from tests.fakes.fake_discord.errors import DiscordError, invalid_form, unknown
from tests.fakes.fake_discord.messages import Message, check_content, walk_components
from tests.fakes.fake_discord.router import Answer, Params, Query, Route
from tests.fakes.fake_discord.sessions import Sessions
from tests.fakes.fake_discord.state import State
from tests.fakes.fake_discord.world import APP_ID, BOT, FakeUser

_EPHEMERAL, _LOADING = 64, 128
"""Message flags."""
_TOKEN_LIFETIME = 15 * 60.0


@dataclass(frozen=True, kw_only=True)
class Interaction:
    """A component press dispatched as INTERACTION_CREATE."""

    id: int
    token: str
    custom_id: str
    user: FakeUser
    message_id: int
    channel_id: int
    at: float


@dataclass
class _Pending:
    """A press, and what the bot answered to it."""

    press: Interaction
    responded: bool = False
    original_id: int | None = None
    responses: list[dict[str, Any]] = field(default_factory=list)


class Interactions:
    """Every press so far, by interaction id, and the routes that answer them."""

    def __init__(
        self, state: State, sessions: Sessions, *, clock: Callable[[], float], deadline: float
    ) -> None:
        self._state, self._sessions = state, sessions
        self._clock, self._deadline = clock, deadline
        self._pending: dict[int, _Pending] = {}

    async def press(self, message_id: int, custom_id: str, user: FakeUser) -> Interaction:
        """``user`` presses the component ``custom_id`` on the message: INTERACTION_CREATE."""
        state, message = self._state, self._state.find_message(message_id)
        kind = next((c["type"] for c in walk_components(message.components)
                     if c.get("custom_id") == custom_id), 2)  # fmt: skip
        press = Interaction(id=state.snowflake(), token=f"itoken-{secrets.token_hex(24)}",
                            custom_id=custom_id, user=user, message_id=message_id,
                            channel_id=message.channel_id, at=self._clock())  # fmt: skip
        self._pending[press.id] = _Pending(press)
        body: dict[str, Any] = {
            "id": str(press.id), "application_id": str(APP_ID), "type": 3,
            "token": press.token, "version": 1,
            "data": {"custom_id": custom_id, "component_type": kind},
            "channel_id": str(message.channel_id),
            "channel": state.channel_payload(message.channel_id),
            "message": message.payload(), "locale": "en-US", "entitlements": [],
            "attachment_size_limit": 10_485_760, "context": 0,
            "app_permissions": str(state.permissions(BOT, message.channel_id)),
        }  # fmt: skip
        if message.guild_id is None:
            body |= {"user": user.payload(), "authorizing_integration_owners": {"1": str(user.id)}}
        else:
            perms = str(state.permissions(user, message.channel_id))
            guild = str(message.guild_id)
            body |= {"guild_id": guild, "guild_locale": "en-US",
                     "guild": {"id": guild, "locale": "en-US", "features": []},
                     "member": user.member() | {"permissions": perms},
                     "authorizing_integration_owners": {"0": guild}}  # fmt: skip
        await self._sessions.dispatch("INTERACTION_CREATE", body, 0)
        return press

    def responses(self, interaction_id: int) -> list[dict[str, Any]]:
        """The callback bodies the bot sent for the interaction."""
        pending = self._pending.get(interaction_id)
        return [] if pending is None else list(pending.responses)

    def routes(self) -> list[Route]:
        callback = "/interactions/{interaction_id}/{token}/callback"
        webhook = "/webhooks/{app_id}/{token}"
        message = webhook + "/messages/{message_id}"
        return [
            Route("POST", callback, self._callback, auth=False),
            Route("POST", webhook, self._followup, auth=False),
            Route("GET", message, self._get_reply, auth=False),
            Route("PATCH", message, self._edit_reply, auth=False),
            Route("DELETE", message, self._delete_reply, auth=False),
        ]

    # --- the callback --------------------------------------------------------------------------

    async def _callback(self, p: Params, body: Any, q: Query) -> Answer:
        pending, body = self._pending.get(p["interaction_id"]), body or {}
        if (
            pending is None
            or pending.press.token != p["token"]
            or self._clock() - pending.press.at > self._deadline
        ):
            raise unknown("interaction", 10062)
        if pending.responded:
            raise DiscordError(400, 40060, "Interaction has already been acknowledged.")
        kind = int(body.get("type", 0))
        await self._respond(pending, kind, body.get("data") or {})
        pending.responded = True
        pending.responses.append(body)
        if q.get("with_response") not in ("1", "true", "True"):
            return 204, None
        answer: dict[str, Any] = {"id": str(pending.press.id), "type": 3,
                                  "response_message_loading": kind == 5,
                                  "response_message_ephemeral": False}  # fmt: skip
        if pending.original_id is not None:
            answer["response_message_id"] = str(pending.original_id)
        resource: dict[str, Any] = {"type": kind}
        if kind in (4, 7) and (shown := self._state.find_reply(pending.original_id)) is not None:
            resource["message"] = shown.payload()
            answer["response_message_ephemeral"] = bool(shown.flags & _EPHEMERAL)
        return 200, {"interaction": answer, "resource": resource}

    async def _respond(self, pending: _Pending, kind: int, data: dict[str, Any]) -> None:
        """What callback ``kind`` does: 4 replies, 5 shows "thinking…", 6 does nothing yet, 7
        updates the pressed message."""
        press, state = pending.press, self._state
        if kind in (4, 5):
            flags = int(data.get("flags") or 0) | (_LOADING if kind == 5 else 0)
            created = state.new_message(press.channel_id, BOT, str(data.get("content") or ""),
                                        allowed=data.get("allowed_mentions"))  # fmt: skip
            created = replace(created, components=list(data.get("components") or []),
                              flags=flags, type=19 if kind == 4 else 0,
                              interaction_id=press.id)  # fmt: skip
            if kind == 4:
                check_content(created)
            await state.post_reply(created)
            pending.original_id = created.id
        elif kind in (6, 7):
            pending.original_id = press.message_id
            if kind == 7:
                if (old := state.find_reply(press.message_id)) is None:
                    raise unknown("Message", 10008)
                new = state.edited(old, data)
                check_content(new)
                await state.update_message(new)
        else:
            raise invalid_form(
                "type", "BASE_TYPE_CHOICES", f"Value must be one of (4, 5, 6, 7): {kind}"
            )

    # --- follow-ups and the replies' webhook routes --------------------------------------------

    async def _followup(self, p: Params, body: Any, q: Query) -> Answer:
        pending, body = self._by_token(p), body or {}
        created = self._state.new_message(
            pending.press.channel_id, BOT, str(body.get("content") or ""),
            allowed=body.get("allowed_mentions"),
        )  # fmt: skip
        created = replace(
            created,
            components=list(body.get("components") or []),
            flags=int(body.get("flags") or 0),
            interaction_id=pending.press.id,
        )
        check_content(created)
        await self._state.post_reply(created)
        return 200, created.payload()

    async def _get_reply(self, p: Params, body: Any, q: Query) -> Answer:
        return 200, self._reply(p).payload()

    async def _edit_reply(self, p: Params, body: Any, q: Query) -> Answer:
        """Editing a "thinking…" reply makes it an ordinary, unedited one."""
        old = self._reply(p)
        new = self._state.edited(old, body or {})
        if old.flags & _LOADING:
            new = replace(new, flags=old.flags & ~_LOADING, edited_timestamp=None)
        check_content(new)
        if old.flags & _EPHEMERAL:
            ephemeral = self._state.ephemeral
            ephemeral[ephemeral.index(old)] = new
        else:
            await self._state.update_message(new)
        return 200, new.payload()

    async def _delete_reply(self, p: Params, body: Any, q: Query) -> Answer:
        old = self._reply(p)
        if old.flags & _EPHEMERAL:
            self._state.ephemeral.remove(old)
        else:
            await self._state.delete_message(old)
        return 204, None

    def _reply(self, p: Params) -> Message:
        """The message a webhook route names: ``@original`` or one of the interaction's."""
        pending = self._by_token(p)
        wanted = pending.original_id if p["message_id"] == "@original" else p["message_id"]
        shown = self._state.find_reply(wanted)
        if shown is None or (wanted != pending.original_id
                             and shown.interaction_id != pending.press.id):  # fmt: skip
            raise unknown("Message", 10008)
        return shown

    def _by_token(self, p: Params) -> _Pending:
        """The interaction whose token a webhook route carries, while the token is valid."""
        pending = next((i for i in self._pending.values() if i.press.token == p["token"]), None)
        if p["app_id"] != APP_ID or pending is None:
            raise unknown("Webhook", 10015)
        if self._clock() - pending.press.at > _TOKEN_LIFETIME:
            raise DiscordError(401, 50027, "Invalid Webhook Token")
        return pending
