"""The fake Discord itself: an async context manager serving REST and the gateway on
loopback, and the API a test drives it with and looks into it through.

Driving it (each dispatches its event): ``await`` :meth:`~FakeDiscord.user_message`,
:meth:`~FakeDiscord.bot_message`, :meth:`~FakeDiscord.press_button`,
:meth:`~FakeDiscord.use_command`, :meth:`~FakeDiscord.start_thread`,
:meth:`~FakeDiscord.forum_post`, :meth:`~FakeDiscord.archive_thread`,
:meth:`~FakeDiscord.delete_channel`, :meth:`~FakeDiscord.delete_message`,
:meth:`~FakeDiscord.disconnect`; and :meth:`~FakeDiscord.dm_channel`,
:meth:`~FakeDiscord.attachment` (a file a message carries, served by the CDN). Looking:
:meth:`~FakeDiscord.messages`, :meth:`~FakeDiscord.message`, :attr:`~FakeDiscord.threads`,
:meth:`~FakeDiscord.thread`, :attr:`~FakeDiscord.calls`
(:class:`~tests.fakes.fake_discord.router.RecordedCall`), :meth:`~FakeDiscord.routes`,
:meth:`~FakeDiscord.responses`, :attr:`~FakeDiscord.ephemeral`,
:attr:`~FakeDiscord.rate_limited`, :meth:`~FakeDiscord.commands` and
:attr:`~FakeDiscord.syncs` (the application commands), :attr:`~FakeDiscord.identify`,
:attr:`~FakeDiscord.ready`, :attr:`~FakeDiscord.heartbeats`,
:attr:`~FakeDiscord.connections` (each with its shard and the events it was sent),
:attr:`~FakeDiscord.cdn_requests` and :meth:`~FakeDiscord.downloads` (the attachments' CDN).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from aiohttp import web

from bots.loopback import LoopbackServer
from tests.fakes.fake_discord.cdn import Attachment, Cdn, CdnRequest
from tests.fakes.fake_discord.commands import AppCommands, Sync
from tests.fakes.fake_discord.gateway import Gateway
from tests.fakes.fake_discord.interactions import Interaction, Interactions
from tests.fakes.fake_discord.messages import Message
from tests.fakes.fake_discord.ratelimits import RateLimits
from tests.fakes.fake_discord.rest import Rest
from tests.fakes.fake_discord.router import API_PREFIX, RecordedCall, Router
from tests.fakes.fake_discord.sessions import Connection, Sessions
from tests.fakes.fake_discord.state import State, Thread
from tests.fakes.fake_discord.world import (
    CHANNEL,
    FORUM,
    GUILD,
    OTHER_BOT,
    PRIVILEGED_INTENTS,
    FakeUser,
    now_iso,
)


class FakeDiscord(LoopbackServer):
    """An aiohttp server on ``127.0.0.1`` (port 0 = ephemeral) serving Discord's REST API at
    :attr:`api_url` and its gateway at :attr:`gateway_url`.

    ``privileged_intents`` are those switched on in the Developer Portal: the gateway refuses
    the others, and the application's ``flags`` say them (Message Content as bit 18, the
    "limited" flag of an app in under 100 servers). ``application_flags`` answers other flags
    instead (bit 19 for a verified app), while the gateway still follows the intents.

    ``second_guild`` adds :data:`~tests.fakes.fake_discord.world.GUILD_2` (on the other
    shard of two); ``shards`` and ``max_concurrency`` are what ``GET /gateway/bot``
    recommends and allows."""

    def __init__(
        self,
        *,
        token: str = "bot-token",
        window: float = 5.0,
        per_window: int = 5,
        global_per_second: int = 50,
        heartbeat_interval: int = 41_250,
        interaction_deadline: float = 3.0,
        privileged_intents: int = PRIVILEGED_INTENTS,
        application_flags: int | None = None,
        second_guild: bool = False,
        shards: int = 1,
        max_concurrency: int = 1,
        clock: Callable[[], float] = time.monotonic,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.token = token
        self.guild, self.channel = GUILD, CHANNEL
        self.api_url = self.gateway_url = ""
        sessions = Sessions()
        self._state = State(sessions, second_guild=second_guild)
        self._gateway = Gateway(
            sessions,
            self._state,
            token=token,
            privileged_intents=privileged_intents,
            heartbeat_interval=heartbeat_interval,
        )
        self._limits = RateLimits(
            window=window, per_window=per_window, global_per_second=global_per_second
        )
        self._rest = Rest(
            self._state,
            privileged_intents=privileged_intents,
            application_flags=application_flags,
            shards=shards,
            max_concurrency=max_concurrency,
        )
        self._interactions = Interactions(
            self._state, sessions, clock=clock, deadline=interaction_deadline
        )
        self._commands = AppCommands(snowflake=self._state.snowflake, guilds=self._state.guilds)
        self._router = Router(token=token, limits=self._limits, clock=clock)
        app = web.Application()
        routes = [*self._rest.routes(), *self._interactions.routes(), *self._commands.routes()]
        self._router.install(app, routes)
        app.router.add_route("GET", "/gateway", self._gateway.endpoint)
        self._cdn = Cdn(snowflake=self._state.snowflake)
        self._cdn.install(app)
        super().__init__(app, host=host, port=port)

    async def start(self) -> None:
        await super().start()
        self.api_url = f"{self.url}{API_PREFIX}"
        self.gateway_url = "ws://" + self.url.removeprefix("http://") + "/gateway"
        self._rest.gateway_url = self._gateway.url = self.gateway_url
        self._cdn.base_url = self.url

    async def close(self) -> None:
        await self._gateway.close_all(1001, "fake Discord going away")
        await super().close()

    # --- driving it ----------------------------------------------------------------------------

    async def user_message(
        self,
        channel_id: int,
        author: FakeUser,
        content: str,
        *,
        mentions: Sequence[FakeUser] | None = None,
        reply_to: int | None = None,
        attachments: Sequence[Attachment] = (),
    ) -> Message:
        """``author`` sends ``content`` in the channel, thread or DM: stored, and dispatched as
        MESSAGE_CREATE. Mentions are read from the content as Discord does (``<@id>``,
        ``<@&id>``, ``@everyone``) unless ``mentions`` names the users. ``attachments``: files
        it carries (:meth:`attachment`)."""
        self._state.writable(channel_id)
        message = self._state.new_message(channel_id, author, content, reply_to=reply_to)
        if mentions is not None:
            message = replace(message, mentions=tuple(mentions))
        if attachments:
            message = replace(message, attachments=tuple(attachments))
        await self._state.unarchive_for_message(channel_id)
        await self._state.post(message)
        return message

    async def bot_message(
        self, channel_id: int, content: str, *, author: FakeUser = OTHER_BOT
    ) -> Message:
        """Another bot (``author.bot`` true) sends ``content``."""
        return await self.user_message(channel_id, author, content)

    def attachment(
        self,
        channel_id: int,
        filename: str,
        data: bytes,
        *,
        content_type: str | None = None,
        size: int | None = None,
        url: str | None = None,
    ) -> Attachment:
        """A file for a message in the channel to carry: its bytes served by the CDN on the
        fake's address. The attachment object says ``size`` and ``url`` when given (a size
        over a cap, a URL elsewhere), else the data's length and the CDN's URL."""
        return self._cdn.add(
            channel_id, filename, data, content_type=content_type, size=size, url=url
        )

    def dm_channel(self, user: FakeUser) -> int:
        """The id of the DM channel between ``user`` and the bot (created on first use)."""
        return self._state.dm_channel(user)

    async def start_thread(
        self, channel_id: int, owner: FakeUser, name: str, *, message_id: int | None = None
    ) -> Thread:
        """``owner`` starts a public thread in a text channel (from ``message_id`` when
        given); THREAD_CREATE is dispatched."""
        return await self._state.open_thread(channel_id, owner, name, message_id=message_id)

    async def forum_post(self, owner: FakeUser, name: str, content: str) -> Thread:
        """``owner`` posts in :data:`FORUM`: a thread and its starter message (same id)."""
        thread_id = self._state.snowflake()
        thread = await self._state.open_thread(FORUM, owner, name, thread_id=thread_id)
        starter = replace(self._state.new_message(thread.id, owner, content), id=thread_id)
        await self._state.post(starter)
        return self._state.threads[thread.id]

    async def archive_thread(self, thread_id: int, *, locked: bool = False) -> None:
        """The thread is archived (as after its inactivity period); THREAD_UPDATE."""
        thread = self._state.thread_of(thread_id)
        await self._state.update_thread(
            replace(thread, archived=True, locked=locked, archive_timestamp=now_iso())
        )

    async def delete_channel(self, channel_id: int) -> None:
        """The channel or thread is deleted: later REST on it is ``404 Unknown Channel``;
        THREAD_DELETE (or CHANNEL_DELETE) is dispatched."""
        await self._state.delete_channel(channel_id)

    async def delete_message(self, channel_id: int, message_id: int) -> None:
        """Someone (a moderator) deletes the message; MESSAGE_DELETE."""
        await self._state.delete_message(self._state.message_in(channel_id, message_id))

    async def press_button(self, message_id: int, custom_id: str, user: FakeUser) -> Interaction:
        """``user`` presses the component ``custom_id`` on the message: INTERACTION_CREATE
        (type 3) is dispatched. The bot must answer within ``interaction_deadline``."""
        return await self._interactions.press(message_id, custom_id, user)

    async def use_command(
        self, channel_id: int, user: FakeUser, path: str, **values: str | int | bool
    ) -> Interaction:
        """``user`` uses the slash command ``path`` (``"relaybot model"``: the command, then its
        sub-commands) in the channel, thread or DM, with ``values`` for its options:
        INTERACTION_CREATE (type 2). The command must be registered where it is used (in the
        channel's guild, else globally), and the values must fit it, as Discord's client
        insists. The bot must answer within ``interaction_deadline``."""
        used = self._commands.options(self._state.guild_of(channel_id), path, values)
        return await self._interactions.use(channel_id, user, used, path)

    async def disconnect(self, code: int = 4000) -> None:
        """Every gateway connection is closed with ``code``. Sessions stay resumable: events
        dispatched meanwhile are replayed on RESUME (discord.py resumes after 4000)."""
        await self._gateway.close_all(code, "fake Discord disconnect")

    # --- looking -------------------------------------------------------------------------------

    def messages(self, channel_id: int) -> list[Message]:
        """The channel's messages as shown now, oldest first."""
        return list(self._state.messages.get(channel_id, {}).values())

    def message(self, channel_id: int, message_id: int) -> Message | None:
        return self._state.messages.get(channel_id, {}).get(message_id)

    @property
    def threads(self) -> list[Thread]:
        """Threads that exist now, oldest first."""
        return sorted(self._state.threads.values(), key=lambda t: t.id)

    def thread(self, thread_id: int) -> Thread | None:
        return self._state.threads.get(thread_id)

    def responses(self, interaction: Interaction | int) -> list[dict[str, Any]]:
        """The callback bodies the bot sent for an interaction (``{"type": 6}``…)."""
        key = interaction if isinstance(interaction, int) else interaction.id
        return self._interactions.responses(key)

    def routes(self) -> list[str]:
        """The route of each call so far, in order."""
        return [call.route for call in self.calls]

    @property
    def calls(self) -> list[RecordedCall]:
        """Every REST call so far, in order."""
        return self._router.calls

    @property
    def cdn_requests(self) -> list[CdnRequest]:
        """Every request to the attachments' CDN, in order."""
        return list(self._cdn.requests)

    def downloads(self, attachment: Attachment) -> list[CdnRequest]:
        """The requests for that attachment's file."""
        return self._cdn.asked(attachment)

    @property
    def rate_limited(self) -> int:
        """How many requests were answered ``429``."""
        return self._limits.rate_limited

    def commands(self, guild_id: int | None = None) -> list[dict[str, Any]]:
        """The application commands registered in the guild (``None``: globally)."""
        return list(self._commands.registered.get(guild_id, []))

    @property
    def syncs(self) -> list[Sync]:
        """Every ``PUT`` of the application's commands, in order."""
        return list(self._commands.syncs)

    @property
    def ephemeral(self) -> list[Message]:
        """Ephemeral interaction replies: shown to one user, never in a channel."""
        return self._state.ephemeral

    @property
    def identify(self) -> dict[str, Any] | None:
        """The last IDENTIFY payload (``d``)."""
        return self._gateway.identify

    @property
    def ready(self) -> asyncio.Event:
        """Set once a client has identified and been sent READY and GUILD_CREATE."""
        return self._gateway.ready

    @property
    def heartbeats(self) -> int:
        """How many heartbeats clients have sent."""
        return self._gateway.heartbeats

    @property
    def connections(self) -> list[Connection]:
        """Every gateway websocket so far, closed ones included: its ``shard`` (``(id,
        count)`` once identified) and the events ``dispatched`` to it."""
        return self._gateway.connections
