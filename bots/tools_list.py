"""``relaybot tools``: every tool the model would see, where it comes from, and whether it is up.

    NAME                   SOURCE    STATUS  CHANNELS
    get_weather            built-in  up      all
    github__search_issues  github    up      C0123456789
    -                      jira      down    all  (did not start: it closed the connection)

The MCP servers are started as a bot starts them, asked for their tools, and closed again. A
server that did not start has one row, named ``-``: it offers no tools. The command exits 1 when
any configured server is down (so a deployment script can stop there), else 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, TextIO

from bots.runtime import open_tools
from bots.settings import Settings
from core.client import new_http_client
from core.tools import BUILT_IN, Tool, ToolRegistry

if TYPE_CHECKING:
    from core.mcp_servers import ToolServers

__all__ = ["tool_rows", "tools_command"]

HEADER = ("NAME", "SOURCE", "STATUS", "CHANNELS")


async def tools_command(
    settings: Settings, *, out: TextIO, environ: Mapping[str, str] | None = None
) -> int:
    """Print the table; 1 if a configured MCP server is down, else 0."""
    async with (
        new_http_client(max_connections=4) as http,
        open_tools(settings, http=http, environ=environ) as (registry, servers),
    ):
        rows = tool_rows(registry, servers)
        down = servers is not None and any(s.status.state == "down" for s in servers.servers)
    out.write(_table([HEADER, *rows]))
    return 1 if down else 0


def tool_rows(
    registry: ToolRegistry, servers: ToolServers | None
) -> list[tuple[str, str, str, str]]:
    """One row per tool, then one per server that offers none (it did not start, or every one
    of its tools is filtered out), with why."""
    rows = [(tool.name, tool.source, _status(tool, servers), _channels(tool.channels))
            for tool in registry]  # fmt: skip
    for server in servers.servers if servers is not None else ():
        if any(tool.source == server.name for tool in registry):
            continue
        status = server.status
        why = f"  ({status.reason})" if status.state == "down" else "  (no tool offered)"
        channels = _channels(frozenset(server.settings.channels))
        rows.append(("-", server.name, status.state, channels + why))
    return rows


def _status(tool: Tool, servers: ToolServers | None) -> str:
    if tool.source == BUILT_IN or servers is None:
        return "up"
    return servers.status(tool.source).state


def _channels(channels: frozenset[str]) -> str:
    return ",".join(sorted(channels)) or "all"


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        + "\n"
        for row in rows
    )
