"""The Slack app manifests ask for exactly what the bot uses, and the two variants agree.

``config/slack-app-manifest.yaml`` (Socket Mode) and ``config/slack-app-manifest.http.yaml``
(HTTP mode) differ only in how Slack reaches the bot. Their scopes are the ones the bot's Web
API calls and event subscriptions need — no more: each Web API method the Slack code calls
(found in its syntax tree) and each subscribed event is looked up in a table below that names
the scope Slack requires for it, and the manifests' scopes must equal the scopes so needed.

The manifests are read with PyYAML (a dev dependency), as Slack reads them.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from slack_sdk.web.async_client import AsyncWebClient

from bots.slack.commands import SHORTCUTS
from bots.slack.settings import SUGGESTED_PROMPTS

ROOT = Path(__file__).resolve().parent.parent
SOCKET = ROOT / "config" / "slack-app-manifest.yaml"
HTTP = ROOT / "config" / "slack-app-manifest.http.yaml"
SLACK_CODE = sorted([*ROOT.glob("bots/slack/*.py"), *ROOT.glob("adapters/slack_*.py")])
EVENTS_URL = "https://YOUR-HOST/slack/events"

HISTORY = ("channels:history", "groups:history", "im:history", "mpim:history")

METHOD_SCOPES: dict[str, tuple[str, ...]] = {
    # Web API method → the bot scopes it needs (docs.slack.dev/reference/methods/<method>)
    "auth.test": (),
    "chat.postMessage": ("chat:write",),
    "chat.update": ("chat:write",),
    "chat.delete": ("chat:write",),
    "chat.postEphemeral": ("chat:write",),
    # native streaming (the method reference: bot scope chat:write)
    "chat.startStream": ("chat:write",),
    "chat.appendStream": ("chat:write",),
    "chat.stopStream": ("chat:write",),
    # chat:write since 2026-03 (assistant:write is still accepted, and is going away)
    "assistant.threads.setStatus": ("chat:write",),
    "assistant.threads.setSuggestedPrompts": ("assistant:write",),  # the messages tab's prompts
    "assistant.threads.setTitle": ("assistant:write",),  # a DM thread named by its question
    "users.info": ("users:read",),  # names, time zones, is_admin (who may press Stop)
    # a thread in a public or private channel, a DM or a group DM: each needs its own scope
    "conversations.replies": HISTORY,
}

EVENT_SCOPES: dict[str, str | None] = {
    # bot event → the scope Slack requires to subscribe to it (None: no scope)
    "agent_session_stopped": None,  # Slack's own Stop, on a native stream's agent session
    "app_home_opened": None,  # the messages tab opened: its suggested prompts
    "app_mention": "app_mentions:read",  # a mention in a channel starts a conversation
    "message.channels": "channels:history",  # follow-ups in public-channel threads
    "message.groups": "groups:history",  # follow-ups in private-channel threads
    "message.im": "im:history",  # direct messages
    "message.mpim": "mpim:history",  # group DMs the bot is in
}

FILE_SCOPES: dict[str, str] = {
    # a file URL the Slack code downloads → the scope Slack requires for it (without it,
    # Slack answers url_private with its sign-in page)
    "url_private": "files:read",
    "url_private_download": "files:read",
}

COMMAND_SCOPE = "commands"
"""The scope every slash command needs (docs.slack.dev/interactivity/implementing-slash-commands):
the manifest asks for it exactly when the bot listens for a command."""
SLASH_COMMAND = {
    "command": "/relaybot",
    "description": "See or change this channel's model and instructions, or your usage.",
    "usage_hint": "help | model [name] | prompt [text | reset] | usage",
    "should_escape": False,  # the bot reads a prompt's text as typed, <@U…> tokens are words
}

BOLT_SHORTCUTS = {"say": "chat.postMessage", "set_status": "assistant.threads.setStatus"}


# --- the manifests -------------------------------------------------------------------------------


SHORTCUT_MANIFEST = {
    "stop": {"name": "Stop answer", "type": "message",
             "description": "Stop the answer being written in this thread."},
    "new": {"name": "New conversation", "type": "message",
            "description": "The next message in this thread starts a fresh conversation."},
}  # fmt: skip
"""The message shortcuts, by the thread command each runs."""


def manifest(path: Path) -> dict[str, Any]:
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict), f"{path.name} is not a YAML mapping"
    return loaded


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
        "shortcuts": [
            SHORTCUT_MANIFEST[command] | {"callback_id": callback_id}
            for callback_id, command in SHORTCUTS.items()
        ],  # a message's ⋮ menu
        "slash_commands": [SLASH_COMMAND | ({"url": EVENTS_URL} if path == HTTP else {})],
        "agent_view": {  # Slack's agent experience: native streaming, its Stop, prompts
            "agent_description": info["description"],
            "suggested_prompts": [
                {"title": prompt.title, "message": prompt.message} for prompt in SUGGESTED_PROMPTS
            ],
        },
    }
    assert list(app["oauth_config"]) == ["scopes"]
    assert list(app["oauth_config"]["scopes"]) == ["bot"]  # no user token
    settings = app["settings"]
    assert settings["interactivity"]["is_enabled"] is True  # the Stop button
    assert settings["org_deploy_enabled"] is False
    assert settings["token_rotation_enabled"] is False
    (command,) = app["features"]["slash_commands"]
    assert len(command["description"]) <= 2000
    assert len(command["usage_hint"]) <= 1000
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
    for command in http["features"]["slash_commands"]:  # HTTP mode: where Slack posts it
        assert command.pop("url") == EVENTS_URL
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
    needed |= {scope for event in events(path) if (scope := EVENT_SCOPES[event]) is not None}
    needed |= {FILE_SCOPES[url] for code in SLACK_CODE for url in file_urls(code)}
    if slash_commands(path):
        needed.add(COMMAND_SCOPE)
    assert set(events(path)) == set(EVENT_SCOPES)
    assert set(scopes(path)) == needed


def file_urls(path: Path) -> set[str]:
    """The file URLs of Slack's file objects a module reads: ``file.get("url_private")``."""
    return {
        node.value
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and node.value in FILE_SCOPES
    }


def test_the_bot_downloads_files() -> None:
    assert set().union(*(file_urls(path) for path in SLACK_CODE)) == set(FILE_SCOPES)


def slash_commands(path: Path) -> set[str]:
    return {command["command"] for command in manifest(path)["features"].get("slash_commands", [])}


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
    assert listeners("event") == {
        "app_mention",
        "message",
        "app_home_opened",
        "agent_session_stopped",
    }
    assert {event.partition(".")[0] for event in events(path)} == listeners("event")
    assert listeners("action"), "the Stop button is why interactivity is on"


@pytest.mark.parametrize("path", [SOCKET, HTTP], ids=["socket", "http"])
def test_the_slash_commands_are_the_ones_the_bot_listens_to(path: Path) -> None:
    assert listeners("command") == {"/relaybot"}
    assert slash_commands(path) == listeners("command")
