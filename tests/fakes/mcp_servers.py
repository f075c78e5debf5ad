"""A small MCP tool server written with the ``mcp`` SDK, over stdio or streamable HTTP.

    python -m tests.fakes.mcp_servers stdio               # JSON-RPC on stdin/stdout
    python -m tests.fakes.mcp_servers http --port 8765    # prints LISTENING http://…/mcp

Its tools, one for each way a server behaves in front of relaybot:

- ``search_issues(query, limit=3)`` — a plain tool: text content naming what it was asked.
- ``repo.get.file(path)`` — a name with dots, which the model sees as ``…__repo_get_file``.
- ``hang()`` — never answers (a hung server, for the per-call timeout).
- ``fail(reason)`` — an ``isError`` result carrying ``reason``.
- ``environment()`` — the names (never the values) of the variables it was started with.
- ``whoami()`` — the ``relaybot/user`` entry of the call's ``_meta``, or ``nobody``.
- ``pid()`` — its process id, so a test can kill it between two calls.

``--only NAME`` (repeatable) serves just those tools; ``--fail-start`` exits before it speaks
(a server that fails to start). ``--port`` binds with ``SO_REUSEADDR``, so a test can start a
killed server again on the same port.

For tests: :func:`stdio_server` is the ``[[tools.mcp]]`` table that starts it over stdio, and
:class:`HttpServerProcess` runs it over HTTP as a child process (killed, started again).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from core.mcp_settings import MCPServerSettings

__all__ = ["ROOT", "TOOLS", "HttpServerProcess", "build_server", "main", "stdio_server"]

TOOLS = ("search_issues", "repo.get.file", "hang", "fail", "environment", "whoami", "pid")
ROOT = Path(__file__).resolve().parents[2]
"""The checkout: a server started over stdio finds ``tests`` through ``PYTHONPATH``."""
_MODULE = ("-m", "tests.fakes.mcp_servers")


def stdio_server(name: str = "fake", *flags: str, **settings: Any) -> MCPServerSettings:
    """The ``[[tools.mcp]]`` table that starts this server over stdio with ``flags``."""
    env = {"PYTHONPATH": str(ROOT), **settings.pop("env", {})}
    return MCPServerSettings(
        name=name, command=sys.executable, args=(*_MODULE, "stdio", *flags), env=env, **settings
    )


class HttpServerProcess:
    """This server over streamable HTTP, as a child process: :meth:`start` (again on the same
    port after :meth:`kill`), :attr:`url` once it listens."""

    def __init__(self) -> None:
        self.url = ""
        self._port = 0
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, *, within: float = 30.0) -> None:
        process = subprocess.Popen(
            [sys.executable, *_MODULE, "http", "--port", str(self._port)],
            stdout=subprocess.PIPE, cwd=ROOT,
        )  # fmt: skip
        self._process = process
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], within)
        line = process.stdout.readline().decode() if ready else ""
        if not line.startswith("LISTENING "):
            self.kill()
            raise AssertionError(f"the MCP HTTP server did not start: {line!r}")
        self.url = line.split()[1]
        self._port = int(self.url.rsplit(":", 1)[1].split("/")[0])

    def kill(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        process.kill()
        process.wait()
        if process.stdout is not None:
            process.stdout.close()


def build_server(only: Sequence[str] = ()) -> MCPServer:
    """The server, with every tool of :data:`TOOLS` (or those in ``only``)."""
    server = MCPServer("relaybot-fake", log_level="WARNING")

    def search_issues(query: str, limit: int = 3) -> str:
        """Search the issue tracker."""
        found = [f"#{number} {query} is broken" for number in range(1, limit + 1)]
        return f"{len(found)} issues for {query!r}:\n" + "\n".join(found)

    def get_file(path: str) -> str:
        """Read a file of the repository."""
        return f"contents of {path}"

    async def hang() -> str:
        """Never answer."""
        await asyncio.Event().wait()
        return "unreachable"

    def fail(reason: str) -> str:
        """Fail with the reason given."""
        raise ToolError(reason)

    def environment() -> str:
        """The names of this server's environment variables."""
        return json.dumps(sorted(os.environ))

    def whoami(ctx: Context) -> str:
        """Who the call says it is for."""
        meta = ctx.request_context.meta or {}
        user = meta.get("relaybot/user")
        return "nobody" if user is None else json.dumps(user, sort_keys=True)

    def pid() -> int:
        """This server's process id."""
        return os.getpid()

    tools: dict[str, Callable[..., Any]] = {
        "search_issues": search_issues, "repo.get.file": get_file, "hang": hang, "fail": fail,
        "environment": environment, "whoami": whoami, "pid": pid,
    }  # fmt: skip
    for name, fn in tools.items():
        if not only or name in only:
            server.add_tool(fn, name=name)
    return server


async def _serve_http(server: MCPServer, port: int) -> None:
    import uvicorn

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(128)  # before LISTENING is printed: a client may connect at once
    app = server.streamable_http_app()
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    print(f"LISTENING http://127.0.0.1:{listener.getsockname()[1]}/mcp", flush=True)
    await uvicorn.Server(config).serve(sockets=[listener])


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.mcp_servers")
    parser.add_argument("transport", choices=["stdio", "http"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--only", action="append", default=[], choices=TOOLS)
    parser.add_argument("--fail-start", action="store_true")
    args = parser.parse_args(argv)
    if args.fail_start:
        print("fake MCP server: failing to start, as asked", file=sys.stderr)
        raise SystemExit(3)
    server = build_server(args.only)
    if args.transport == "stdio":
        server.run("stdio")
    else:
        asyncio.run(_serve_http(server, args.port))


if __name__ == "__main__":
    main()
