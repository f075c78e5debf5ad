"""``GET /metrics`` for Prometheus: the handler every bot serves, and a server of its own.

The Slack HTTP-mode app adds :func:`metrics_handler` beside its other routes; Socket Mode and
Discord have no HTTP server, so ``--metrics-port N`` starts :func:`serve_metrics` for them.

The journal's backlog (queued turns, and how long the oldest has waited) is a question for the
store, so it is asked at scrape time rather than tracked by every accept and take: Prometheus
scrapes every few seconds, and a gauge read from the store cannot drift from it. A store that
cannot answer leaves the gauges as they were and the scrape still answers: the other metrics are
most needed exactly when the store is failing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from aiohttp import web

from core.metrics import JOURNAL_OLDEST_QUEUED_SECONDS, JOURNAL_QUEUED, exposition
from core.store.errors import StoreError
from core.store.journal import TurnJournal

__all__ = [
    "METRICS_HOST",
    "METRICS_PATH",
    "metrics_handler",
    "metrics_served",
    "refresh_backlog",
    "serve_metrics",
]

METRICS_PATH = "/metrics"
METRICS_HOST = "0.0.0.0"
"""Where ``--metrics-port`` listens: every interface, so a scraper in another container or on
another host reaches it. The metrics hold no ids, no text and no secret."""

log = logging.getLogger("relaybot.metrics")

Handler = Callable[[web.Request], Awaitable[web.Response]]


async def refresh_backlog(journal: TurnJournal, *, now: Callable[[], float] = time.time) -> None:
    """Set the backlog gauges from the journal. ``now`` is the store's clock (wall seconds, as
    ``accepted_at`` is)."""
    queued, oldest = await journal.backlog()
    JOURNAL_QUEUED.set(queued)
    JOURNAL_OLDEST_QUEUED_SECONDS.set(0.0 if oldest is None else max(0.0, now() - oldest))


def metrics_handler(
    journal: TurnJournal | None, *, now: Callable[[], float] = time.time
) -> Handler:
    """The ``GET /metrics`` handler: the backlog refreshed from ``journal`` (when there is
    one), then every metric as text."""

    async def metrics(request: web.Request) -> web.Response:
        if journal is not None:
            await _refreshed(journal, now)
        body, content_type = exposition()
        return web.Response(body=body, headers={"Content-Type": content_type})

    return metrics


async def _refreshed(journal: TurnJournal, now: Callable[[], float]) -> None:
    try:
        await refresh_backlog(journal, now=now)
    except StoreError as error:
        log.warning("metrics: could not read the journal's backlog: %s", error)


@asynccontextmanager
async def serve_metrics(
    journal: TurnJournal,
    *,
    port: int,
    host: str = METRICS_HOST,
    now: Callable[[], float] = time.time,
) -> AsyncIterator[str]:
    """Serve ``GET /metrics`` on ``host:port`` (0: any free port) while the block runs; yields
    the metrics URL."""
    app = web.Application()
    app.router.add_get(METRICS_PATH, metrics_handler(journal, now=now))
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        bound_host, bound_port = runner.addresses[0][:2]
        url_host = f"[{bound_host}]" if ":" in bound_host else bound_host
        yield f"http://{url_host}:{bound_port}{METRICS_PATH}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def metrics_served(
    journal: TurnJournal, *, port: int | None, announce: Callable[[str], None]
) -> AsyncIterator[None]:
    """``--metrics-port``: :func:`serve_metrics` on ``port`` while the block runs, its URL
    announced; nothing when ``port`` is ``None``."""
    if port is None:
        yield
        return
    async with serve_metrics(journal, port=port) as url:
        announce(f"serving metrics on {url}")
        yield
