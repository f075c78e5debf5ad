"""A Postgres database for one test run, and a fresh schema in it for each test.

The database (``relaybot_test_<pid>_<random>`` on 127.0.0.1:5432, trust auth) is made by the
``postgres_database`` fixture of ``tests/conftest.py`` and dropped when the run ends. Each test
that opens a Postgres store asks :func:`fresh_schema` for a URL of its own: an empty schema,
made the connection's ``search_path``, so the store creates its tables there as it would in a
new database — no test sees another's rows, and no truncation between tests is needed.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg

__all__ = ["SERVER", "create_database", "drop_database", "fresh_schema", "in_own_loop"]

SERVER = "postgresql://postgres@127.0.0.1:5432"
"""Where the tests' Postgres runs (the ``postgres`` database is used to make theirs)."""
_schemas = itertools.count(1)


def in_own_loop(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coroutine`` to its end on a new event loop in a thread of its own (so it also
    works from a fixture called while a test's loop is running)."""
    with ThreadPoolExecutor(max_workers=1) as thread:
        return thread.submit(asyncio.run, coroutine).result()


async def create_database() -> str:
    """A new, empty database for this run; its URL."""
    name = f"relaybot_test_{os.getpid()}_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(f"{SERVER}/postgres", timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return f"{SERVER}/{name}"


async def drop_database(url: str) -> None:
    name = url.rpartition("/")[2]
    admin = await asyncpg.connect(f"{SERVER}/postgres", timeout=10)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def fresh_schema(database: str) -> str:
    """The URL of a new, empty schema of ``database`` (its ``search_path``)."""
    schema = f"test_{next(_schemas)}_{secrets.token_hex(3)}"
    connection = await asyncpg.connect(database, timeout=10)
    try:
        await connection.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await connection.close()
    return f"{database}?search_path={schema}"
