"""Discord shards over several processes: ``relaybot discord --shard-count N --shards 0,1``.

The flags and their one-line refusals; the IDENTIFY gate shared through Redis (two gates on
one key prefix: the second waits for the first's key; a Redis that is down is a log line and
discord.py's own spacing); the fake Discord's shards (a guild's events reach only its shard's
connection, DMs only shard 0); and the issue's test: two real ``relaybot discord`` processes,
one shard each of two, on one Postgres store and one Redis prefix, each answering exactly the
messages of its own guild.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import aiohttp
import pytest
from redis.asyncio import Redis

from bots.cli import main
from bots.discord.client import ShardedClient, Shards, discord_endpoints, new_client
from bots.discord.identify import IdentifyGate, IdentifyGateUnavailable, open_identify_gate
from bots.discord.settings import DiscordSettings
from tests.conftest import REDIS_URL, Spawn
from tests.fakes.fake_discord import (
    ADA,
    CHANNEL,
    CHANNEL_2,
    GUILD,
    GUILD_2,
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MESSAGES,
    INTENT_GUILDS,
    INTENT_MESSAGE_CONTENT,
    FakeDiscord,
    Message,
    shard_of,
)
from tests.fakes.fake_discord.sessions import Connection
from tests.fakes.llm_gateway import FakeGateway
from tests.support.postgres import fresh_schema
from tests.support.waiting import until
from tests.test_discord_bot import TOKEN, WAIT, answer, mention, pointed_at

DOWN_REDIS = "redis://:secret@127.0.0.1:1/0"
"""Nothing listens on port 1: a Redis that is down (with a password that must not show)."""


# --- the flags ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "problem"),
    [
        (["--shards", "0"], "--shards needs --shard-count: how many shards in all"),
        (["--shard-count", "0"], "--shard-count must be at least 1 (got 0)"),
        (["--shard-count", "2", "--shards", "0,2"],
         "--shards 0,2: shard 2 is not one of 0..1 (--shard-count 2)"),
        (["--shard-count", "4", "--shards", "1,1"], "--shards names a shard twice (1,1)"),
        (["--shard-count", "4", "--shards", "0,x"],
         "--shards takes shard numbers such as 0,1 (got '0,x')"),
    ],
)  # fmt: skip
def test_bad_shard_flags_are_one_line_and_exit_2(
    flags: list[str], problem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["discord", *flags]) == 2
    assert capsys.readouterr() == ("", f"relaybot: {problem}\n")


def test_a_shard_count_alone_runs_every_shard_and_no_count_runs_one_client() -> None:
    assert Shards.chosen(3, None) == Shards(count=3, ids=(0, 1, 2))
    assert str(Shards.chosen(4, "0,1")) == "shards 0,1 of 4"
    assert Shards.chosen(None, None) is None
    sharded = new_client(shards=Shards(count=4, ids=(2, 3)))
    assert isinstance(sharded, ShardedClient)
    assert (sharded.shard_count, sharded.shard_ids) == (4, [2, 3])
    assert type(new_client()).__name__ == "Client"  # today's plain discord.Client


# --- the IDENTIFY gate -------------------------------------------------------------------------


@pytest.fixture
def prefix(redis_prefix: str) -> str:
    return redis_prefix


@pytest.fixture
async def redis(prefix: str) -> AsyncIterator[Redis]:
    """A client on the tests' Redis (the ``prefix`` fixture checked that it answers)."""
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


async def test_the_second_identify_waits_until_the_firsts_spacing_has_passed(
    redis: Redis, prefix: str
) -> None:
    """Two processes' gates on one prefix: the first takes the bucket's key for its spacing;
    the second polls until the key is gone (here deleted, as its expiry would), then takes it."""
    async with (
        open_identify_gate(REDIS_URL, key_prefix=prefix, spacing=60.0) as first,
        open_identify_gate(REDIS_URL, key_prefix=prefix, spacing=0.05) as second,
    ):
        key = f"{prefix}discord:identify:0"
        assert first.key(0) == key
        await first.take(0)
        assert 0 < await redis.pttl(key) <= 60_000  # SET NX PX: the spacing, in ms
        tries = counting_sets(second)
        waiting = asyncio.create_task(second.take(0), name="second identify")
        try:
            await until(lambda: len(tries) >= 3, "the second gate asking again")
            assert not waiting.done(), "it waits while the key lives"
            assert not any(tries)
            await redis.delete(key)  # the first's spacing has passed
            await asyncio.wait_for(waiting, WAIT)
        finally:
            waiting.cancel()
        assert tries[-1], "it took the key"
        assert 0 < await redis.pttl(key) <= 50, "for its spacing"
        await first.take(1)  # another bucket does not wait


def counting_sets(gate: IdentifyGate) -> list[bool]:
    """Records whether each ``SET NX`` of ``gate``'s Redis client took the key."""
    redis: Any = gate._redis  # a test's window on the wire
    original, seen = redis.set, []

    async def counted(*args: Any, **kwargs: Any) -> Any:
        taken = await original(*args, **kwargs)
        seen.append(bool(taken))
        return taken

    redis.set = counted
    return seen


async def test_a_redis_that_is_down_fails_the_gate_in_one_line_without_its_password() -> None:
    async with open_identify_gate(DOWN_REDIS, key_prefix="x:", spacing=5.0) as gate:
        with pytest.raises(IdentifyGateUnavailable) as failed:
            await gate.take(0)
    assert str(failed.value).startswith("Redis at redis://127.0.0.1:1/0 failed (")
    assert "secret" not in str(failed.value)


async def test_a_shard_uses_the_bucket_of_max_concurrency_and_falls_back_without_redis(
    redis: Redis, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Shard 3 with ``max_concurrency`` 2 (from ``GET /gateway/bot``) takes bucket 1; with
    its Redis down, the first IDENTIFY goes at once, as discord.py's own hook lets it."""
    async with FakeDiscord(token=TOKEN, max_concurrency=2) as fake, AsyncExitStack() as stack:
        stack.enter_context(discord_endpoints(DiscordSettings(api_url=fake.api_url)))
        up = await stack.enter_async_context(
            open_identify_gate(REDIS_URL, key_prefix=prefix, spacing=5.0)
        )
        down = await stack.enter_async_context(
            open_identify_gate(DOWN_REDIS, key_prefix=prefix, spacing=5.0)
        )
        for gate in (up, down):
            client = new_client(shards=Shards(count=4, ids=(3,)), gate=gate)
            stack.push_async_callback(client.close)
            await client.login(TOKEN)
            with caplog.at_level(logging.WARNING, logger="relaybot.discord"):
                await asyncio.wait_for(client.before_identify_hook(3, initial=True), WAIT)
        assert await redis.exists(f"{prefix}discord:identify:1")
        assert not await redis.exists(f"{prefix}discord:identify:0")
    assert [r.getMessage() for r in caplog.records] == [
        "shard 3 identifies with this process's spacing: "
        "Redis at redis://127.0.0.1:1/0 failed (ConnectionError)"
    ]


# --- the fake's shards -------------------------------------------------------------------------

INTENTS = INTENT_GUILDS | INTENT_GUILD_MESSAGES | INTENT_DIRECT_MESSAGES | INTENT_MESSAGE_CONTENT


async def identified(
    fake: FakeDiscord,
    http: aiohttp.ClientSession,
    shard: list[int] | None,
    sockets: list[aiohttp.ClientWebSocketResponse],
) -> Connection:
    """A raw gateway connection that sent IDENTIFY (with ``shard``, unless None; kept open in
    ``sockets``); the fake's record of it once its guilds were sent."""
    ws = await http.ws_connect(fake.gateway_url + "?v=10&encoding=json")
    sockets.append(ws)  # a websocket nobody holds is closed when collected
    await ws.receive_json()  # HELLO
    d: dict[str, Any] = {"token": TOKEN, "intents": INTENTS, "properties": {}}
    await ws.send_json({"op": 2, "d": d | ({} if shard is None else {"shard": shard})})
    connection = fake.connections[-1]
    await until(lambda: names(connection)[-1:] == ["GUILD_CREATE"] or len(names(connection)) > 2)
    return connection


def names(connection: Connection) -> list[str]:
    return [event for event, _ in connection.dispatched]


def heard(connection: Connection, message: Message) -> bool:
    return any(d.get("id") == str(message.id) for _, d in connection.dispatched)


async def test_each_shard_hears_its_own_guilds_and_dms_reach_shard_0() -> None:
    assert (shard_of(GUILD, 2), shard_of(GUILD_2, 2), shard_of(None, 2)) == (0, 1, 0)
    async with (
        FakeDiscord(token=TOKEN, second_guild=True, shards=2) as fake,
        aiohttp.ClientSession() as http,
    ):
        sockets: list[aiohttp.ClientWebSocketResponse] = []
        zero, one = [await identified(fake, http, [i, 2], sockets) for i in (0, 1)]
        for connection, shard, guild in ((zero, 0, GUILD), (one, 1, GUILD_2)):
            ready, created = connection.dispatched[0][1], connection.dispatched[1][1]
            assert connection.shard == (shard, 2)
            assert [g["id"] for g in ready["guilds"]] == [str(guild)]
            assert (ready["shard"], names(connection)) == ([shard, 2], ["READY", "GUILD_CREATE"])
            assert {c["guild_id"] for c in created["channels"]} == {str(guild)}
        first = await fake.user_message(CHANNEL, ADA, "in G1")
        second = await fake.user_message(CHANNEL_2, ADA, "in G2")
        dm = await fake.user_message(fake.dm_channel(ADA), ADA, "a DM")
        await until(lambda: heard(zero, dm) and heard(one, second), "the events")
        assert [heard(zero, m) for m in (first, second, dm)] == [True, False, True]
        assert [heard(one, m) for m in (first, second, dm)] == [False, True, False]
        thread = await fake.start_thread(CHANNEL_2, ADA, "a thread in G2")
        await until(lambda: "THREAD_CREATE" in names(one), "THREAD_CREATE on shard 1")
        assert "THREAD_CREATE" not in names(zero)
        assert fake.thread(thread.id) is not None
        async with http.get(fake.api_url + "/gateway/bot",
                            headers={"Authorization": f"Bot {TOKEN}"}) as got:  # fmt: skip
            body = await got.json()
        assert (body["shards"], body["session_start_limit"]["max_concurrency"]) == (2, 1)


async def test_without_a_shard_in_identify_one_guild_as_before() -> None:
    async with FakeDiscord(token=TOKEN) as fake, aiohttp.ClientSession() as http:
        connection = await identified(fake, http, None, [])
        ready = connection.dispatched[0][1]
        assert (connection.shard, ready["shard"], ready["guilds"]) == (
            (0, 1), [0, 1], [{"id": str(GUILD), "unavailable": True}]
        )  # fmt: skip
        assert names(connection) == ["READY", "GUILD_CREATE"]


async def test_a_shard_outside_its_count_is_closed_with_4010() -> None:
    async with FakeDiscord(token=TOKEN) as fake, aiohttp.ClientSession() as http:
        ws = await http.ws_connect(fake.gateway_url)
        await ws.receive_json()
        await ws.send_json({"op": 2, "d": {"token": TOKEN, "intents": INTENTS, "shard": [2, 2]}})
        await ws.receive()
        assert ws.close_code == 4010


# --- two processes, one shard each -------------------------------------------------------------

ASKED_PER_GUILD = 3


async def test_two_shard_processes_each_answer_their_own_guild_exactly_once(
    spawn: Spawn, postgres_database: str, redis: Redis, prefix: str
) -> None:
    store = await fresh_schema(postgres_database)
    async with (
        FakeDiscord(token=TOKEN, second_guild=True, shards=2) as fake,
        FakeGateway() as gateway,
    ):
        gateway.enqueue(*[answer("Answered.") for _ in range(2 * ASKED_PER_GUILD)])
        environ = pointed_at(fake, gateway) | {
            "DISCORD_BOT_TOKEN": TOKEN,
            "RELAYBOT_STORE__URL": store,
            "RELAYBOT_REDIS__URL": REDIS_URL,
            "RELAYBOT_REDIS__KEY_PREFIX": prefix,
            "RELAYBOT_DISCORD__IDENTIFY_SPACING": "0.2",
        }
        processes = [await shard_process(spawn, environ, shard) for shard in (0, 1)]
        for process in processes:
            await connected(process)
        asked = {
            channel: [await fake.user_message(channel, ADA, mention(f"question {i}"))
                      for i in range(ASKED_PER_GUILD)]
            for channel in (CHANNEL, CHANNEL_2)
        }  # fmt: skip

        def answers(message: Message) -> list[Message]:
            return [m for m in fake.messages(message.id) if m.author.bot]

        def finished(message: Message) -> bool:
            """Its final text is shown and its Stop button gone: nothing left to write."""
            shown = answers(message)
            return any(a.content == "Answered." for a in shown) and not any(
                a.components for a in shown
            )

        everyone = [m for sent in asked.values() for m in sent]
        await until(lambda: all(map(finished, everyone)), "every question answered", within=WAIT)
        for process in processes:
            process.send_signal(signal.SIGTERM)
        ends = [await asyncio.wait_for(p.communicate(), WAIT) for p in processes]
        assert [p.returncode for p in processes] == [0, 0], [e.decode() for _, e in ends]
    shown = {m.id: [a.content for a in answers(m)] for m in everyone}
    assert shown == {m.id: ["Answered."] for m in everyone}, "each answered exactly once"
    shards = {c.shard: c for c in fake.connections if c.shard is not None}
    assert sorted(c.shard for c in fake.connections if c.shard) == [(0, 2), (1, 2)], (
        "one connection per process, each identified once"
    )
    for channel, guild in ((CHANNEL, GUILD), (CHANNEL_2, GUILD_2)):
        mine, other = shards[(shard_of(guild, 2), 2)], shards[(1 - shard_of(guild, 2), 2)]
        for message in asked[channel]:
            reply = answers(message)[0]
            assert heard(mine, message), "its shard's process heard the question"
            assert heard(mine, reply), "its answer went out on that shard too"
            assert not heard(other, message)
            assert not heard(other, reply)


async def shard_process(
    spawn: Spawn, environ: dict[str, str], shard: int
) -> asyncio.subprocess.Process:
    """``relaybot discord --shard-count 2 --shards <shard>``, announcing its shards first."""
    process = await relaybot_discord_with(
        spawn, environ, "--shard-count", "2", "--shards", str(shard)
    )
    assert process.stderr is not None
    line = (await asyncio.wait_for(process.stderr.readline(), WAIT)).decode()
    assert line == f"relaybot: shards {shard} of 2\n"
    return process


async def relaybot_discord_with(
    spawn: Spawn, environ: dict[str, str], *flags: str
) -> asyncio.subprocess.Process:
    """Like ``relaybot_discord`` of tests/test_discord_bot.py, with flags."""
    keep = {k: v for k, v in os.environ.items()
            if not k.startswith(("RELAYBOT_", "DISCORD_", "OFOX_"))}  # fmt: skip
    return await spawn(sys.executable, "-m", "bots", "discord", *flags, env=keep | environ)


async def connected(process: asyncio.subprocess.Process) -> None:
    """Reads the process's announcements until it says it is connected."""
    assert process.stderr is not None
    while True:
        line = (await asyncio.wait_for(process.stderr.readline(), WAIT)).decode()
        assert line, "it exited before connecting"
        if line.startswith("relaybot: connected to Discord as "):
            assert line.endswith(", in 1 server\n"), line
            return
