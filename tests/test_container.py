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
from typing import Any
from urllib.parse import urlsplit

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


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def compose_service() -> dict[str, object]:
    """The one service ``docker compose up -d`` starts (the others have a profile)."""
    services = compose()["services"]
    assert [name for name, service in services.items() if "profiles" not in service] == ["slack"]
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


# --- fleet mode: `docker compose --profile fleet up -d` ----------------------------------------

FLEET = {"postgres", "redis", "worker-1", "worker-2", "lb"}
WORKERS = ("worker-1", "worker-2")


def fleet() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = compose()["services"]
    return {name: s for name, s in services.items() if "fleet" in s.get("profiles", [])}


def test_the_fleet_profile_has_postgres_redis_two_workers_and_a_load_balancer() -> None:
    services = fleet()
    assert set(services) == FLEET
    for service in services.values():
        assert service["profiles"] == ["fleet"]
    assert services["postgres"]["image"] == "postgres:17-alpine"
    assert services["redis"]["image"] == "redis:8-alpine"
    assert services["lb"]["image"] == "nginx:alpine"


def test_the_workers_run_the_image_on_the_shared_store_and_redis() -> None:
    services, slack = fleet(), compose_service()
    environments = [services[name]["environment"] for name in WORKERS]
    assert environments[0] == environments[1]
    for name in WORKERS:
        worker = services[name]
        assert (worker["build"], worker["image"]) == (slack["build"], slack["image"])
        assert "command" not in worker  # the Dockerfile's: relaybot slack --http
        assert worker["env_file"] == ".env"
        assert worker["stop_grace_period"] == slack["stop_grace_period"]
        assert "ports" not in worker  # reached through lb only
    environment = environments[0]
    assert unknown_variables(environment) == []
    store = environment["RELAYBOT_STORE__URL"]
    assert validate_store_url(store) == store
    parts = urlsplit(store)
    assert (parts.scheme, parts.hostname, parts.port, parts.path) == (
        "postgresql", "postgres", 5432, "/relaybot",
    )  # fmt: skip
    assert parts.username == "relaybot"
    assert parts.password == "${POSTGRES_PASSWORD:-}"  # filled in by Compose from .env
    redis = urlsplit(environment["RELAYBOT_REDIS__URL"])
    assert (redis.scheme, redis.hostname, redis.port, redis.path) == ("redis", "redis", 6379, "/0")
    assert {parts.hostname, redis.hostname} <= set(services)


def test_the_workers_wait_for_a_healthy_postgres_and_redis() -> None:
    services = fleet()
    for name in WORKERS:
        assert services[name]["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
        }
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]
    assert services["redis"]["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]


def test_postgres_is_made_with_the_workers_user_database_and_password() -> None:
    services = fleet()
    environment = services["postgres"]["environment"]
    store = urlsplit(services["worker-1"]["environment"]["RELAYBOT_STORE__URL"])
    assert environment["POSTGRES_USER"] == store.username == "relaybot"
    assert environment["POSTGRES_DB"] == store.path.lstrip("/") == "relaybot"
    assert environment["POSTGRES_PASSWORD"] == store.password
    (volume,) = services["postgres"]["volumes"]
    named, _, path = volume.partition(":")
    assert path == "/var/lib/postgresql/data"  # postgres:17's data directory
    assert named in compose()["volumes"]


def test_the_default_start_needs_no_fleet_variable() -> None:
    """Compose fills in every service's variables before it picks the active profiles: a
    required one (``${VAR:?…}``) would stop a plain ``docker compose up -d``."""
    text = (ROOT / "compose.yaml").read_text()
    variables = re.findall(r"\$\{([^}]*)\}", text)
    assert variables, "the fleet's password comes from .env"
    for variable in variables:
        assert re.fullmatch(r"[A-Z_]+:-[^?]*", variable), variable


def nginx_directives(text: str) -> list[list[str]]:
    """nginx's directives, comments dropped: each ``name arg …;`` and each ``name arg {`` as
    its words (enough for this file, which quotes no ``;`` or ``{``)."""
    lines = [line.split("#", 1)[0] for line in text.splitlines()]
    statements = re.split(r"[;{}]", " ".join(lines))
    return [statement.split() for statement in statements if statement.strip()]


def test_the_load_balancer_sends_slack_to_both_workers_in_turn() -> None:
    lb = fleet()["lb"]
    (mount,) = lb["volumes"]
    source, target, mode = mount.split(":")
    assert (target, mode) == ("/etc/nginx/nginx.conf", "ro")
    directives = nginx_directives((ROOT / source).read_text())
    upstream = next(d for d in directives if d[0] == "upstream")[1]
    servers = [d[1] for d in directives if d[0] == "server" and len(d) > 1]
    assert servers == [f"{worker}:{command_port()}" for worker in WORKERS]
    assert ["proxy_pass", f"http://{upstream}"] in directives
    assert ["listen", str(command_port())] in directives
    assert not any(d[0] in {"least_conn", "ip_hash", "hash"} for d in directives)  # round robin
    assert ["proxy_pass_request_headers", "on"] in directives
    assert ["proxy_pass_request_body", "on"] in directives
    assert not any(d[0] == "proxy_set_body" for d in directives)  # Slack signs the body
    assert not any(d[:2] == ["proxy_set_header", "Host"] for d in directives)
    next_upstream = next(d for d in directives if d[0] == "proxy_next_upstream")[1:]
    assert {"error", "timeout", "http_502", "http_503", "http_504"} <= set(next_upstream)


def test_the_load_balancer_has_its_own_host_port_and_a_ready_healthcheck() -> None:
    lb, slack = fleet()["lb"], compose_service()
    (published,) = lb["ports"]
    host, container = published.split(":")
    assert container == str(command_port())
    assert host != str(slack["ports"][0]).split(":")[0]  # type: ignore[index]
    assert f"http://127.0.0.1:{command_port()}/ready" in lb["healthcheck"]["test"]
    assert set(lb["depends_on"]) == set(WORKERS)


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
