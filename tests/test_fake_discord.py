"""The loopback Discord in ``tests/fakes/fake_discord/``, checked against real discord.py.

The first tests run an unmodified ``discord.Client`` against it through the one seam a bot
uses — ``Route.BASE`` and ``DiscordWebSocket.DEFAULT_GATEWAY`` — and prove the whole path:
login, IDENTIFY → READY → GUILD_CREATE, a pushed MESSAGE_CREATE, a send with mentions
disabled, an edit, a thread, a View button press. The rest speak raw HTTP and websocket to pin
down the wire: rate-limit headers and 429s, errors, intents, compression.
"""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import aiohttp
import discord
import pytest
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

from tests.fakes.fake_discord import (
    ADA,
    BOT,
    CHANNEL,
    FORUM,
    GRACE,
    GUILD,
    INTENT_GUILDS,
    INTENT_MESSAGE_CONTENT,
    JEANNE,
    NO_THREADS_CHANNEL,
    OTHER_BOT,
    FakeDiscord,
)
from tests.support.waiting import until

TOKEN = "bot-token"
WAIT = 20.0
"""The bound on each wait on the loopback Discord: generous for a loaded machine, and still
well inside the suite's 60 s per test, so a hang fails here with its line."""


@contextmanager
def pointed_at(fake: FakeDiscord) -> Iterator[None]:
    """The seam a bot sets in one place: discord.py's REST base and its gateway URL."""
    base, gateway = Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY
    Route.BASE = fake.api_url
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(fake.gateway_url)
    try:
        yield
    finally:
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = base, gateway


class Recorder(discord.Client):
    """A plain client that keeps what it was told."""

    def __init__(self, **options: Any) -> None:
        intents = discord.Intents.default()
        intents.message_content = True
        super().__init__(intents=intents, guild_ready_timeout=0.01, **options)
        self.seen: list[discord.Message] = []
        self.threads: list[discord.Thread] = []
        self.deleted_threads: list[int] = []
        self.ready_event = asyncio.Event()

    async def on_ready(self) -> None:
        self.ready_event.set()

    async def on_message(self, message: discord.Message) -> None:
        self.seen.append(message)

    async def on_thread_create(self, thread: discord.Thread) -> None:
        self.threads.append(thread)

    async def on_raw_thread_delete(self, payload: discord.RawThreadDeleteEvent) -> None:
        self.deleted_threads.append(payload.thread_id)


@asynccontextmanager
async def connected(fake: FakeDiscord, client: discord.Client) -> AsyncIterator[None]:
    """The client logged in and ready (its guild loaded) for the block, then closed.

    Ready, not only holding the guild: discord.py dispatches ``ready`` from a timer task
    (``guild_ready_timeout`` after the last GUILD_CREATE) that ``Client.close()`` does not
    cancel. Closed before it fires, the client gets ``ready`` with its loop gone: the
    ``Client._run_event`` coroutine for ``on_ready`` is made and never awaited.
    """
    with pointed_at(fake):
        runner = asyncio.create_task(client.start(TOKEN), name="discord client")
        try:
            async with asyncio.timeout(WAIT):
                await fake.ready.wait()  # logged in: the client can be waited on
                await client.wait_until_ready()
            yield
        finally:
            await client.close()
            await asyncio.wait_for(runner, WAIT)


# --- through discord.py ------------------------------------------------------------------------


async def test_an_unmodified_client_logs_in_and_sees_the_guild() -> None:
    async with FakeDiscord(token=TOKEN) as fake:
        client = Recorder()
        async with connected(fake, client):
            await asyncio.wait_for(client.ready_event.wait(), WAIT)  # on_ready is a task
            channel = client.get_channel(CHANNEL)
            guild = client.get_guild(GUILD)
            assert client.user is not None
            assert (client.user.id, client.application_id) == (BOT.id, BOT.id)
            assert isinstance(channel, discord.TextChannel)
            assert guild is not None
            assert (channel.name, guild.name, guild.me.id) == ("general", "G1", BOT.id)
            assert channel.permissions_for(guild.me).create_public_threads
            assert (
                not guild.get_channel(NO_THREADS_CHANNEL)
                .permissions_for(  # type: ignore[union-attr]
                    guild.me
                )
                .create_public_threads
            )
            assert isinstance(guild.get_channel(FORUM), discord.ForumChannel)
        assert fake.identify is not None
        assert fake.identify["intents"] & INTENT_MESSAGE_CONTENT
        assert fake.routes()[:2] == ["GET /users/@me", "GET /oauth2/applications/@me"]
        assert fake.heartbeats >= 1


async def test_message_in_send_edit_thread_and_button_press() -> None:
    async with FakeDiscord(token=TOKEN) as fake:
        client = Recorder()
        pressed: list[discord.Interaction] = []

        class Stop(discord.ui.View):
            @discord.ui.button(label="Stop", style=discord.ButtonStyle.danger, custom_id="stop")
            async def stop_button(
                self, interaction: discord.Interaction, button: discord.ui.Button[Stop]
            ) -> None:
                pressed.append(interaction)
                await interaction.response.defer()

        async with connected(fake, client):
            asked = await fake.user_message(CHANNEL, ADA, f"{BOT.mention} hello @everyone")
            await until(lambda: client.seen)
            incoming = client.seen[0]
            assert (incoming.id, incoming.content) == (asked.id, asked.content)
            assert isinstance(incoming.author, discord.Member)
            assert incoming.author.id == ADA.id
            assert incoming.mentions == [client.user]
            assert not incoming.mention_everyone, "Ada may not ping @everyone"

            thread = await incoming.create_thread(name="hello")
            await until(lambda: client.threads)
            assert (thread.id, thread.owner_id) == (asked.id, BOT.id)
            assert [t.id for t in client.threads] == [thread.id]

            sent = await thread.send(
                "Hi @everyone <@&1>", allowed_mentions=discord.AllowedMentions.none(), view=Stop()
            )
            await sent.edit(content="Hi, Ada.")
            press = await fake.press_button(sent.id, "stop", ADA)
            await until(lambda: pressed)
            assert pressed[0].user.id == ADA.id
            assert pressed[0].message is not None
            assert pressed[0].message.id == sent.id

        create = next(c for c in fake.calls if c.route == "POST /channels/{channel_id}/messages")
        assert create.json["allowed_mentions"] == {"parse": []}
        assert create.path == f"/channels/{thread.id}/messages"
        (shown,) = fake.messages(thread.id)
        assert (shown.content, shown.edited, shown.custom_ids) == ("Hi, Ada.", True, ["stop"])
        assert shown.author == BOT
        assert not shown.pings
        assert [(t.parent_id, t.name) for t in fake.threads] == [(CHANNEL, "hello")]
        assert fake.responses(press) == [{"type": 6}]
        assert fake.rate_limited == 0


async def test_discord_py_waits_out_the_message_bucket_instead_of_hitting_429() -> None:
    async with FakeDiscord(token=TOKEN, window=0.3, per_window=2) as fake:
        client = Recorder()
        async with connected(fake, client):
            channel = client.get_channel(CHANNEL)
            assert isinstance(channel, discord.TextChannel)
            sent = await channel.send("0")
            for n in range(1, 5):
                await sent.edit(content=str(n))
        writes = [c for c in fake.calls if c.route.endswith("/messages/{message_id}")]
        assert [c.status for c in writes] == [200] * 4
        # Five writes at two per window, none answered 429: discord.py waited out the bucket.
        assert fake.rate_limited == 0
        assert [m.content for m in fake.messages(CHANNEL)] == ["4"]


async def test_discord_py_sleeps_out_a_429_it_could_not_foresee_and_retries() -> None:
    async with FakeDiscord(token=TOKEN, window=0.3, per_window=1) as fake:
        client = Recorder()
        async with connected(fake, client):
            await rest(fake, "POST", f"/channels/{CHANNEL}/messages", {"content": "elsewhere"})
            channel = client.get_channel(CHANNEL)
            assert isinstance(channel, discord.TextChannel)
            await channel.send("after the wait")
        sends = [c.status for c in fake.calls if c.route == "POST /channels/{channel_id}/messages"]
        assert sends == [200, 429, 200]
        assert fake.rate_limited == 1
        assert [m.content for m in fake.messages(CHANNEL)] == ["elsewhere", "after the wait"]


async def test_followups_and_the_original_response_through_discord_py() -> None:
    async with FakeDiscord(token=TOKEN) as fake:
        client = Recorder()
        done = asyncio.Event()

        class Later(discord.ui.View):
            @discord.ui.button(label="Later", custom_id="later")
            async def later(
                self, interaction: discord.Interaction, button: discord.ui.Button[Later]
            ) -> None:
                await interaction.response.defer()
                await interaction.edit_original_response(content="edited via webhook", view=None)
                await interaction.followup.send("just for you", ephemeral=True)
                done.set()

        async with connected(fake, client):
            channel = client.get_channel(CHANNEL)
            assert isinstance(channel, discord.TextChannel)
            sent = await channel.send("press me", view=Later())
            await fake.press_button(sent.id, "later", ADA)
            await asyncio.wait_for(done.wait(), WAIT)
        (shown,) = fake.messages(CHANNEL)
        assert (shown.content, shown.custom_ids) == ("edited via webhook", [])
        assert [m.content for m in fake.ephemeral] == ["just for you"]


async def test_a_deleted_thread_is_not_found_and_bots_are_other_bots() -> None:
    async with FakeDiscord(token=TOKEN) as fake:
        client = Recorder()
        async with connected(fake, client):
            starter = await fake.user_message(CHANNEL, JEANNE, "plain question")
            thread = await fake.start_thread(CHANNEL, JEANNE, "her thread", message_id=starter.id)
            await fake.bot_message(thread.id, "beep")
            await until(lambda: len(client.seen) == 2)
            assert (client.seen[1].author.id, client.seen[1].author.bot) == (OTHER_BOT.id, True)
            channel = client.get_channel(thread.id)
            assert isinstance(channel, discord.Thread)
            assert channel.owner_id == JEANNE.id
            await fake.delete_channel(thread.id)
            await until(lambda: client.deleted_threads)
            with pytest.raises(discord.NotFound) as gone:
                await channel.send("too late")
            assert gone.value.code == 10003


async def test_the_bot_sees_its_own_messages_come_back_as_events() -> None:
    async with FakeDiscord(token=TOKEN) as fake:
        client = Recorder()
        async with connected(fake, client):
            channel = client.get_channel(CHANNEL)
            assert isinstance(channel, discord.TextChannel)
            sent = await channel.send("mine")
            await until(lambda: client.seen)
            assert (client.seen[0].id, client.seen[0].author.id) == (sent.id, BOT.id)


async def test_a_privileged_intent_not_enabled_is_refused_with_4014() -> None:
    async with FakeDiscord(token=TOKEN, privileged_intents=0) as fake:
        client = Recorder()
        with pointed_at(fake), pytest.raises(discord.PrivilegedIntentsRequired):
            await asyncio.wait_for(client.start(TOKEN), WAIT)
        await client.close()
        assert fake.identify is None


async def test_a_wrong_token_fails_login() -> None:
    async with FakeDiscord(token=TOKEN) as fake:
        client = Recorder()
        with pointed_at(fake), pytest.raises(discord.LoginFailure):
            await client.login("not-the-token")
        await client.close()
        assert [c.status for c in fake.calls] == [401]


class StopView(discord.ui.View):
    """A Stop button only the asker (Ada) or a moderator may press."""

    @discord.ui.button(label="Stop", style=discord.ButtonStyle.danger, custom_id="stop")
    async def stop_button(
        self, interaction: discord.Interaction, button: discord.ui.Button[StopView]
    ) -> None:
        if interaction.user.id != ADA.id and not interaction.permissions.manage_messages:
            await interaction.response.send_message("Only Ada can stop this.", ephemeral=True)
            return
        await interaction.response.edit_message(content="Stopped.", view=None)


async def test_a_strangers_press_gets_an_ephemeral_refusal_and_a_moderator_stops() -> None:
    async with FakeDiscord(token=TOKEN) as fake:
        client = Recorder()
        async with connected(fake, client):
            channel = client.get_channel(CHANNEL)
            assert isinstance(channel, discord.TextChannel)
            sent = await channel.send("Thinking…", view=StopView())
            stranger = await fake.press_button(sent.id, "stop", JEANNE)
            await until(lambda: fake.ephemeral)
            moderator = await fake.press_button(sent.id, "stop", GRACE)
            await until(lambda: fake.responses(moderator))
        assert [m.content for m in fake.ephemeral] == ["Only Ada can stop this."]
        assert [r["type"] for r in fake.responses(stranger)] == [4]
        assert fake.responses(moderator) == [
            {"type": 7, "data": {"tts": False, "content": "Stopped.", "components": []}}
        ]
        (shown,) = fake.messages(CHANNEL)
        assert (shown.content, shown.custom_ids) == ("Stopped.", [])


async def test_dm_forum_post_and_an_archived_thread() -> None:
    async with FakeDiscord(token=TOKEN) as fake:
        client = Recorder()
        async with connected(fake, client):
            dm = fake.dm_channel(ADA)
            await fake.user_message(dm, ADA, "psst")
            post = await fake.forum_post(JEANNE, "How do I?", "the question")
            await until(lambda: len(client.seen) == 2)
            private, in_forum = client.seen
            assert isinstance(private.channel, discord.DMChannel)
            assert private.guild is None
            await private.channel.send("hello in private")
            assert isinstance(in_forum.channel, discord.Thread)
            assert isinstance(in_forum.channel.parent, discord.ForumChannel)
            assert (in_forum.id, in_forum.channel.owner_id) == (post.id, JEANNE.id)
            await in_forum.channel.send("an answer")

            await fake.archive_thread(post.id)
            fetched = await client.fetch_channel(post.id)
            assert isinstance(fetched, discord.Thread)
            assert fetched.archived
            await fetched.edit(archived=False)
        assert [m.content for m in fake.messages(dm)] == ["psst", "hello in private"]
        assert [m.content for m in fake.messages(post.id)] == ["the question", "an answer"]
        thread = fake.thread(post.id)
        assert thread is not None
        assert not thread.archived


async def test_history_pages_as_discord_py_expects() -> None:
    async with FakeDiscord(token=TOKEN) as fake:
        client = Recorder()
        async with connected(fake, client):
            sent = [await fake.user_message(CHANNEL, ADA, str(n)) for n in range(5)]
            channel = client.get_channel(CHANNEL)
            assert isinstance(channel, discord.TextChannel)
            newest = [m.content async for m in channel.history(limit=3)]
            after = [
                m.content async for m in channel.history(limit=2, after=discord.Object(sent[1].id))
            ]
            await until(lambda: len(client.seen) == 5)
        assert (newest, after) == (["4", "3", "2"], ["2", "3"])


async def test_a_resumed_session_gets_what_it_missed() -> None:
    async with FakeDiscord(token=TOKEN) as fake:
        client = Recorder()
        resumed = asyncio.Event()
        client.on_resumed = resumed.set  # type: ignore[attr-defined]
        async with connected(fake, client):
            await fake.disconnect(4000)
            missed = await fake.user_message(CHANNEL, ADA, "while you were away")
            await asyncio.wait_for(resumed.wait(), WAIT)
            await until(lambda: client.seen)
            assert [m.id for m in client.seen] == [missed.id]
        assert [c.route for c in fake.calls].count("GET /users/@me") == 1


async def test_a_restarted_client_knows_the_threads_it_owns() -> None:
    async with FakeDiscord(token=TOKEN) as fake:
        first = Recorder()
        async with connected(fake, first):
            asked = await fake.user_message(CHANNEL, ADA, f"{BOT.mention} hi")
            await until(lambda: first.seen)
            await first.seen[0].create_thread(name="hi")
            await until(lambda: first.threads)
        fake.ready.clear()
        second = Recorder()
        async with connected(fake, second):
            thread = second.get_channel(asked.id)
            assert isinstance(thread, discord.Thread)
            assert thread.owner_id == BOT.id


# --- the wire ----------------------------------------------------------------------------------


async def rest(
    fake: FakeDiscord, method: str, path: str, body: Any = None, *, token: str | None = TOKEN
) -> tuple[int, Any, Any]:
    headers = {"Authorization": f"Bot {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, fake.api_url + path, json=body, headers=headers) as response,
    ):
        data = await response.json() if response.status != 204 else None
        return response.status, data, response.headers


async def test_every_answer_carries_rate_limit_headers_and_the_sixth_write_is_429() -> None:
    async with FakeDiscord(token=TOKEN, window=5.0, per_window=5) as fake:
        answers = [await rest(fake, "POST", f"/channels/{CHANNEL}/messages", {"content": str(n)})
                   for n in range(6)]  # fmt: skip
        statuses = [status for status, _, _ in answers]
        assert statuses == [200, 200, 200, 200, 200, 429]
        remaining = [h["X-RateLimit-Remaining"] for _, _, h in answers]
        assert remaining == ["4", "3", "2", "1", "0", "0"]
        _, first, headers = answers[0]
        assert {"X-RateLimit-Limit", "X-RateLimit-Reset", "X-RateLimit-Reset-After",
                "X-RateLimit-Bucket"} <= set(headers)  # fmt: skip
        assert float(headers["X-RateLimit-Reset-After"]) <= 5.0
        _, limited, headers = answers[-1]
        assert (limited["message"], limited["global"]) == ("You are being rate limited.", False)
        assert 0 < limited["retry_after"] <= 5.0
        assert int(headers["Retry-After"]) >= limited["retry_after"]
        assert headers["Via"], "discord.py treats a 429 without Via as a Cloudflare ban"
        edit = await rest(fake, "PATCH", f"/channels/{CHANNEL}/messages/{first['id']}", {})
        assert edit[0] == 429, "creates and edits share the channel's bucket"
        assert fake.rate_limited == 2
        assert [m.content for m in fake.messages(CHANNEL)] == ["0", "1", "2", "3", "4"]
        other = await rest(fake, "POST", f"/channels/{NO_THREADS_CHANNEL}/messages",
                           {"content": "elsewhere"})  # fmt: skip
        assert other[0] == 200


async def test_errors_are_discords() -> None:
    async with FakeDiscord(token=TOKEN) as fake:
        assert (await rest(fake, "GET", "/users/@me", token=None))[:2] == (
            401,
            {"message": "401: Unauthorized", "code": 0},
        )
        status, error, _ = await rest(fake, "POST", "/channels/42/messages", {"content": "x"})
        assert (status, error["code"]) == (404, 10003)
        long = {"content": "x" * 2001}
        status, error, _ = await rest(fake, "POST", f"/channels/{CHANNEL}/messages", long)
        assert (status, error["code"]) == (400, 50035)
        assert "content" in error["errors"]
        status, error, _ = await rest(fake, "POST", f"/channels/{CHANNEL}/messages", {})
        assert (status, error["code"]) == (400, 50006)
        asked = await fake.user_message(NO_THREADS_CHANNEL, ADA, "hi")
        path = f"/channels/{NO_THREADS_CHANNEL}/messages/{asked.id}/threads"
        status, error, _ = await rest(fake, "POST", path, {"name": "t"})
        assert (status, error["code"]) == (403, 50013)
        path = f"/channels/{NO_THREADS_CHANNEL}/messages/{asked.id}"
        status, error, _ = await rest(fake, "PATCH", path, {"content": "mine now"})
        assert (status, error["code"]) == (403, 50005)


async def test_allowed_mentions_decide_who_is_pinged() -> None:
    async with FakeDiscord(token=TOKEN) as fake:
        text = f"{ADA.mention} @everyone"
        path = f"/channels/{CHANNEL}/messages"
        await rest(fake, "POST", path, {"content": text, "allowed_mentions": {"parse": []}})
        await rest(fake, "POST", path, {"content": text})
        await rest(fake, "POST", path, {"content": text, "allowed_mentions": {"parse": ["users"]}})
        quiet, loud, users_only = fake.messages(CHANNEL)
        assert not quiet.pings
        assert loud.mentions == (ADA,)
        assert loud.mention_everyone, "without allowed_mentions the bot's @everyone pings"
        assert not users_only.mention_everyone
        assert users_only.mentions == (ADA,)
        ada = await fake.user_message(CHANNEL, ADA, "@everyone look")
        grace = await fake.user_message(CHANNEL, GRACE, "@everyone look")
        assert (ada.mention_everyone, grace.mention_everyone) == (False, True)


async def test_an_interaction_answered_too_late_is_unknown() -> None:
    now = [100.0]
    async with FakeDiscord(token=TOKEN, clock=lambda: now[0]) as fake:
        _, sent, _ = await rest(fake, "POST", f"/channels/{CHANNEL}/messages", {"content": "x"})
        early = await fake.press_button(int(sent["id"]), "stop", ADA)
        late = await fake.press_button(int(sent["id"]), "stop", ADA)
        callback = "/interactions/{}/{}/callback"
        first = await rest(fake, "POST", callback.format(early.id, early.token), {"type": 6})
        again = await rest(fake, "POST", callback.format(early.id, early.token), {"type": 6})
        now[0] += 3.5
        status, error, _ = await rest(
            fake, "POST", callback.format(late.id, late.token), {"type": 6}
        )
        assert (first[0], again[0], again[1]["code"]) == (204, 400, 40060)
        assert (status, error["code"]) == (404, 10062)
        assert fake.responses(early) == [{"type": 6}]


async def gateway(fake: FakeDiscord, query: str = "?v=10&encoding=json") -> Any:
    session = aiohttp.ClientSession()
    return session, await session.ws_connect(fake.gateway_url + query)


async def test_gateway_speaks_zlib_stream_and_filters_content_without_the_intent() -> None:
    async with FakeDiscord(token=TOKEN, heartbeat_interval=1000) as fake:
        session, ws = await gateway(fake, "?v=10&encoding=json&compress=zlib-stream")
        inflate = zlib.decompressobj()

        async def receive() -> dict[str, Any]:
            frame = await ws.receive_bytes(timeout=WAIT)
            assert frame.endswith(b"\x00\x00\xff\xff")
            decoded: dict[str, Any] = json.loads(inflate.decompress(frame))
            return decoded

        try:
            hello = await receive()
            assert (hello["op"], hello["d"]["heartbeat_interval"]) == (10, 1000)
            await ws.send_json({"op": 1, "d": None})
            assert (await receive())["op"] == 11
            await ws.send_json({"op": 2, "d": {"token": TOKEN, "intents": INTENT_GUILDS | 1 << 9,
                                               "properties": {}}})  # fmt: skip
            ready, guild = await receive(), await receive()
            assert (ready["t"], ready["s"], guild["t"], guild["s"]) == (
                "READY",
                1,
                "GUILD_CREATE",
                2,
            )
            assert ready["d"]["user"]["id"] == str(BOT.id)
            assert [m["user"]["id"] for m in guild["d"]["members"]] == [str(BOT.id)]
            await fake.user_message(CHANNEL, ADA, "no mention")
            await fake.user_message(CHANNEL, ADA, f"{BOT.mention} with mention")
            plain, mentioned = await receive(), await receive()
            assert (plain["t"], plain["d"]["content"]) == ("MESSAGE_CREATE", "")
            assert mentioned["d"]["content"] == f"{BOT.mention} with mention"
            assert mentioned["d"]["member"]["roles"] == []
        finally:
            await ws.close()
            await session.close()


async def test_gateway_refuses_a_bad_token_with_4004() -> None:
    async with FakeDiscord(token=TOKEN) as fake:
        session, ws = await gateway(fake)
        try:
            assert (await ws.receive_json(timeout=WAIT))["op"] == 10
            await ws.send_json({"op": 2, "d": {"token": "nope", "intents": 1, "properties": {}}})
            closed = await ws.receive(timeout=WAIT)
            assert (closed.type, closed.data) == (aiohttp.WSMsgType.CLOSE, 4004)
        finally:
            await ws.close()
            await session.close()
