"""A loopback Discord — REST API v10 and gateway websocket — that an unmodified discord.py
client logs in to; it keeps what the bot sent and enforces Discord's rate limits.

    async with FakeDiscord(token="bot-token") as fake:
        discord.http.Route.BASE = fake.api_url                              # the seam, set
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)       # in one place
        client = discord.Client(intents=intents, guild_ready_timeout=0.05)
        runner = asyncio.create_task(client.start("bot-token"))
        await fake.ready.wait()                # IDENTIFY answered with READY and GUILD_CREATE
        await client.wait_until_ready()        # discord.py's ready timer done: safe to close
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
``client.get_channel(CHANNEL)`` is set once GUILD_CREATE is handled. Close a client only once
it is ready (``await client.wait_until_ready()``): ``Client.close()`` does not cancel that
timer, and when it fires after the close it dispatches ``ready`` to a client whose loop is
gone, leaving ``on_ready``'s ``Client._run_event`` coroutine unawaited, which this project's
warning filter fails on, in whichever test the garbage collector next runs.

Shards: ``FakeDiscord(second_guild=True)`` adds guild ``GUILD_2`` (channel ``CHANNEL_2``),
which lands on shard 1 of 2 while ``GUILD`` is on shard 0. A connection whose IDENTIFY says
``shard: [id, count]`` hears only its shard's guilds (READY, GUILD_CREATE, their events), and
DMs only on shard 0; :attr:`FakeDiscord.connections` keeps each one's ``shard`` and the
events ``dispatched`` to it. Without ``shard`` (``[0, 1]``) everything is as before.

The modules, one idea each: ``world`` (the guild, its channels, roles and users; permission
and intent bits), ``messages`` (a message, whom it pings, what Discord refuses in one),
``payloads`` (guild-level JSON objects), ``cdn`` (attachments, and the files they point at),
``commands`` (application commands: registered, and used), ``errors`` (Discord's error
answers), ``state`` (what the fake holds, and each change to it dispatched), ``sessions``
(gateway sessions and who hears each event), ``gateway`` (the websocket protocol),
``ratelimits`` (buckets, headers, 429), ``router`` (what every REST route shares: auth,
limits, the record of calls), ``rest`` and ``interactions`` (the routes), ``fake``
(:class:`FakeDiscord`: serving, driving, looking).
This package never imports the ``discord`` library: it is the other side of the wire.
"""

from tests.fakes.fake_discord.cdn import Attachment, CdnRequest
from tests.fakes.fake_discord.errors import DiscordError
from tests.fakes.fake_discord.fake import FakeDiscord
from tests.fakes.fake_discord.interactions import Interaction
from tests.fakes.fake_discord.messages import Message
from tests.fakes.fake_discord.router import RecordedCall
from tests.fakes.fake_discord.state import Thread
from tests.fakes.fake_discord.world import (
    ADA,
    BOT,
    BOT_ROLE,
    CHANNEL,
    CHANNEL_2,
    FORUM,
    GRACE,
    GUILD,
    GUILD_2,
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MEMBERS,
    INTENT_GUILD_MESSAGES,
    INTENT_GUILD_PRESENCES,
    INTENT_GUILDS,
    INTENT_MESSAGE_CONTENT,
    JEANNE,
    MOD_ROLE,
    NO_THREADS_CHANNEL,
    OTHER_BOT,
    PRIVILEGED_INTENTS,
    USERS,
    FakeUser,
    shard_of,
)

__all__ = [
    "ADA",
    "BOT",
    "BOT_ROLE",
    "CHANNEL",
    "CHANNEL_2",
    "FORUM",
    "GRACE",
    "GUILD",
    "GUILD_2",
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
    "Attachment",
    "CdnRequest",
    "DiscordError",
    "FakeDiscord",
    "FakeUser",
    "Interaction",
    "Message",
    "RecordedCall",
    "Thread",
    "shard_of",
]
