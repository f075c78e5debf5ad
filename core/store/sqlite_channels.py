"""Channel settings and token usage in SQLite: :class:`SqliteChannels` and :class:`SqliteUsage`,
the halves of ``SqliteStore`` that schema version 4 added (the ``channel_settings`` and
``token_usage`` tables, :mod:`core.store.sqlite`; the contracts are :mod:`core.store.channels`
and :mod:`core.store.usage`).

A settings change is one upsert that keeps the fields left unchanged and returns the row as it
now is. Usage is one ``BEGIN IMMEDIATE`` transaction adding to the day's and the month's
counters: SQLite lets one writer at a time hold the file, so two processes adding at once
never lose a count. ``SqliteStore.prune`` calls :meth:`SqliteUsage.prune_usage`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.store.channels import UNCHANGED, Change, ChannelSettings, change_parameters
from core.store.sqlite_access import SharedConnection
from core.store.usage import Usage, check_tokens, kept_since, periods

__all__ = ["SqliteChannels", "SqliteUsage"]

_SETTINGS = """
    SELECT model, prompt, updated_by, updated_at FROM channel_settings
    WHERE platform = :platform AND workspace = :workspace AND channel = :channel
"""
_SET = """
    INSERT INTO channel_settings (platform, workspace, channel, model, prompt, updated_by,
        updated_at)
    VALUES (:platform, :workspace, :channel, :model, :prompt, :by, :now)
    ON CONFLICT (platform, workspace, channel) DO UPDATE SET
        model = CASE WHEN :set_model THEN excluded.model ELSE channel_settings.model END,
        prompt = CASE WHEN :set_prompt THEN excluded.prompt ELSE channel_settings.prompt END,
        updated_by = excluded.updated_by,
        updated_at = excluded.updated_at
    RETURNING model, prompt, updated_by, updated_at
"""
_ADD = """
    INSERT INTO token_usage (user_key, period, starts_at, tokens)
    VALUES (:user_key, 'day', :day, :tokens), (:user_key, 'month', :month, :tokens)
    ON CONFLICT (user_key, period, starts_at)
        DO UPDATE SET tokens = token_usage.tokens + excluded.tokens
"""
_USAGE = """
    SELECT period, tokens FROM token_usage
    WHERE user_key = :user_key
        AND ((period = 'day' AND starts_at = :day) OR (period = 'month' AND starts_at = :month))
"""
_PRUNE = """
    DELETE FROM token_usage
    WHERE (period = 'day' AND starts_at < :day) OR (period = 'month' AND starts_at < :month)
"""


class SqliteChannels:
    """The :class:`~core.store.channels.ChannelSettingsStore` of a store file; ``SqliteStore``
    sets the connection and the clock."""

    _connection: SharedConnection
    _clock: Callable[[], float]

    async def channel_settings(
        self, platform: str, workspace: str, channel: str
    ) -> ChannelSettings:
        where = {"platform": platform, "workspace": workspace, "channel": channel}
        async with self._connection.statement() as db:
            rows = list(await db.execute_fetchall(_SETTINGS, where))
        return _settings(rows[0]) if rows else ChannelSettings()

    async def set_channel_settings(
        self,
        platform: str,
        workspace: str,
        channel: str,
        *,
        model: Change = UNCHANGED,
        prompt: Change = UNCHANGED,
        by: str,
    ) -> ChannelSettings:
        parameters = change_parameters(platform, workspace, channel, model, prompt, by=by) | {
            "now": self._clock()
        }
        async with self._connection.statement() as db:
            rows = list(await db.execute_fetchall(_SET, parameters))
        return _settings(rows[0])  # an upsert returns its one row


class SqliteUsage:
    """The :class:`~core.store.usage.UsageLedger` of a store file; ``SqliteStore`` sets the
    connection and the clock."""

    _connection: SharedConnection
    _clock: Callable[[], float]

    async def add_usage(self, user_key: str, tokens: int, *, at: float | None = None) -> None:
        check_tokens(tokens)
        period = periods(self._clock() if at is None else at)
        parameters = {
            "user_key": user_key,
            "tokens": tokens,
            "day": period.day,
            "month": period.month,
        }
        async with self._connection.transaction() as db:
            await db.execute(_ADD, parameters)

    async def usage(self, user_key: str, *, now: float) -> Usage:
        period = periods(now)
        parameters = {"user_key": user_key, "day": period.day, "month": period.month}
        async with self._connection.statement() as db:
            rows = await db.execute_fetchall(_USAGE, parameters)
        counts: dict[str, int] = {kind: tokens for kind, tokens in rows}
        return period.usage(day=counts.get("day", 0), month=counts.get("month", 0))

    async def prune_usage(self) -> None:
        """Delete the counters of periods long gone (:func:`~core.store.usage.kept_since`)."""
        day, month = kept_since(self._clock())
        async with self._connection.statement() as db:
            await db.execute(_PRUNE, {"day": day, "month": month})


def _settings(row: Any) -> ChannelSettings:
    model, prompt, updated_by, updated_at = row
    return ChannelSettings(
        model=model, prompt=prompt, updated_by=updated_by, updated_at=float(updated_at)
    )
