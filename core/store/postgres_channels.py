"""Channel settings and token usage in Postgres: :class:`PostgresChannels` and
:class:`PostgresUsage` — the SQL of :mod:`core.store.sqlite_channels`, ported (the
``channel_settings`` and ``token_usage`` tables of schema version 3, :mod:`core.store.postgres`;
the contracts are :mod:`core.store.channels` and :mod:`core.store.usage`).

Usage is one ``INSERT … ON CONFLICT DO UPDATE SET tokens = token_usage.tokens +
excluded.tokens`` of the day's and the month's rows: a worker adding to a counter another
worker is adding to waits for its row lock and then adds to the committed count, so no count is
lost, and both rows are written in one statement, always in the same order (so two workers
never deadlock on them).
A store without a clock counts a turn in the period of the server's ``now()``, the one clock
of a fleet.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from core.store.channels import UNCHANGED, Change, ChannelSettings, change_parameters
from core.store.postgres_access import NOW, Pool, Query, execute, fetch, fetchrow, fetchval
from core.store.usage import Usage, check_tokens, kept_since, periods

__all__ = ["PostgresChannels", "PostgresUsage"]

_SETTINGS = Query("""
    SELECT model, prompt, updated_by, updated_at FROM channel_settings
    WHERE platform = :platform AND workspace = :workspace AND channel = :channel
""")
_SET = Query(f"""
    INSERT INTO channel_settings (platform, workspace, channel, model, prompt, updated_by,
        updated_at)
    VALUES (:platform, :workspace, :channel, :model::text, :prompt::text, :by, {NOW})
    ON CONFLICT (platform, workspace, channel) DO UPDATE SET
        model = CASE WHEN :set_model::boolean THEN excluded.model
            ELSE channel_settings.model END,
        prompt = CASE WHEN :set_prompt::boolean THEN excluded.prompt
            ELSE channel_settings.prompt END,
        updated_by = excluded.updated_by,
        updated_at = excluded.updated_at
    RETURNING model, prompt, updated_by, updated_at
""")
_TIME = Query(f"SELECT {NOW}")
_ADD = Query("""
    INSERT INTO token_usage (user_key, period, starts_at, tokens)
    VALUES (:user_key, 'day', :day::bigint, :tokens::bigint),
        (:user_key, 'month', :month::bigint, :tokens::bigint)
    ON CONFLICT (user_key, period, starts_at)
        DO UPDATE SET tokens = token_usage.tokens + excluded.tokens
""")
_USAGE = Query("""
    SELECT period, tokens FROM token_usage
    WHERE user_key = :user_key
        AND ((period = 'day' AND starts_at = :day::bigint)
            OR (period = 'month' AND starts_at = :month::bigint))
""")
_PRUNE = Query("""
    DELETE FROM token_usage
    WHERE (period = 'day' AND starts_at < :day::bigint)
        OR (period = 'month' AND starts_at < :month::bigint)
""")


class PostgresChannels:
    """The :class:`~core.store.channels.ChannelSettingsStore` of a database; ``PostgresStore``
    sets the pool and the clock (``None``: the server's ``now()``)."""

    _pool: Pool
    _clock: Callable[[], float] | None

    async def channel_settings(
        self, platform: str, workspace: str, channel: str
    ) -> ChannelSettings:
        where = {"platform": platform, "workspace": workspace, "channel": channel}
        async with self._pool.connection() as db:
            row = await fetchrow(db, _SETTINGS, where)
        return ChannelSettings() if row is None else _settings(row)

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
            "now": None if self._clock is None else self._clock()
        }
        async with self._pool.connection() as db:
            row = await fetchrow(db, _SET, parameters)
        return _settings(row)  # an upsert returns its one row


class PostgresUsage:
    """The :class:`~core.store.usage.UsageLedger` of a database; ``PostgresStore`` sets the pool
    and the clock (``None``: the server's ``now()``)."""

    _pool: Pool
    _clock: Callable[[], float] | None

    async def add_usage(self, user_key: str, tokens: int, *, at: float | None = None) -> None:
        check_tokens(tokens)
        async with self._pool.connection() as db:
            period = periods(await self._time(db) if at is None else at)
            parameters = {
                "user_key": user_key,
                "tokens": tokens,
                "day": period.day,
                "month": period.month,
            }
            await execute(db, _ADD, parameters)

    async def usage(self, user_key: str, *, now: float) -> Usage:
        period = periods(now)
        parameters = {"user_key": user_key, "day": period.day, "month": period.month}
        async with self._pool.connection() as db:
            counts = {kind: tokens for kind, tokens in await fetch(db, _USAGE, parameters)}
        return period.usage(day=int(counts.get("day", 0)), month=int(counts.get("month", 0)))

    async def prune_usage(self) -> None:
        """Delete the counters of periods long gone (:func:`~core.store.usage.kept_since`)."""
        async with self._pool.connection() as db:
            day, month = kept_since(await self._time(db))
            await execute(db, _PRUNE, {"day": day, "month": month})

    async def _time(self, db: Any) -> float:
        """The store's time: its clock's, else the server's ``now()``."""
        now = None if self._clock is None else self._clock()
        return float(await fetchval(db, _TIME, {"now": now}))


def _settings(row: Any) -> ChannelSettings:
    model, prompt, updated_by, updated_at = row
    return ChannelSettings(
        model=model, prompt=prompt, updated_by=updated_by, updated_at=float(updated_at)
    )
