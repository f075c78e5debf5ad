"""The store contract fixtures: ``store`` is each kind of store in turn — memory, an SQLite
file, a Postgres schema of its own — on the ``clock`` a test moves. A test module takes them
by name (``clock, store = stores.clock, stores.store``).

``open_each`` is the same three kinds for a test that sets a store's options: ``await
open_each(blob_max_bytes=100)`` opens one (closed after the test)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Protocol

import pytest

from core.store import BLOB_MAX_BYTES, ConversationStore, MemoryStore, SqliteStore
from core.store.postgres import PostgresStore
from tests.support.clock import FakeTime
from tests.support.postgres import fresh_schema

__all__ = ["StoreOpener", "clock", "open_each", "store"]

KINDS = ["memory", "sqlite", "postgres"]


class StoreOpener(Protocol):
    async def __call__(self, *, blob_max_bytes: int) -> ConversationStore: ...


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


@pytest.fixture(params=KINDS)
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeTime
) -> AsyncIterator[ConversationStore]:
    opened = await _open(request, tmp_path, clock)
    yield opened
    await opened.close()


@pytest.fixture(params=KINDS)
async def open_each(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeTime
) -> AsyncIterator[StoreOpener]:
    async with AsyncExitStack() as stack:

        async def open_(*, blob_max_bytes: int) -> ConversationStore:
            opened = await _open(request, tmp_path, clock, blob_max_bytes)
            stack.push_async_callback(opened.close)
            return opened

        yield open_


async def _open(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    clock: FakeTime,
    blob_max_bytes: int = BLOB_MAX_BYTES,
) -> ConversationStore:
    if request.param == "memory":
        return MemoryStore(clock=clock, blob_max_bytes=blob_max_bytes)
    if request.param == "sqlite":
        path = tmp_path / "relaybot.db"
        return await SqliteStore.open(path, clock=clock, blob_max_bytes=blob_max_bytes)
    url = await fresh_schema(request.getfixturevalue("postgres_database"))
    return await PostgresStore.open(url, clock=clock, blob_max_bytes=blob_max_bytes)
