"""relaybot's settings (README: Configuration): core's sections, the edit budget of adapters and
each platform's section, composed into the one :class:`Settings` every bot reads.

A platform declares its section, and the usual names of its secrets (``TokenVariable``), in its
own package, and is added here; ``core.settings.load`` reads whatever this model declares.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any

from pydantic import Field

from adapters.settings import EditBudgetSettings
from bots.discord.settings import DiscordSettings
from bots.slack.settings import SlackSettings
from core import settings as core_settings
from core.attachments import AttachmentSettings
from core.limits import LimitsSettings
from core.settings import CoreSettings, Section, url_with_scheme

__all__ = [
    "TOKEN_VARIABLES",
    "FleetSettings",
    "RedisSettings",
    "RuntimeSettings",
    "Settings",
    "fleet_problem",
    "load_settings",
    "unknown_variables",
]


class RuntimeSettings(Section):
    """How a running bot behaves as a process."""

    shutdown_grace: float = Field(default=8.0, ge=0)
    """Seconds a bot spends, after SIGTERM or SIGINT, showing final texts and notices before it
    exits (under Docker's 10 s default): what is not shown by then, the next start finishes."""


class RedisSettings(Section):
    """Redis, where several processes share what must not live in one process's memory."""

    url: Annotated[str, url_with_scheme("redis", "rediss", "unix")] | None = None
    """``redis://host:6379/0``; set, every process shares the edit budgets and Stop presses
    through it. Unset, each process keeps its own."""
    key_prefix: str = Field(default="relaybot:", min_length=1)
    """Put before every key relaybot writes, so several bots can share one Redis."""


class FleetSettings(Section):
    """Several processes serving one workspace or server."""

    single_worker: bool = False
    """On a Postgres store without ``redis.url``, Slack HTTP mode refuses to start (workers
    behind one address cannot see each other's Stop presses or edits) unless this says this
    process is the only worker."""


def fleet_problem(settings: Settings) -> str | None:
    """Why Slack HTTP mode must not start with these settings (``None``: it may): on a
    Postgres store without ``redis.url`` and without ``fleet.single_worker``."""
    scheme = settings.store.resolved_url().partition("://")[0]
    if scheme not in {"postgresql", "postgres"} or settings.redis.url is not None:
        return None
    if settings.fleet.single_worker:
        return None
    return (
        "several HTTP workers behind one address need redis.url to share Stop and the edit "
        "budgets; set it, or set fleet.single_worker = true if this is the only worker"
    )


class Settings(CoreSettings):
    """Everything relaybot can be told. Build it with :func:`load_settings`."""

    runtime: RuntimeSettings = RuntimeSettings()
    edit_budget: EditBudgetSettings = EditBudgetSettings()
    redis: RedisSettings = RedisSettings()
    fleet: FleetSettings = FleetSettings()
    limits: LimitsSettings = LimitsSettings()
    attachments: AttachmentSettings = AttachmentSettings()
    slack: SlackSettings = SlackSettings()
    discord: DiscordSettings = DiscordSettings()


TOKEN_VARIABLES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    core_settings.token_variables(Settings)
)
"""The secrets' usual variable names (``OFOX_API_KEY``, ``SLACK_BOT_TOKEN``, …) and where each
one goes."""


def load_settings(
    config_path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Read the settings: ``overrides`` (nested, e.g. from command-line flags) over the
    environment over the TOML file (``config_path``, else ``$RELAYBOT_CONFIG``, else none)
    over the defaults. Raises ``core.settings.SettingsError``."""
    return core_settings.load(Settings, config_path, environ=environ, overrides=overrides)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """The ``RELAYBOT_*`` variables that name no setting (``RELAYBOT_CONFIG`` excepted)."""
    return core_settings.unknown_variables(Settings, environ)
