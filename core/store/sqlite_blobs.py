"""The blob table of a store file: images kept once by hash (:mod:`core.store.blobs`).

``blobs(sha256, size, stored_at, last_used_at, data)`` — ``data`` last, so the columns the cap
and retention read sit before the bytes; the index ``blobs_by_use`` covers them, so neither
reads an image. Every function runs on the connection its caller holds, inside the caller's
statement or transaction.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import aiosqlite

from core.messages import Message
from core.store.blobs import Blob, filled, fitting, wanted

__all__ = ["PRUNE_BLOBS", "keep_blobs", "with_images"]

# A blob stored again is used again; its bytes are the same (they hash alike).
_KEEP = """
    INSERT INTO blobs (sha256, size, stored_at, last_used_at, data)
    VALUES (:sha256, :size, :now, :now, :data)
    ON CONFLICT (sha256) DO UPDATE SET last_used_at = excluded.last_used_at
"""
# Most recently used first: every blob past the point where their sizes add up to more than
# the cap is deleted, so what is left is the most recently used that fit.
_EVICT = """
    DELETE FROM blobs WHERE sha256 IN (
        SELECT sha256 FROM (
            SELECT sha256, SUM(size) OVER (
                ORDER BY last_used_at DESC, stored_at DESC, sha256 DESC
                ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW
            ) AS kept
            FROM blobs
        ) WHERE kept > :cap
    )
"""
_USE = """
    UPDATE blobs SET last_used_at = :now
    WHERE sha256 IN (SELECT value FROM json_each(:hashes))
    RETURNING sha256, data
"""
PRUNE_BLOBS = "DELETE FROM blobs WHERE last_used_at < :older_than"


async def keep_blobs(
    db: aiosqlite.Connection, blobs: Sequence[Blob], *, now: float, cap: int
) -> None:
    """Store ``blobs`` (used ``now``), then delete the least recently used past ``cap``."""
    blobs = fitting(blobs, cap)
    if not blobs:
        return
    rows = [
        {"sha256": blob.sha256, "size": len(blob.data), "now": now, "data": blob.data}
        for blob in blobs
    ]
    await db.executemany(_KEEP, rows)
    await db.execute(_EVICT, {"cap": cap})


async def with_images(
    db: aiosqlite.Connection, messages: list[Message], *, now: float
) -> list[Message]:
    """``messages`` with their images' data from the blobs still kept, which are marked used
    ``now`` — one statement, and none for messages without images."""
    hashes = wanted(messages)
    if not hashes:
        return messages
    rows = await db.execute_fetchall(_USE, {"hashes": json.dumps(hashes), "now": now})
    return filled(messages, {sha256: bytes(data) for sha256, data in rows})
