"""An aiohttp application served on loopback: the offline model, and every test fake.

    class FakeThing(LoopbackServer):
        def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
            app = web.Application()
            app.router.add_get("/thing", self._thing)
            super().__init__(app, host=host, port=port)

A server extends :meth:`LoopbackServer.start` to derive its own URLs from :attr:`url`, and
:meth:`LoopbackServer.close` to release what its handlers wait on before the server stops.
"""

from __future__ import annotations

import ssl
from types import TracebackType
from typing import Self

from aiohttp import web

__all__ = ["LoopbackServer"]


class LoopbackServer:
    """Serves ``app`` on ``host`` (port 0 = ephemeral); :attr:`url` is ``http://host:port``
    once started (``https://`` with ``tls``, the server's certificate). Closing gives handlers
    still running ``shutdown_timeout`` seconds."""

    def __init__(
        self,
        app: web.Application,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        shutdown_timeout: float = 0.5,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.url = ""
        self._host, self._port = host, port
        self._tls = tls
        self._runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=shutdown_timeout
        )

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port, ssl_context=self._tls).start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"{'http' if self._tls is None else 'https'}://{host}:{port}"

    async def close(self) -> None:
        await self._runner.cleanup()
