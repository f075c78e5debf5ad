"""Settings: defaults, the TOML file, the environment over it, and one-line errors."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import pydantic
import pytest

from bots.settings import TOKEN_VARIABLES, Settings, load_settings, unknown_variables
from bots.slack.settings import LOADING_MESSAGES, SUGGESTED_PROMPTS
from core.client import Timeouts
from core.retry import RetryPolicy
from core.settings import (
    DEFAULT_SYSTEM_PROMPT,
    CoreSettings,
    LLMSettings,
    Secret,
    Section,
    SettingsError,
    TokenVariable,
    load,
    token_variables,
    user_data_dir,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "relaybot.example.toml"
SECRET = "sk-do-not-print-0123456789"


WriteToml = Callable[[str], Path]


@pytest.fixture
def toml(tmp_path: Path) -> WriteToml:
    def write(text: str) -> Path:
        path = tmp_path / "relaybot.toml"
        path.write_text(text, encoding="utf-8")
        return path

    return write


def error_of(*args: object, **kwargs: object) -> str:
    with pytest.raises(SettingsError) as caught:
        load_settings(*args, **kwargs)  # type: ignore[arg-type]
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- defaults and sources ----------------------------------------------------------------------


def test_defaults() -> None:
    settings = load_settings(environ={})
    llm = settings.llm
    assert (llm.protocol, llm.base_url, llm.model, llm.api_key) == ("openai", None, None, None)
    assert llm.system_prompt == DEFAULT_SYSTEM_PROMPT
    assert (llm.max_tokens, llm.temperature, llm.show_reasoning) == (4096, None, False)
    assert (llm.max_rounds, llm.context_budget_tokens, llm.max_concurrent_requests) == (
        8,
        100_000,
        1000,
    )
    assert llm.read_interval == 0.2
    assert llm.client_timeouts() == Timeouts(connect=10, read_idle=60, write=30, total=600)
    assert llm.retry_policy() == RetryPolicy(
        max_attempts=4, base_delay=0.5, max_delay=8, max_retry_after=60, deadline=180
    )
    assert (llm.models, llm.default_model, llm.fallback, llm.supports_images) == ((), None, (),
                                                                             True)  # fmt: skip
    assert settings.tools.model_dump() == {
        "weather_enabled": True,
        "weather_geocoding_url": "https://geocoding-api.open-meteo.com",
        "weather_forecast_url": "https://api.open-meteo.com",
        "timeout": 10.0,
        "max_result_chars": 16000,
        "mcp": (),
        "mcp_start_timeout": 30.0,
        "mcp_reconnect_delay": 1.0,
        "mcp_reconnect_max_delay": 60.0,
    }
    assert settings.store.url is None
    assert settings.slack.model_dump() == {
        **dict.fromkeys(["bot_token", "app_token", "signing_secret", "api_url"]),
        "allowed_channels": (),
        "allowed_users": (),
        "direct_messages": True,
        "follow_ups": True,
        "max_input_chars": 8000,
        "edit_interval": 1.0,
        "user_cache_seconds": 3600.0,
        "streaming": "auto",
        "command_admins": (),
        "loading_messages": LOADING_MESSAGES,
        "suggested_prompts": tuple(prompt.model_dump() for prompt in SUGGESTED_PROMPTS),
    }
    assert settings.discord.model_dump() == {
        **dict.fromkeys(["bot_token", "api_url", "gateway_url"]),
        "identify_spacing": 5.0,
        "command_admins": (),
        "allowed_guilds": (),
        "allowed_channels": (),
        "allowed_roles": (),
        "direct_messages": True,
        "max_input_chars": 8000,
        "dm_idle_hours": 6.0,
        "edit_interval": 1.0,
    }
    assert settings.log_level == "INFO"


def test_the_real_environment_is_not_read_when_one_is_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RELAYBOT_LLM__MODEL", "from-the-real-environment")
    monkeypatch.setenv("OFOX_API_KEY", SECRET)
    assert load_settings(environ={}) == load_settings(environ={})
    assert load_settings(environ={}).llm.model is None
    assert load_settings(environ={}).llm.api_key is None


def test_toml_file_values(toml: WriteToml) -> None:
    path = toml(
        'log_level = "debug"\n'
        "[llm]\n"
        'protocol = "anthropic"\n'
        'base_url = "http://localhost:11434/v1"\n'
        "max_tokens = 1000\n"
        "temperature = 0.2\n"
        "[llm.timeouts]\n"
        "total = 30\n"
        "[llm.retry]\n"
        "max_attempts = 1\n"
        "[tools]\n"
        "weather_enabled = false\n"
        "[store]\n"
        'url = "sqlite:///data/relaybot.db"\n'
    )
    settings = load_settings(path, environ={})
    assert settings.log_level == "DEBUG"
    assert settings.llm.protocol == "anthropic"
    assert settings.llm.resolved_base_url() == "http://localhost:11434/v1"
    assert (settings.llm.max_tokens, settings.llm.temperature) == (1000, 0.2)
    assert settings.llm.client_timeouts() == Timeouts(total=30)
    assert settings.llm.retry_policy() == RetryPolicy(max_attempts=1)
    assert settings.tools.weather_enabled is False
    assert settings.store.resolved_url() == "sqlite:///data/relaybot.db"


def test_environment_overrides_the_file_key_by_key(toml: WriteToml) -> None:
    path = toml('[llm]\nmodel = "file-model"\nmax_tokens = 1000\n[llm.timeouts]\nconnect = 1\n')
    settings = load_settings(
        path,
        environ={
            "RELAYBOT_LLM__MODEL": "env-model",
            "RELAYBOT_LLM__PROTOCOL": "anthropic",
            "RELAYBOT_LLM__TIMEOUTS__TOTAL": "99",
            "RELAYBOT_STORE__URL": "sqlite:////srv/relaybot.db",
            "RELAYBOT_LOG_LEVEL": "warning",
        },
    )
    assert settings.llm.model == "env-model"
    assert settings.llm.protocol == "anthropic"
    assert settings.llm.max_tokens == 1000  # kept from the file
    assert settings.llm.client_timeouts() == Timeouts(connect=1, total=99)
    assert settings.store.url == "sqlite:////srv/relaybot.db"
    assert settings.log_level == "WARNING"


def test_a_whole_section_as_json_in_one_variable() -> None:
    settings = load_settings(environ={"RELAYBOT_LLM__RETRY": '{"max_attempts": 2}'})
    assert settings.llm.retry_policy() == RetryPolicy(max_attempts=2)


def test_overrides_beat_the_environment_and_the_file(toml: WriteToml) -> None:
    path = toml('[llm]\nmodel = "file-model"\n')
    settings = load_settings(
        path,
        environ={"RELAYBOT_LLM__MODEL": "env-model", "RELAYBOT_LLM__MAX_TOKENS": "7"},
        overrides={"llm": {"model": "flag-model"}},
    )
    assert (settings.llm.model, settings.llm.max_tokens) == ("flag-model", 7)


def test_tokens_under_their_usual_names() -> None:
    settings = load_settings(
        environ={
            "OFOX_API_KEY": "sk-ofox",
            "SLACK_BOT_TOKEN": "xoxb-1",
            "SLACK_APP_TOKEN": "xapp-1",
            "SLACK_SIGNING_SECRET": "signing",
            "DISCORD_BOT_TOKEN": "discord-token",
        }
    )
    secrets = {
        "llm.api_key": settings.llm.api_key,
        "slack.bot_token": settings.slack.bot_token,
        "slack.app_token": settings.slack.app_token,
        "slack.signing_secret": settings.slack.signing_secret,
        "discord.bot_token": settings.discord.bot_token,
    }
    assert {key: s.get_secret_value() if s else None for key, s in secrets.items()} == {
        "llm.api_key": "sk-ofox",
        "slack.bot_token": "xoxb-1",
        "slack.app_token": "xapp-1",
        "slack.signing_secret": "signing",
        "discord.bot_token": "discord-token",
    }
    assert set(TOKEN_VARIABLES) == {
        "OFOX_API_KEY",
        "SLACK_BOT_TOKEN",
        "SLACK_APP_TOKEN",
        "SLACK_SIGNING_SECRET",
        "DISCORD_BOT_TOKEN",
    }


def test_prefixed_names_beat_the_usual_names_which_beat_the_file(toml: WriteToml) -> None:
    path = toml('[llm]\napi_key = "sk-file"\n[slack]\nbot_token = "xoxb-file"\n')
    environ = {"OFOX_API_KEY": "sk-ofox", "RELAYBOT_LLM__API_KEY": "sk-prefixed"}
    settings = load_settings(path, environ=environ)
    assert settings.llm.api_key is not None
    assert settings.llm.api_key.get_secret_value() == "sk-prefixed"
    settings = load_settings(path, environ={"OFOX_API_KEY": "sk-ofox"})
    assert settings.llm.api_key is not None
    assert settings.llm.api_key.get_secret_value() == "sk-ofox"
    assert settings.slack.bot_token is not None
    assert settings.slack.bot_token.get_secret_value() == "xoxb-file"


def test_empty_variables_are_unset_and_secrets_are_trimmed(toml: WriteToml) -> None:
    path = toml('[llm]\nmodel = "file-model"\n')
    settings = load_settings(
        path,
        environ={"RELAYBOT_LLM__MODEL": "", "OFOX_API_KEY": "", "SLACK_BOT_TOKEN": " xoxb-1\n"},
    )
    assert (settings.llm.model, settings.llm.api_key) == ("file-model", None)
    assert settings.slack.bot_token is not None
    assert settings.slack.bot_token.get_secret_value() == "xoxb-1"
    assert load_settings(toml('[llm]\napi_key = "  "\n'), environ={}).llm.api_key is None


@pytest.mark.parametrize(
    ("protocol", "base_url", "model"),
    [
        ("openai", "https://api.ofox.ai/v1", "openai/gpt-4o"),
        ("anthropic", "https://api.ofox.ai/anthropic", "anthropic/claude-sonnet-4.5"),
    ],
)
def test_base_url_and_model_default_per_protocol(protocol: str, base_url: str, model: str) -> None:
    llm = load_settings(environ={"RELAYBOT_LLM__PROTOCOL": protocol}).llm
    assert (llm.resolved_base_url(), llm.resolved_model()) == (base_url, model)
    given = {"RELAYBOT_LLM__BASE_URL": "https://api.anthropic.com", "RELAYBOT_LLM__MODEL": "m"}
    llm = load_settings(environ={"RELAYBOT_LLM__PROTOCOL": protocol, **given}).llm
    assert (llm.resolved_base_url(), llm.resolved_model()) == ("https://api.anthropic.com", "m")


def test_config_file_from_the_environment_and_the_argument_wins(
    toml: WriteToml, tmp_path: Path
) -> None:
    path = toml('[llm]\nmodel = "from-file"\n')
    assert load_settings(environ={"RELAYBOT_CONFIG": str(path)}).llm.model == "from-file"
    other = tmp_path / "other.toml"
    other.write_text('[llm]\nmodel = "from-argument"\n', encoding="utf-8")
    settings = load_settings(str(other), environ={"RELAYBOT_CONFIG": str(path)})
    assert settings.llm.model == "from-argument"


def test_settings_are_immutable() -> None:
    settings = load_settings(environ={})
    with pytest.raises(pydantic.ValidationError):
        settings.llm.max_tokens = 5


# --- the store's default place -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "environ", "expected"),
    [
        ("linux", {"HOME": "/home/ada"}, "/home/ada/.local/share"),
        ("linux", {"HOME": "/home/ada", "XDG_DATA_HOME": "/data"}, "/data"),
        ("linux", {"HOME": "/home/ada", "XDG_DATA_HOME": "relative"}, "/home/ada/.local/share"),
        ("darwin", {"HOME": "/Users/ada"}, "/Users/ada/Library/Application Support"),
        ("win32", {"HOME": "/h", "LOCALAPPDATA": "/c/Users/ada/AppData/Local"}, None),
    ],
)
def test_user_data_dir(platform: str, environ: dict[str, str], expected: str | None) -> None:
    found = user_data_dir(environ=environ, platform=platform)
    assert found == Path(expected or environ["LOCALAPPDATA"])


def test_store_url_defaults_to_sqlite_in_the_data_dir() -> None:
    store = load_settings(environ={}).store
    assert store.resolved_url(data_dir=Path("/home/ada/.local/share")) == (
        "sqlite:////home/ada/.local/share/relaybot/relaybot.db"
    )
    store = load_settings(environ={"RELAYBOT_STORE__URL": "memory://"}).store
    assert store.resolved_url(data_dir=Path("/unused")) == "memory://"


def test_the_journal_settings_from_the_file_and_the_environment(toml: WriteToml) -> None:
    defaults = load_settings(environ={}).store
    assert (defaults.lease_seconds, defaults.recovery_max_age) == (30, 3600)
    assert defaults.retention_days is None  # history is kept forever
    path = toml("[store]\nlease_seconds = 10\nrecovery_max_age = 600\nretention_days = 90\n")
    store = load_settings(path, environ={}).store
    assert (store.lease_seconds, store.recovery_max_age, store.retention_days) == (10, 600, 90)
    environ = {"RELAYBOT_STORE__LEASE_SECONDS": "2.5", "RELAYBOT_STORE__RETENTION_DAYS": "0.5"}
    store = load_settings(path, environ=environ).store
    assert (store.lease_seconds, store.recovery_max_age, store.retention_days) == (2.5, 600, 0.5)


@pytest.mark.parametrize("key", ["lease_seconds", "recovery_max_age", "retention_days"])
def test_the_journal_settings_are_positive(key: str) -> None:
    variable = f"RELAYBOT_STORE__{key.upper()}"
    assert error_of(environ={variable: "0"}) == (
        f"config error: store.{key}: Input should be greater than 0 (got '0') [from {variable}]"
    )


# --- errors: one line, naming the key and the source ------------------------------------------


def test_bad_toml_syntax_names_the_file_and_line(toml: WriteToml) -> None:
    path = toml('[llm]\nmodel = "m"\nmax_tokens = \n')
    assert error_of(path, environ={}) == (f"config error: {path} line 3, column 14: Invalid value")


def test_bad_value_in_the_file_names_the_key(toml: WriteToml) -> None:
    path = toml("[llm]\nmax_tokens = -5\n")
    assert error_of(path, environ={}) == (
        f"config error: llm.max_tokens: Input should be greater than 0 (got -5) [from {path}]"
    )


def test_bad_value_in_the_environment_names_the_variable() -> None:
    assert error_of(environ={"RELAYBOT_LLM__TIMEOUTS__TOTAL": "soon"}) == (
        "config error: llm.timeouts.total: Input should be a valid number, unable to parse "
        "string as a number (got 'soon') [from RELAYBOT_LLM__TIMEOUTS__TOTAL]"
    )
    assert error_of(environ={"RELAYBOT_LLM__PROTOCOL": "gemini"}) == (
        "config error: llm.protocol: Input should be 'openai' or 'anthropic' (got 'gemini') "
        "[from RELAYBOT_LLM__PROTOCOL]"
    )
    assert error_of(environ={"RELAYBOT_LLM": "{not json"}) == (
        "config error: llm: not valid JSON [from RELAYBOT_LLM]"
    )


def test_every_problem_is_reported_on_one_line(toml: WriteToml) -> None:
    path = toml('[llm]\nmax_rounds = 0\nbase_url = "api.example.com"\n')
    message = error_of(path, environ={"RELAYBOT_TOOLS__TIMEOUT": "-1"})
    assert message == (
        "config error: llm.base_url: should be a URL starting with http:// or https:// "
        f"(got 'api.example.com') [from {path}]; "
        f"llm.max_rounds: Input should be greater than or equal to 1 (got 0) [from {path}]; "
        "tools.timeout: Input should be greater than 0 (got '-1') [from RELAYBOT_TOOLS__TIMEOUT]"
    )


def test_unknown_keys_in_the_file_are_errors(toml: WriteToml) -> None:
    path = toml("[llm]\nmax_token = 5\n")
    assert error_of(path, environ={}) == (
        f"config error: llm.max_token: unknown setting (did you mean max_tokens?) [from {path}]"
    )
    path = toml("[slak]\nbot_token = 5\n")
    assert error_of(path, environ={}) == (
        f"config error: slak: unknown setting (did you mean slack?) [from {path}]"
    )


def test_unknown_relaybot_variables_are_ignored_with_a_warning(
    caplog: pytest.LogCaptureFixture, toml: WriteToml
) -> None:
    path = toml("")
    environ = {
        "RELAYBOT_LLM__MAX_TOKEN": "5",
        "RELAYBOT_COLOR": "blue",
        "RELAYBOT_CONFIG": str(path),
        "RELAYBOT_LLM__MAX_TOKENS": "6",
        "UNRELATED": "x",
    }
    with caplog.at_level(logging.WARNING, logger="relaybot.settings"):
        settings = load_settings(environ=environ)
    assert settings.llm.max_tokens == 6
    assert unknown_variables(environ) == ["RELAYBOT_COLOR", "RELAYBOT_LLM__MAX_TOKEN"]
    assert [record.getMessage() for record in caplog.records] == [
        "ignoring RELAYBOT_COLOR: relaybot has no such setting",
        "ignoring RELAYBOT_LLM__MAX_TOKEN: relaybot has no such setting"
        " (did you mean RELAYBOT_LLM__MAX_TOKENS?)",
    ]


def test_a_named_file_must_exist(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    assert error_of(missing, environ={}) == f"config error: {missing}: no such file"
    assert error_of(environ={"RELAYBOT_CONFIG": str(missing)}) == (
        f"config error: {missing} (from RELAYBOT_CONFIG): no such file"
    )
    assert error_of(tmp_path, environ={}) == f"config error: {tmp_path}: is not a file"


# --- secrets -----------------------------------------------------------------------------------


def test_secrets_never_show_in_repr() -> None:
    environ = {name: SECRET for name in TOKEN_VARIABLES}
    settings = load_settings(environ=environ)
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)
    assert SECRET not in settings.model_dump_json()


@pytest.mark.parametrize(
    "text",
    [
        f'[llm]\nmax_tokens = "{SECRET}"\n',  # pasted into the wrong key
        '[llm]\nmax_tokens = "xoxb-1234-abcdef"\n',  # a token, though not one of the secrets
        f'[llm]\napi_token = "{SECRET}"\n',  # a misnamed key holding a token
        f'[slack]\nbot_token = ["{SECRET}"]\n',  # a secret of the wrong type
        f'llm = "{SECRET}"\n',  # a section given as a value
        f'[discord]\nbot_token = "{SECRET}"\napi_url = "ws://x"\n',
    ],
)
def test_secrets_never_show_in_errors(toml: WriteToml, text: str) -> None:
    message = error_of(toml(text), environ={"DISCORD_BOT_TOKEN": SECRET})
    assert SECRET not in message
    assert "xoxb" not in message
    assert "config error: " in message


def test_a_secret_of_the_wrong_type_is_named_not_echoed(toml: WriteToml) -> None:
    path = toml("[llm]\napi_key = 123456789\n")
    assert error_of(path, environ={}) == (
        f"config error: llm.api_key: Input should be a valid string [from {path}]"
    )


def test_passwords_in_urls_are_masked() -> None:
    message = error_of(environ={"RELAYBOT_LLM__BASE_URL": "ftp://user:hunter2@proxy/v1"})
    assert "hunter2" not in message
    assert "ftp://user:***@proxy/v1" in message


# --- the example file --------------------------------------------------------------------------


def uncommented_example() -> str:
    """The example with every ``#setting = default`` line switched on."""
    return re.sub(r"^#(?=[^\s#])", "", EXAMPLE.read_text(encoding="utf-8"), flags=re.MULTILINE)


def test_the_example_file_loads_as_is() -> None:
    assert load_settings(EXAMPLE, environ={}) == load_settings(environ={})


def test_the_example_file_states_the_real_defaults(tmp_path: Path) -> None:
    path = tmp_path / "relaybot.toml"
    path.write_text(uncommented_example(), encoding="utf-8")
    assert load_settings(path, environ={}) == load_settings(environ={})


def leaf_settings(
    model: type[pydantic.BaseModel], prefix: tuple[str, ...] = ()
) -> Iterator[tuple[str, ...]]:
    for name, field in model.model_fields.items():
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, pydantic.BaseModel):
            yield from leaf_settings(sub, (*prefix, name))
        else:
            yield (*prefix, name)


def test_the_example_file_mentions_every_setting() -> None:
    """As ``#key = default``, as an ``e.g. key = ...`` line, or by its token variable."""
    text = EXAMPLE.read_text(encoding="utf-8")
    tokens: dict[tuple[str, ...], str] = {t: name for name, t in TOKEN_VARIABLES.items()}
    missing = [
        ".".join(loc)
        for loc in leaf_settings(Settings)
        if f"{loc[-1]} =" not in text and tokens.get(loc, "\0") not in text
    ]
    assert missing == []


def test_edit_budget_defaults_are_the_adapters_defaults() -> None:
    """The settings' defaults and adapters.budget.DEFAULT_RATES must not drift apart."""
    from adapters.budget import DEFAULT_RATES
    from bots.runtime import edit_rates

    assert edit_rates(load_settings(environ={})) == dict(DEFAULT_RATES)


def test_discord_endpoints_and_allowlists_from_the_environment() -> None:
    discord = load_settings(
        environ={
            "RELAYBOT_DISCORD__API_URL": "http://127.0.0.1:8080/api/v10",
            "RELAYBOT_DISCORD__GATEWAY_URL": "ws://127.0.0.1:8080/gateway",
            "RELAYBOT_DISCORD__ALLOWED_GUILDS": '["1150000000000000001"]',
            "RELAYBOT_DISCORD__ALLOWED_ROLES": "[1150000000000000010]",
        }
    ).discord
    assert (discord.api_url, discord.gateway_url) == (
        "http://127.0.0.1:8080/api/v10",
        "ws://127.0.0.1:8080/gateway",
    )
    assert (discord.allowed_guilds, discord.allowed_roles) == (
        (1150000000000000001,),
        (1150000000000000010,),
    )
    assert error_of(environ={"RELAYBOT_DISCORD__GATEWAY_URL": "https://gateway.discord.gg"}) == (
        "config error: discord.gateway_url: should be a URL starting with ws:// or wss:// "
        "(got 'https://gateway.discord.gg') [from RELAYBOT_DISCORD__GATEWAY_URL]"
    )


# --- sections by layer, and the sources --------------------------------------------------------


def test_a_longer_variable_wins_over_the_section_given_as_json() -> None:
    settings = load_settings(
        environ={
            "RELAYBOT_LLM": '{"max_tokens": 6, "retry": {"max_attempts": 3, "deadline": 9}}',
            "RELAYBOT_LLM__RETRY": '{"deadline": 5}',
            "RELAYBOT_LLM__RETRY__MAX_ATTEMPTS": "2",
        }
    )
    assert settings.llm.max_tokens == 6
    assert settings.llm.retry_policy() == RetryPolicy(max_attempts=2, deadline=5)


def test_broken_json_names_the_setting_and_its_variable() -> None:
    assert error_of(environ={"RELAYBOT_LLM__RETRY": "{not json", "RELAYBOT_LLM__MODEL": "m"}) == (
        "config error: llm.retry: not valid JSON [from RELAYBOT_LLM__RETRY]"
    )
    assert error_of(environ={"RELAYBOT_SLACK__ALLOWED_CHANNELS": "C1,C2"}) == (
        "config error: slack.allowed_channels: not valid JSON "
        "[from RELAYBOT_SLACK__ALLOWED_CHANNELS]"
    )


def test_variable_names_are_case_insensitive_but_token_names_are_not() -> None:
    settings = load_settings(environ={"relaybot_llm__model": "m", "ofox_api_key": "sk-lower"})
    assert (settings.llm.model, settings.llm.api_key) == ("m", None)


def test_a_model_built_directly_reads_nothing_but_its_arguments(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RELAYBOT_LLM__MODEL", "from-the-real-environment")
    monkeypatch.setenv("OFOX_API_KEY", SECRET)
    assert Settings() == load_settings(environ={})
    assert Settings(llm=LLMSettings(model="given")).llm.model == "given"


def test_a_platform_brings_its_own_section_and_token_variable() -> None:
    """What adding a platform takes: a section declared in its own layer, composed in bots/."""

    class ChatSettings(Section):
        bot_token: Annotated[Secret, TokenVariable("CHAT_BOT_TOKEN")] = None
        edit_interval: float = pydantic.Field(default=1.0, gt=0)

    class WithChat(Settings):
        chat: ChatSettings = ChatSettings()

    environ = {"CHAT_BOT_TOKEN": "chat-token", "RELAYBOT_CHAT__EDIT_INTERVAL": "2"}
    settings = load(WithChat, environ=environ)
    assert settings.chat.bot_token is not None
    assert settings.chat.bot_token.get_secret_value() == "chat-token"
    assert settings.chat.edit_interval == 2
    assert token_variables(WithChat)["CHAT_BOT_TOKEN"] == ("chat", "bot_token")
    assert unknown_variables(environ) == ["RELAYBOT_CHAT__EDIT_INTERVAL"]  # not relaybot's own
    with pytest.raises(SettingsError) as caught:
        load(WithChat, environ={**environ, "RELAYBOT_CHAT__EDIT_INTERVAL": "0"})
    assert str(caught.value) == (
        "config error: chat.edit_interval: Input should be greater than 0 (got '0') "
        "[from RELAYBOT_CHAT__EDIT_INTERVAL]"
    )


def test_core_reads_only_its_own_sections() -> None:
    assert set(CoreSettings.model_fields) == {"llm", "tools", "store", "log_level", "log_format"}
    assert set(Settings.model_fields) - set(CoreSettings.model_fields) == {
        "runtime",
        "edit_budget",
        "redis",
        "fleet",
        "limits",
        "attachments",
        "slack",
        "discord",
    }
    core = load(CoreSettings, environ={"OFOX_API_KEY": "sk-ofox", "SLACK_BOT_TOKEN": "xoxb-1"})
    assert core.llm.api_key is not None
    assert core.llm.api_key.get_secret_value() == "sk-ofox"
