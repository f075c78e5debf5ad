"""MCP servers for real: the fake server of ``tests/fakes/mcp_servers.py`` started over stdio as
a child process, and over streamable HTTP as another; the model is the loopback gateway.

Starting a server is a Python process importing the SDK (a second or two on a busy machine), so
each test starts as few as it needs; one HTTP server serves the whole module."""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import logging
import os
import signal
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import aclosing
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp.client.stdio import DEFAULT_INHERITED_ENV_VARS

from bots.cli import main
from bots.runtime import Runtime
from bots.settings import load_settings
from core import mcp_servers
from core.client import LLMClient, Timeouts
from core.engine import ConversationEngine, EngineConfig
from core.events import EngineEvent, ToolStarted, TurnFinished
from core.mcp_results import wrap_tool_result
from core.mcp_servers import ToolServers
from core.mcp_settings import MCPServerSettings
from core.messages import ConversationKey, ToolCall, UserMessage
from core.protocols import AnthropicProtocol, OpenAIProtocol
from core.retry import RetryPolicy
from core.store.journal import Lease
from core.store.memory import MemoryStore
from core.tools import ToolContext, ToolRegistry
from tests.fakes.llm_gateway import FakeGateway, Stream
from tests.fakes.mcp_servers import HttpServerProcess, stdio_server
from tests.fakes.streams import anthropic_events, openai_chunks
from tests.support.clock import FakeTime
from tests.support.waiting import until

KEY = ConversationKey(platform="slack", workspace="T1", channel="C1", thread="1700000000.000100")
ELSEWHERE = ConversationKey(platform="slack", workspace="T1", channel="C2", thread="1700000000.2")
CONFIG = EngineConfig(model="fake/model", system_prompt="You are a test bot.", max_rounds=4)
NO_WAIT = RetryPolicy(max_attempts=2, base_delay=0.0, max_delay=0.0, deadline=30.0)
START = 60.0
"""Seconds a server may take to start: generous for a loaded machine (a hang still fails)."""
CALL = 30.0
"""Seconds a call may take, reconnection included."""
SEARCH = "3 issues for 'login':\n#1 login is broken\n#2 login is broken\n#3 login is broken"
_orders = itertools.count(1)


@pytest.fixture(scope="module")
def http_server() -> Iterator[HttpServerProcess]:
    """The fake server over streamable HTTP, shared by the module's tests (none kills it)."""
    server = HttpServerProcess()
    server.start()
    yield server
    server.kill()


@contextlib.asynccontextmanager
async def servers(*tables: MCPServerSettings, **options: Any) -> AsyncIterator[ToolServers]:
    async with ToolServers.open(tables, environ=os.environ, start_timeout=START, **options) as s:
        yield s


async def registry_of(opened: ToolServers) -> ToolRegistry:
    registry = ToolRegistry()
    opened.add_to(registry)
    return registry


def context(key: ConversationKey = KEY) -> ToolContext:
    return ToolContext(key=key, user_id="U1", user_name="Ada", platform="slack")


def call(name: str, arguments: dict[str, Any] | None = None, id: str = "c1") -> ToolCall:
    return ToolCall(id=id, name=name, arguments=arguments or {}, raw_arguments="{}")


async def turn(
    gateway: FakeGateway,
    http: httpx2.AsyncClient,
    tools: ToolRegistry,
    *,
    anthropic: bool = False,
    key: ConversationKey = KEY,
) -> list[EngineEvent]:
    """One turn of Ada's question in ``key``'s thread, the model being the gateway."""
    client = LLMClient(
        http=http, protocol=AnthropicProtocol() if anthropic else OpenAIProtocol(),
        base_url=gateway.url if anthropic else gateway.url + "/v1", api_key="sk-test",
        timeouts=Timeouts(connect=10, read_idle=30, total=60),
    )  # fmt: skip
    store = MemoryStore()
    await store.accept(
        event_id=f"test:{next(_orders)}", key=key, order="000001",
        question=UserMessage(text="Is login broken?", author_id="U1", author_name="Ada"),
        platform="slack", timezone=None, claim_ttl=60,
    )  # fmt: skip
    lease = await store.take(key, owner="worker-1", lease_seconds=60)
    assert isinstance(lease, Lease)
    engine = ConversationEngine(client=client, store=store, tools=tools, config=CONFIG,
                                retry=NO_WAIT)  # fmt: skip
    async with aclosing(engine.run_turn(lease)) as events:
        return [event async for event in events]


def tool_messages(gateway: FakeGateway, request: int, *, anthropic: bool = False) -> list[Any]:
    """The tool results the model was sent in ``request``: (id, content) pairs, and whether
    each is an error for Anthropic."""
    messages = (gateway.requests[request].json or {})["messages"]
    if anthropic:  # tool_result blocks in the last user message
        return [(block["tool_use_id"], block["content"], block.get("is_error", False))
                for block in messages[-1]["content"]]  # fmt: skip
    return [(m["tool_call_id"], m["content"]) for m in messages if m["role"] == "tool"]


def offered(gateway: FakeGateway, request: int = 0) -> list[str]:
    body = gateway.requests[request].json or {}
    return [t.get("name") or t["function"]["name"] for t in body.get("tools", [])]


# --- the model calls a server's tools -------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["openai", "anthropic"])
async def test_the_model_calls_tools_of_a_stdio_and_an_http_server(
    protocol: str, gateway: FakeGateway, http: httpx2.AsyncClient, http_server: HttpServerProcess
) -> None:
    """Two calls in one round, one per transport; the dotted ``repo.get.file`` is offered as
    ``web__repo_get_file`` and called by its own name; the results come back in the next
    request, wrapped."""
    calls = [("call_1", "fake__search_issues", '{"query": "login"}'),
             ("call_2", "web__repo_get_file", '{"path": "README.md"}')]  # fmt: skip
    anthropic = protocol == "anthropic"
    first = anthropic_events(tool_uses=calls) if anthropic else openai_chunks(tool_calls=calls)
    then = anthropic_events("It is.") if anthropic else openai_chunks("It is.")
    gateway.enqueue(Stream(first), Stream(then))
    web = MCPServerSettings(name="web", url=http_server.url, allowed_tools=("repo.get.file",))
    async with servers(stdio_server("fake", denied_tools=("hang",)), web) as opened:
        events = await turn(gateway, http, await registry_of(opened), anthropic=anthropic)
    assert isinstance(events[-1], TurnFinished)
    assert [e.activity for e in events if isinstance(e, ToolStarted)] == [
        "Using fake: search_issues", "Using web: repo.get.file"
    ]  # fmt: skip
    assert offered(gateway) == [
        "fake__search_issues", "fake__repo_get_file", "fake__fail", "fake__environment",
        "fake__whoami", "fake__pid", "web__repo_get_file",
    ]  # fmt: skip
    body = gateway.requests[0].json or {}
    schemas = [t.get("input_schema") or t["function"]["parameters"] for t in body["tools"]]
    assert schemas[0]["required"] == ["query"]  # the server's own schema
    results = [
        wrap_tool_result("fake", "search_issues", SEARCH),
        wrap_tool_result("web", "repo.get.file", "contents of README.md"),
    ]
    extra = (False,) if anthropic else ()
    assert tool_messages(gateway, 1, anthropic=anthropic) == [
        ("call_1", results[0], *extra), ("call_2", results[1], *extra)
    ]  # fmt: skip


async def test_a_hung_server_hits_the_timeout_and_the_turn_finishes(
    gateway: FakeGateway, http: httpx2.AsyncClient
) -> None:
    gateway.enqueue(
        Stream(openai_chunks(tool_calls=[("call_1", "fake__hang", "{}")])),
        Stream(openai_chunks("The server did not answer.")),
    )
    async with servers(stdio_server("fake", "--only", "hang", timeout=0.5)) as opened:
        events = await turn(gateway, http, await registry_of(opened))
        assert opened.status("fake").state == "up"  # a slow call is not a dead server
    final = events[-1]
    assert isinstance(final, TurnFinished)
    assert final.text == "The server did not answer."
    assert tool_messages(gateway, 1) == [("call_1", "fake__hang did not finish within 0.5 s")]


async def test_channels_hide_a_servers_tools_elsewhere(
    gateway: FakeGateway, http: httpx2.AsyncClient
) -> None:
    """In C2 the model is not shown the tools, and a call it makes up anyway is refused."""
    gateway.enqueue(
        Stream(openai_chunks(tool_calls=[("call_1", "fake__search_issues", '{"query": "x"}')])),
        Stream(openai_chunks("I cannot search here.")),
    )
    table = stdio_server("fake", "--only", "search_issues", channels=("C1",))
    async with servers(table) as opened:
        tools = await registry_of(opened)
        events = await turn(gateway, http, tools, key=ELSEWHERE)
        assert [spec.name for spec in tools.specs(KEY)] == ["fake__search_issues"]
    assert isinstance(events[-1], TurnFinished)
    assert offered(gateway, 0) == []
    assert tool_messages(gateway, 1) == [
        ("call_1", "there is no tool named fake__search_issues; available: none")
    ]


# --- failures -----------------------------------------------------------------------------------


async def test_a_killed_stdio_server_is_started_again_by_the_next_call() -> None:
    async with servers(stdio_server("fake", "--only", "pid", timeout=CALL)) as opened:
        tools = await registry_of(opened)
        first = await tools.run(call("fake__pid"), context())
        os.kill(int(first.summary), signal.SIGKILL)
        await until(lambda: opened.status("fake").state == "down", "the server seen gone")
        second = await tools.run(call("fake__pid"), context())
        assert second.ok, second.result.content
        assert second.summary != first.summary
        assert opened.status("fake").state == "up"


async def test_closing_a_live_server_ends_it_without_waiting_out_the_close_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The owner task winds the connection down and returns (a shutdown within its grace), so
    the bound on that wait — made an hour here — is never what ends it."""
    monkeypatch.setattr(mcp_servers, "_CLOSE_WAIT", 3600.0)
    async with servers(stdio_server("fake", "--only", "pid", timeout=CALL)) as opened:
        tools = await registry_of(opened)
        ran = await tools.run(call("fake__pid"), context())
        assert ran.ok
    assert opened.status("fake").state == "down"
    with contextlib.suppress(ProcessLookupError):
        os.kill(int(ran.summary), 0)
        pytest.fail("the server's process outlived its close")


async def test_an_http_server_that_went_away_is_retried_after_a_backoff() -> None:
    """Killed: the call in flight fails; the next tries to reconnect and fails; the one after
    that, within the backoff, fails at once; once the server is back and the backoff passed,
    the call reconnects."""
    server = HttpServerProcess()
    server.start()
    clock = FakeTime()
    try:
        table = MCPServerSettings(name="web", url=server.url, timeout=CALL)
        async with servers(table, reconnect_delay=10.0, clock=clock) as opened:
            tools = await registry_of(opened)
            assert (await tools.run(call("web__pid"), context())).ok
            server.kill()
            lost = await tools.run(call("web__pid"), context())
            failed = await tools.run(call("web__pid"), context())
            waiting = await tools.run(call("web__pid"), context())
            server.start()
            still = await tools.run(call("web__pid"), context())
            clock.now += 10.0
            back = await tools.run(call("web__pid"), context())
    finally:
        server.kill()
    assert lost.result.content == (
        "the connection to the MCP server web was lost during the call (it may or may not "
        "have run); relaybot reconnects on the next call"
    )
    assert failed.result.content.startswith("the MCP server web is unavailable (ConnectError")
    assert waiting.result.content.startswith("the MCP server web is unavailable (ConnectError")
    assert waiting.result.content.endswith("relaybot tries again in 10 s")
    assert still.result.content.endswith("relaybot tries again in 10 s")
    assert back.ok, back.result.content


async def test_a_server_that_fails_to_start_leaves_the_bot_running_without_its_tools(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    config = tmp_path / "relaybot.toml"
    tables = (
        stdio_server("fake", "--only", "search_issues"),
        stdio_server("broken", "--fail-start"),
    )
    config.write_text(toml_of(*tables), encoding="utf-8")
    settings = load_settings(config, environ={})
    caplog.set_level(logging.INFO, logger="relaybot.mcp")
    lines: list[str] = []
    async with Runtime.start(settings, announce=lines.append, store=MemoryStore()) as runtime:
        assert [(t.name, t.source) for t in runtime.tools] == [
            ("get_weather", "built-in"), ("fake__search_issues", "fake")
        ]  # fmt: skip
        outcome = await runtime.tools.run(
            call("fake__search_issues", {"query": "login"}), context()
        )
        assert outcome.summary == "3 issues for 'login':"
    broken = [r.getMessage() for r in caplog.records if "broken" in r.getMessage()]
    assert broken == [
        "MCP server broken did not start (it closed the connection); its tools are left out"
    ]


# --- what a server is given -----------------------------------------------------------------------

SECRETS = {
    "OFOX_API_KEY": "sk-ofox-secret-0123456789",
    "SLACK_BOT_TOKEN": "xoxb-secret-0123456789",
    "SLACK_APP_TOKEN": "xapp-secret-0123456789",
    "DISCORD_BOT_TOKEN": "discord-secret-0123456789",
    "RELAYBOT_LLM__API_KEY": "sk-relaybot-secret-0123456789",
}


async def test_a_stdio_server_gets_none_of_relaybots_secrets_and_no_user_unless_asked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("GREETING_SOURCE", "hello")
    quiet = stdio_server("quiet", "--only", "environment", "--only", "whoami",
                         env={"GREETING": "${GREETING_SOURCE}"})  # fmt: skip
    told = stdio_server("told", "--only", "whoami", send_user=True)
    async with servers(quiet, told) as opened:
        tools = await registry_of(opened)
        environment = await tools.run(call("quiet__environment"), context())
        anonymous = await tools.run(call("quiet__whoami"), context())
        named = await tools.run(call("told__whoami"), context())
    names = set(environment.summary.strip("[]").replace('"', "").split(", "))
    assert "GREETING" in names
    assert names <= {*DEFAULT_INHERITED_ENV_VARS, "GREETING", "PYTHONPATH", "LC_CTYPE"}
    assert not names & set(SECRETS)
    assert anonymous.summary == "nobody"
    assert named.summary == ('{"id": "U1", "name": "Ada", "platform": "slack", "workspace": "T1"}')


# --- relaybot tools ---------------------------------------------------------------------------


async def test_relaybot_tools_lists_sources_and_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [n for n in os.environ if n.startswith(("RELAYBOT_", "OFOX_"))]:
        monkeypatch.delenv(name)
    config = tmp_path / "relaybot.toml"
    config.write_text(
        toml_of(
            stdio_server("fake", "--only", "search_issues", "--only", "repo.get.file",
                         channels=("C1", "C0")),
            stdio_server("broken", "--fail-start"),
        ),
        encoding="utf-8",
    )  # fmt: skip
    status, out = await asyncio.to_thread(_main, ["--config", str(config), "tools"])
    assert (status, out.splitlines()) == (1, [
        "NAME                 SOURCE    STATUS  CHANNELS",
        "get_weather          built-in  up      all",
        "fake__search_issues  fake      up      C0,C1",
        "fake__repo_get_file  fake      up      C0,C1",
        "-                    broken    down    all  (it closed the connection)",
    ])  # fmt: skip


def _main(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(argv)
    return status, out.getvalue()


def toml_of(*tables: MCPServerSettings) -> str:
    """``[[tools.mcp]]`` tables as an operator writes them."""
    lines: list[str] = []
    for table in tables:
        lines.append("[[tools.mcp]]")
        for key, value in table.model_dump(exclude_defaults=True).items():
            lines.append(f"{key} = {_toml_value(value)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value).lower() if isinstance(value, bool) else str(value)
