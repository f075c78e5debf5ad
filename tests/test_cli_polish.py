"""The command line a new user meets: ``--version``, help that names defaults and variables,
an empty prompt refused, a stray variable warned about, store URL mistakes as one line, and
notices on stderr. Real processes where the output of a whole run matters."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest

from bots.cli import main
from tests.fakes.llm_gateway import FakeGateway, Stream
from tests.fakes.streams import openai_chunks

OFFLINE_NOTICE = "relaybot: no OFOX_API_KEY or base URL is configured, so the offline model answers"


@dataclass
class Run:
    status: int
    stdout: str
    stderr: str


async def relaybot(*args: str, stdin: str = "", **environ: str) -> Run:
    """The command in a clean environment: only ``environ`` configures it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RELAYBOT_", "OFOX_"))}
    env |= environ
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bots", *args, env=env, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(stdin.encode()), timeout=30)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"relaybot {metadata.version('relaybot')}\n"


def help_of(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    return " ".join(capsys.readouterr().out.split())  # argparse wraps lines anywhere


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("ask", "--protocol {anthropic,openai} wire protocol (default openai; "
                "RELAYBOT_LLM__PROTOCOL)"),
        ("ask", "--base-url BASE_URL gateway base URL (default OfoxAI's for the protocol; "
                "RELAYBOT_LLM__BASE_URL)"),
        ("ask", "(default OfoxAI's for the protocol; RELAYBOT_LLM__MODEL)"),
        ("ask", "(default relaybot's; RELAYBOT_LLM__SYSTEM_PROMPT)"),
        ("ask", "(default 4096; RELAYBOT_LLM__MAX_TOKENS)"),
        ("ask", "(default the model's; RELAYBOT_LLM__TEMPERATURE)"),
        ("ask", "total seconds per model call (default 600.0; RELAYBOT_LLM__TIMEOUTS__TOTAL)"),
        ("ask", "(default 60.0; RELAYBOT_LLM__TIMEOUTS__READ_IDLE)"),
        ("ask", "(default 4; RELAYBOT_LLM__RETRY__MAX_ATTEMPTS)"),
        ("slack", "--port PORT with --http: port to listen on (default 3000)"),
        ("slack", "--host HOST with --http: address to listen on (default 0.0.0.0)"),
        ("offline-llm", "--port PORT port to listen on (default 8080)"),
        ("offline-llm", "--pace PACE seconds between words (default 0.03)"),
    ],
)  # fmt: skip
def test_option_help_names_its_default_and_variable(
    command: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert expected in help_of(command, capsys)


def test_top_level_options_name_their_variables(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "TOML settings file (default none; RELAYBOT_CONFIG)" in shown
    assert "RELAYBOT_LOG_LEVEL" in shown


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t"])
def test_an_empty_prompt_is_refused_like_a_missing_one(
    prompt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["ask", prompt])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: relaybot ask")
    assert err.endswith("relaybot ask: error: argument prompt: is empty: say what to ask\n")


async def test_an_unknown_variable_warns_at_the_default_level(gateway: FakeGateway) -> None:
    gateway.enqueue(Stream(openai_chunks("Hi.")))
    run = await relaybot(
        "ask", "--once", "--json", "--base-url", gateway.url + "/v1", "hello",
        RELAYBOT_LLM__MODLE="gpt-4o", RELAYBOT_SOMETHING_ELSE="1",
    )  # fmt: skip
    assert run.status == 0
    assert json.loads(run.stdout)["text"] == "Hi."
    lines = run.stderr.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(
        "ignoring RELAYBOT_LLM__MODLE: relaybot has no such setting"
        " (did you mean RELAYBOT_LLM__MODEL?)"
    )
    assert lines[1].endswith("ignoring RELAYBOT_SOMETHING_ELSE: relaybot has no such setting")


@pytest.mark.parametrize("command", [("ask", "hello"), ("console",)])
async def test_an_unknown_store_scheme_is_one_line_and_exit_2(command: tuple[str, ...]) -> None:
    run = await relaybot(*command, RELAYBOT_STORE__URL="mysql://bot:hunter2@db/relaybot")
    assert run.status == 2
    assert run.stdout == ""
    assert run.stderr.startswith(
        "relaybot: config error: store.url: unknown store URL scheme 'mysql'; expected"
        " memory://, sqlite:///path/to/file.db or postgresql://user@host:5432/db"
    )
    assert run.stderr.endswith("[from RELAYBOT_STORE__URL]\n")
    assert len(run.stderr.splitlines()) == 1
    assert "hunter2" not in run.stderr


async def test_an_explicit_sqlite_path_in_a_missing_directory_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such"
    run = await relaybot("console", RELAYBOT_STORE__URL=f"sqlite:///{missing}/relaybot.db")
    assert run.status == 1
    assert run.stderr.splitlines()[-1] == (
        f"relaybot: the store's directory {missing} does not exist: create it, or fix the URL"
    )
    assert not (tmp_path / "no").exists()


async def test_the_default_store_directory_is_made(tmp_path: Path) -> None:
    data = tmp_path / "xdg-data"
    run = await relaybot(
        "console", stdin="hello\n", HOME=str(tmp_path), XDG_DATA_HOME=str(data),
        RELAYBOT_LLM__OFFLINE_PACE="0",
    )  # fmt: skip
    assert run.status == 0, run.stderr
    assert (data / "relaybot" / "relaybot.db").is_file()


async def test_the_console_offline_notice_goes_to_stderr() -> None:
    run = await relaybot(
        "console", stdin="hello\n", RELAYBOT_STORE__URL="memory://", RELAYBOT_LLM__OFFLINE_PACE="0"
    )
    assert run.status == 0
    assert run.stderr.startswith(OFFLINE_NOTICE)
    assert len(run.stderr.splitlines()) == 1
    assert run.stdout.startswith("I'm relaybot's offline model")
    assert "relaybot:" not in run.stdout
