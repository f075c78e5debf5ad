"""Fixtures every test module may ask for by name; helpers imported by name are in
``tests/support/``."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import AsyncExitStack
from typing import Protocol, TypeVar

import asyncpg
import httpx2
import pytest
from redis.asyncio import Redis

from core.store import ConversationStore
from tests.fakes.llm_gateway import FakeGateway

# Before any test module imports them: asserts in the shared helpers report like a test's own.
pytest.register_assert_rewrite("tests.support")


@pytest.fixture
async def gateway() -> AsyncIterator[FakeGateway]:
    """The loopback LLM gateway, speaking both protocols; ``enqueue`` what it answers."""
    async with FakeGateway() as gw:
        yield gw


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    """An ``httpx2`` client for ``LLMClient`` and the tools, closed after the test."""
    async with httpx2.AsyncClient() as client:
        yield client


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """What ``sdk_quirk`` recorded (tests/test_differential.py): an SDK newer than the one a
    quirk was pinned on, and whether it still has it. A note for the next pin refresh."""
    notes = [
        f"{report.nodeid.rpartition('::')[2]}: {value}"
        for report in terminalreporter.stats.get("passed", [])
        for name, value in getattr(report, "user_properties", ())
        if name == "sdk_quirk"
    ]
    if notes:
        terminalreporter.section("SDK behaviour past its pin")
        for note in notes:
            terminalreporter.line(note)


Spawn = Callable[..., Awaitable[asyncio.subprocess.Process]]
"""``await spawn(*argv, env=...)``: a child process with piped stdout and stderr."""


@pytest.fixture
async def spawn() -> AsyncIterator[Spawn]:
    """Start child processes that are killed and reaped when the test ends, whatever it did:
    a test that failed half-way leaves no process (or open pipe) to a later one."""
    children: list[asyncio.subprocess.Process] = []

    async def start(*argv: str, env: Mapping[str, str]) -> asyncio.subprocess.Process:
        child = await asyncio.create_subprocess_exec(
            *argv, env=dict(env), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        children.append(child)
        return child

    yield start
    for child in children:
        if child.returncode is None:
            child.kill()
        await asyncio.wait_for(child.communicate(), timeout=30)


StoreT = TypeVar("StoreT", bound=ConversationStore)


class Closing(Protocol):
    """``store = await closing(SqliteStore.open(path))``: the store, closed when the test ends."""

    async def __call__(self, opening: Awaitable[StoreT], /) -> StoreT: ...


@pytest.fixture
async def closing() -> AsyncIterator[Closing]:
    """Stores opened through it are closed when the test ends, whatever it did (closing one
    twice is fine, so a test may still close a store itself, to reopen its file).

    A ``SqliteStore`` left open — by an assertion that failed before its ``close()`` — keeps
    aiosqlite's worker thread alive, and that thread is not a daemon: the interpreter waits
    for it at exit, so pytest hangs after its last test, beyond pytest-timeout's reach. Nor
    does dropping the store stop the thread: aiosqlite's ``__del__`` warns (``ResourceWarning``)
    before it stops it, and our ``filterwarnings = error`` turns that warning into an error.
    """
    async with AsyncExitStack() as stack:

        async def open_(opening: Awaitable[StoreT], /) -> StoreT:
            store = await opening
            stack.push_async_callback(store.close)
            return store

        yield open_


REDIS_URL = "redis://127.0.0.1:6379/0"
"""The tests' Redis (``.ci/run`` starts it when it is not running)."""
_NO_REDIS = os.environ.get("RELAYBOT_TEST_NO_REDIS") == "1"
"""Read at import: some tests take every ``RELAYBOT_*`` variable away before their fixtures."""


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A Redis key prefix of this test's own on :data:`REDIS_URL`; whatever is left under it is
    deleted afterwards. No Redis is a failure (``RELAYBOT_TEST_NO_REDIS=1`` skips instead)."""
    prefix = f"relaybot-test:{uuid.uuid4().hex}:"
    client = Redis.from_url(REDIS_URL)
    try:
        try:
            await client.ping()
        except OSError as error:  # redis' ConnectionError is an OSError too
            if _NO_REDIS:
                pytest.skip(f"no Redis at {REDIS_URL} (RELAYBOT_TEST_NO_REDIS=1)")
            pytest.fail(f"these tests need Redis at {REDIS_URL} (.ci/run starts it): {error}")
        yield prefix
        if keys := [key async for key in client.scan_iter(match=f"{prefix}*")]:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """The URL of a database made for this test run on the local Postgres, dropped at the end;
    each test takes a schema of its own in it (``tests.support.postgres.fresh_schema``).

    No Postgres is a failure, so that CI never passes by skipping: set
    ``RELAYBOT_TEST_NO_POSTGRES=1`` to skip the Postgres tests on a machine without one."""
    # Imported here: tests.support is imported after its assert rewriting is registered.
    from tests.support.postgres import SERVER, create_database, drop_database, in_own_loop

    try:
        url: str = in_own_loop(create_database())
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        where = SERVER.rpartition("@")[2]
        if os.environ.get("RELAYBOT_TEST_NO_POSTGRES") == "1":
            pytest.skip(f"no Postgres at {where} ({exc}); RELAYBOT_TEST_NO_POSTGRES=1 skips it")
        pytest.fail(
            f"no Postgres at {where} ({exc}): start it (.ci/run does), or set"
            " RELAYBOT_TEST_NO_POSTGRES=1 to skip the Postgres tests",
            pytrace=False,
        )
    yield url
    in_own_loop(drop_database(url))
