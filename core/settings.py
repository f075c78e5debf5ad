"""relaybot's settings: a TOML file plus environment variables, validated by pydantic-settings.

Where a value comes from, strongest first::

    1. arguments         load_settings(overrides={"llm": {"model": ...}})  (command-line flags)
    2. RELAYBOT_* vars   RELAYBOT_LLM__MODEL, RELAYBOT_STORE__URL   (``__`` separates sections)
    3. token variables   OFOX_API_KEY, SLACK_BOT_TOKEN, SLACK_APP_TOKEN, SLACK_SIGNING_SECRET,
                         DISCORD_BOT_TOKEN
    4. the TOML file     ``--config PATH`` or ``RELAYBOT_CONFIG``; a named file must exist
    5. defaults          the values written in ``config/relaybot.example.toml``

A typo in the TOML file is an error (every section forbids unknown keys). A ``RELAYBOT_*``
variable that names no setting is ignored with a warning on the ``relaybot.settings`` logger:
the environment is shared with other programs and scripts, and a stray variable must not stop a
bot from starting. An empty variable counts as unset.

Nothing is read at import. :func:`load_settings` reads the file and the environment (which
tests pass in as a mapping) and raises :class:`SettingsError`, whose message is one line naming
the key, what is wrong and where the value came from — never a secret's value.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tomllib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings import SettingsError as PydanticSettingsError

from core.client import Timeouts
from core.retry import RetryPolicy
from core.settings_errors import Origins, SettingsError, describe, problem, section_type

__all__ = [
    "CONFIG_VARIABLE",
    "DEFAULT_BASE_URLS",
    "DEFAULT_MODELS",
    "DEFAULT_SYSTEM_PROMPT",
    "ENV_PREFIX",
    "TOKEN_VARIABLES",
    "DiscordSettings",
    "LLMSettings",
    "RetrySettings",
    "Settings",
    "SettingsError",
    "SlackSettings",
    "StoreSettings",
    "TimeoutSettings",
    "ToolSettings",
    "load_settings",
    "unknown_variables",
    "user_data_dir",
]

log = logging.getLogger("relaybot.settings")

ENV_PREFIX = "RELAYBOT_"
CONFIG_VARIABLE = "RELAYBOT_CONFIG"
WireProtocolName = Literal["openai", "anthropic"]
DEFAULT_BASE_URLS: Mapping[WireProtocolName, str] = {
    "openai": "https://api.ofox.ai/v1",
    "anthropic": "https://api.ofox.ai/anthropic",
}
DEFAULT_MODELS: Mapping[WireProtocolName, str] = {
    "openai": "openai/gpt-4o",
    "anthropic": "anthropic/claude-sonnet-4.5",
}
# Secrets under the names their platforms' own tools use, and where each one goes.
TOKEN_VARIABLES: Mapping[str, tuple[str, str]] = {
    "OFOX_API_KEY": ("llm", "api_key"),
    "SLACK_BOT_TOKEN": ("slack", "bot_token"),
    "SLACK_APP_TOKEN": ("slack", "app_token"),
    "SLACK_SIGNING_SECRET": ("slack", "signing_secret"),
    "DISCORD_BOT_TOKEN": ("discord", "bot_token"),
}
DEFAULT_SYSTEM_PROMPT = (
    "You are relaybot, an assistant answering in a team chat thread. Be concise and direct: "
    "lead with the answer, then only the detail that helps. Write Markdown that reads well in "
    "chat — short paragraphs, lists, fenced code blocks with a language — and avoid big "
    "headings and wide tables. Use the available tools when they give a better answer than "
    "memory (for example get_weather for the weather), and say so plainly when you do not know."
)


# --- value types -------------------------------------------------------------------------------


def _blank_is_none(value: object) -> object:
    """Secrets: surrounding whitespace (a pasted newline) is dropped; blank means unset."""
    if isinstance(value, str):
        return value.strip() or None
    return value


def _url_with_scheme(*schemes: str) -> AfterValidator:
    def check(value: str) -> str:
        scheme, sep, rest = value.partition("://")
        if not sep or scheme.lower() not in schemes or not rest:
            expected = " or ".join(f"{s}://" for s in schemes)
            raise ValueError(f"should be a URL starting with {expected}")
        return value

    return AfterValidator(check)


def _store_url(value: str) -> str:
    if not re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", value):
        raise ValueError("should be a URL such as sqlite:///path/to/relaybot.db")
    return value


Secret = Annotated[SecretStr | None, BeforeValidator(_blank_is_none)]
HttpUrl = Annotated[str, _url_with_scheme("http", "https")]
WebSocketUrl = Annotated[str, _url_with_scheme("ws", "wss")]
LogLevel = Annotated[
    Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
    BeforeValidator(lambda v: v.strip().upper() if isinstance(v, str) else v),
]


class _Section(BaseModel):
    """A table of the TOML file: unknown keys are typos, and settings never change."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- sections ----------------------------------------------------------------------------------


class TimeoutSettings(_Section):
    """Seconds; see :class:`core.client.Timeouts`."""

    connect: float = Field(default=10.0, gt=0)
    read_idle: float = Field(default=60.0, gt=0)
    write: float = Field(default=30.0, gt=0)
    total: float = Field(default=600.0, gt=0)


class RetrySettings(_Section):
    """Seconds and attempts; see :class:`core.retry.RetryPolicy`."""

    max_attempts: int = Field(default=4, ge=1, le=20)
    base_delay: float = Field(default=0.5, ge=0)
    max_delay: float = Field(default=8.0, ge=0)
    max_retry_after: float = Field(default=60.0, ge=0)
    deadline: float = Field(default=180.0, gt=0)


class LLMSettings(_Section):
    """The model gateway and how a turn uses it."""

    protocol: WireProtocolName = "openai"
    base_url: HttpUrl | None = None
    model: str | None = Field(default=None, min_length=1)
    api_key: Secret = None
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_tokens: int = Field(default=4096, gt=0)
    temperature: float | None = Field(default=None, ge=0, le=2)
    show_reasoning: bool = False
    max_rounds: int = Field(default=8, ge=1, le=32)
    context_budget_tokens: int = Field(default=100_000, ge=1_000)
    max_concurrent_requests: int = Field(default=32, ge=1)
    offline_pace: float = Field(default=0.03, ge=0, le=5)
    timeouts: TimeoutSettings = TimeoutSettings()
    retry: RetrySettings = RetrySettings()

    def resolved_base_url(self) -> str:
        """``base_url``, or OfoxAI's endpoint for the protocol when it is not set."""
        return self.base_url or DEFAULT_BASE_URLS[self.protocol]

    def resolved_model(self) -> str:
        """``model``, or a sensible OfoxAI model for the protocol when it is not set."""
        return self.model or DEFAULT_MODELS[self.protocol]

    def client_timeouts(self) -> Timeouts:
        return Timeouts(**self.timeouts.model_dump())

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(**self.retry.model_dump())


class ToolSettings(_Section):
    weather_enabled: bool = True
    weather_geocoding_url: HttpUrl = "https://geocoding-api.open-meteo.com"
    weather_forecast_url: HttpUrl = "https://api.open-meteo.com"
    timeout: float = Field(default=10.0, gt=0)
    max_result_chars: int = Field(default=16_000, ge=100)


class StoreSettings(_Section):
    url: Annotated[str, AfterValidator(_store_url)] | None = None

    def resolved_url(self, *, data_dir: Path | None = None) -> str:
        """``url``, or ``sqlite:///<data dir>/relaybot/relaybot.db`` (SQLAlchemy's spelling:
        an absolute POSIX path gives four slashes)."""
        if self.url is not None:
            return self.url
        path = (data_dir or user_data_dir()) / "relaybot" / "relaybot.db"
        return "sqlite:///" + path.as_posix()


class RateSettings(_Section):
    """``count`` calls per ``seconds``, with bursts of up to ``burst``."""

    count: float = Field(gt=0)
    seconds: float = Field(gt=0)
    burst: float = Field(default=1.0, ge=1)


class EditBudgetSettings(_Section):
    """The shared rate budgets of message edits (see ``adapters.budget``). Keep ``burst +
    count`` within the platform's limit for its window, or edits will meet 429s."""

    slack_workspace: RateSettings = RateSettings(count=45, seconds=60, burst=5)
    discord_channel: RateSettings = RateSettings(count=4, seconds=5, burst=1)
    discord_global: RateSettings = RateSettings(count=30, seconds=1, burst=10)


class SlackSettings(_Section):
    """The Slack bot: tokens, where it answers, and how its replies are paced."""

    bot_token: Secret = None
    app_token: Secret = None
    signing_secret: Secret = None
    api_url: HttpUrl | None = None
    allowed_channels: tuple[str, ...] = ()
    allowed_users: tuple[str, ...] = ()
    direct_messages: bool = True
    follow_ups: bool = True
    max_input_chars: int = Field(default=8000, ge=100)
    edit_interval: float = Field(default=1.0, gt=0)
    user_cache_seconds: float = Field(default=3600.0, ge=0)


class DiscordSettings(_Section):
    """The Discord bot: token, endpoints, where it answers, and how its replies are paced.
    Allowlists hold Discord ids (snowflakes); empty means everywhere."""

    bot_token: Secret = None
    api_url: HttpUrl | None = None
    gateway_url: WebSocketUrl | None = None
    allowed_guilds: tuple[int, ...] = ()
    allowed_channels: tuple[int, ...] = ()
    allowed_roles: tuple[int, ...] = ()
    direct_messages: bool = True
    max_input_chars: int = Field(default=8000, ge=100)
    dm_idle_hours: float = Field(default=6.0, gt=0)
    edit_interval: float = Field(default=1.0, gt=0)


def user_data_dir(*, environ: Mapping[str, str] | None = None, platform: str | None = None) -> Path:
    """Where a user's application data lives: ``$XDG_DATA_HOME`` or ``~/.local/share`` on
    Linux, ``~/Library/Application Support`` on macOS, ``%LOCALAPPDATA%`` on Windows."""
    env = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    home = Path(env["HOME"]) if env.get("HOME") else Path.home()
    if platform == "win32":
        local = env.get("LOCALAPPDATA")
        return Path(local) if local else home / "AppData" / "Local"
    if platform == "darwin":
        return home / "Library" / "Application Support"
    xdg = env.get("XDG_DATA_HOME")
    if xdg and Path(xdg).is_absolute():  # the XDG spec says to ignore a relative path
        return Path(xdg)
    return home / ".local" / "share"


# --- sources -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Load:
    """What one :func:`load_settings` call reads: its environment and its TOML file."""

    environ: Mapping[str, str]
    toml_file: Path | None


# ``settings_customise_sources`` is a classmethod called with no per-call arguments: the load
# in progress reaches it through this variable (``Settings()`` alone: os.environ, no file).
_current_load: ContextVar[_Load | None] = ContextVar("relaybot_settings_load", default=None)


class _EnvironSource(EnvSettingsSource):
    """``RELAYBOT_*`` variables from the given mapping instead of ``os.environ``, keeping only
    those that name a setting (the others: :func:`unknown_variables`). Empty means unset."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    # The one hook pydantic-settings has for where variables come from (its dotenv source
    # overrides it too). Names are lower-cased: the source matches them case-insensitively.
    def _load_env_vars(self) -> Mapping[str, str | None]:
        known = {name.lower() for name in _env_names(self.settings_cls)}
        return {
            name.lower(): value
            for name, value in self._environ.items()
            if value != "" and name.lower() in known
        }


class _TokenSource(PydanticBaseSettingsSource):
    """The secrets of :data:`TOKEN_VARIABLES`, under their usual names."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._environ = environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ does the work

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, (section, key) in TOKEN_VARIABLES.items():
            if value := self._environ.get(name):
                values.setdefault(section, {})[key] = value
        return values


def _env_names(model: type[BaseModel], prefix: str = ENV_PREFIX) -> Iterator[str]:
    """Every ``RELAYBOT_*`` name a setting or a section answers to."""
    for name, field in model.model_fields.items():
        env_name = prefix + name.upper()
        yield env_name
        section = section_type(field.annotation)
        if section is not None:
            yield from _env_names(section, env_name + "__")


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """The ``RELAYBOT_*`` variables that name no setting (``RELAYBOT_CONFIG`` excepted)."""
    known = {name.lower() for name in _env_names(Settings)} | {CONFIG_VARIABLE.lower()}
    return sorted(
        name
        for name in environ
        if name.lower().startswith(ENV_PREFIX.lower()) and name.lower() not in known
    )


# --- the settings ------------------------------------------------------------------------------


class Settings(BaseSettings):
    """Everything relaybot can be told. Build it with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_ignore_empty=True,
        extra="forbid",
        frozen=True,
    )

    llm: LLMSettings = LLMSettings()
    tools: ToolSettings = ToolSettings()
    store: StoreSettings = StoreSettings()
    edit_budget: EditBudgetSettings = EditBudgetSettings()
    slack: SlackSettings = SlackSettings()
    discord: DiscordSettings = DiscordSettings()
    log_level: LogLevel = "INFO"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        load = _current_load.get() or _Load(environ=os.environ, toml_file=None)
        sources: list[PydanticBaseSettingsSource] = [
            init_settings,
            _EnvironSource(settings_cls, load.environ),
            _TokenSource(settings_cls, load.environ),
        ]
        if load.toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=load.toml_file))
        return tuple(sources)


def load_settings(
    config_path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Read the settings: ``overrides`` (nested, e.g. from command-line flags) over the
    environment over the TOML file (``config_path``, else ``$RELAYBOT_CONFIG``, else none)
    over the defaults. Raises :class:`SettingsError`."""
    env = os.environ if environ is None else environ
    path = _config_file(config_path, env)
    toml_data = _read_toml(path) if path is not None else {}
    for name in unknown_variables(env):
        log.warning("ignoring %s: relaybot has no such setting", name)
    origins = Origins(
        model=Settings,
        env_prefix=ENV_PREFIX,
        token_variables=TOKEN_VARIABLES,
        overrides=overrides or {},
        environ=env,
        toml_data=toml_data,
        toml_file=path,
    )
    token = _current_load.set(_Load(environ=env, toml_file=path))
    try:
        return Settings(**dict(overrides or {}))
    except ValidationError as error:
        raise SettingsError(describe(error, origins)) from None
    except PydanticSettingsError as error:  # RELAYBOT_LLM='{...' : a section's JSON is broken
        field = re.search(r'field "(\w+)"', str(error))
        loc = [field.group(1)] if field else []
        raise SettingsError("config error: " + problem(loc, "not valid JSON", origins)) from None
    finally:
        _current_load.reset(token)


def _config_file(config_path: str | Path | None, environ: Mapping[str, str]) -> Path | None:
    named = config_path if config_path is not None else environ.get(CONFIG_VARIABLE) or None
    if named is None:
        return None
    path = Path(named)
    if not path.is_file():
        how = "" if config_path is not None else f" (from {CONFIG_VARIABLE})"
        problem = "is not a file" if path.exists() else "no such file"
        raise SettingsError(f"config error: {path}{how}: {problem}")
    return path


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except OSError as error:
        raise SettingsError(f"config error: {path}: cannot read: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        where = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
        if where is None:
            raise SettingsError(f"config error: {path}: {message}") from None
        what = message[: where.start()]
        line, column = where.groups()
        raise SettingsError(f"config error: {path} line {line}, column {column}: {what}") from None
