"""The Slack app manifests ask for exactly what the bot uses, and the two variants agree.

``config/slack-app-manifest.yaml`` (Socket Mode) and ``config/slack-app-manifest.http.yaml``
(HTTP mode) differ only in how Slack reaches the bot. Their scopes are the ones the bot's Web
API calls and event subscriptions need — no more: each Web API method the Slack code calls
(found in its syntax tree) and each subscribed event is looked up in a table below that names
the scope Slack requires for it, and the manifests' scopes must equal the scopes so needed.

The manifests are written in a small YAML subset (block mappings, block lists, plain or
double-quoted scalars, full-line comments) that :func:`parse_manifest` reads, so the test needs
no YAML library; with PyYAML installed, a real parser must read them the same way.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

ROOT = Path(__file__).resolve().parent.parent
SOCKET = ROOT / "config" / "slack-app-manifest.yaml"
HTTP = ROOT / "config" / "slack-app-manifest.http.yaml"
SLACK_CODE = sorted([*ROOT.glob("bots/slack_*.py"), *ROOT.glob("adapters/slack_*.py")])
EVENTS_URL = "https://YOUR-HOST/slack/events"

HISTORY = ("channels:history", "groups:history", "im:history", "mpim:history")

METHOD_SCOPES: dict[str, tuple[str, ...]] = {
    # Web API method → the bot scopes it needs (docs.slack.dev/reference/methods/<method>)
    "auth.test": (),
    "chat.postMessage": ("chat:write",),
    "chat.update": ("chat:write",),
    "chat.delete": ("chat:write",),
    "chat.postEphemeral": ("chat:write",),
    # chat:write since 2026-03 (assistant:write is still accepted, and is going away)
    "assistant.threads.setStatus": ("chat:write",),
    "users.info": ("users:read",),  # names, time zones, is_admin (who may press Stop)
    # a thread in a public or private channel, a DM or a group DM: each needs its own scope
    "conversations.replies": HISTORY,
}

EVENT_SCOPES: dict[str, str] = {
    # bot event → the scope Slack requires to subscribe to it
    "app_mention": "app_mentions:read",  # a mention in a channel starts a conversation
    "message.channels": "channels:history",  # follow-ups in public-channel threads
    "message.groups": "groups:history",  # follow-ups in private-channel threads
    "message.im": "im:history",  # direct messages
    "message.mpim": "mpim:history",  # group DMs the bot is in
}

BOLT_SHORTCUTS = {"say": "chat.postMessage", "set_status": "assistant.threads.setStatus"}


# --- the YAML subset -----------------------------------------------------------------------------


def parse_manifest(text: str) -> dict[str, Any]:
    """Block mappings and lists of scalars, by indentation; anything else is an error."""
    lines = [
        (len(raw) - len(raw.lstrip(" ")), raw.strip(), number)
        for number, raw in enumerate(text.splitlines(), 1)
        if raw.strip() and not raw.lstrip().startswith("#")
    ]
    value, end = _block(lines, 0, 0)
    if end != len(lines) or not isinstance(value, dict):
        raise ValueError(f"line {lines[end][2]}: unexpected indentation")
    return value


def _block(lines: list[tuple[int, str, int]], start: int, indent: int) -> tuple[Any, int]:
    if lines[start][1].startswith("- "):
        items = []
        while start < len(lines) and lines[start][0] == indent and lines[start][1][:2] == "- ":
            items.append(_scalar(lines[start][1][2:], lines[start][2]))
            start += 1
        return items, start
    mapping: dict[str, Any] = {}
    while start < len(lines) and lines[start][0] == indent:
        _, content, number = lines[start]
        key, colon, rest = content.partition(": ") if ": " in content else content.partition(":")
        if not colon or not re.fullmatch(r"[a-z_]+", key) or key in mapping:
            raise ValueError(f"line {number}: expected a new `key:`, got {content!r}")
        start += 1
        if rest.strip():
            mapping[key] = _scalar(rest, number)
        elif start < len(lines) and lines[start][0] > indent:
            mapping[key], start = _block(lines, start, lines[start][0])
        else:
            raise ValueError(f"line {number}: {key!r} has no value")
    return mapping, start


def _scalar(text: str, number: int) -> Any:
    text = text.strip()
    if text.startswith('"'):
        return json.loads(text)
    if re.search(r"\s#|^[\[\]{}&*!|>'%@`]|: ", text):
        raise ValueError(f"line {number}: {text!r} is outside the manifest's YAML subset")
    return {"true": True, "false": False}.get(text, text)


def test_the_subset_parser_reads_what_yaml_means() -> None:
    text = 'a:\n  b: "#x"\n  c:\n    - one\n    - two:three\n  d: true\n# note\ne: plain words\n'
    assert parse_manifest(text) == {
        "a": {"b": "#x", "c": ["one", "two:three"], "d": True},
        "e": "plain words",
    }
    for outside in ("a: [x]", "a: x # note", "a:\n  - x\n   - y", "a: b: c", "a:"):
        with pytest.raises(ValueError, match="line"):
            parse_manifest(outside)


def test_a_real_yaml_parser_reads_the_manifests_the_same_way() -> None:
    yaml = pytest.importorskip("yaml")
    for path in (SOCKET, HTTP):
        assert yaml.safe_load(path.read_text()) == parse_manifest(path.read_text())


# --- the manifests -------------------------------------------------------------------------------


def manifest(path: Path) -> dict[str, Any]:
    return parse_manifest(path.read_text(encoding="utf-8"))


def scopes(path: Path) -> list[str]:
    return list(manifest(path)["oauth_config"]["scopes"]["bot"])


def events(path: Path) -> list[str]:
    return list(manifest(path)["settings"]["event_subscriptions"]["bot_events"])


@pytest.mark.parametrize("path", [SOCKET, HTTP], ids=["socket", "http"])
def test_a_manifest_has_the_current_schema_and_slack_limits(path: Path) -> None:
    app = manifest(path)
    assert list(app) == ["display_information", "features", "oauth_config", "settings"]
    info = app["display_information"]
    assert len(info["name"]) <= 35
    assert len(info["description"]) <= 140
    assert re.fullmatch(r"#[0-9a-f]{6}", info["background_color"])
    assert app["features"] == {
        "app_home": {
            "home_tab_enabled": False,
            "messages_tab_enabled": True,  # people can DM the bot
            "messages_tab_read_only_enabled": False,
        },
        "bot_user": {"display_name": "relaybot", "always_online": True},
    }
    assert list(app["oauth_config"]) == ["scopes"]
    assert list(app["oauth_config"]["scopes"]) == ["bot"]  # no user token
    settings = app["settings"]
    assert settings["interactivity"]["is_enabled"] is True  # the Stop button
    assert settings["org_deploy_enabled"] is False
    assert settings["token_rotation_enabled"] is False
    for listed in (scopes(path), events(path)):
        assert listed == sorted(set(listed))


def test_the_variants_differ_only_in_how_slack_reaches_the_bot() -> None:
    socket, http = manifest(SOCKET), manifest(HTTP)
    assert socket["settings"]["socket_mode_enabled"] is True
    assert "request_url" not in socket["settings"]["event_subscriptions"]
    assert "request_url" not in socket["settings"]["interactivity"]
    assert http["settings"]["socket_mode_enabled"] is False
    assert http["settings"]["event_subscriptions"]["request_url"] == EVENTS_URL
    assert http["settings"]["interactivity"]["request_url"] == EVENTS_URL
    del http["settings"]["event_subscriptions"]["request_url"]
    del http["settings"]["interactivity"]["request_url"]
    del socket["settings"]["socket_mode_enabled"], http["settings"]["socket_mode_enabled"]
    assert socket == http


# --- what the bot uses ---------------------------------------------------------------------------


def web_api_methods(path: Path) -> set[str]:
    """The Web API methods a module calls: ``client.chat_update(...)``,
    ``client.api_call("chat.update", ...)`` and bolt's ``say(...)`` / ``set_status(...)``."""
    client_methods = {name for name in vars(AsyncWebClient) if not name.startswith("_")}
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if name in client_methods:
            found.add(name.replace("_", "."))
        elif name == "api_call" and node.args and isinstance(node.args[0], ast.Constant):
            found.add(str(node.args[0].value))
        elif name in BOLT_SHORTCUTS:
            found.add(BOLT_SHORTCUTS[name])
    return found


def test_every_web_api_method_the_bot_calls_is_in_the_scope_table() -> None:
    called = set().union(*(web_api_methods(path) for path in SLACK_CODE))
    assert {"chat.postMessage", "chat.update"} <= called  # the search sees the calls
    assert called - set(METHOD_SCOPES) == set(), "add the method and its scope to METHOD_SCOPES"


@pytest.mark.parametrize("path", [SOCKET, HTTP], ids=["socket", "http"])
def test_the_scopes_are_exactly_those_the_calls_and_events_need(path: Path) -> None:
    called = set().union(*(web_api_methods(code) for code in SLACK_CODE))
    needed = {scope for method in called for scope in METHOD_SCOPES.get(method, ())}
    needed |= {EVENT_SCOPES[event] for event in events(path)}
    assert set(events(path)) == set(EVENT_SCOPES)
    assert set(scopes(path)) == needed


def listeners(kind: str) -> set[str]:
    """What the bot registers bolt listeners for: ``self.app.event("message")`` → "message",
    ``app.action(STOP_ACTION)`` → "STOP_ACTION"."""
    found = set()
    for path in SLACK_CODE:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            match node:
                case ast.Call(
                    func=ast.Attribute(
                        value=ast.Attribute(attr="app") | ast.Name(id="app"), attr=name
                    ),
                    args=[first, *_],
                ) if name == kind:
                    found.add(
                        str(first.value) if isinstance(first, ast.Constant) else ast.unparse(first)
                    )
    return found


@pytest.mark.parametrize("path", [SOCKET, HTTP], ids=["socket", "http"])
def test_the_subscribed_events_are_the_ones_the_bot_listens_to(path: Path) -> None:
    assert listeners("event") == {"app_mention", "message"}
    assert {event.partition(".")[0] for event in events(path)} == listeners("event")
    assert listeners("action"), "the Stop button is why interactivity is on"
