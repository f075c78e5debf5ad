"""``relaybot check`` against the loopback fakes: every part the settings name is asked once,
and each answers one ``✓``/``✗`` line (or a JSON object) and the exit status says whether all
passed.

The command runs in-process — ``main([...])`` on a worker thread, which runs its own event
loop, while the fakes serve on this test's loop — with settings from a TOML file only.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml
from redis.asyncio import Redis

from bots.check import SLACK_SCOPES, run_checks
from bots.cli import main
from bots.settings import fleet_problem, load_settings
from core.store.postgres import SCHEMA_VERSION
from tests.conftest import REDIS_URL, Spawn
from tests.fakes.fake_discord import INTENT_MESSAGE_CONTENT, PRIVILEGED_INTENTS, FakeDiscord
from tests.fakes.llm_gateway import Error, FakeGateway, Hang, Stream
from tests.fakes.open_meteo import FakeOpenMeteo
from tests.fakes.slack_api import FakeSlack
from tests.fakes.slack_socket import FakeSocketMode
from tests.fakes.streams import anthropic_events, openai_chunks
from tests.support.postgres import fresh_schema

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-check-secret-0123456789"
SLACK_TOKEN, APP_TOKEN, DISCORD_TOKEN = "xoxb-check", "xapp-1-A1-1-check", "discord-check"
VERIFIED_APP = 1 << 19  # GATEWAY_MESSAGE_CONTENT: the flag of a verified app


@dataclass
class Run:
    status: int
    out: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


@dataclass
class Setup:
    """The fakes, and the settings that point at them (TOML tables, edited by each test)."""

    tmp: Path
    gateway: FakeGateway
    slack: FakeSlack
    discord: FakeDiscord
    weather: FakeOpenMeteo
    config: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.config = {
            "llm": {"base_url": self.gateway.url + "/v1", "api_key": KEY},
            "store": {"url": f"sqlite:///{self.tmp / 'relaybot.db'}"},
            "tools": {"weather_geocoding_url": self.weather.url},
            "slack": {
                "bot_token": SLACK_TOKEN,
                "signing_secret": "signing-secret",
                "api_url": self.slack.api_url,
            },
            "discord": {"bot_token": DISCORD_TOKEN, "api_url": self.discord.api_url},
        }

    async def check(self, *args: str) -> Run:
        path = self.tmp / "relaybot.toml"
        path.write_text(_toml(self.config), encoding="utf-8")
        return await check(args, config=path)


async def check(args: tuple[str, ...], *, config: Path) -> Run:
    """``relaybot --config PATH check ARGS``: its exit status and what it printed."""
    return await asyncio.to_thread(_main, ["--config", str(config), "check", *args])


def _main(argv: list[str]) -> Run:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(argv)
    return Run(status, out.getvalue())


def _toml(tables: dict[str, dict[str, Any]]) -> str:
    lines: list[str] = []
    for table, values in tables.items():
        lines.append(f"[{table}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the TOML file configures the command."""
    prefixes = ("RELAYBOT_", "OFOX_", "SLACK_", "DISCORD_")
    for name in [n for n in os.environ if n.startswith(prefixes)]:
        monkeypatch.delenv(name)


@pytest.fixture
async def setup(tmp_path: Path, gateway: FakeGateway) -> AsyncIterator[Setup]:
    async with AsyncExitStack() as stack:
        slack = await stack.enter_async_context(FakeSlack(token=SLACK_TOKEN))
        discord = await stack.enter_async_context(FakeDiscord(token=DISCORD_TOKEN))
        weather = await stack.enter_async_context(FakeOpenMeteo())
        yield Setup(tmp_path, gateway, slack, discord, weather)


# --- all well ------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
async def test_every_part_passes_and_the_exit_status_is_zero(setup: Setup, protocol: str) -> None:
    if protocol == "anthropic":
        setup.config["llm"] |= {"protocol": "anthropic", "base_url": setup.gateway.url}
        setup.gateway.enqueue(Stream(anthropic_events("O", stop_reason="max_tokens")))
    else:
        setup.gateway.enqueue(Stream(openai_chunks("O")))
    run = await setup.check()
    assert run.status == 0, run.out
    assert all(line.startswith("✓ ") for line in run.lines), run.out
    model = "openai/gpt-4o" if protocol == "openai" else "anthropic/claude-sonnet-4.5"
    assert run.lines[:3] == [
        "✓ settings valid",
        f"✓ store sqlite {(setup.tmp / 'relaybot.db').as_posix()} opens, schema current",
        f"✓ model gateway {setup.config['llm']['base_url']} answers {model} ({protocol})",
    ]
    assert "✓ the Slack bot token has every scope the manifest asks for" in run.lines
    assert "✓ Slack signing secret set (HTTP mode)" in run.lines
    assert "✓ the Discord bot's Message Content intent is on (under 100 servers)" in run.lines
    assert any(line.startswith("✓ invite: https://discord.com/oauth2/") for line in run.lines)
    assert run.lines[-1] == f"✓ Open-Meteo answers at {setup.weather.url}"
    for secret in (KEY, SLACK_TOKEN, DISCORD_TOKEN):
        assert secret not in run.out
    request = setup.gateway.requests[0].json
    assert request is not None
    assert request["max_tokens"] == 1
    assert setup.slack.methods() == ["auth.test"]
    assert [q.params["name"] for q in setup.weather.requests] == ["Berlin"]


async def test_a_verified_apps_message_content_flag_counts(setup: Setup) -> None:
    async with FakeDiscord(token=DISCORD_TOKEN, application_flags=VERIFIED_APP) as verified:
        setup.config["discord"]["api_url"] = verified.api_url
        setup.gateway.enqueue(Stream(openai_chunks("O")))
        run = await setup.check("--platform", "discord")
    assert run.status == 0, run.out
    assert "✓ the Discord bot's Message Content intent is on" in run.lines
    assert not any("Slack" in line for line in run.lines)


async def test_without_a_key_the_offline_model_passes(tmp_path: Path) -> None:
    config = tmp_path / "relaybot.toml"
    store = f"sqlite:///{tmp_path / 'relaybot.db'}"
    config.write_text(_toml({"store": {"url": store}, "tools": {"weather_enabled": False}}))
    run = await check((), config=config)
    assert run.status == 0, run.out
    assert run.lines[-1] == "✓ offline model (no OFOX_API_KEY or llm.base_url is set)"
    assert len(run.lines) == 3  # settings, store, model: no platform has a token


# --- each failure: its line, and exit status 1 ---------------------------------------------------


async def test_a_refused_key_says_which_setting_to_check(setup: Setup) -> None:
    setup.gateway.enqueue(Error.openai(401, f"Incorrect API key provided: {KEY}", code="x"))
    run = await setup.check()
    assert run.status == 1
    base_url = setup.config["llm"]["base_url"]
    assert (
        f"✗ model gateway {base_url}: the gateway refused the key — check OFOX_API_KEY / "
        "llm.api_key"
    ) in run.lines
    assert KEY not in run.out


async def test_an_unknown_model_says_so(setup: Setup) -> None:
    setup.gateway.enqueue(
        Error.openai(404, "The model `openai/nope` does not exist", code="model_not_found")
    )
    setup.config["llm"]["model"] = "openai/nope"
    run = await setup.check()
    assert run.status == 1
    assert any(
        line.startswith("✗ model gateway")
        and "does not know the model 'openai/nope' — set llm.model" in line
        for line in run.lines
    ), run.out


async def test_an_unreachable_gateway_says_so(setup: Setup) -> None:
    setup.config["llm"]["base_url"] = "http://127.0.0.1:9/v1"  # discard: nothing listens
    run = await setup.check()
    assert run.status == 1
    assert (
        "✗ model gateway http://127.0.0.1:9/v1: unreachable — check llm.base_url and the network"
    ) in run.lines


async def test_a_missing_slack_scope_is_named_with_the_reinstall(setup: Setup) -> None:
    granted = [scope for scope in SLACK_SCOPES if scope != "users:read"]
    async with FakeSlack(token=SLACK_TOKEN, scopes=granted) as slack:
        setup.config["slack"]["api_url"] = slack.api_url
        setup.gateway.enqueue(Stream(openai_chunks("O")))
        run = await setup.check("--platform", "slack")
    assert run.status == 1
    assert (
        "✗ the Slack bot token lacks users:read — add them under OAuth & Permissions → Scopes "
        "(as config/slack-app-manifest.yaml has them), then reinstall the app after adding them"
    ) in run.lines
    assert not any("Discord" in line for line in run.lines)


async def test_a_refused_slack_token(setup: Setup) -> None:
    setup.config["slack"]["bot_token"] = "xoxb-wrong"
    setup.gateway.enqueue(Stream(openai_chunks("O")))
    run = await setup.check("--platform", "slack")
    assert run.status == 1
    assert any(
        line.startswith("✗ Slack refused the bot token (invalid_auth) — check SLACK_BOT_TOKEN")
        for line in run.lines
    ), run.out
    assert "xoxb-wrong" not in run.out


async def test_a_missing_message_content_intent(tmp_path: Path, setup: Setup) -> None:
    off = PRIVILEGED_INTENTS & ~INTENT_MESSAGE_CONTENT
    async with FakeDiscord(token=DISCORD_TOKEN, privileged_intents=off) as discord:
        setup.config["discord"]["api_url"] = discord.api_url
        setup.gateway.enqueue(Stream(openai_chunks("O")))
        run = await setup.check("--platform", "discord")
    assert run.status == 1
    assert (
        "✗ the Discord bot's Message Content intent is off — turn on the Message Content "
        "intent in the Developer Portal → Bot"
    ) in run.lines
    assert any(line.startswith("✓ invite: ") for line in run.lines)


async def test_a_refused_discord_token(setup: Setup) -> None:
    setup.config["discord"]["bot_token"] = "not-the-token"
    setup.gateway.enqueue(Stream(openai_chunks("O")))
    run = await setup.check("--platform", "discord")
    assert run.status == 1
    assert any(
        line.startswith("✗ Discord rejected the bot token — check DISCORD_BOT_TOKEN")
        for line in run.lines
    ), run.out


@pytest.mark.parametrize("kind", ["not a database", "directory cannot be made"])
async def test_a_store_that_cannot_open(setup: Setup, kind: str) -> None:
    blocker = setup.tmp / "garbage.db"
    blocker.write_bytes(b"this is not an SQLite database, not even close" * 100)
    path = blocker if kind == "not a database" else blocker / "sub" / "relaybot.db"
    setup.config["store"]["url"] = f"sqlite:///{path}"
    setup.gateway.enqueue(Stream(openai_chunks("O")))
    run = await setup.check()
    assert run.status == 1
    store = [line for line in run.lines if "store" in line.split(" — ")[0]]
    assert len(store) == 1, run.out
    assert store[0].startswith(f"✗ store sqlite {path.as_posix()}: "), store
    assert store[0].endswith(" — point store.url at a writable SQLite file (its directory must "
                             "be creatable)")  # fmt: skip


async def test_an_unreachable_open_meteo(setup: Setup) -> None:
    setup.config["tools"]["weather_geocoding_url"] = "http://127.0.0.1:9"
    setup.gateway.enqueue(Stream(openai_chunks("O")))
    run = await setup.check()
    assert run.status == 1
    assert run.lines[-1].startswith("✗ Open-Meteo at http://127.0.0.1:9: unreachable (")
    assert run.lines[-1].endswith("or set tools.weather_enabled = false")


async def test_socket_mode_asks_slack_for_the_app_token(setup: Setup) -> None:
    """``apps.connections.open`` with the app-level token, through the fake Socket Mode server
    (which passes the other methods on to the fake Web API). Its pass-on drops the
    ``x-oauth-scopes`` header, so only the app token's line is looked at here."""
    async with FakeSocketMode(app_token=APP_TOKEN, web_api=setup.slack.api_url) as socket_mode:
        setup.config["slack"] = {
            "bot_token": SLACK_TOKEN,
            "app_token": APP_TOKEN,
            "api_url": socket_mode.api_url,
        }
        setup.gateway.enqueue(Stream(openai_chunks("O")), Stream(openai_chunks("O")))
        run = await setup.check("--platform", "slack", "--json")
        setup.config["slack"]["app_token"] = "xapp-1-A1-1-wrong"
        wrong = await setup.check("--platform", "slack", "--json")
    assert _by_name(run)["slack app token"] == {
        "name": "slack app token",
        "ok": True,
        "detail": "Slack accepts the app-level token (Socket Mode)",
        "fix": None,
    }
    refused = _by_name(wrong)["slack app token"]
    assert refused["ok"] is False
    assert refused["detail"] == "Slack refused the app-level token (invalid_auth)"
    assert refused["fix"].startswith("check SLACK_APP_TOKEN")
    assert socket_mode.opens == 1


def _by_name(run: Run) -> dict[str, dict[str, Any]]:
    return {check["name"]: check for check in json.loads(run.out)["checks"]}


# --- Postgres and Redis (the real servers on 127.0.0.1) ------------------------------------------

REDIS = REDIS_URL
NO_REDIS = os.environ.get("RELAYBOT_TEST_NO_REDIS") == "1"
"""Read at import: ``clean_environment`` takes every ``RELAYBOT_*`` variable away."""


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
async def store_url(postgres_database: str) -> str:
    return await fresh_schema(postgres_database)


def database_of(url: str) -> str:
    return url.rpartition("/")[2].partition("?")[0]


def store_line(run: Run) -> str:
    (line,) = [line for line in run.lines if line.split(" — ")[0].startswith("✗ store ")]
    return line


async def test_postgres_and_redis_pass_and_leave_no_key(
    setup: Setup, store_url: str, redis_prefix: str
) -> None:
    setup.config["store"]["url"] = store_url
    setup.config["redis"] = {"url": REDIS, "key_prefix": redis_prefix}
    setup.gateway.enqueue(Stream(openai_chunks("O")), Stream(openai_chunks("O")))
    run = await setup.check()
    as_json = await setup.check("--json")
    assert run.status == 0, run.out
    assert run.lines[1:3] == [
        f"✓ store postgres 127.0.0.1:5432/{database_of(store_url)} opens, schema version "
        f"{SCHEMA_VERSION}",
        f"✓ Redis at {REDIS} answers: a key under {redis_prefix!r} written and read, TIME read",
    ]
    names = [check["name"] for check in json.loads(as_json.out)["checks"]]
    assert names[:4] == ["settings", "store", "redis", "model"]
    client = Redis.from_url(REDIS)
    try:
        assert [key async for key in client.scan_iter(match=f"{redis_prefix}*")] == []
    finally:
        await client.aclose()


async def test_a_postgres_port_where_nothing_listens(setup: Setup) -> None:
    port = closed_port()
    setup.config["store"]["url"] = f"postgresql://postgres@127.0.0.1:{port}/relaybot"
    setup.gateway.enqueue(Stream(openai_chunks("O")))
    run = await setup.check("--platform", "discord")
    assert run.status == 1
    assert store_line(run) == (
        f"✗ store postgres 127.0.0.1:{port}/relaybot: cannot connect (connection refused) — "
        f"is Postgres running at 127.0.0.1:{port}? check the host and port in store.url and the "
        "network"
    )


async def test_a_postgres_database_that_does_not_exist(
    setup: Setup, postgres_database: str
) -> None:
    missing = f"relaybot_missing_{uuid.uuid4().hex[:8]}"
    setup.config["store"]["url"] = f"postgresql://postgres@127.0.0.1:5432/{missing}"
    setup.gateway.enqueue(Stream(openai_chunks("O")))
    run = await setup.check("--platform", "discord")
    assert run.status == 1
    assert store_line(run) == (
        f"✗ store postgres 127.0.0.1:5432/{missing}: database {missing} does not exist — "
        f"create it (createdb -h 127.0.0.1 -p 5432 {missing}) or fix the database named in "
        "store.url"
    )


async def test_a_refused_postgres_user_and_its_password_never_printed(
    setup: Setup, postgres_database: str
) -> None:
    user, password = f"relaybot_nobody_{uuid.uuid4().hex[:8]}", "s3cret-pg-password"
    database = database_of(postgres_database)
    setup.config["store"]["url"] = f"postgresql://{user}:{password}@127.0.0.1:5432/{database}"
    setup.gateway.enqueue(Stream(openai_chunks("O")))
    run = await setup.check("--platform", "discord")
    assert run.status == 1
    line = store_line(run)
    assert line.startswith(
        f"✗ store postgres 127.0.0.1:5432/{database}: Postgres refused user {user} ("
    ), line
    assert line.endswith(
        " — check the user and password in store.url, and pg_hba.conf at 127.0.0.1:5432"
    )
    assert password not in run.out


async def test_a_postgres_schema_from_a_newer_relaybot(setup: Setup, store_url: str) -> None:
    connection = await asyncpg.connect(store_url, timeout=10)  # search_path: the test's schema
    try:
        await connection.execute("CREATE TABLE relaybot_schema (version integer PRIMARY KEY)")
        await connection.execute("INSERT INTO relaybot_schema VALUES (99)")
    finally:
        await connection.close()
    setup.config["store"]["url"] = store_url
    setup.gateway.enqueue(Stream(openai_chunks("O")))
    run = await setup.check("--platform", "discord")
    assert run.status == 1
    line = store_line(run)
    assert line.startswith(
        f"✗ store postgres 127.0.0.1:5432/{database_of(store_url)}: written by a newer "
        f"relaybot (schema version 99, this one knows up to {SCHEMA_VERSION})"
    ), line
    assert line.endswith(
        " — run the relaybot that wrote it, or point store.url at another database"
    )


async def test_a_wrong_redis_port(setup: Setup, redis_prefix: str) -> None:
    port = closed_port()
    setup.config["redis"] = {"url": f"redis://127.0.0.1:{port}/0", "key_prefix": redis_prefix}
    setup.gateway.enqueue(Stream(openai_chunks("O")))
    run = await setup.check("--platform", "discord", "--json")
    assert run.status == 1
    redis = _by_name(run)["redis"]
    assert redis["ok"] is False
    assert redis["detail"].startswith(f"cannot connect to Redis at redis://127.0.0.1:{port}/0 (")
    assert redis["fix"] == (
        "is Redis running there? check redis.url (RELAYBOT_REDIS__URL: redis://host:6379/0)"
    )


async def test_a_redis_password_is_never_printed(setup: Setup, redis_prefix: str) -> None:
    """The local Redis lets the default user in with any password, and refuses other users."""
    password = "s3cret-redis-password"
    setup.config["redis"] = {
        "url": f"redis://:{password}@127.0.0.1:6379/0",
        "key_prefix": redis_prefix,
    }
    setup.gateway.enqueue(Stream(openai_chunks("O")), Stream(openai_chunks("O")))
    accepted = await setup.check("--platform", "discord")
    setup.config["redis"]["url"] = f"redis://relaybot-nobody:{password}@127.0.0.1:6379/0"
    refused = await setup.check("--platform", "discord")
    assert accepted.status == 0, accepted.out
    assert any(line.startswith(f"✓ Redis at {REDIS} answers") for line in accepted.lines)
    assert refused.status == 1
    assert any(
        line.startswith("✗ Redis at redis://relaybot-nobody@127.0.0.1:6379/0 refused the login")
        and line.endswith(
            " — check the user and password in redis.url (redis://user:password@host:6379/0)"
        )
        for line in refused.lines
    ), refused.out
    for run in (accepted, refused):
        assert password not in run.out


async def test_a_read_only_redis_replica(
    setup: Setup, redis_prefix: str, spawn: Spawn, tmp_path: Path
) -> None:
    """A real ``redis-server`` started as the replica of a primary that is not there: it
    answers PING and GET, and refuses writes (READONLY)."""
    server = shutil.which("redis-server")
    if server is None:
        if NO_REDIS:
            pytest.skip("no redis-server (RELAYBOT_TEST_NO_REDIS=1)")
        pytest.fail("this test needs redis-server on the PATH")
    port = closed_port()
    replica = await spawn(
        server, "--port", str(port), "--bind", "127.0.0.1", "--replicaof", "127.0.0.1",
        str(closed_port()), "--save", "", "--appendonly", "no", "--dir", str(tmp_path),
        env=os.environ,
    )  # fmt: skip
    await ready(replica)
    setup.config["redis"] = {"url": f"redis://127.0.0.1:{port}/0", "key_prefix": redis_prefix}
    setup.gateway.enqueue(Stream(openai_chunks("O")))
    run = await setup.check("--platform", "discord")
    assert run.status == 1
    assert (
        f"✗ Redis at redis://127.0.0.1:{port}/0 is a read-only replica — point redis.url at "
        "the primary"
    ) in run.lines


async def ready(server: asyncio.subprocess.Process) -> None:
    """Until ``redis-server`` logs that it accepts connections."""
    assert server.stdout is not None
    async with asyncio.timeout(20):
        while b"Ready to accept connections" not in await server.stdout.readline():
            assert server.returncode is None, "redis-server exited"


async def test_slack_http_on_postgres_without_redis_says_why(setup: Setup, store_url: str) -> None:
    setup.config["store"]["url"] = store_url
    setup.gateway.enqueue(Stream(openai_chunks("O")), Stream(openai_chunks("O")))
    run = await setup.check("--platform", "slack", "--json")
    setup.config["fleet"] = {"single_worker": True}
    single = await setup.check("--platform", "slack", "--json")
    problem = fleet_problem(load_settings(environ={"RELAYBOT_STORE__URL": store_url}))
    assert problem is not None
    assert _by_name(run)["redis"] == {
        "name": "redis",
        "ok": False,
        "detail": "Slack HTTP mode on a Postgres store without redis.url",
        "fix": problem,
    }
    assert run.status == 1
    assert "redis" not in _by_name(single)
    assert single.status == 0, single.out


# --- settings, --json, timeouts ------------------------------------------------------------------


async def test_bad_settings_are_the_only_line_and_exit_two(tmp_path: Path) -> None:
    config = tmp_path / "relaybot.toml"
    config.write_text(_toml({"llm": {"max_tokens": -5}}))
    run = await check((), config=config)
    assert run.status == 2
    assert len(run.lines) == 1
    assert run.lines[0].startswith("✗ config error: llm.max_tokens: Input should be greater than 0")
    assert run.lines[0].endswith(" — change that value in the TOML file or the environment "
                                 "variable it names")  # fmt: skip
    as_json = await check(("--json",), config=config)
    assert as_json.status == 2
    assert json.loads(as_json.out)["checks"][0]["name"] == "settings"


async def test_json_is_one_object_with_every_check(setup: Setup) -> None:
    setup.gateway.enqueue(Error.openai(401, "no", code="invalid_api_key"))
    run = await setup.check("--json")
    assert run.status == 1
    assert len(run.lines) == 1
    document = json.loads(run.out)
    assert set(document) == {"ok", "checks"}
    assert document["ok"] is False
    names = [check["name"] for check in document["checks"]]
    assert names == [
        "settings", "store", "model", "slack token", "slack scopes", "slack signing secret",
        "discord token", "discord intent", "discord invite", "weather",
    ]  # fmt: skip
    for check in document["checks"]:
        assert set(check) == {"name", "ok", "detail", "fix"}
        assert isinstance(check["detail"], str)
        assert (check["fix"] is None) == check["ok"]
    model = _by_name(run)["model"]
    assert model["fix"] == "check OFOX_API_KEY / llm.api_key"


async def test_a_part_that_never_answers_fails_at_its_time_limit(
    tmp_path: Path, gateway: FakeGateway
) -> None:
    gateway.enqueue(Hang())
    settings = load_settings(
        environ={
            "OFOX_API_KEY": KEY,
            "RELAYBOT_LLM__BASE_URL": gateway.url + "/v1",
            "RELAYBOT_STORE__URL": "memory://",
            "RELAYBOT_TOOLS__WEATHER_ENABLED": "false",
        }
    )
    checks = await run_checks(settings, platform=None, limit=0.2)
    assert [c.line() for c in checks][-1] == (
        f"✗ model gateway {gateway.url}/v1: no answer within 0.2 s — check llm.base_url and "
        "the network"
    )
    gateway.release_stalls()


# --- the scopes the check wants are the manifests' -----------------------------------------------


@pytest.mark.parametrize("manifest", ["slack-app-manifest.yaml", "slack-app-manifest.http.yaml"])
def test_the_scopes_checked_are_those_the_manifests_ask_for(manifest: str) -> None:
    loaded = yaml.safe_load((ROOT / "config" / manifest).read_text(encoding="utf-8"))
    assert sorted(loaded["oauth_config"]["scopes"]["bot"]) == sorted(SLACK_SCOPES)
