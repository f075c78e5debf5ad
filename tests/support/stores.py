"""The store contract fixtures: ``store`` is each kind of store in turn — memory, an SQLite
file, a Postgres schema of its own — on the ``clock`` a test moves. A test module takes them
by name (``clock, store = stores.clock, stores.store``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from core.store import ConversationStore, MemoryStore, SqliteStore
from core.store.postgres import PostgresStore
from tests.support.clock import FakeTime
from tests.support.postgres import fresh_schema

__all__ = ["clock", "store"]


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeTime
) -> AsyncIterator[ConversationStore]:
    opened: ConversationStore
    if request.param == "memory":
        opened = MemoryStore(clock=clock)
    elif request.param == "sqlite":
        opened = await SqliteStore.open(tmp_path / "relaybot.db", clock=clock)
    else:
        database = request.getfixturevalue("postgres_database")
        opened = await PostgresStore.open(await fresh_schema(database), clock=clock)
    yield opened
    await opened.close()
