"""One ``[[tools.mcp]]`` table: an MCP tool server relaybot connects to, and its safety limits.

    [[tools.mcp]]
    name = "github"
    command = "github-mcp-server"          # stdio: relaybot starts the program…
    args = ["stdio"]
    env = { GITHUB_TOKEN = "${GITHUB_TOKEN}" }
    # url = "https://mcp.example.com/mcp"  # …or streamable HTTP, with its headers
    # headers = { Authorization = "Bearer ${MCP_TOKEN}" }
    timeout = 30                           # seconds per call
    allowed_tools = ["search_issues"]      # empty: every tool the server lists
    denied_tools = []
    channels = ["C0123456789"]             # empty: every channel
    send_user = false                      # the call's _meta names the asker only when true

A value of ``env`` or ``headers`` may name environment variables as ``${VAR}``: they are read
when relaybot starts, so secrets stay out of the file; a variable that is not set is a
:class:`~core.settings_errors.SettingsError` naming it (never a value). A stdio server gets the
SDK's small default environment (``PATH``, ``HOME``…) plus its ``env``, never relaybot's own.

This lives apart from :mod:`core.settings` (which holds it as ``ToolSettings.mcp``) so that the
table, its checks and the ``${VAR}`` reading are read in one place.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from core.settings_errors import SettingsError

__all__ = ["MCPServerSettings", "expand_variables"]

_SERVER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _server_name(value: str) -> str:
    if not _SERVER_NAME.fullmatch(value):
        raise ValueError(
            "should be 1-32 letters, digits, '_' or '-' (it starts the names of its tools)"
        )
    return value


def _http_url(value: str) -> str:
    scheme, sep, rest = value.partition("://")
    if not sep or scheme.lower() not in ("http", "https") or not rest:
        raise ValueError("should be a URL starting with http:// or https://")
    return value


ServerName = Annotated[str, AfterValidator(_server_name)]


class MCPServerSettings(BaseModel):
    """One MCP server: started as ``command`` (stdio) or reached at ``url`` (streamable HTTP).

    ``timeout`` bounds each call (and the start). ``allowed_tools`` (empty: all) and
    ``denied_tools`` choose which of its tools the model sees; ``channels`` (empty: all) where
    it sees them — Slack channel ids, Discord channel ids (a thread counts as its parent
    channel). ``send_user`` puts the asker in each call's ``_meta`` as ``relaybot/user``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: ServerName
    command: str | None = Field(default=None, min_length=1)
    args: tuple[str, ...] = ()
    env: dict[str, str] = Field(default_factory=dict, repr=False)
    url: Annotated[str, AfterValidator(_http_url)] | None = None
    headers: dict[str, str] = Field(default_factory=dict, repr=False)
    timeout: float = Field(default=30.0, gt=0, le=3600)
    allowed_tools: tuple[str, ...] = ()
    denied_tools: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    send_user: bool = False

    @model_validator(mode="after")
    def _one_transport(self) -> MCPServerSettings:
        if (self.command is None) == (self.url is None):
            raise ValueError("give either command (a stdio server) or url (streamable HTTP)")
        if self.url is not None and (self.args or self.env):
            raise ValueError("args and env are for a stdio server (command), not a url")
        if self.command is not None and self.headers:
            raise ValueError("headers are for a streamable HTTP server (url), not a command")
        return self

    @property
    def transport(self) -> Literal["stdio", "http"]:
        return "stdio" if self.command is not None else "http"

    def offers(self, tool: str) -> bool:
        """Whether the model may see the server's tool named ``tool`` (its own name)."""
        allowed = not self.allowed_tools or tool in self.allowed_tools
        return allowed and tool not in self.denied_tools

    def resolved_env(self, environ: Mapping[str, str]) -> dict[str, str]:
        """``env`` with its ``${VAR}`` read from ``environ``."""
        return {
            key: expand_variables(value, environ, where=f"tools.mcp {self.name}: env.{key}")
            for key, value in self.env.items()
        }

    def resolved_headers(self, environ: Mapping[str, str]) -> dict[str, str]:
        """``headers`` with their ``${VAR}`` read from ``environ``."""
        return {
            key: expand_variables(value, environ, where=f"tools.mcp {self.name}: headers.{key}")
            for key, value in self.headers.items()
        }


def expand_variables(value: str, environ: Mapping[str, str], *, where: str) -> str:
    """``value`` with each ``${VAR}`` replaced by ``environ["VAR"]``. A variable that is not
    set (or empty) raises :class:`SettingsError` naming it and ``where`` it is used."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        found = environ.get(name)
        if not found:
            raise SettingsError(f"config error: {where} uses ${{{name}}}, which is not set")
        return found

    return _VARIABLE.sub(lookup, value)
