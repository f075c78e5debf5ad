"""Component presses and slash commands, and the bot's answers to them.

A press is dispatched as INTERACTION_CREATE (type 3), a slash command used as one of type 2
(its ``data`` made by :mod:`tests.fakes.fake_discord.commands`). The bot answers once, within
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

from tests.fakes.fake_discord.commands import Used
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
    """A component press (``custom_id`` on ``message_id``) or a slash command (``command``:
    its path, ``"relaybot model"``) dispatched as INTERACTION_CREATE."""

    id: int
    token: str
    user: FakeUser
    channel_id: int
    at: float
    custom_id: str = ""
    message_id: int | None = None
    command: str = ""


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
        message = self._state.find_message(message_id)
        kind = next((c["type"] for c in walk_components(message.components)
                     if c.get("custom_id") == custom_id), 2)  # fmt: skip
        press = self._begin(user, message.channel_id, custom_id=custom_id, message_id=message_id)
        body = self._body(press, 3, {"custom_id": custom_id, "component_type": kind})
        await self._sessions.dispatch(
            "INTERACTION_CREATE", body | {"message": message.payload()}, 0
        )
        return press

    async def use(self, channel_id: int, user: FakeUser, used: Used, path: str) -> Interaction:
        """``user`` uses the slash command ``path`` in the channel, thread or DM (``used``:
        what their client sends): INTERACTION_CREATE of type 2."""
        self._state.existing(channel_id)
        command = self._begin(user, channel_id, command=path)
        await self._sessions.dispatch("INTERACTION_CREATE", self._body(command, 2, used.data), 0)
        return command

    def _begin(self, user: FakeUser, channel_id: int, **what: Any) -> Interaction:
        begun = Interaction(id=self._state.snowflake(), token=f"itoken-{secrets.token_hex(24)}",
                            user=user, channel_id=channel_id, at=self._clock(), **what)  # fmt: skip
        self._pending[begun.id] = _Pending(begun)
        return begun

    def _body(self, begun: Interaction, kind: int, data: dict[str, Any]) -> dict[str, Any]:
        """INTERACTION_CREATE's payload: who, where, with what permissions."""
        state, channel_id, user = self._state, begun.channel_id, begun.user
        body: dict[str, Any] = {
            "id": str(begun.id), "application_id": str(APP_ID), "type": kind,
            "token": begun.token, "version": 1, "data": data,
            "channel_id": str(channel_id), "channel": state.channel_payload(channel_id),
            "locale": "en-US", "entitlements": [],
            "attachment_size_limit": 10_485_760,
            "app_permissions": str(state.permissions(BOT, channel_id)),
        }  # fmt: skip
        guild_id = state.guild_of(channel_id)
        if guild_id is None:
            return body | {"user": user.payload(), "context": 1,
                           "authorizing_integration_owners": {"1": str(user.id)}}  # fmt: skip
        perms = str(state.permissions(user, channel_id))
        guild = str(guild_id)
        return body | {"guild_id": guild, "guild_locale": "en-US", "context": 0,
                       "guild": {"id": guild, "locale": "en-US", "features": []},
                       "member": user.member() | {"permissions": perms},
                       "authorizing_integration_owners": {"0": guild}}  # fmt: skip

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
        kind_of = 2 if pending.press.command else 3
        answer: dict[str, Any] = {"id": str(pending.press.id), "type": kind_of,
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
        updates the pressed message (6 and 7: a press only)."""
        press, state = pending.press, self._state
        if kind in (6, 7) and press.message_id is None:
            raise DiscordError(400, 50035, "Interaction callback type is not valid here")
        if kind in (4, 5):
            flags = int(data.get("flags") or 0) | (_LOADING if kind == 5 else 0)
            created = state.new_message(press.channel_id, BOT, str(data.get("content") or ""),
                                        allowed=data.get("allowed_mentions"))  # fmt: skip
            created = replace(created, components=list(data.get("components") or []),
                              flags=flags, type=_reply_type(press, kind),
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


def _reply_type(begun: Interaction, kind: int) -> int:
    """A reply's message type: 20 answers a slash command, 19 a press; 0 "thinking…"."""
    if kind != 4:
        return 0
    return 20 if begun.command else 19
