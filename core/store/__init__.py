"""Conversation stores: where threads remember what was said.

``await open_store(url)`` gives a :class:`ConversationStore` for a store URL:

- ``memory://`` — :class:`MemoryStore`, this process only, gone on exit.
- ``sqlite:///<path>`` — :class:`SqliteStore`, one file, made with its directories if
  missing (with ``make_directories=False`` the directory must exist: an operator's explicit
  path with a typo in it must not become a new, empty store). As in SQLAlchemy the path is
  everything after ``sqlite:///``, so ``sqlite:///a.db`` is relative to the working directory
  and ``sqlite:////var/lib/relaybot/a.db`` is absolute (``f"sqlite:///{path}"`` is right for
  either); ``~`` is expanded; ``sqlite:///:memory:`` is an SQLite database in memory. No
  percent-decoding, no host, no query parameters.
- ``postgresql://user@host:5432/db`` (or ``postgres://``) — :class:`PostgresStore`, the
  system of record of several worker processes; the URL goes to asyncpg as it is (a
  password, ``?sslmode=require``, other libpq parameters), and the schema is created or
  brought up to date when the store opens. Its time is the server's ``now()``.
- ``redis://`` — not available yet.

A malformed URL or an unknown scheme is a ``ValueError`` (a configuration mistake, found
before any file is touched: :func:`validate_store_url` checks one without opening it); a file
that cannot serve as a store is a :class:`StoreError` when it is opened. Errors name the scheme,
never the whole URL, which could hold a password.

Every store keeps a conversation's history, the claims that de-duplicate platform events, and
the turn journal (:mod:`core.store.journal`: :class:`TurnJournal`, :class:`Turn`,
:class:`Lease`), which a :class:`ConversationStore` extends; the journal's leases keep the turns
of a thread one at a time, in order. Votes on answers are :mod:`core.store.feedback`
(:class:`FeedbackLog`, :class:`Feedback`, :class:`FeedbackTotals`). A channel's own model and prompt
are :mod:`core.store.channels` (:class:`ChannelSettingsStore`, :class:`ChannelSettings`,
:data:`UNCHANGED`); each user's tokens per UTC day and calendar month are
:mod:`core.store.usage` (:class:`UsageLedger`, :class:`Usage`, :func:`user_key`). Trimming a
history to a token budget is :mod:`core.store.trim`. The images of user messages are kept
apart, once by hash, under a size cap (``blob_max_bytes``, :data:`BLOB_MAX_BYTES` by default)
and the retention of ``prune``: :mod:`core.store.blobs`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from core.store.base import ConversationStore, StoreError
from core.store.blobs import BLOB_MAX_BYTES
from core.store.channels import (
    MAX_PROMPT_CHARS,
    UNCHANGED,
    ChannelSettings,
    ChannelSettingsStore,
    PromptTooLong,
)
from core.store.feedback import Feedback, FeedbackLog, FeedbackTotals
from core.store.journal import Lease, LeaseLost, Turn, TurnJournal, TurnState, discord_order
from core.store.memory import MemoryStore
from core.store.postgres import PostgresStore
from core.store.sqlite import SqliteStore
from core.store.usage import Usage, UsageLedger, user_key

__all__ = [
    "BLOB_MAX_BYTES",
    "MAX_PROMPT_CHARS",
    "UNCHANGED",
    "ChannelSettings",
    "ChannelSettingsStore",
    "ConversationStore",
    "Feedback",
    "FeedbackLog",
    "FeedbackTotals",
    "Lease",
    "LeaseLost",
    "MemoryStore",
    "PostgresStore",
    "PromptTooLong",
    "SqliteStore",
    "StoreError",
    "Turn",
    "TurnJournal",
    "TurnState",
    "Usage",
    "UsageLedger",
    "discord_order",
    "open_store",
    "user_key",
    "validate_store_url",
]

_EXPECTED = "memory://, sqlite:///path/to/file.db or postgresql://user@host:5432/db"


async def open_store(
    url: str,
    *,
    clock: Callable[[], float] | None = None,
    make_directories: bool = True,
    blob_max_bytes: int = BLOB_MAX_BYTES,
) -> ConversationStore:
    """Open the store ``url`` names (see the module docs); ``clock`` times claims and leases
    (by default ``time.time``, and the server's ``now()`` for Postgres).
    ``make_directories=False`` refuses a SQLite file whose directory does not exist.
    ``blob_max_bytes`` caps the bytes of the images the store keeps (``0``: none).

    Raises ``ValueError`` for a URL it does not understand (or a negative cap),
    :class:`StoreError` for a store that cannot be used. The caller closes the store.
    """
    kind, path = _parse(url)
    if kind == "postgres":
        return await PostgresStore.open(url, clock=clock, blob_max_bytes=blob_max_bytes)
    if kind == "memory":
        return MemoryStore(clock=clock or time.time, blob_max_bytes=blob_max_bytes)
    if not make_directories:
        _require_directory(path)
    return await SqliteStore.open(path, clock=clock or time.time, blob_max_bytes=blob_max_bytes)


def _require_directory(path: str) -> None:
    if path == ":memory:":
        return
    directory = Path(path).expanduser().absolute().parent
    if not directory.is_dir():
        problem = "is not a directory" if directory.exists() else "does not exist"
        raise StoreError(f"the store's directory {directory} {problem}: create it, or fix the URL")


def validate_store_url(url: str) -> str:
    """``url`` unchanged if :func:`open_store` understands it, else ``ValueError`` (no I/O)."""
    _parse(url)
    return url


def _parse(url: str) -> tuple[Literal["memory", "sqlite", "postgres"], str]:
    scheme, separator, rest = url.partition("://")
    scheme = scheme.lower()
    if not separator or not scheme.replace("+", "").isalnum():
        raise ValueError(f"a store URL starts with a scheme: {_EXPECTED}")
    if scheme == "memory":
        if rest:
            raise ValueError("memory:// takes nothing after the scheme")
        return "memory", ""
    if scheme == "sqlite":
        if not rest.startswith("/"):
            raise ValueError(
                "a sqlite URL has no host: write sqlite:///relative/file.db"
                " or sqlite:////absolute/file.db"
            )
        if not rest[1:]:
            raise ValueError(f"the sqlite URL names no file: {_EXPECTED}")
        if "?" in rest:
            raise ValueError("a sqlite URL takes no query parameters")
        return "sqlite", rest[1:]
    if scheme in {"postgresql", "postgres"}:
        _check_postgres(rest)
        return "postgres", rest
    if scheme in {"redis", "rediss"} or scheme.startswith("redis+"):
        raise ValueError(f"the redis store is not available yet; use {_EXPECTED}")
    raise ValueError(f"unknown store URL scheme {scheme!r}; expected {_EXPECTED}")


def _check_postgres(rest: str) -> None:
    """A postgres URL's host and port, checked without echoing them (a password is there)."""
    netloc = rest.partition("/")[0].partition("?")[0]
    host = netloc.rpartition("@")[2]
    if not host:
        raise ValueError("a postgresql URL names its host: postgresql://user@host:5432/db")
    if host.startswith("["):  # an IPv6 address: [::1]:5432
        port = host.partition("]")[2].removeprefix(":")
    else:
        port = host.partition(":")[2]
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise ValueError("the postgresql URL's port is not a number from 1 to 65535")
