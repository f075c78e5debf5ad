"""relaybot's settings machinery, and the sections core reads: a TOML file plus environment
variables, validated by pydantic.

Each layer declares the sections it reads: :class:`CoreSettings` has ``llm``, ``tools``,
``store`` and ``log_level``; ``adapters.settings`` has ``edit_budget``; each bot its own
(``bots.slack.settings``, ``bots.discord.settings``). ``bots.settings`` composes them into the
one ``Settings`` and reads it with :func:`load`, which follows whatever model it is given:
adding a platform never edits this module.

Where a value comes from, strongest first::

    1. arguments         load(..., overrides={"llm": {"model": ...}})  (command-line flags)
    2. RELAYBOT_* vars   RELAYBOT_LLM__MODEL, RELAYBOT_STORE__URL   (``__`` separates sections)
    3. token variables   the secrets' usual names, declared by their sections with
                         ``TokenVariable``: OFOX_API_KEY here, SLACK_BOT_TOKEN, DISCORD_BOT_TOKEN…
    4. the TOML file     ``--config PATH`` or ``RELAYBOT_CONFIG``; a named file must exist
    5. defaults          the values written in ``config/relaybot.example.toml``

A typo in the TOML file is an error (every section forbids unknown keys). A ``RELAYBOT_*``
variable that names no setting is ignored with a warning on the ``relaybot.settings`` logger:
the environment is shared with other programs and scripts, and a stray variable must not stop a
bot from starting. An empty variable counts as unset.

Nothing is read at import, and a settings model built directly reads nothing but its arguments.
:func:`load` reads the file and the environment (which tests pass in as a mapping) and raises
:class:`SettingsError`, whose message is one line naming the key, what is wrong and where the
value came from — never a secret's value.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from core.client import Timeouts
from core.mcp_settings import MCPServerSettings
from core.retry import RetryPolicy
from core.settings_errors import Origins, SettingsError, describe
from core.settings_sources import (
    ENV_PREFIX,
    EnvironSource,
    NotJSON,
    TokenSource,
    TokenVariable,
    merged,
    setting_variables,
    token_variables,
)
from core.store import validate_store_url

__all__ = [
    "CONFIG_VARIABLE",
    "DEFAULT_BASE_URLS",
    "DEFAULT_MODELS",
    "DEFAULT_SYSTEM_PROMPT",
    "ENV_PREFIX",
    "OFFLINE_MODEL",
    "SHORTHAND_MODEL",
    "CoreSettings",
    "HttpUrl",
    "LLMSettings",
    "LogLevel",
    "ModelSettings",
    "RetrySettings",
    "Secret",
    "Section",
    "SettingsError",
    "SettingsModel",
    "StoreSettings",
    "TimeoutSettings",
    "TokenVariable",
    "ToolSettings",
    "load",
    "token_variables",
    "unknown_variables",
    "url_with_scheme",
    "user_data_dir",
]

log = logging.getLogger("relaybot.settings")
# A stray RELAYBOT_* variable is usually a typo the operator must see, even from a command
# that otherwise logs only errors, and it is found before any log level is configured.
log.setLevel(logging.WARNING)

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


def url_with_scheme(*schemes: str) -> AfterValidator:
    """A URL with one of ``schemes`` (``Annotated[str, url_with_scheme("ws", "wss")]``)."""

    def check(value: str) -> str:
        scheme, sep, rest = value.partition("://")
        if not sep or scheme.lower() not in schemes or not rest:
            expected = " or ".join(f"{s}://" for s in schemes)
            raise ValueError(f"should be a URL starting with {expected}")
        return value

    return AfterValidator(check)


def _store_url(value: str) -> str:
    """A URL the store opens: a wrong scheme is a configuration mistake found at start, not a
    traceback when the bot first opens its store."""
    if not re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", value):
        raise ValueError("should be a URL such as sqlite:///path/to/relaybot.db")
    return validate_store_url(value)


Secret = Annotated[SecretStr | None, BeforeValidator(_blank_is_none)]
HttpUrl = Annotated[str, url_with_scheme("http", "https")]
LogLevel = Annotated[
    Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
    BeforeValidator(lambda v: v.strip().upper() if isinstance(v, str) else v),
]


class Section(BaseModel):
    """A table of the TOML file: unknown keys are typos, and settings never change."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- core's sections ---------------------------------------------------------------------------


class TimeoutSettings(Section):
    """Seconds; see :class:`core.client.Timeouts`."""

    connect: float = Field(default=10.0, gt=0)
    read_idle: float = Field(default=60.0, gt=0)
    write: float = Field(default=30.0, gt=0)
    total: float = Field(default=600.0, gt=0)


class RetrySettings(Section):
    """Seconds and attempts; see :class:`core.retry.RetryPolicy`."""

    max_attempts: int = Field(default=4, ge=1, le=20)
    base_delay: float = Field(default=0.5, ge=0)
    max_delay: float = Field(default=8.0, ge=0)
    max_retry_after: float = Field(default=60.0, ge=0)
    deadline: float = Field(default=180.0, gt=0)


SHORTHAND_MODEL = "default"
"""The name of the model ``llm.protocol``/``base_url``/``model``/``api_key`` describe when no
``[[llm.models]]`` table is given."""
OFFLINE_MODEL = "offline"
"""The name of the built-in offline model, the one model when neither a key nor a base URL is
set (and no table is given)."""


def _model_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", value):
        raise ValueError("should be one word of letters, digits, '.', '_' and '-' (users type it)")
    return value


def _variable_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
        raise ValueError("should be the name of an environment variable, such as OFOX_API_KEY")
    return value


ModelName = Annotated[str, AfterValidator(_model_name)]
"""What users type in ``model <name>``: one word, so a command line splits it unambiguously."""
VariableName = Annotated[str, AfterValidator(_variable_name)]


class ModelSettings(Section):
    """One ``[[llm.models]]`` table: a model users can choose by ``name``.

    ``api_key_env`` names the environment variable that holds its key (never the key itself,
    so the file stays shareable); unset, the endpoint is called without a key (Ollama,
    llama.cpp). ``context_budget_tokens`` unset is ``llm.context_budget_tokens``.
    """

    name: ModelName
    protocol: WireProtocolName = "openai"
    base_url: HttpUrl | None = None
    model: str = Field(min_length=1)
    api_key_env: VariableName | None = None
    supports_images: bool = True
    context_budget_tokens: int | None = Field(default=None, ge=1_000)

    def resolved_base_url(self) -> str:
        """``base_url``, or OfoxAI's endpoint for the protocol when it is not set."""
        return self.base_url or DEFAULT_BASE_URLS[self.protocol]


class LLMSettings(Section):
    """The model gateway and how a turn uses it.

    ``protocol``, ``base_url``, ``model``, ``api_key`` and ``supports_images`` are the
    single-model shorthand: the model named ``default`` (``offline`` with neither a key nor a
    base URL). ``models`` tables replace it with several named models; ``default_model``
    chooses the one that answers unless a channel chooses another, and ``fallback`` lists the
    models asked, in order, when the one asked is unavailable before it said anything.
    """

    protocol: WireProtocolName = "openai"
    base_url: HttpUrl | None = None
    model: str | None = Field(default=None, min_length=1)
    api_key: Annotated[Secret, TokenVariable("OFOX_API_KEY")] = None
    supports_images: bool = True
    models: tuple[ModelSettings, ...] = ()
    default_model: ModelName | None = None
    fallback: tuple[ModelName, ...] = ()
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_tokens: int = Field(default=4096, gt=0)
    temperature: float | None = Field(default=None, ge=0, le=2)
    show_reasoning: bool = False
    max_rounds: int = Field(default=8, ge=1, le=32)
    context_budget_tokens: int = Field(default=100_000, ge=1_000)
    max_concurrent_requests: int = Field(default=1000, ge=1)
    """Model calls in flight at once in the process; more wait their turn, their answers
    saying "Waiting for a free slot…". 1,000 is what one process keeps at pace on two cores
    (``python -m bench.load``: 1,000 answers at 40 tokens a second, event-loop lag p99 about
    10 ms, first text p99 about 15 ms). The soft limit on open files is raised to match."""
    read_interval: float = Field(default=0.2, ge=0, le=2)
    """Seconds between two reads of a model's answer once it has begun (0: read each token as
    it comes). What comes meanwhile is read in one go: a third less CPU per token at 40
    tokens a second, for words that reach a chat message at most this much later (a bot
    edits it once a second). The terminal chat reads every token."""
    offline_pace: float = Field(default=0.03, ge=0, le=5)
    timeouts: TimeoutSettings = TimeoutSettings()
    retry: RetrySettings = RetrySettings()

    @field_validator("models")
    @classmethod
    def _names_differ(cls, models: tuple[ModelSettings, ...]) -> tuple[ModelSettings, ...]:
        names = [table.name for table in models]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"two tables are named {twice[0]!r}: each name must be unique")
        return models

    @field_validator("default_model")
    @classmethod
    def _default_is_configured(cls, name: str | None, info: ValidationInfo) -> str | None:
        if name is not None and (known := _model_names(info.data)) is not None:
            _check_known(name, known)
        return name

    @field_validator("fallback")
    @classmethod
    def _fallback_is_configured(
        cls, names: tuple[str, ...], info: ValidationInfo
    ) -> tuple[str, ...]:
        known = _model_names(info.data)
        if known is None or "default_model" not in info.data:
            return names  # what it depends on is invalid, and reported already
        default = info.data["default_model"] or known[0]
        for name in names:
            _check_known(name, known)
            if name == default:
                raise ValueError(f"{name!r} is the default model; a fallback must be another one")
        if len(set(names)) < len(names):
            raise ValueError("names a model twice")
        return names

    @model_validator(mode="after")
    def _shorthand_or_tables(self) -> LLMSettings:
        """With tables, a shorthand key would be silently ignored: refuse it instead."""
        shorthand = {"protocol", "base_url", "model", "supports_images"} & self.model_fields_set
        if self.models and shorthand:
            keys = ", ".join(f"llm.{key}" for key in sorted(shorthand))
            raise ValueError(
                f"with [[llm.models]] tables, {keys} would be ignored: describe the model in a "
                "table and name it in llm.default_model"
            )
        return self

    @property
    def offline(self) -> bool:
        """Whether the built-in offline model is the one model: no table, no key, no base URL."""
        return not self.models and self.api_key is None and self.base_url is None

    def model_names(self) -> tuple[str, ...]:
        """The configured models' names, in order (``default`` or ``offline`` without tables)."""
        names = _model_names({"models": self.models, "api_key": self.api_key,
                              "base_url": self.base_url})  # fmt: skip
        assert names is not None
        return names

    def resolved_default_model(self) -> str:
        """``default_model``, or the first configured model."""
        return self.default_model or self.model_names()[0]

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


def _model_names(data: Mapping[str, Any]) -> tuple[str, ...] | None:
    """The model names ``data`` (the ``llm`` values validated so far) configures; ``None`` when
    one of the values they follow from was invalid."""
    if not {"models", "api_key", "base_url"} <= data.keys():
        return None
    if data["models"]:
        return tuple(table.name for table in data["models"])
    offline = data["api_key"] is None and data["base_url"] is None
    return (OFFLINE_MODEL if offline else SHORTHAND_MODEL,)


def _check_known(name: str, known: tuple[str, ...]) -> None:
    if name not in known:
        raise ValueError(
            f"names {name!r}, which is not a configured model (configured: {', '.join(known)})"
        )


class ToolSettings(Section):
    """The built-in tools, and the MCP servers whose tools the model may call (``mcp``, one
    ``[[tools.mcp]]`` table each, see :class:`~core.mcp_settings.MCPServerSettings`).

    Each server must start (connect and list its tools) within ``mcp_start_timeout`` seconds.
    A server that was up and dropped is reconnected on the next call to one of its tools; a
    reconnection that fails waits ``mcp_reconnect_delay`` seconds before the next try, doubled
    after each failure up to ``mcp_reconnect_max_delay``.
    """

    weather_enabled: bool = True
    weather_geocoding_url: HttpUrl = "https://geocoding-api.open-meteo.com"
    weather_forecast_url: HttpUrl = "https://api.open-meteo.com"
    timeout: float = Field(default=10.0, gt=0)
    max_result_chars: int = Field(default=16_000, ge=100)
    mcp: tuple[MCPServerSettings, ...] = ()
    mcp_start_timeout: float = Field(default=30.0, gt=0)
    mcp_reconnect_delay: float = Field(default=1.0, ge=0)
    mcp_reconnect_max_delay: float = Field(default=60.0, ge=0)

    @field_validator("mcp")
    @classmethod
    def _server_names_differ(
        cls, servers: tuple[MCPServerSettings, ...]
    ) -> tuple[MCPServerSettings, ...]:
        names = [server.name for server in servers]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"two servers are named {twice[0]!r}: each name must be unique")
        return servers


class StoreSettings(Section):
    """Where conversations and the turn journal are kept, and how turns are leased."""

    url: Annotated[str, AfterValidator(_store_url)] | None = None
    lease_seconds: float = Field(default=30.0, gt=0)
    """How long a worker holds a turn without renewing it before another may take it over."""
    recovery_max_age: float = Field(default=3600.0, gt=0)
    """An unanswered turn found after a restart is answered only if it is younger than this."""
    retention_days: float | None = Field(default=None, gt=0)
    """History and finished turns older than this many days are deleted; ``None`` keeps them.
    Attached images not used (sent to the model, or attached again) for as long go too."""
    blob_max_bytes: int = Field(default=1 << 30, ge=0)  # core.store.BLOB_MAX_BYTES
    """The most bytes of attached images the store keeps, so later turns of a thread still
    see them (1 GiB by default; ``0`` keeps none). Past it, the least recently used images are
    deleted; a later turn is then told an image was attached and is no longer kept."""

    def resolved_url(self, *, data_dir: Path | None = None) -> str:
        """``url``, or ``sqlite:///<data dir>/relaybot/relaybot.db`` (SQLAlchemy's spelling:
        an absolute POSIX path gives four slashes)."""
        if self.url is not None:
            return self.url
        path = (data_dir or user_data_dir()) / "relaybot" / "relaybot.db"
        return "sqlite:///" + path.as_posix()


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


# --- settings models ---------------------------------------------------------------------------


class SettingsModel(BaseSettings):
    """A whole configuration: its fields are the sections (and the top-level keys) of the TOML
    file. Read one with :func:`load`."""

    model_config = SettingsConfigDict(extra="forbid", frozen=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The arguments only: :func:`load` reads the file and the environment it is given, so
        a model built directly never half-reads ``os.environ``."""
        return (init_settings,)


class CoreSettings(SettingsModel):
    """What core reads. ``bots.settings`` adds the sections of adapters and of each platform."""

    llm: LLMSettings = LLMSettings()
    tools: ToolSettings = ToolSettings()
    store: StoreSettings = StoreSettings()
    log_level: LogLevel = "INFO"
    log_format: Literal["text", "json"] = "text"


SettingsT = TypeVar("SettingsT", bound=SettingsModel)


def unknown_variables(model: type[SettingsModel], environ: Mapping[str, str]) -> list[str]:
    """The ``RELAYBOT_*`` variables that name no setting of ``model`` (``RELAYBOT_CONFIG``
    excepted)."""
    known = {name.lower() for name, _, _ in setting_variables(model)} | {CONFIG_VARIABLE.lower()}
    return sorted(
        name
        for name in environ
        if name.lower().startswith(ENV_PREFIX.lower()) and name.lower() not in known
    )


def _warn_unknown_variables(model: type[SettingsModel], environ: Mapping[str, str]) -> None:
    """One warning line per stray ``RELAYBOT_*`` variable, with the setting it most likely
    meant: ``RELAYBOT_LLM__MODLE`` is ignored, and the model silently stays the default."""
    known = [name.removeprefix(ENV_PREFIX) for name, _, _ in setting_variables(model)]
    for name in unknown_variables(model, environ):
        rest = name.upper().removeprefix(ENV_PREFIX)  # the shared prefix would make all close
        close = difflib.get_close_matches(rest, known, n=1, cutoff=0.75)
        hint = f" (did you mean {ENV_PREFIX}{close[0]}?)" if close else ""
        log.warning("ignoring %s: relaybot has no such setting%s", name, hint)


def load(
    model: type[SettingsT],
    config_path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> SettingsT:
    """Read ``model``: ``overrides`` (nested, e.g. from command-line flags) over the
    environment over the TOML file (``config_path``, else ``$RELAYBOT_CONFIG``, else none)
    over the defaults. Raises :class:`SettingsError`."""
    env = os.environ if environ is None else environ
    path = _config_file(config_path, env)
    toml_data = _read_toml(path) if path is not None else {}
    _warn_unknown_variables(model, env)
    given = dict(overrides or {})
    origins = Origins(
        model=model,
        env_prefix=ENV_PREFIX,
        token_variables=token_variables(model),
        overrides=given,
        environ=env,
        toml_data=toml_data,
        toml_file=path,
    )
    sources: tuple[PydanticBaseSettingsSource, ...] = (  # strongest first
        InitSettingsSource(model, init_kwargs=given),
        EnvironSource(model, env),
        TokenSource(model, env),
        TomlConfigSettingsSource(model, toml_file=path),
    )
    try:
        values: dict[str, Any] = {}
        for source in reversed(sources):
            values = merged(values, source())
        # Validated as read: a BaseSettings' own sources (os.environ) are not consulted again.
        return model.model_validate(values)
    except NotJSON as error:  # RELAYBOT_LLM='{...' : a section's JSON is broken
        raise SettingsError(f"config error: {error}") from None
    except ValidationError as error:
        raise SettingsError(describe(error, origins)) from None


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
