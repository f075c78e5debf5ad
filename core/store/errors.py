"""``StoreError``, the error of every store (its own module so that both the
``ConversationStore`` protocol and the turn journal it extends can import it)."""

from __future__ import annotations

__all__ = ["StoreError"]


class StoreError(Exception):
    """The store cannot be used: an unreadable or corrupt file, a wrong schema, a lost server.
    The message names the store (never a password) and what is wrong, in one line."""
