"""The blob table of a Postgres store: images kept once by hash (:mod:`core.store.blobs`).

``blobs(sha256, size, stored_at, last_used_at, data)``, ``data`` as ``bytea``. Every function
runs on the connection its caller holds, inside the caller's transaction.

Workers of a fleet write and read blobs at once, so what could deadlock is ordered:

- Writes that store blobs (and ``prune``) hold the advisory lock :data:`BLOB_LOCK` until they
  commit: one at a time they insert, evict and delete, each in its own order without waiting
  on another. A blob stored by two messages at once is inserted once; the other is a use.
- A read marks its blobs used with ``FOR UPDATE SKIP LOCKED``: it never waits, so it cannot
  close a cycle; a blob another transaction holds is left as it was (its last use is a hint
  for the cap, not a promise).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from core.messages import Message
from core.store.blobs import Blob, filled, fitting, wanted
from core.store.postgres_access import NOW, Query, execute, fetch

__all__ = ["BLOB_LOCK", "keep_blobs", "prune_blobs", "with_images"]

BLOB_LOCK = 0x72656C6179626C62  # "relaybl": pg_advisory_xact_lock of writes that store blobs

_LOCK = Query(f"SELECT pg_advisory_xact_lock({BLOB_LOCK})")
# A blob stored again is used again; its bytes are the same (they hash alike).
_KEEP = Query(f"""
    INSERT INTO blobs (sha256, size, stored_at, last_used_at, data)
    SELECT item.sha256, octet_length(item.data), {NOW}, {NOW}, item.data
    FROM unnest(:hashes::text[], :datas::bytea[]) AS item(sha256, data)
    ORDER BY item.sha256
    ON CONFLICT (sha256) DO UPDATE SET last_used_at = excluded.last_used_at
""")
# Most recently used first: every blob past the point where their sizes add up to more than
# the cap is deleted, so what is left is the most recently used that fit.
_EVICT = Query("""
    DELETE FROM blobs WHERE sha256 IN (
        SELECT sha256 FROM (
            SELECT sha256, SUM(size) OVER (
                ORDER BY last_used_at DESC, stored_at DESC, sha256 DESC
                ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
            ) AS kept
            FROM blobs
        ) AS running WHERE kept > :cap::bigint
    )
""")
_FETCH = Query("SELECT sha256, data FROM blobs WHERE sha256 = ANY(:hashes::text[])")
_USE = Query(f"""
    UPDATE blobs SET last_used_at = {NOW} WHERE sha256 IN (
        SELECT sha256 FROM blobs WHERE sha256 = ANY(:hashes::text[])
        ORDER BY sha256 FOR UPDATE SKIP LOCKED
    )
""")
_PRUNE = Query("DELETE FROM blobs WHERE last_used_at < :older_than::float8")


async def keep_blobs(db: Any, blobs: Sequence[Blob], *, now: float | None, cap: int) -> None:
    """Store ``blobs`` (used now), then delete the least recently used past ``cap``."""
    blobs = fitting(blobs, cap)
    if not blobs:
        return
    parameters = {
        "hashes": [blob.sha256 for blob in blobs],
        "datas": [blob.data for blob in blobs],
        "now": now,
        "cap": cap,
    }
    await execute(db, _LOCK, parameters)
    await execute(db, _KEEP, parameters)
    await execute(db, _EVICT, parameters)


async def with_images(db: Any, messages: list[Message], *, now: float | None) -> list[Message]:
    """``messages`` with their images' data from the blobs still kept, which are marked used
    (one statement; none for messages without images)."""
    hashes = wanted(messages)
    if not hashes:
        return messages
    parameters = {"hashes": hashes, "now": now}
    rows = await fetch(db, _FETCH, parameters)
    await execute(db, _USE, parameters)
    return filled(messages, {row["sha256"]: bytes(row["data"]) for row in rows})


async def prune_blobs(db: Any, *, older_than: float) -> None:
    """Delete the blobs last used before ``older_than`` (retention)."""
    await execute(db, _LOCK, {})
    await execute(db, _PRUNE, {"older_than": older_than})
