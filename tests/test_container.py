"""The container: the Dockerfile and compose.yaml read as Docker reads them, checked against
what relaybot does (its command, its settings, its HTTP server's port and ``/ready``); and,
where a Docker daemon runs, the image built and asked for its version."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath

import pytest
import yaml

from bots.cli import build_parser
from bots.settings import RuntimeSettings, unknown_variables
from core.store import validate_store_url

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str

    def exec_form(self) -> list[str]:
        form = json.loads(self.arguments)
        assert isinstance(form, list), f"{self.keyword} should be in exec (JSON) form"
        return [str(part) for part in form]


def instructions() -> list[Instruction]:
    """The Dockerfile's instructions: comments dropped, ``\\`` continuations joined."""
    text = (ROOT / "Dockerfile").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    found = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            found.append(Instruction(keyword.upper(), arguments.strip()))
    return found


def the(keyword: str) -> Instruction:
    """The instruction that counts: Docker keeps the last of each of these."""
    matching = [i for i in instructions() if i.keyword == keyword]
    assert matching, f"the Dockerfile has no {keyword}"
    return matching[-1]


def environment() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in instructions():
        if instruction.keyword == "ENV":
            for pair in instruction.arguments.split():
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def command_port() -> int:
    """The port the image's command serves Slack's HTTP events on, as relaybot parses it."""
    args = build_parser().parse_args(the("CMD").exec_form())
    assert (args.command, args.http, args.host) == ("slack", True, "0.0.0.0")
    return int(args.port)


def compose_service() -> dict[str, object]:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert list(services) == ["slack"]
    service: dict[str, object] = services["slack"]
    return service


def test_the_image_runs_the_relaybot_command_as_the_slack_http_bot() -> None:
    assert the("FROM").arguments == "python:3.12-slim"
    assert the("ENTRYPOINT").exec_form() == ["relaybot"]
    assert the("EXPOSE").arguments == str(command_port()) == "3000"
    assert the("STOPSIGNAL").arguments == "SIGTERM"


def test_the_image_installs_relaybot_at_the_pinned_versions() -> None:
    runs = " ".join(i.arguments for i in instructions() if i.keyword == "RUN")
    assert "pip install -c constraints.txt ." in runs
    pinned = {
        re.sub(r"[-_.]+", "-", line.split("==")[0]).lower()
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line
    }
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement)
        assert name is not None
        assert re.sub(r"[-_.]+", "-", name.group()).lower() in pinned, requirement


def test_the_bot_runs_as_a_user_of_its_own() -> None:
    user = the("USER").arguments
    assert user not in {"root", "0", "0:0"}
    assert "useradd --system --uid 10001 --user-group" in " ".join(
        i.arguments for i in instructions() if i.keyword == "RUN"
    )


def test_the_store_is_a_file_in_the_data_volume() -> None:
    volume = the("VOLUME").exec_form()
    url = environment()["RELAYBOT_STORE__URL"]
    assert unknown_variables(environment()) == []  # every RELAYBOT_* variable is a setting
    assert validate_store_url(url) == url
    path = PurePosixPath(url.removeprefix("sqlite:///"))
    assert path.is_absolute()
    assert str(path.parent) in volume


def test_the_healthcheck_asks_ready_on_the_served_port() -> None:
    healthcheck = the("HEALTHCHECK").arguments
    options, _, command = healthcheck.partition("CMD ")
    for option in ("--interval=", "--timeout=", "--start-period=", "--retries="):
        assert option in options
    probe = json.loads(command)
    assert probe[:2] == ["python", "-c"]  # slim images have no curl
    assert f"http://127.0.0.1:{command_port()}/ready" in probe[2]


def test_compose_runs_the_image_with_its_port_a_volume_and_the_grace() -> None:
    service = compose_service()
    assert service["build"] == "."
    assert service["env_file"] == ".env"
    assert service["ports"] == [f"{command_port()}:{command_port()}"]
    store_dir = str(
        PurePosixPath(environment()["RELAYBOT_STORE__URL"].removeprefix("sqlite:///")).parent
    )
    volumes = service["volumes"]
    assert isinstance(volumes, list)
    assert [volume.split(":")[1] for volume in volumes] == [store_dir]
    named = volumes[0].split(":")[0]
    assert named in yaml.safe_load((ROOT / "compose.yaml").read_text())["volumes"]
    assert "healthcheck" not in service  # the Dockerfile's
    grace = service["stop_grace_period"]
    assert isinstance(grace, str)
    assert float(grace.removesuffix("s")) > RuntimeSettings().shutdown_grace


def test_the_context_leaves_out_the_environment_and_secrets() -> None:
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    for entry in (".git", ".venv", ".env", "tests", "**/__pycache__"):
        assert entry in ignored


def test_the_licence_is_the_one_pyproject_names() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "MIT"}
    licence = (ROOT / "LICENSE").read_text()
    assert licence.startswith("MIT License\n\nCopyright (c) the relaybot authors\n")


def docker_runs() -> bool:
    if shutil.which("docker") is None:
        return False
    info = subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False)
    return info.returncode == 0


@pytest.mark.skipif(not docker_runs(), reason="no Docker daemon on this machine")
@pytest.mark.timeout(900)
def test_the_image_builds_and_runs_relaybot() -> None:
    tag = "relaybot:test"
    subprocess.run(["docker", "build", "-t", tag, str(ROOT)], check=True, timeout=880)
    version = subprocess.run(
        ["docker", "run", "--rm", tag, "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout == f"relaybot {metadata.version('relaybot')}\n"
    user = subprocess.run(
        ["docker", "image", "inspect", "-f", "{{.Config.User}}", tag],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert user.stdout.strip() == "relaybot"
