"""``Readiness``: whether the bot can take a message in and answer it now (``GET /ready``).

Liveness (the process runs) is not readiness: with its disk full a bot still runs, yet every
message fails before it is accepted. Two checks, made together, say whether it is ready:

- the store takes a write (:meth:`~core.store.base.ConversationStore.check_writes`) — a full
  disk or a damaged file, and a message cannot be accepted;
- the model gateway answers: any HTTP answer from its base URL counts (a 404 or a 401 says it
  is there); a refused connection, or no answer within ``timeout``, does not. The probe carries
  no API key: the key goes nowhere but the gateway's own model requests.

A verdict is kept ``cache_seconds``, so that a load balancer polling every second asks the
store and the gateway at most that often. A fault that clears shows at the next check: no
restart. Reasons are short and hold no secret (neither the store's path nor the key), and only
a change between ready and not ready is logged. One instance serves any front (Slack's HTTP
mode now; Socket Mode and Discord may ask it too).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx2

from core.store import ConversationStore, StoreError

__all__ = ["OK", "Readiness", "Verdict"]

log = logging.getLogger("relaybot.readiness")

OK = "ok"
REASON_LIMIT = 120
"""Characters of a reason at most: a probe's answer is one short line per check."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    """Each check's outcome: :data:`OK`, or why not in a few words."""

    store: str = OK
    gateway: str = OK

    @property
    def ready(self) -> bool:
        return self.store == OK and self.gateway == OK

    def as_json(self) -> dict[str, object]:
        return {"ready": self.ready, "store": self.store, "gateway": self.gateway}


class Readiness:
    """The store and the gateway checked at most every ``cache_seconds`` of ``clock``."""

    def __init__(
        self,
        store: ConversationStore,
        *,
        gateway_url: str,
        http: httpx2.AsyncClient,
        timeout: float = 2.0,
        cache_seconds: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._gateway_url = gateway_url
        self._http = http
        self._timeout = timeout
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._lock = asyncio.Lock()  # callers during a check wait for its verdict
        self._verdict: Verdict | None = None
        self._expires_at = 0.0

    async def check(self) -> Verdict:
        """The latest verdict, checked again once it is ``cache_seconds`` old."""
        async with self._lock:
            verdict = self._verdict
            if verdict is None or self._clock() >= self._expires_at:
                store, gateway = await asyncio.gather(self._store_reason(), self._gateway_reason())
                verdict = Verdict(store=store, gateway=gateway)
                self._keep(verdict)
            return verdict

    async def _store_reason(self) -> str:
        try:
            await self._store.check_writes()
        except StoreError as error:
            return _short(error)
        return OK

    async def _gateway_reason(self) -> str:
        try:
            async with self._http.stream("GET", self._gateway_url, timeout=self._timeout):
                return OK  # whatever the status: the gateway answered
        except httpx2.TimeoutException:
            return f"no answer within {self._timeout:g} s"
        except httpx2.RequestError as error:
            return f"unreachable ({type(error).__name__})"

    def _keep(self, verdict: Verdict) -> None:
        before = self._verdict
        self._verdict, self._expires_at = verdict, self._clock() + self._cache_seconds
        if before is not None and before.ready == verdict.ready:
            return
        if not verdict.ready:
            log.warning("not ready: store %s; gateway %s", verdict.store, verdict.gateway)
        elif before is not None:
            log.info("ready again")


def _short(error: StoreError) -> str:
    """What is wrong, without the store's name (``sqlite store /var/lib/…: ``) before it."""
    text = str(error)
    _, separator, reason = text.partition(": ")
    return (reason if separator else text)[:REASON_LIMIT]
