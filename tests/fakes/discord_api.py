"""A loopback Discord — REST API v10 and gateway websocket — that an unmodified discord.py
client logs in to; it keeps what the bot sent and enforces Discord's rate limits.

    async with FakeDiscord(token="bot-token") as fake:
        discord.http.Route.BASE = fake.api_url                              # the seam, set
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)       # in one place
        client = discord.Client(intents=intents, guild_ready_timeout=0.05)
        runner = asyncio.create_task(client.start("bot-token"))
        await fake.ready.wait()                # IDENTIFY answered with READY and GUILD_CREATE
        asked = await fake.user_message(CHANNEL, ADA, f"{BOT.mention} hello")
        ...
        assert [m.content for m in fake.messages(asked.id)] == ["Hi!"]   # a thread's id is
        assert fake.rate_limited == 0                                     # its starter's id

Pointing discord.py here. Both are class attributes (process-wide: set them in one place and
put them back afterwards). ``discord.http.Route.BASE = fake.api_url`` sends every REST call
here, interaction callbacks and webhooks included. ``discord.gateway.DiscordWebSocket
.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)`` is where a plain ``discord.Client`` connects:
it never asks ``GET /gateway/bot`` (only ``AutoShardedClient`` does, and gets
:attr:`FakeDiscord.gateway_url` too). discord.py waits ``guild_ready_timeout`` (2 s unless
given) after the last GUILD_CREATE before ``on_ready``; the guild is usable before that:
``client.get_channel(CHANNEL)`` is set once GUILD_CREATE is handled. Close a client only after
it has handled the events a test caused (discord.py drops events it reads while closing and
leaves an unawaited coroutine, which this project's warning filter fails on).

The world. Guild :data:`GUILD` ("G1", owner Grace) with text channels :data:`CHANNEL`
("general") and :data:`NO_THREADS_CHANNEL` ("announcements": the bot may send there but not
create threads), forum :data:`FORUM` ("help"); roles @everyone (id :data:`GUILD`),
:data:`MOD_ROLE` (Manage Messages, Manage Threads, Mention Everyone) and :data:`BOT_ROLE`
(Mention Everyone too, so only ``allowed_mentions`` keeps a model's ``@everyone`` quiet);
users (:class:`FakeUser`) :data:`BOT` ("relaybot"; its id is the application id),
:data:`ADA`, :data:`JEANNE`, :data:`GRACE` (moderator, owner) and :data:`OTHER_BOT`.

REST under ``/api/v10``, ``Authorization: Bot <token>`` (missing or wrong: ``401
{"message": "401: Unauthorized", "code": 0}``; interaction callbacks and webhooks carry
their interaction token instead): ``GET /users/@me``, ``GET /users/{id}``, ``POST
/users/@me/channels``, ``GET /gateway``, ``GET /gateway/bot``, ``GET
/oauth2/applications/@me`` (login asks it), ``GET /applications/@me``, ``GET /guilds/{id}``,
``GET /guilds/{id}/members/{uid}``, ``GET|PATCH|DELETE /channels/{id}`` (PATCH and DELETE:
threads), ``GET|POST /channels/{id}/messages``, ``GET|PATCH|DELETE
/channels/{id}/messages/{mid}``, ``POST /channels/{id}/messages/{mid}/threads``, ``POST
/channels/{id}/threads``, ``POST /channels/{id}/typing``, ``POST
/interactions/{id}/{token}/callback`` (types 4, 5, 6, 7; within ``interaction_deadline``,
once), ``POST /webhooks/{app}/{token}``, ``GET|PATCH|DELETE
/webhooks/{app}/{token}/messages/{mid|@original}``; any other path is ``404``. Errors are
Discord's JSON: 10003 Unknown Channel (a deleted thread), 10008 Unknown Message, 10062 Unknown
interaction, 40060 already acknowledged, 50001 Missing Access, 50005 editing another's
message, 50006 empty message, 50008 sending to a forum, 50013 Missing Permissions (a thread in
"announcements"), 50035 Invalid Form Body (content over 2,000 characters, a thread name over
100, …), 50083 editing in an archived thread, 160004 a second thread from one message,
160005 a locked thread. Sending in an archived, unlocked thread unarchives it, as Discord does.

Rate limits. Every routed answer carries ``X-RateLimit-Limit``, ``-Remaining``, ``-Reset``
(epoch seconds), ``-Reset-After`` and ``-Bucket``. Message creates and edits share one bucket
per channel (thread) of ``per_window`` per ``window`` seconds (5 per 5 s); every other route
has 50 per second per channel; all bot-token calls together are held to
``global_per_second``. Past a limit the answer is ``429 {"message": "You are being rate
limited.", "retry_after": s, "global": bool}`` with ``Retry-After`` and ``Via`` (discord.py
takes a 429 without ``Via`` for a Cloudflare ban), nothing changes, and
:attr:`FakeDiscord.rate_limited` counts it. discord.py paces itself by these headers (its
buckets are keyed by ``X-RateLimit-Bucket`` and channel), so a client that only writes through
discord.py, within the global limit, is not answered 429 — concurrent sends and edits to one
channel included.

Gateway at :attr:`FakeDiscord.gateway_url` (``v=10``, ``encoding=json``,
``compress=zlib-stream`` or none): HELLO (``heartbeat_interval`` ms), heartbeats acked,
IDENTIFY → READY, then GUILD_CREATE (all members with the GUILD_MEMBERS intent, else only the
bot; active threads with their ``owner_id``). RESUME replays what the session missed, then
RESUMED; REQUEST_GUILD_MEMBERS → GUILD_MEMBERS_CHUNK. A wrong token closes with 4004, a
privileged intent not in ``privileged_intents`` with 4014. Events go to the intents that ask
for them; without MESSAGE_CONTENT a guild message arrives with empty content unless it
mentions the bot. The bot's own REST writes come back as MESSAGE_CREATE / MESSAGE_UPDATE /
MESSAGE_DELETE and THREAD_CREATE / THREAD_UPDATE / THREAD_DELETE, as on Discord.

Driving it (each dispatches its event): ``await`` :meth:`~FakeDiscord.user_message`,
:meth:`~FakeDiscord.bot_message`, :meth:`~FakeDiscord.press_button`,
:meth:`~FakeDiscord.start_thread`, :meth:`~FakeDiscord.forum_post`,
:meth:`~FakeDiscord.archive_thread`, :meth:`~FakeDiscord.delete_channel`,
:meth:`~FakeDiscord.delete_message`, :meth:`~FakeDiscord.disconnect`; and
:meth:`~FakeDiscord.dm_channel`. Looking: :meth:`~FakeDiscord.messages`,
:meth:`~FakeDiscord.message`, :attr:`~FakeDiscord.threads`, :meth:`~FakeDiscord.thread`,
:attr:`~FakeDiscord.calls` (:class:`RecordedCall`), :meth:`~FakeDiscord.routes`,
:meth:`~FakeDiscord.responses`, :attr:`~FakeDiscord.ephemeral`,
:attr:`~FakeDiscord.rate_limited`, :attr:`~FakeDiscord.identify`,
:attr:`~FakeDiscord.ready`, :attr:`~FakeDiscord.heartbeats`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import secrets
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import MappingProxyType, TracebackType
from typing import Any

from aiohttp import WSMsgType, web

__all__ = [
    "ADA",
    "BOT",
    "BOT_ROLE",
    "CHANNEL",
    "FORUM",
    "GRACE",
    "GUILD",
    "INTENT_DIRECT_MESSAGES",
    "INTENT_GUILDS",
    "INTENT_GUILD_MEMBERS",
    "INTENT_GUILD_MESSAGES",
    "INTENT_GUILD_PRESENCES",
    "INTENT_MESSAGE_CONTENT",
    "JEANNE",
    "MOD_ROLE",
    "NO_THREADS_CHANNEL",
    "OTHER_BOT",
    "PRIVILEGED_INTENTS",
    "USERS",
    "DiscordError",
    "FakeDiscord",
    "FakeUser",
    "Interaction",
    "Message",
    "RecordedCall",
    "Thread",
]

API_PREFIX = "/api/v10"
DISCORD_EPOCH_MS = 1_420_070_400_000
MAX_CONTENT = 2000
_SENDABLE_FLAGS = 4 | 4096  # SUPPRESS_EMBEDS, SUPPRESS_NOTIFICATIONS

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

INTENT_GUILDS, INTENT_GUILD_MEMBERS, INTENT_GUILD_PRESENCES = 1 << 0, 1 << 1, 1 << 8
INTENT_GUILD_MESSAGES, INTENT_DIRECT_MESSAGES, INTENT_MESSAGE_CONTENT = 1 << 9, 1 << 12, 1 << 15
PRIVILEGED_INTENTS = INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES | INTENT_MESSAGE_CONTENT
_APP_FLAG_FOR_INTENT = {INTENT_GUILD_PRESENCES: 1 << 12, INTENT_GUILD_MEMBERS: 1 << 14,
                        INTENT_MESSAGE_CONTENT: 1 << 18}  # fmt: skip

# --- the world ---------------------------------------------------------------------------------

GUILD = 1_150_000_000_000_000_001
"""Guild "G1"; also the id of its @everyone role."""
CHANNEL = 1_150_000_000_000_000_002
"""Text channel "general": everyone, the bot included, may create public threads."""
NO_THREADS_CHANNEL = 1_150_000_000_000_000_003
"""Text channel "announcements": the bot may send but not create public threads."""
FORUM = 1_150_000_000_000_000_004
"""Forum channel "help"."""
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

_ROLES = {
    GUILD: ("@everyone", EVERYONE_PERMISSIONS, 0),
    MOD_ROLE: ("Moderators", MANAGE_MESSAGES | MANAGE_THREADS | MENTION_EVERYONE, 2),
    BOT_ROLE: ("relaybot", EVERYONE_PERMISSIONS | MENTION_EVERYONE, 1),
}


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


# --- what tests read ---------------------------------------------------------------------------


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
        return [c["custom_id"] for c in _walk(self.components) if "custom_id" in c]

    def payload(self, *, gateway: bool = False) -> dict[str, Any]:
        """The message object; ``gateway`` adds ``guild_id`` and ``member`` as events carry."""
        body: dict[str, Any] = {
            "id": str(self.id), "channel_id": str(self.channel_id), "type": self.type,
            "author": self.author.payload(), "content": self.content,
            "timestamp": self.timestamp, "edited_timestamp": self.edited_timestamp,
            "tts": False, "mention_everyone": self.mention_everyone,
            "mentions": [u.payload() for u in self.mentions],
            "mention_roles": [str(r) for r in self.mention_roles],
            "attachments": [], "embeds": self.embeds, "components": self.components,
            "pinned": False, "flags": self.flags,
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


@dataclass(frozen=True, kw_only=True)
class Thread:
    """A thread channel as Discord keeps it; ``id`` is its starter message's id when it was
    started from one."""

    id: int
    parent_id: int
    owner_id: int
    name: str
    type: int = 11
    archived: bool = False
    locked: bool = False
    auto_archive_duration: int = 1440
    created: str = ""
    archive_timestamp: str = ""
    message_count: int = 0
    last_message_id: int | None = None

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id), "type": self.type, "guild_id": str(GUILD),
            "parent_id": str(self.parent_id), "owner_id": str(self.owner_id), "name": self.name,
            "last_message_id": _opt(self.last_message_id), "message_count": self.message_count,
            "member_count": 2, "total_message_sent": self.message_count,
            "rate_limit_per_user": 0, "flags": 0, "applied_tags": [],
            "thread_metadata": {
                "archived": self.archived, "locked": self.locked,
                "auto_archive_duration": self.auto_archive_duration,
                "archive_timestamp": self.archive_timestamp or self.created,
                "create_timestamp": self.created, "invitable": True,
            },
        }  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class RecordedCall:
    """One REST call as the fake saw it: ``route`` the template (``"POST
    /channels/{channel_id}/messages"``), ``path`` below ``/api/v10``, ``json`` the body
    (``payload_json`` of a multipart one), ``at`` the fake's clock, ``status`` its answer."""

    method: str
    path: str
    route: str
    json: Any
    at: float
    status: int
    query: Mapping[str, str] = field(default_factory=dict)


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


class DiscordError(Exception):
    """An error answer in Discord's JSON shape."""

    def __init__(
        self, status: int, code: int, message: str, errors: dict[str, Any] | None = None
    ) -> None:
        super().__init__(f"{status} {code} {message}")
        self.status, self.body = status, {"message": message, "code": code}
        if errors is not None:
            self.body["errors"] = errors


def _unknown(what: str, code: int) -> DiscordError:
    return DiscordError(404, code, f"Unknown {what}")


def _missing_permissions() -> DiscordError:
    return DiscordError(403, 50013, "Missing Permissions")


def _invalid_form(field_name: str, code: str, message: str) -> DiscordError:
    errors = {field_name: {"_errors": [{"code": code, "message": message}]}}
    return DiscordError(400, 50035, "Invalid Form Body", errors)


# --- rate limits -------------------------------------------------------------------------------


@dataclass
class _Window:
    """A fixed window: ``limit`` requests from the first one until ``reset_at``."""

    limit: int
    length: float
    count: int = 0
    reset_at: float = -math.inf

    def take(self, now: float) -> float | None:
        """Counts one request and returns ``None``, or returns the wait when none is left."""
        if now >= self.reset_at:
            self.count, self.reset_at = 0, now + self.length
        if self.count >= self.limit:
            return self.reset_at - now
        self.count += 1
        return None


_MAJOR = ("channel_id", "guild_id", "interaction_id", "token")
"""The path parameters that split a route's bucket, as Discord's major parameters do."""


def _bucket_hash(name: str) -> str:
    return hashlib.md5(name.encode()).hexdigest()


# --- the gateway side of one connection --------------------------------------------------------


class _Connection:
    """One gateway websocket: its compressor, and the session it carries once identified."""

    def __init__(self, ws: web.WebSocketResponse, *, compress: bool) -> None:
        self.ws = ws
        self.zlib = zlib.compressobj() if compress else None
        self.lock = asyncio.Lock()
        self.session: _Session | None = None
        self.closed_by_server = False

    async def send(self, op: int, d: Any, event: str | None = None, seq: int | None = None) -> None:
        text = json.dumps({"op": op, "d": d, "s": seq, "t": event}, separators=(",", ":"))
        async with self.lock:
            if self.ws.closed:
                return
            try:
                if self.zlib is None:
                    await self.ws.send_str(text)
                else:
                    data = self.zlib.compress(text.encode()) + self.zlib.flush(zlib.Z_SYNC_FLUSH)
                    await self.ws.send_bytes(data)
            except ConnectionError:
                pass

    async def close(self, code: int, reason: str) -> None:
        self.closed_by_server = True
        await self.ws.close(code=code, message=reason.encode())


class _Session:
    """A gateway session: it outlives its connection, and RESUME replays what it missed."""

    def __init__(self, intents: int) -> None:
        self.id = secrets.token_hex(16)
        self.intents = intents
        self.seq = 0
        self.log: deque[tuple[int, str, Any]] = deque(maxlen=1000)
        self.connection: _Connection | None = None

    def wants(self, intent: int) -> bool:
        return intent == 0 or bool(self.intents & intent)

    async def dispatch(self, event: str, data: Any) -> None:
        self.seq += 1
        self.log.append((self.seq, event, data))
        if self.connection is not None:
            await self.connection.send(0, data, event, self.seq)


@dataclass
class _Pending:
    """An interaction the bot may still answer."""

    press: Interaction
    responded: bool = False
    original_id: int | None = None


Params = dict[str, Any]
"""Path parameters: snowflakes as ints, tokens and ``@original`` as strings."""
Query = Mapping[str, str]
Answer = tuple[int, Any]
Handler = Callable[[Params, Any, Query], Awaitable[Answer]]


class FakeDiscord:
    """An aiohttp server on ``127.0.0.1`` (port 0 = ephemeral) serving Discord's REST API at
    :attr:`api_url` and its gateway at :attr:`gateway_url`."""

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
        clock: Callable[[], float] = time.monotonic,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.token = token
        self.guild, self.channel = GUILD, CHANNEL
        self.api_url = self.gateway_url = ""
        self.calls: list[RecordedCall] = []
        self.rate_limited = 0
        """How many requests were answered ``429``."""
        self.ephemeral: list[Message] = []
        """Ephemeral interaction replies: shown to one user, never in a channel."""
        self.identify: dict[str, Any] | None = None
        """The last IDENTIFY payload (``d``)."""
        self.ready = asyncio.Event()
        """Set once a client has identified and been sent READY and GUILD_CREATE."""
        self.heartbeats = 0
        self._window, self._per_window = window, per_window
        self._heartbeat_interval = heartbeat_interval
        self._deadline, self._privileged = interaction_deadline, privileged_intents
        self._clock, self._host, self._port = clock, host, port
        self._last_id = 0
        self._channels: dict[int, dict[str, Any]] = {c["id"]: c for c in _guild_channels()}
        self._threads: dict[int, Thread] = {}
        self._messages: dict[int, dict[int, Message]] = {}
        self._deleted: set[int] = set()
        self._buckets: dict[tuple[str, int | str], _Window] = {}
        self._global = _Window(global_per_second, 1.0)
        self._connections: list[_Connection] = []
        self._sessions: dict[str, _Session] = {}
        self._pending: dict[int, _Pending] = {}
        self._by_token: dict[str, int] = {}
        self._responses: dict[int, list[dict[str, Any]]] = {}
        self._app = web.Application()
        self._add_routes()
        self._runner = web.AppRunner(
            self._app, handle_signals=False, access_log=None, shutdown_timeout=0.5
        )

    async def __aenter__(self) -> FakeDiscord:
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()
        host, port = self._runner.addresses[0][:2]
        self.api_url = f"http://{host}:{port}{API_PREFIX}"
        self.gateway_url = f"ws://{host}:{port}/gateway"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for connection in list(self._connections):
            await connection.close(1001, "fake Discord going away")
        await self._runner.cleanup()

    # --- driving it ----------------------------------------------------------------------------

    async def user_message(
        self,
        channel_id: int,
        author: FakeUser,
        content: str,
        *,
        mentions: Sequence[FakeUser] | None = None,
        reply_to: int | None = None,
    ) -> Message:
        """``author`` sends ``content`` in the channel, thread or DM: stored, and dispatched as
        MESSAGE_CREATE. Mentions are read from the content as Discord does (``<@id>``,
        ``<@&id>``, ``@everyone``) unless ``mentions`` names the users."""
        self._writable(channel_id)
        message = self._new_message(channel_id, author, content, reply_to=reply_to)
        if mentions is not None:
            message = replace(message, mentions=tuple(mentions))
        await self._unarchive_for_message(channel_id)
        self._store(message)
        await self._dispatch_message("MESSAGE_CREATE", message)
        return message

    async def bot_message(
        self, channel_id: int, content: str, *, author: FakeUser = OTHER_BOT
    ) -> Message:
        """Another bot (``author.bot`` true) sends ``content``."""
        return await self.user_message(channel_id, author, content)

    def dm_channel(self, user: FakeUser) -> int:
        """The id of the DM channel between ``user`` and the bot (created on first use)."""
        for cid, channel in self._channels.items():
            if channel["type"] == 1 and channel["recipients"][0]["id"] == str(user.id):
                return cid
        cid = self._snowflake()
        self._channels[cid] = {"id": cid, "type": 1, "recipients": [user.payload()],
                               "last_message_id": None, "flags": 0}  # fmt: skip
        return cid

    async def start_thread(
        self, channel_id: int, owner: FakeUser, name: str, *, message_id: int | None = None
    ) -> Thread:
        """``owner`` starts a public thread in a text channel (from ``message_id`` when
        given); THREAD_CREATE is dispatched."""
        return await self._open_thread(channel_id, owner, name, message_id=message_id)

    async def forum_post(self, owner: FakeUser, name: str, content: str) -> Thread:
        """``owner`` posts in :data:`FORUM`: a thread and its starter message (same id)."""
        thread_id = self._snowflake()
        thread = await self._open_thread(FORUM, owner, name, thread_id=thread_id)
        starter = replace(self._new_message(thread.id, owner, content), id=thread_id)
        self._store(starter)
        await self._dispatch_message("MESSAGE_CREATE", starter)
        return self._threads[thread.id]

    async def archive_thread(self, thread_id: int, *, locked: bool = False) -> None:
        """The thread is archived (as after its inactivity period); THREAD_UPDATE."""
        thread = self._thread_of(thread_id)
        archived = replace(thread, archived=True, locked=locked, archive_timestamp=_now_iso())
        self._threads[thread_id] = archived
        await self._dispatch("THREAD_UPDATE", archived.payload(), INTENT_GUILDS)

    async def delete_channel(self, channel_id: int) -> None:
        """The channel or thread is deleted: later REST on it is ``404 Unknown Channel``;
        THREAD_DELETE (or CHANNEL_DELETE) is dispatched."""
        if (thread := self._threads.pop(channel_id, None)) is not None:
            body = {"id": str(thread.id), "guild_id": str(GUILD),
                    "parent_id": str(thread.parent_id), "type": thread.type}  # fmt: skip
            event = "THREAD_DELETE"
        elif (channel := self._channels.pop(channel_id, None)) is not None:
            body, event = _channel_payload(channel), "CHANNEL_DELETE"
        else:
            raise KeyError(channel_id)
        self._deleted.add(channel_id)
        self._messages.pop(channel_id, None)
        await self._dispatch(event, body, INTENT_GUILDS)

    async def delete_message(self, channel_id: int, message_id: int) -> None:
        """Someone (a moderator) deletes the message; MESSAGE_DELETE."""
        message = self._message_in(channel_id, message_id)
        del self._messages[channel_id][message_id]
        await self._dispatch_delete(message)

    async def press_button(self, message_id: int, custom_id: str, user: FakeUser) -> Interaction:
        """``user`` presses the component ``custom_id`` on the message: INTERACTION_CREATE
        (type 3) is dispatched. The bot must answer within ``interaction_deadline``."""
        message = self._find_message(message_id)
        kind = next((c["type"] for c in _walk(message.components)
                     if c.get("custom_id") == custom_id), 2)  # fmt: skip
        press = Interaction(id=self._snowflake(), token=f"itoken-{secrets.token_hex(24)}",
                            custom_id=custom_id, user=user, message_id=message_id,
                            channel_id=message.channel_id, at=self._clock())  # fmt: skip
        self._pending[press.id] = _Pending(press)
        self._by_token[press.token] = press.id
        self._responses[press.id] = []
        body: dict[str, Any] = {
            "id": str(press.id), "application_id": str(APP_ID), "type": 3,
            "token": press.token, "version": 1,
            "data": {"custom_id": custom_id, "component_type": kind},
            "channel_id": str(message.channel_id), "channel": self._channel_body(message),
            "message": message.payload(), "locale": "en-US", "entitlements": [],
            "attachment_size_limit": 10_485_760, "context": 0,
            "app_permissions": str(self._permissions(BOT, message.channel_id)),
        }  # fmt: skip
        if message.guild_id is None:
            body |= {"user": user.payload(), "authorizing_integration_owners": {"1": str(user.id)}}
        else:
            perms = str(self._permissions(user, message.channel_id))
            body |= {"guild_id": str(GUILD), "guild_locale": "en-US",
                     "guild": {"id": str(GUILD), "locale": "en-US", "features": []},
                     "member": user.member() | {"permissions": perms},
                     "authorizing_integration_owners": {"0": str(GUILD)}}  # fmt: skip
        await self._dispatch("INTERACTION_CREATE", body, 0)
        return press

    async def disconnect(self, code: int = 4000) -> None:
        """Every gateway connection is closed with ``code``. Sessions stay resumable: events
        dispatched meanwhile are replayed on RESUME (discord.py resumes after 4000)."""
        for connection in list(self._connections):
            await connection.close(code, "fake Discord disconnect")

    # --- looking -------------------------------------------------------------------------------

    def messages(self, channel_id: int) -> list[Message]:
        """The channel's messages as shown now, oldest first."""
        return list(self._messages.get(channel_id, {}).values())

    def message(self, channel_id: int, message_id: int) -> Message | None:
        return self._messages.get(channel_id, {}).get(message_id)

    @property
    def threads(self) -> list[Thread]:
        """Threads that exist now, oldest first."""
        return sorted(self._threads.values(), key=lambda t: t.id)

    def thread(self, thread_id: int) -> Thread | None:
        return self._threads.get(thread_id)

    def responses(self, interaction: Interaction | int) -> list[dict[str, Any]]:
        """The callback bodies the bot sent for an interaction (``{"type": 6}``…)."""
        key = interaction if isinstance(interaction, int) else interaction.id
        return list(self._responses.get(key, []))

    def routes(self) -> list[str]:
        """The route of each call so far, in order."""
        return [call.route for call in self.calls]

    # --- REST plumbing -------------------------------------------------------------------------

    def _add_routes(self) -> None:
        r = self._route
        r("GET", "/users/@me", self._get_me)
        r("GET", "/users/{user_id}", self._get_user)
        r("POST", "/users/@me/channels", self._create_dm)
        r("GET", "/gateway", self._get_gateway)
        r("GET", "/gateway/bot", self._get_gateway_bot)
        r("GET", "/oauth2/applications/@me", self._get_application)
        r("GET", "/applications/@me", self._get_application)
        r("GET", "/guilds/{guild_id}", self._get_guild)
        r("GET", "/guilds/{guild_id}/members/{user_id}", self._get_member)
        r("GET", "/channels/{channel_id}", self._get_channel)
        r("PATCH", "/channels/{channel_id}", self._edit_channel)
        r("DELETE", "/channels/{channel_id}", self._delete_channel)
        r("GET", "/channels/{channel_id}/messages", self._history)
        r("POST", "/channels/{channel_id}/messages", self._create_message, bucket="messages")
        r("GET", "/channels/{channel_id}/messages/{message_id}", self._get_message)
        r("PATCH", "/channels/{channel_id}/messages/{message_id}", self._edit_message,
          bucket="messages")  # fmt: skip
        r("DELETE", "/channels/{channel_id}/messages/{message_id}", self._delete_message)
        r("POST", "/channels/{channel_id}/messages/{message_id}/threads",
          self._thread_from_message)  # fmt: skip
        r("POST", "/channels/{channel_id}/threads", self._thread_without_message)
        r("POST", "/channels/{channel_id}/typing", self._typing)
        r("POST", "/interactions/{interaction_id}/{token}/callback", self._callback, auth=False)
        r("POST", "/webhooks/{app_id}/{token}", self._followup, auth=False)
        webhook_message = "/webhooks/{app_id}/{token}/messages/{message_id}"
        r("GET", webhook_message, self._get_webhook_message, auth=False)
        r("PATCH", webhook_message, self._edit_webhook_message, auth=False)
        r("DELETE", webhook_message, self._delete_webhook_message, auth=False)
        self._app.router.add_route("GET", "/gateway", self._gateway)
        self._app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._no_route)

    def _route(
        self, method: str, template: str, handler: Handler, *, bucket: str = "", auth: bool = True
    ) -> None:
        name = f"{method} {template}"
        limits = (bucket or name, self._per_window if bucket else 50)
        window = self._window if bucket else 1.0

        async def handle(request: web.Request) -> web.StreamResponse:
            return await self._handle(request, name, handler, limits, window, auth)

        self._app.router.add_route(method, API_PREFIX + template, handle)

    async def _handle(
        self,
        request: web.Request,
        name: str,
        handler: Handler,
        limits: tuple[str, int],
        window: float,
        auth: bool,
    ) -> web.StreamResponse:
        body = await _read_body(request)
        now = self._clock()
        query = dict(request.query)

        def answer(status: int, payload: Any, headers: Mapping[str, str] = {}) -> web.Response:
            self.calls.append(RecordedCall(method=request.method, route=name, json=body, at=now,
                                           path=request.path.removeprefix(API_PREFIX),
                                           status=status, query=query))  # fmt: skip
            if status == 204:
                return web.Response(status=204, headers=headers)
            return _json(payload, status=status, headers=headers)

        if auth and request.headers.get("Authorization") != f"Bot {self.token}":
            return answer(401, {"message": "401: Unauthorized", "code": 0})
        try:
            params = {k: _param(k, v) for k, v in request.match_info.items()}
        except ValueError:
            return answer(404, {"message": "404: Not Found", "code": 0})
        if auth and (wait := self._global.take(now)) is not None:
            return answer(*self._too_many(wait, global_=True))
        major = next((params[k] for k in _MAJOR if k in params), 0)
        bucket_name, limit = limits
        bucket = self._buckets.setdefault((bucket_name, major), _Window(limit, window))
        if (wait := bucket.take(now)) is not None:
            return answer(*self._too_many(wait, global_=False, bucket=bucket_name, limit=limit))
        headers = _limit_headers(bucket, now, _bucket_hash(bucket_name))
        try:
            status, payload = await handler(params, body, query)
        except DiscordError as error:
            status, payload = error.status, error.body
        return answer(status, payload, headers)

    def _too_many(
        self, wait: float, *, global_: bool, bucket: str = "", limit: int = 0
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        self.rate_limited += 1
        wait = math.ceil(wait * 1000) / 1000
        headers = {"Retry-After": str(math.ceil(wait)), "Via": "1.1 google",
                   "X-RateLimit-Scope": "global" if global_ else "user"}  # fmt: skip
        if global_:
            headers["X-RateLimit-Global"] = "true"
        else:
            headers |= {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": "0",
                        "X-RateLimit-Reset": f"{time.time() + wait:.3f}",
                        "X-RateLimit-Reset-After": f"{wait:.3f}",
                        "X-RateLimit-Bucket": _bucket_hash(bucket)}  # fmt: skip
        body = {"message": "You are being rate limited.", "retry_after": wait, "global": global_}
        return 429, body, headers

    async def _no_route(self, request: web.Request) -> web.StreamResponse:
        return _json({"message": "404: Not Found", "code": 0}, status=404)

    # --- REST: users, application, gateway, guild ----------------------------------------------

    async def _get_me(self, p: Params, body: Any, q: Query) -> Answer:
        return 200, BOT.payload() | {"verified": True, "mfa_enabled": False, "email": None}

    async def _get_user(self, p: Params, body: Any, q: Query) -> Answer:
        if (user := USERS.get(p["user_id"])) is None:
            raise _unknown("User", 10013)
        return 200, user.payload()

    async def _create_dm(self, p: Params, body: Any, q: Query) -> Answer:
        if (user := USERS.get(int((body or {}).get("recipient_id", 0)))) is None:
            raise _unknown("User", 10013)
        return 200, _channel_payload(self._channels[self.dm_channel(user)])

    async def _get_gateway(self, p: Params, body: Any, q: Query) -> Answer:
        return 200, {"url": self.gateway_url}

    async def _get_gateway_bot(self, p: Params, body: Any, q: Query) -> Answer:
        limit = {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1}
        return 200, {"url": self.gateway_url, "shards": 1, "session_start_limit": limit}

    async def _get_application(self, p: Params, body: Any, q: Query) -> Answer:
        return 200, {
            "id": str(APP_ID), "name": "relaybot", "description": "", "icon": None,
            "bot_public": True, "bot_require_code_grant": False, "verify_key": "0" * 64,
            "owner": GRACE.payload(), "team": None, "flags": self._app_flags(),
            "bot": BOT.payload(), "interactions_endpoint_url": None, "redirect_uris": [],
            "tags": [], "approximate_guild_count": 1,
        }  # fmt: skip

    async def _get_guild(self, p: Params, body: Any, q: Query) -> Answer:
        if p["guild_id"] != GUILD:
            raise _unknown("Guild", 10004)
        guild = self._guild_payload(members=False)
        for key in ("channels", "threads", "members", "member_count"):
            guild.pop(key)
        return 200, guild

    async def _get_member(self, p: Params, body: Any, q: Query) -> Answer:
        if p["guild_id"] != GUILD:
            raise _unknown("Guild", 10004)
        if (user := USERS.get(p["user_id"])) is None:
            raise _unknown("Member", 10007)
        return 200, user.member()

    # --- REST: channels and threads ------------------------------------------------------------

    async def _get_channel(self, p: Params, body: Any, q: Query) -> Answer:
        return 200, self._channel_payload_of(self._existing(p["channel_id"]))

    async def _edit_channel(self, p: Params, body: Any, q: Query) -> Answer:
        """Only threads can be edited here: ``name``, ``archived``, ``locked``."""
        thread = self._thread_of(p["channel_id"])
        body = body or {}
        can_manage = bool(self._permissions(BOT, thread.id) & MANAGE_THREADS)
        if not (can_manage or thread.owner_id == BOT.id or set(body) <= {"archived"}):
            raise _missing_permissions()
        if thread.locked and not can_manage:
            raise _missing_permissions()
        changed = replace(
            thread,
            name=str(body.get("name", thread.name))[:100],
            archived=bool(body.get("archived", thread.archived)),
            locked=bool(body.get("locked", thread.locked)),
        )
        if changed.archived != thread.archived:
            changed = replace(changed, archive_timestamp=_now_iso())
        self._threads[thread.id] = changed
        await self._dispatch("THREAD_UPDATE", changed.payload(), INTENT_GUILDS)
        return 200, changed.payload()

    async def _delete_channel(self, p: Params, body: Any, q: Query) -> Answer:
        thread = self._thread_of(p["channel_id"])
        if thread.owner_id != BOT.id and not self._permissions(BOT, thread.id) & MANAGE_THREADS:
            raise _missing_permissions()
        await self.delete_channel(thread.id)
        return 200, thread.payload()

    async def _thread_from_message(self, p: Params, body: Any, q: Query) -> Answer:
        channel_id = p["channel_id"]
        starter = self._message_in(channel_id, p["message_id"])
        if self._channels.get(channel_id, {}).get("type") not in (0, 5):
            raise DiscordError(400, 50024, "Cannot execute action on this channel type")
        if not self._permissions(BOT, channel_id) & CREATE_PUBLIC_THREADS:
            raise _missing_permissions()
        if starter.thread_id is not None:
            raise DiscordError(400, 160004, "A thread has already been created for this message")
        body = body or {}
        thread = await self._open_thread(
            channel_id, BOT, _thread_name(body), message_id=starter.id,
            auto_archive=int(body.get("auto_archive_duration") or 1440),
        )  # fmt: skip
        return 201, thread.payload() | {"member": _thread_member(thread.id, BOT.id)}

    async def _thread_without_message(self, p: Params, body: Any, q: Query) -> Answer:
        channel_id, body = p["channel_id"], body or {}
        parent = self._channels.get(channel_id)
        if parent is None or channel_id in self._deleted:
            raise _unknown("Channel", 10003)
        if not self._permissions(BOT, channel_id) & CREATE_PUBLIC_THREADS:
            raise _missing_permissions()
        name = _thread_name(body)
        if parent["type"] != 15:
            thread = await self._open_thread(channel_id, BOT, name, kind=int(body.get("type", 12)))
            return 201, thread.payload()
        thread_id = self._snowflake()
        first = body.get("message") or {}
        starter = replace(self._new_message(thread_id, BOT, str(first.get("content", "")),
                                            allowed=first.get("allowed_mentions")),
                          id=thread_id, components=list(first.get("components", [])))  # fmt: skip
        _check_content(starter)
        thread = await self._open_thread(channel_id, BOT, name, thread_id=thread_id)
        self._store(starter)
        await self._dispatch_message("MESSAGE_CREATE", starter)
        payload = self._threads[thread.id].payload()
        return 201, payload | {"message": starter.payload()}

    async def _typing(self, p: Params, body: Any, q: Query) -> Answer:
        self._writable(p["channel_id"])
        return 204, None

    # --- REST: messages ------------------------------------------------------------------------

    async def _history(self, p: Params, body: Any, q: Query) -> Answer:
        """Newest first, as Discord answers; ``after`` takes the oldest ``limit`` after it."""
        found = self.messages(self._existing(p["channel_id"]))
        limit = min(int(q.get("limit", 50)), 100)
        if "before" in q:
            found = [m for m in found if m.id < int(q["before"])]
        if "after" in q:
            found = [m for m in found if m.id > int(q["after"])][:limit]
        return 200, [m.payload() for m in reversed(found[-limit:])]

    async def _get_message(self, p: Params, body: Any, q: Query) -> Answer:
        return 200, self._message_in(p["channel_id"], p["message_id"]).payload()

    async def _create_message(self, p: Params, body: Any, q: Query) -> Answer:
        channel_id, body = p["channel_id"], body or {}
        self._writable(channel_id, bot=True)
        reply_to = (body.get("message_reference") or {}).get("message_id")
        message = self._new_message(
            channel_id, BOT, str(body.get("content") or ""), allowed=body.get("allowed_mentions"),
            reply_to=int(reply_to) if reply_to else None,
        )  # fmt: skip
        message = replace(message, components=list(body.get("components") or []),
                          embeds=list(body.get("embeds") or []),
                          flags=int(body.get("flags") or 0) & _SENDABLE_FLAGS)  # fmt: skip
        _check_content(message)
        await self._unarchive_for_message(channel_id)
        self._store(message)
        await self._dispatch_message("MESSAGE_CREATE", message)
        return 200, message.payload()

    async def _edit_message(self, p: Params, body: Any, q: Query) -> Answer:
        old = self._message_in(p["channel_id"], p["message_id"])
        if old.author.id != BOT.id:
            raise DiscordError(403, 50005, "Cannot edit a message authored by another user")
        self._not_archived(old.channel_id)
        new = self._edited(old, body or {})
        _check_content(new)
        self._messages[old.channel_id][old.id] = new
        await self._dispatch_message("MESSAGE_UPDATE", new)
        return 200, new.payload()

    async def _delete_message(self, p: Params, body: Any, q: Query) -> Answer:
        message = self._message_in(p["channel_id"], p["message_id"])
        if message.author.id != BOT.id and not (
            self._permissions(BOT, message.channel_id) & MANAGE_MESSAGES
        ):
            raise _missing_permissions()
        del self._messages[message.channel_id][message.id]
        await self._dispatch_delete(message)
        return 204, None

    # --- REST: interactions --------------------------------------------------------------------

    async def _callback(self, p: Params, body: Any, q: Query) -> Answer:
        pending = self._pending.get(p["interaction_id"])
        body = body or {}
        if pending is None or pending.press.token != p["token"]:
            raise _unknown("interaction", 10062)
        if self._clock() - pending.press.at > self._deadline:
            raise _unknown("interaction", 10062)
        if pending.responded:
            raise DiscordError(400, 40060, "Interaction has already been acknowledged.")
        kind, data = int(body.get("type", 0)), body.get("data") or {}
        press = pending.press
        if kind in (4, 5):
            flags = int(data.get("flags") or 0) | (128 if kind == 5 else 0)
            created = self._new_message(press.channel_id, BOT, str(data.get("content") or ""),
                                        allowed=data.get("allowed_mentions"))  # fmt: skip
            created = replace(created, components=list(data.get("components") or []),
                              flags=flags, type=19 if kind == 4 else 0,
                              interaction_id=press.id)  # fmt: skip
            if kind == 4:
                _check_content(created)
            await self._keep_reply(created)
            pending.original_id = created.id
        elif kind in (6, 7):
            pending.original_id = press.message_id
            if kind == 7:
                if (old := self._find_reply(press.message_id)) is None:
                    raise _unknown("Message", 10008)
                new = self._edited(old, data)
                _check_content(new)
                self._messages[old.channel_id][old.id] = new
                await self._dispatch_message("MESSAGE_UPDATE", new)
        else:
            raise _invalid_form(
                "type", "BASE_TYPE_CHOICES", f"Value must be one of (4, 5, 6, 7): {kind}"
            )
        pending.responded = True
        self._responses[press.id].append(body)
        if q.get("with_response") not in ("1", "true", "True"):
            return 204, None
        answer: dict[str, Any] = {"id": str(press.id), "type": 3,
                                  "response_message_loading": kind == 5,
                                  "response_message_ephemeral": False}  # fmt: skip
        if pending.original_id is not None:
            answer["response_message_id"] = str(pending.original_id)
        resource: dict[str, Any] = {"type": kind}
        if kind in (4, 7) and (shown := self._find_reply(pending.original_id)) is not None:
            resource["message"] = shown.payload()
            answer["response_message_ephemeral"] = bool(shown.flags & 64)
        return 200, {"interaction": answer, "resource": resource}

    async def _followup(self, p: Params, body: Any, q: Query) -> Answer:
        pending = self._pending_by_token(p)
        body = body or {}
        created = self._new_message(pending.press.channel_id, BOT, str(body.get("content") or ""),
                                    allowed=body.get("allowed_mentions"))  # fmt: skip
        created = replace(
            created,
            components=list(body.get("components") or []),
            flags=int(body.get("flags") or 0),
            interaction_id=pending.press.id,
        )
        _check_content(created)
        await self._keep_reply(created)
        return 200, created.payload()

    async def _get_webhook_message(self, p: Params, body: Any, q: Query) -> Answer:
        return 200, self._webhook_target(p).payload()

    async def _edit_webhook_message(self, p: Params, body: Any, q: Query) -> Answer:
        old = self._webhook_target(p)
        new = self._edited(old, body or {})
        if old.flags & 128:
            new = replace(new, flags=old.flags & ~128, edited_timestamp=None)
        _check_content(new)
        if old.flags & 64:
            self.ephemeral[self.ephemeral.index(old)] = new
        else:
            self._messages[old.channel_id][old.id] = new
            await self._dispatch_message("MESSAGE_UPDATE", new)
        return 200, new.payload()

    async def _delete_webhook_message(self, p: Params, body: Any, q: Query) -> Answer:
        old = self._webhook_target(p)
        if old.flags & 64:
            self.ephemeral.remove(old)
        else:
            del self._messages[old.channel_id][old.id]
            await self._dispatch_delete(old)
        return 204, None

    def _webhook_target(self, p: dict[str, Any]) -> Message:
        """The message a webhook route names: ``@original`` or one of the interaction's."""
        pending = self._pending_by_token(p)
        wanted = pending.original_id if p["message_id"] == "@original" else p["message_id"]
        shown = self._find_reply(wanted)
        if shown is None or (wanted != pending.original_id
                             and shown.interaction_id != pending.press.id):  # fmt: skip
            raise _unknown("Message", 10008)
        return shown

    # --- the gateway ---------------------------------------------------------------------------

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        compress = request.query.get("compress")
        if request.query.get("v", "10") != "10":
            await ws.close(code=4012, message=b"Invalid API version.")
            return ws
        if request.query.get("encoding", "json") != "json" or compress not in (None, "zlib-stream"):
            await ws.close(code=4002, message=b"Error while decoding payload.")
            return ws
        connection = _Connection(ws, compress=compress is not None)
        self._connections.append(connection)
        try:
            await connection.send(10, {"heartbeat_interval": self._heartbeat_interval})
            async for frame in ws:
                try:
                    payload = json.loads(frame.data) if frame.type is WSMsgType.TEXT else None
                except ValueError:
                    payload = None
                if not isinstance(payload, dict):
                    await connection.close(4002, "Error while decoding payload.")
                    break
                await self._on_op(connection, payload)
        finally:
            self._connections.remove(connection)
            if (session := connection.session) is not None and session.connection is connection:
                session.connection = None
                if ws.close_code in (1000, 1001) and not connection.closed_by_server:
                    self._sessions.pop(session.id, None)  # the client's clean close ends it
        return ws

    async def _on_op(self, connection: _Connection, payload: dict[str, Any]) -> None:
        op, d = payload.get("op"), payload.get("d")
        session = connection.session
        if op == 1:
            self.heartbeats += 1
            await connection.send(11, None)
        elif op == 2:
            await self._on_identify(connection, d if isinstance(d, dict) else {})
        elif op == 6:
            await self._on_resume(connection, d if isinstance(d, dict) else {})
        elif session is None:
            await connection.close(4003, "Not authenticated.")
        elif op == 8:
            members, nonce = [u.member() for u in USERS.values()], (d or {}).get("nonce")
            chunk = {"guild_id": str(GUILD), "members": members, "chunk_index": 0,
                     "chunk_count": 1, "not_found": [], "nonce": nonce}  # fmt: skip
            await session.dispatch("GUILD_MEMBERS_CHUNK", chunk)
        elif op not in (3, 4):
            await connection.close(4001, "Unknown opcode.")

    async def _on_identify(self, connection: _Connection, d: dict[str, Any]) -> None:
        intents = d.get("intents")
        if connection.session is not None:
            await connection.close(4005, "Already authenticated.")
        elif d.get("token") != self.token:
            await connection.close(4004, "Authentication failed.")
        elif not isinstance(intents, int):
            await connection.close(4013, "Invalid intent(s).")
        elif intents & PRIVILEGED_INTENTS & ~self._privileged:
            await connection.close(4014, "Disallowed intent(s).")
        else:
            self.identify = d
            session = connection.session = _Session(intents)
            session.connection = connection
            self._sessions[session.id] = session
            await session.dispatch("READY", self._ready_payload(session, d))
            members = bool(intents & INTENT_GUILD_MEMBERS)
            if session.wants(INTENT_GUILDS):
                await session.dispatch("GUILD_CREATE", self._guild_payload(members=members))
            self.ready.set()

    async def _on_resume(self, connection: _Connection, d: dict[str, Any]) -> None:
        session = self._sessions.get(str(d.get("session_id")))
        if d.get("token") != self.token or session is None:
            await connection.send(9, False)
            return
        if (old := session.connection) is not None:
            old.session = None
            await old.close(4000, "Resumed elsewhere.")
        connection.session, session.connection = session, connection
        seen = int(d.get("seq") or 0)
        for seq, event, data in list(session.log):
            if seq > seen:
                await connection.send(0, data, event, seq)
        await session.dispatch("RESUMED", {})

    def _ready_payload(self, session: _Session, identify: dict[str, Any]) -> dict[str, Any]:
        return {
            "v": 10, "user": BOT.payload() | {"verified": True, "mfa_enabled": False},
            "guilds": [{"id": str(GUILD), "unavailable": True}],
            "session_id": session.id, "session_type": "normal",
            "resume_gateway_url": self.gateway_url, "shard": identify.get("shard", [0, 1]),
            "application": {"id": str(APP_ID), "flags": self._app_flags()},
            "private_channels": [], "relationships": [], "presences": [],
            "guild_join_requests": [], "geo_ordered_rtc_regions": [], "user_settings": {},
        }  # fmt: skip

    async def _dispatch(self, event: str, data: dict[str, Any], intent: int) -> None:
        """Dispatches to every live session that asked for ``intent`` (connected or not: a
        session that resumes gets what it missed)."""
        for session in list(self._sessions.values()):
            if session.wants(intent):
                await session.dispatch(event, data)

    async def _dispatch_message(self, event: str, message: Message) -> None:
        intent = INTENT_GUILD_MESSAGES if message.guild_id else INTENT_DIRECT_MESSAGES
        full = message.payload(gateway=True)
        hidden = full | {"content": "", "embeds": [], "attachments": [], "components": []}
        for session in list(self._sessions.values()):
            if session.wants(intent):
                await session.dispatch(event, full if _sees_content(session, message) else hidden)

    async def _dispatch_delete(self, message: Message) -> None:
        body = {"id": str(message.id), "channel_id": str(message.channel_id)}
        if message.guild_id is not None:
            body["guild_id"] = str(message.guild_id)
        intent = INTENT_GUILD_MESSAGES if message.guild_id else INTENT_DIRECT_MESSAGES
        await self._dispatch("MESSAGE_DELETE", body, intent)

    # --- the world's state ---------------------------------------------------------------------

    def _snowflake(self) -> int:
        stamp = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last_id = max(self._last_id + 1, stamp)
        return self._last_id

    def _app_flags(self) -> int:
        return sum(
            flag for intent, flag in _APP_FLAG_FOR_INTENT.items() if intent & self._privileged
        )

    def _guild_payload(self, *, members: bool) -> dict[str, Any]:
        shown = list(USERS.values()) if members else [BOT]
        channels = [_channel_payload(c) for c in self._channels.values() if c.get("guild_id")]
        return {
            "id": str(GUILD), "name": "G1", "icon": None, "splash": None, "banner": None,
            "discovery_splash": None, "description": None, "owner_id": str(GRACE.id),
            "afk_channel_id": None, "afk_timeout": 300, "verification_level": 0,
            "default_message_notifications": 1, "explicit_content_filter": 0, "mfa_level": 0,
            "nsfw_level": 0, "premium_tier": 0, "premium_subscription_count": 0,
            "premium_progress_bar_enabled": False, "system_channel_id": str(CHANNEL),
            "system_channel_flags": 0, "rules_channel_id": None,
            "public_updates_channel_id": None, "safety_alerts_channel_id": None,
            "preferred_locale": "en-US", "features": [], "vanity_url_code": None,
            "max_members": 500_000, "max_video_channel_users": 25, "application_id": None,
            "roles": [_role_payload(rid) for rid in _ROLES], "emojis": [], "stickers": [],
            "joined_at": "2024-01-01T00:00:00.000000+00:00", "large": False,
            "unavailable": False, "member_count": len(USERS),
            "members": [u.member() for u in shown], "channels": channels,
            "threads": [t.payload() for t in self.threads if not t.archived],
            "presences": [], "voice_states": [], "stage_instances": [],
            "guild_scheduled_events": [], "soundboard_sounds": [], "embedded_activities": [],
            "lazy": True,
        }  # fmt: skip

    def _channel_payload_of(self, channel_id: int) -> dict[str, Any]:
        if (thread := self._threads.get(channel_id)) is not None:
            return thread.payload()
        return _channel_payload(self._channels[channel_id])

    def _channel_body(self, message: Message) -> dict[str, Any]:
        return self._channel_payload_of(message.channel_id)

    def _existing(self, channel_id: int) -> int:
        if channel_id in self._deleted or (
            channel_id not in self._channels and channel_id not in self._threads
        ):
            raise _unknown("Channel", 10003)
        return channel_id

    def _thread_of(self, channel_id: int) -> Thread:
        self._existing(channel_id)
        if (thread := self._threads.get(channel_id)) is None:
            raise DiscordError(400, 50024, "Cannot execute action on this channel type")
        return thread

    def _writable(self, channel_id: int, *, bot: bool = False) -> None:
        """The channel exists and (for the bot) it may send there."""
        self._existing(channel_id)
        if channel_id in self._channels and self._channels[channel_id]["type"] == 15:
            raise DiscordError(400, 50008, "Cannot send messages in a non-text channel")
        if bot:
            needed = SEND_MESSAGES_IN_THREADS if channel_id in self._threads else SEND_MESSAGES
            perms = self._permissions(BOT, channel_id)
            if not perms & VIEW_CHANNEL:
                raise DiscordError(403, 50001, "Missing Access")
            if not perms & needed:
                raise _missing_permissions()
            thread = self._threads.get(channel_id)
            if thread is not None and thread.locked and not perms & MANAGE_THREADS:
                raise DiscordError(403, 160005, "Thread is locked")

    def _not_archived(self, channel_id: int) -> None:
        if (thread := self._threads.get(channel_id)) is not None and thread.archived:
            raise DiscordError(400, 50083, "Thread is archived")

    async def _unarchive_for_message(self, channel_id: int) -> None:
        """Sending in an archived, unlocked thread unarchives it, as Discord does."""
        thread = self._threads.get(channel_id)
        if thread is not None and thread.archived and not thread.locked:
            self._threads[channel_id] = thread = replace(thread, archived=False)
            await self._dispatch("THREAD_UPDATE", thread.payload(), INTENT_GUILDS)

    def _message_in(self, channel_id: int, message_id: int) -> Message:
        self._existing(channel_id)
        if (message := self.message(channel_id, message_id)) is None:
            raise _unknown("Message", 10008)
        return message

    def _find_message(self, message_id: int) -> Message:
        for kept in self._messages.values():
            if message_id in kept:
                return kept[message_id]
        raise KeyError(message_id)

    def _find_reply(self, message_id: int | None) -> Message | None:
        if message_id is None:
            return None
        shown = [m for m in self.ephemeral if m.id == message_id]
        if shown:
            return shown[0]
        try:
            return self._find_message(message_id)
        except KeyError:
            return None

    def _guild_of(self, channel_id: int) -> int | None:
        if channel_id in self._threads:
            return GUILD
        return self._channels.get(channel_id, {}).get("guild_id")

    def _new_message(
        self,
        channel_id: int,
        author: FakeUser,
        content: str,
        *,
        allowed: dict[str, Any] | None = None,
        reply_to: int | None = None,
    ) -> Message:
        guild_id = self._guild_of(channel_id)
        users, roles, everyone = _parsed_mentions(content)
        if guild_id is not None and not self._permissions(author, channel_id) & MENTION_EVERYONE:
            everyone = False
        reference = None
        if reply_to is not None:
            replied = self._message_in(channel_id, reply_to)
            reference = {"type": 0, "message_id": str(reply_to), "channel_id": str(channel_id)}
            if guild_id is not None:
                reference["guild_id"] = str(guild_id)
            users = [*users, replied.author.id]
        if allowed is not None:
            users, roles, everyone = _allowed(allowed, users, roles, everyone, reply_to)
        mentioned = tuple(USERS[u] for u in dict.fromkeys(users) if u in USERS)
        return Message(id=self._snowflake(), channel_id=channel_id, guild_id=guild_id,
                       author=author, content=content, mentions=mentioned,
                       mention_roles=tuple(r for r in dict.fromkeys(roles) if r in _ROLES),
                       mention_everyone=everyone, allowed_mentions=allowed,
                       reference=reference, timestamp=_now_iso(),
                       type=19 if reply_to is not None else 0)  # fmt: skip

    def _edited(self, old: Message, body: Mapping[str, Any]) -> Message:
        """The message after a PATCH: what the body leaves out stays as it was."""
        content = str(body["content"] or "") if "content" in body else old.content
        allowed = body.get("allowed_mentions", old.allowed_mentions)
        fresh = self._new_message(old.channel_id, old.author, content, allowed=allowed)
        return replace(
            old, content=content, allowed_mentions=allowed, mentions=fresh.mentions,
            mention_roles=fresh.mention_roles, mention_everyone=fresh.mention_everyone,
            components=list(body["components"] or []) if "components" in body else old.components,
            embeds=list(body["embeds"] or []) if "embeds" in body else old.embeds,
            edited_timestamp=_now_iso(),
        )  # fmt: skip

    def _store(self, message: Message) -> None:
        self._messages.setdefault(message.channel_id, {})[message.id] = message
        if (thread := self._threads.get(message.channel_id)) is not None:
            self._threads[thread.id] = replace(
                thread, message_count=thread.message_count + 1, last_message_id=message.id
            )
        elif message.channel_id in self._channels:
            self._channels[message.channel_id]["last_message_id"] = message.id

    async def _keep_reply(self, created: Message) -> None:
        if created.flags & 64:
            self.ephemeral.append(created)
            return
        self._store(created)
        await self._dispatch_message("MESSAGE_CREATE", created)

    async def _open_thread(
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
        self._existing(parent_id)
        starter = None if message_id is None else self._message_in(parent_id, message_id)
        tid = message_id or thread_id or self._snowflake()
        thread = Thread(id=tid, parent_id=parent_id, owner_id=owner.id, name=name, type=kind,
                        auto_archive_duration=auto_archive, created=_now_iso())  # fmt: skip
        self._threads[tid] = thread
        payload = thread.payload() | {"newly_created": True}
        if owner.id == BOT.id:
            payload["member"] = _thread_member(tid, BOT.id)
        await self._dispatch("THREAD_CREATE", payload, INTENT_GUILDS)
        if starter is not None:
            starter = replace(starter, thread_id=tid)
            self._messages[parent_id][starter.id] = starter
            body = starter.payload(gateway=True) | {"thread": thread.payload(), "flags": 32}
            await self._dispatch("MESSAGE_UPDATE", body, INTENT_GUILD_MESSAGES)
        return thread

    def _pending_by_token(self, p: dict[str, Any]) -> _Pending:
        """The interaction whose token a webhook route carries (valid for 15 minutes)."""
        iid = self._by_token.get(p["token"])
        if p["app_id"] != APP_ID or iid is None:
            raise _unknown("Webhook", 10015)
        pending = self._pending[iid]
        if self._clock() - pending.press.at > 15 * 60:
            raise DiscordError(401, 50027, "Invalid Webhook Token")
        return pending

    def _permissions(self, user: FakeUser, channel_id: int) -> int:
        """``user``'s permissions in a channel, computed as Discord does (owner, roles,
        then the channel's overwrites for @everyone, roles and the member)."""
        thread = self._threads.get(channel_id)
        channel = self._channels.get(thread.parent_id if thread else channel_id)
        if channel is None or channel.get("guild_id") is None:
            return VIEW_CHANNEL | SEND_MESSAGES | READ_MESSAGE_HISTORY | EMBED_LINKS
        if user.id == GRACE.id:
            return ALL_PERMISSIONS
        perms = _ROLES[GUILD][1]
        for role in user.roles:
            perms |= _ROLES[role][1]
        if perms & ADMINISTRATOR:
            return ALL_PERMISSIONS
        overwrites = {int(o["id"]): o for o in channel.get("permission_overwrites", [])}
        layers = [[GUILD], [r for r in user.roles if r in overwrites], [user.id]]
        for ids in layers:
            deny = allow = 0
            for oid in ids:
                if (o := overwrites.get(oid)) is not None:
                    deny, allow = deny | int(o["deny"]), allow | int(o["allow"])
            perms = (perms & ~deny) | allow
        return perms


# --- payload helpers ---------------------------------------------------------------------------


def _param(name: str, value: str) -> int | str:
    """A path parameter: snowflakes as ints (``ValueError`` when not one), the rest as is."""
    if not name.endswith("_id") or value == "@original":
        return value
    return int(value)


def _sees_content(session: _Session, message: Message) -> bool:
    """Without MESSAGE_CONTENT a guild message arrives empty unless it is the bot's own or
    mentions it."""
    return bool(
        session.intents & INTENT_MESSAGE_CONTENT
        or message.guild_id is None
        or message.author.id == BOT.id
        or any(u.id == BOT.id for u in message.mentions)
    )


def _opt(value: int | None) -> str | None:
    return None if value is None else str(value)


def _walk(components: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    for component in components:
        yield component
        yield from _walk(component.get("components", []))
        if isinstance(component.get("accessory"), dict):
            yield component["accessory"]


def _role_payload(role_id: int) -> dict[str, Any]:
    name, perms, position = _ROLES[role_id]
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


def _guild_channels() -> list[dict[str, Any]]:
    no_threads = str(CREATE_PUBLIC_THREADS)
    base = {"guild_id": GUILD, "parent_id": None, "nsfw": False, "rate_limit_per_user": 0,
            "last_message_id": None, "topic": None, "flags": 0,
            "default_auto_archive_duration": 1440}  # fmt: skip
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
    ]  # fmt: skip


def _channel_payload(channel: Mapping[str, Any]) -> dict[str, Any]:
    body = dict(channel)
    for key in ("id", "guild_id", "last_message_id"):
        if body.get(key) is not None:
            body[key] = str(body[key])
    return body


def _thread_member(thread_id: int, user_id: int) -> dict[str, Any]:
    return {"id": str(thread_id), "user_id": str(user_id), "join_timestamp": _now_iso(),
            "flags": 1}  # fmt: skip


def _thread_name(body: Mapping[str, Any]) -> str:
    name = str(body.get("name") or "")
    if not 1 <= len(name) <= 100:
        raise _invalid_form("name", "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
    return name


_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")


def _parsed_mentions(content: str) -> tuple[list[int], list[int], bool]:
    users = [int(m) for m in _USER_MENTION.findall(content)]
    roles = [int(m) for m in _ROLE_MENTION.findall(content)]
    return users, roles, "@everyone" in content or "@here" in content


def _allowed(
    allowed: Mapping[str, Any],
    users: list[int],
    roles: list[int],
    everyone: bool,
    reply_to: int | None,
) -> tuple[list[int], list[int], bool]:
    """Who is pinged once ``allowed_mentions`` is applied, as Discord applies it."""
    parse = set(allowed.get("parse") or [])
    for kind in ("users", "roles"):
        if kind in parse and allowed.get(kind):
            message = f'parse:["{kind}"] and {kind}: [ids...] are mutually exclusive.'
            code = "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE"
            raise _invalid_form("allowed_mentions", code, message)
    listed_users = {int(u) for u in allowed.get("users") or []}
    listed_roles = {int(r) for r in allowed.get("roles") or []}
    replied = users[-1:] if reply_to is not None and allowed.get("replied_user") else []
    kept_users = [u for u in users if "users" in parse or u in listed_users] + replied
    kept_roles = [r for r in roles if "roles" in parse or r in listed_roles]
    return kept_users, kept_roles, everyone and "everyone" in parse


def _check_content(message: Message) -> None:
    if len(message.content) > MAX_CONTENT:
        raise _invalid_form("content", "BASE_TYPE_MAX_LENGTH",
                            f"Must be {MAX_CONTENT} or fewer in length.")  # fmt: skip
    if not (message.content or message.components or message.embeds or message.flags & 128):
        raise DiscordError(400, 50006, "Cannot send an empty message")
    for component in _walk(message.components):
        if len(str(component.get("custom_id", ""))) > 100:
            raise _invalid_form("components", "BASE_TYPE_MAX_LENGTH",
                                "Must be 100 or fewer in length.")  # fmt: skip


def _limit_headers(bucket: _Window, now: float, bucket_hash: str) -> dict[str, str]:
    reset_after = math.ceil(max(bucket.reset_at - now, 0.0) * 1000) / 1000
    return {
        "X-RateLimit-Limit": str(bucket.limit),
        "X-RateLimit-Remaining": str(bucket.limit - bucket.count),
        "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
        "X-RateLimit-Reset-After": f"{reset_after:.3f}",
        "X-RateLimit-Bucket": bucket_hash,
    }


def _json(payload: Any, *, status: int = 200, headers: Mapping[str, str] = {}) -> web.Response:
    """A JSON answer with Discord's bare ``Content-Type: application/json`` (discord.py
    compares the header exactly and treats ``; charset=utf-8`` as text)."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {**headers, "Content-Type": "application/json"}
    return web.Response(body=body, status=status, headers=headers)


async def _read_body(request: web.Request) -> Any:
    if request.content_type == "application/json":
        raw = await request.read()
        return json.loads(raw) if raw else None
    if request.content_type.startswith("multipart/"):
        payload = (await request.post()).get("payload_json")
        return json.loads(payload) if isinstance(payload, str) else None
    return None
