"""How the Postgres store talks to its server: named SQL parameters, and a pool whose errors
are :class:`~core.store.base.StoreError`.

- :class:`Query` — SQL written with ``:name`` parameters, as the SQLite store's is, compiled
  once into asyncpg's ``$1`` form; ``query.args(parameters)`` puts a dict in its order.
- :class:`Pool` — ``async with pool.connection() as db:`` one connection of the pool (each
  statement commits by itself); ``async with pool.transaction() as db:`` one transaction,
  rolled back if the block raises (cancellation included). asyncpg's errors, and a server
  that went away, become a one-line ``StoreError`` naming the store (host, port and
  database, never a password).

:data:`NOW` is the store's time in SQL: the ``:now`` parameter when the store has a clock (a
test's), else the server's ``now()`` — the one clock every worker of a fleet shares.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, cast

import asyncpg
from pydantic import ValidationError

from core.messages import Message
from core.store.base import StoreError
from core.store.codec import decode_message, explain

__all__ = [
    "NOW",
    "Pool",
    "Query",
    "describe",
    "execute",
    "fetch",
    "fetchrow",
    "fetchval",
    "rowcount",
]

NOW = "COALESCE(:now::float8, extract(epoch FROM now())::float8)"
_PARAMETER = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")


class Query:
    """One SQL statement with ``:name`` parameters (a name may be used more than once)."""

    def __init__(self, text: str) -> None:
        self.names: list[str] = []

        def number(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in self.names:
                self.names.append(name)
            return f"${self.names.index(name) + 1}"

        self.sql = _PARAMETER.sub(number, text)

    def args(self, parameters: Mapping[str, Any]) -> list[Any]:
        return [parameters[name] for name in self.names]


def rowcount(status: str) -> int:
    """The rows a command changed, from its status (``"UPDATE 1"``, ``"INSERT 0 1"``)."""
    return int(status.rsplit(" ", 1)[-1])


def describe(error: BaseException) -> str:
    """One line on what went wrong, without the URL (which may hold a password)."""
    match error:
        case ConnectionRefusedError():
            return "connection refused"
        case OSError() if error.strerror:
            return error.strerror.lower()
        case TimeoutError():
            return "timed out"
        case asyncpg.PostgresError():
            return str(error).splitlines()[0] if str(error) else type(error).__name__
    return str(error).splitlines()[0] if str(error) else type(error).__name__


_FOREIGN = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


class Pool:
    """``pool`` named ``name`` in errors ("postgres store 127.0.0.1:5432/relaybot")."""

    def __init__(self, pool: asyncpg.Pool, *, name: str) -> None:
        self.name = name
        self._pool = pool
        self._closed = False

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection of the pool, to this task alone while the block runs."""
        self._check_open()
        try:
            async with self._pool.acquire() as db:
                yield db
        except _FOREIGN as exc:
            raise StoreError(f"{self.name}: {describe(exc)}") from exc

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A transaction: committed when the block ends, rolled back if it raises."""
        async with self.connection() as db, db.transaction():
            yield db

    def decode(self, conversation: str, seq: int, body: str) -> Message:
        """A stored message; :class:`StoreError` naming it when it no longer reads back."""
        try:
            return decode_message(body)
        except ValidationError as exc:
            raise StoreError(
                f"{self.name}: message {seq} of conversation {conversation} cannot be read"
                f" ({explain(exc)})"
            ) from exc

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._pool.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self.name}: used after close()")


# asyncpg's calls with a Query and a dict; asyncpg is untyped, so each says what it gives.


async def execute(db: Any, query: Query, parameters: dict[str, Any]) -> str:
    return cast(str, await db.execute(query.sql, *query.args(parameters)))


async def fetch(db: Any, query: Query, parameters: dict[str, Any]) -> list[Any]:
    return cast(list[Any], await db.fetch(query.sql, *query.args(parameters)))


async def fetchrow(db: Any, query: Query, parameters: dict[str, Any]) -> Any:
    return await db.fetchrow(query.sql, *query.args(parameters))


async def fetchval(db: Any, query: Query, parameters: dict[str, Any]) -> Any:
    return await db.fetchval(query.sql, *query.args(parameters))
