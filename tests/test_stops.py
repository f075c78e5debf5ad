"""Stop across processes (``bots.stops``) on the real Redis, and the ``[fleet]`` start check.

Each ``RedisStops`` stands for one process: a client of its own, the same key prefix.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

import pytest
from redis.asyncio import Redis

from bots.settings import fleet_problem, load_settings
from bots.stops import STOP_TTL, LocalStops, RedisStops
from tests.support.waiting import until

REDIS_URL = "redis://127.0.0.1:6379/0"


class Worker:
    """A ``StopTarget``: the turns it answers, and the ones it was told to stop."""

    def __init__(self, *answering: int) -> None:
        self.answering = set(answering)
        self.stopped: list[int] = []
        self.told = asyncio.Event()

    def stop(self, turn_id: int) -> bool:
        if turn_id not in self.answering:
            return False
        self.stopped.append(turn_id)
        self.told.set()
        return True

    def answering_ids(self) -> set[int]:
        return self.answering


@pytest.fixture
def prefix() -> str:
    return f"relaybot-test:{uuid.uuid4().hex}:"


@pytest.fixture
async def process(prefix: str) -> AsyncIterator[Callable[..., Awaitable[RedisStops]]]:
    """``await process()`` is one more process's ``RedisStops`` (not started); the test's keys
    are deleted afterwards."""
    async with AsyncExitStack() as stack:
        clients: list[Redis] = []

        async def open_stops(*, name: str | None = None) -> RedisStops:
            client = Redis.from_url(REDIS_URL, client_name=name)
            stack.push_async_callback(client.aclose)
            try:
                await client.ping()
            except OSError as error:  # redis' ConnectionError is an OSError too
                if os.environ.get("RELAYBOT_TEST_NO_REDIS") == "1":
                    pytest.skip(f"no Redis at {REDIS_URL} (RELAYBOT_TEST_NO_REDIS=1)")
                pytest.fail(f"these tests need Redis at {REDIS_URL}: {error}")
            clients.append(client)
            stops = RedisStops(client, key_prefix=prefix)
            stack.push_async_callback(stops.aclose)
            return stops

        yield open_stops
        if clients:
            keys = [key async for key in clients[0].scan_iter(match=f"{prefix}*")]
            if keys:
                await clients[0].delete(*keys)


async def test_a_stop_requested_on_one_process_reaches_the_one_writing_the_answer(
    process: Callable[..., Awaitable[RedisStops]],
) -> None:
    a, b = await process(), await process()
    writer, other = Worker(7), Worker(3)
    a.watch(writer)
    b.watch(other)
    await a.start()
    await b.start()

    await b.request(7)

    await writer.told.wait()
    assert writer.stopped == [7]
    assert other.stopped == []
    assert await a.requested(7)
    assert await b.requested(7)
    assert not await a.requested(3)


async def test_a_stop_is_kept_with_a_ttl(
    process: Callable[..., Awaitable[RedisStops]], prefix: str
) -> None:
    stops = await process()
    await stops.request(5)
    assert stops.key(5) == f"{prefix}stop:5"
    ttl_ms = await stops._redis.pttl(stops.key(5))
    assert 0 < ttl_ms <= STOP_TTL * 1000


async def test_a_stop_requested_before_the_listener_subscribes_is_honoured_when_it_does(
    process: Callable[..., Awaitable[RedisStops]],
) -> None:
    a, b = await process(), await process()
    writer = Worker(8, 9)
    a.watch(writer)
    await b.request(8)  # published while A does not listen: the message is lost to A

    await a.start()  # its subscription checks the answers it writes

    assert writer.stopped == [8]
    assert a.subscriptions == 1


async def test_a_stop_requested_while_the_listener_reconnects_is_honoured(
    process: Callable[..., Awaitable[RedisStops]],
) -> None:
    name = f"relaybot-test-{uuid.uuid4().hex}"
    a, b = await process(name=name), await process()
    writer = Worker(11)
    a.watch(writer)
    await a.start()

    listeners = [c for c in await b._redis.client_list() if c["name"] == name and c["sub"] != "0"]
    assert listeners, "A's listener connection"
    for listener in listeners:
        await b._redis.client_kill_filter(_id=listener["id"])
    await b.request(11)  # while A reconnects, or once it has: either way it stops

    await writer.told.wait()
    await until(lambda: a.subscriptions == 2, "the listener subscribed again")
    assert writer.stopped == [11]


async def test_without_redis_a_stop_calls_the_local_worker() -> None:
    stops = LocalStops()
    writer, idle = Worker(4), Worker()
    stops.watch(writer)
    stops.watch(idle)

    await stops.request(4)
    await stops.request(5)  # written nowhere here

    assert writer.stopped == [4]
    assert idle.stopped == []
    assert not await stops.requested(4)
    stops.unwatch(writer)
    await stops.request(4)
    assert writer.stopped == [4]


# --- [fleet] single_worker -----------------------------------------------------------------------

FLEET_REFUSAL = (
    "several HTTP workers behind one address need redis.url to share Stop and the edit "
    "budgets; set it, or set fleet.single_worker = true if this is the only worker"
)


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({"RELAYBOT_STORE__URL": "postgresql://relaybot@db:5432/relaybot"}, FLEET_REFUSAL),
        ({"RELAYBOT_STORE__URL": "postgres://relaybot@db:5432/relaybot"}, FLEET_REFUSAL),
        (
            {
                "RELAYBOT_STORE__URL": "postgresql://relaybot@db:5432/relaybot",
                "RELAYBOT_FLEET__SINGLE_WORKER": "true",
            },
            None,
        ),
        (
            {
                "RELAYBOT_STORE__URL": "postgresql://relaybot@db:5432/relaybot",
                "RELAYBOT_REDIS__URL": REDIS_URL,
            },
            None,
        ),
        ({"RELAYBOT_STORE__URL": "sqlite:///tmp/relaybot.db"}, None),
        ({"RELAYBOT_STORE__URL": "memory://"}, None),
    ],
)
def test_http_mode_on_postgres_needs_redis_or_a_single_worker(
    environ: dict[str, str], problem: str | None
) -> None:
    assert fleet_problem(load_settings(environ=environ)) == problem


def test_single_worker_is_off_by_default() -> None:
    assert load_settings(environ={}).fleet.single_worker is False
