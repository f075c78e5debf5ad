"""The ``relaybot`` command line (also ``python -m bots``).

- ``relaybot ask PROMPT`` runs one conversation turn — the model, and the tools it asks for —
  and streams the answer to the terminal. ``--once --json`` makes one model call without
  tools and prints the assembled assistant message as one JSON object.
- ``relaybot console`` chats in the terminal: one conversation per session, kept in the store.
- ``relaybot slack`` runs the Slack bot over Socket Mode (``SLACK_BOT_TOKEN``,
  ``SLACK_APP_TOKEN``); ``relaybot slack --http --port N`` serves Slack's events at
  ``/slack/events`` instead (``SLACK_SIGNING_SECRET``), with ``GET /health``.
- ``relaybot discord`` runs the Discord bot (``DISCORD_BOT_TOKEN``) over the gateway; it prints
  the link that adds it to a server. ``--shard-count N --shards 0,1`` runs those shards of N
  (all N without ``--shards``), so several processes share one bot.
- ``relaybot offline-llm --port N`` serves the offline model for any compatible client.
- ``relaybot feedback --since 7d`` prints the votes on answers in that period (``30m``,
  ``24h``, ``90d``; ``--json`` for one object) from the configured store.
- ``relaybot tools`` lists every tool the model would see, with its source (built-in or which
  MCP server) and whether its server is up; it exits 1 when a configured server is down.

Settings come from ``--config`` / ``RELAYBOT_CONFIG``, the environment and the flags (see
``bots.settings``). Failures print one line starting with ``relaybot:`` and exit non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from functools import reduce
from importlib import metadata
from typing import Any

from adapters.redis_budget import BudgetUnavailable
from bots.check import check_command
from bots.console.ask import TurnFailedError, ask
from bots.console.chat import run_console
from bots.discord.client import DiscordUnavailable, Shards
from bots.discord.runner import run_discord
from bots.feedback import DEFAULT_PERIOD, feedback_command, parse_period
from bots.logs import configure_logging, set_log_format
from bots.offline import run_offline_llm
from bots.settings import Settings, load_settings
from bots.slack.server import run_slack
from bots.slack.workspace import SlackUnreachable
from bots.tools_list import tools_command
from core.errors import LLMError
from core.settings import ENV_PREFIX, SettingsError
from core.store.base import StoreError

__all__ = ["main"]

LOG_FORMAT_VARIABLE = "RELAYBOT_LOG_FORMAT"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relaybot", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"relaybot {_version()}")
    parser.add_argument(
        "--config", metavar="PATH", help="TOML settings file (default none; RELAYBOT_CONFIG)"
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log debug details (default off; bots log at RELAYBOT_LOG_LEVEL)",
    )
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        help="log lines as text, or one JSON object each (default text; RELAYBOT_LOG_FORMAT)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("console", help="chat in the terminal (/reset, /exit)")

    ask = commands.add_parser("ask", help="answer one prompt, streaming, with tools")
    ask.add_argument("prompt", type=_prompt, help="what to ask")
    ask.add_argument(
        "--protocol", choices=["anthropic", "openai"], help=_setting("wire protocol", "protocol")
    )
    ask.add_argument(
        "--base-url", help=_setting("gateway base URL", "base_url", "OfoxAI's for the protocol")
    )
    ask.add_argument(
        "--model",
        help=_setting("model name as the gateway spells it", "model", "OfoxAI's for the protocol"),
    )
    ask.add_argument("--system", help=_setting("system prompt", "system_prompt", "relaybot's"))
    ask.add_argument("--max-tokens", type=int, help=_setting("answer length cap", "max_tokens"))
    ask.add_argument(
        "--temperature", type=float, help=_setting("sampling", "temperature", "the model's")
    )
    ask.add_argument(
        "--timeout", type=float, help=_setting("total seconds per model call", "timeouts.total")
    )
    ask.add_argument(
        "--idle-timeout",
        type=float,
        help=_setting("longest silence in a stream, seconds", "timeouts.read_idle"),
    )
    ask.add_argument(
        "--attempts",
        type=int,
        help=_setting("attempts before giving up on a failure", "retry.max_attempts"),
    )
    ask.add_argument(
        "--once", action="store_true", help="one model call, no tools (default: a whole turn)"
    )
    ask.add_argument(
        "--json",
        action="store_true",
        help="with --once: print the message as JSON (default: stream text)",
    )

    slack = commands.add_parser("slack", help="run the Slack bot (Socket Mode, or --http)")
    slack.add_argument(
        "--http",
        action="store_true",
        help="serve Slack's HTTP events (SLACK_SIGNING_SECRET) instead of Socket Mode "
        "(SLACK_APP_TOKEN)",
    )
    slack.add_argument(
        "--host", default="0.0.0.0", help="with --http: address to listen on (default %(default)s)"
    )
    slack.add_argument(
        "--port",
        type=int,
        default=3000,
        help="with --http: port to listen on (default %(default)s)",
    )
    _metrics_port_option(slack)

    discord = commands.add_parser("discord", help="run the Discord bot")
    discord.add_argument(
        "--shard-count",
        type=int,
        metavar="N",
        help="split the bot into N shards (default: one process, no shards)",
    )
    discord.add_argument(
        "--shards",
        metavar="IDS",
        help="with --shard-count: the shards this process runs, e.g. 0,1 (default: all)",
    )
    discord.add_argument(
        "--sync-commands",
        action="store_true",
        help="register the /relaybot commands with Discord for every server at start (once "
        "after installing or upgrading: Discord rate-limits it)",
    )
    _metrics_port_option(discord)

    offline = commands.add_parser("offline-llm", help="serve the offline model")
    offline.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default %(default)s)"
    )
    offline.add_argument(
        "--port", type=int, default=8080, help="port to listen on (default %(default)s)"
    )
    offline.add_argument(
        "--pace", type=float, default=0.03, help="seconds between words (default %(default)s)"
    )

    feedback = commands.add_parser("feedback", help="count the votes on answers")
    feedback.add_argument(
        "--since",
        type=_period,
        default=DEFAULT_PERIOD,
        metavar="PERIOD",
        help="how far back: 30m, 24h, 7d, 90d (default %(default)s)",
    )
    feedback.add_argument(
        "--json", action="store_true", help="print one JSON object (default: one line)"
    )

    commands.add_parser(
        "tools", help="list the tools the model may call: source, status (1 if a server is down)"
    )

    check = commands.add_parser("check", help="test every part the settings name, ✓ or ✗")
    check.add_argument(
        "--platform",
        choices=["slack", "discord"],
        help="check only this platform (default: each one whose bot token is set)",
    )
    check.add_argument(
        "--json", action="store_true", help="print one JSON object (default: one line a part)"
    )
    return parser


def _metrics_port_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--metrics-port",
        type=int,
        metavar="N",
        help="serve Prometheus metrics at http://0.0.0.0:N/metrics (0: any free port, "
        "announced; default off)",
    )


def _version() -> str:
    try:
        return metadata.version("relaybot")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "(not installed)"


def _prompt(text: str) -> str:
    """A prompt with something in it: an empty one is refused like a missing one."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty: say what to ask")
    return text


def _period(text: str) -> float:
    try:
        return parse_period(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _setting(what: str, path: str, default: str | None = None) -> str:
    """The help of a flag that sets ``llm.<path>``: what it is, its default (``default``, else
    the settings' own) and the variable that sets it too, so the two never drift apart."""
    if default is None:
        default = str(reduce(getattr, ["llm", *path.split(".")], Settings()))
    variable = ENV_PREFIX + "LLM__" + path.upper().replace(".", "__")
    return f"{what} (default {default}; {variable})"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args)
    try:
        if args.command == "offline-llm":
            return asyncio.run(_offline_llm(args))
        if args.command == "console":
            return asyncio.run(run_console(load_settings(args.config)))
        if args.command == "slack":
            return asyncio.run(_slack(args))
        if args.command == "discord":
            shards = Shards.chosen(args.shard_count, args.shards)
            return asyncio.run(_discord(args, shards))
        if args.command == "feedback":
            return asyncio.run(
                feedback_command(
                    load_settings(args.config),
                    period=args.since,
                    as_json_object=args.json,
                    out=sys.stdout,
                )
            )
        if args.command == "tools":
            return asyncio.run(tools_command(load_settings(args.config), out=sys.stdout))
        if args.command == "check":
            return check_command(
                args.config, platform=args.platform, as_json=args.json, out=sys.stdout
            )
        if args.json and not args.once:
            raise SettingsError("--json needs --once (tools are not run in JSON mode)")
        settings = load_settings(args.config, overrides=_ask_overrides(args))
        return asyncio.run(ask(args, settings, stdout=sys.stdout, stderr=sys.stderr))
    except SettingsError as error:
        print(f"relaybot: {error}", file=sys.stderr)
        return 2
    except (
        LLMError, StoreError, TurnFailedError, SlackUnreachable, DiscordUnavailable,
        BudgetUnavailable,
    ) as error:  # fmt: skip
        print(f"relaybot: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _ask_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The flags that were given, as nested settings (they win over file and environment)."""
    llm = {
        "protocol": args.protocol,
        "base_url": args.base_url,
        "model": args.model,
        "system_prompt": args.system,
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
    }
    timeouts = {"total": args.timeout, "read_idle": args.idle_timeout}
    retry = {"max_attempts": args.attempts}
    overrides: dict[str, Any] = {k: v for k, v in llm.items() if v is not None}
    for name, section in (("timeouts", timeouts), ("retry", retry)):
        given = {k: v for k, v in section.items() if v is not None}
        if given:
            overrides[name] = given
    return {"llm": overrides} if overrides else {}


def _setup_logging(args: argparse.Namespace) -> None:
    """Debug lines with ``--verbose``, else errors only until a bot reads its level (a failed
    turn is reported by its own line, not a log record); as ``--log-format`` says, else
    ``RELAYBOT_LOG_FORMAT`` (read here, before the settings: a bad value is theirs to report)."""
    log_format = args.log_format or os.environ.get(LOG_FORMAT_VARIABLE, "").strip().lower()
    configure_logging(
        level=logging.DEBUG if args.verbose else logging.ERROR,
        log_format="json" if log_format == "json" else "text",
    )


def _bot_settings(args: argparse.Namespace) -> Settings:
    """Settings for a long-running bot, which logs at its configured level (and in its
    configured format, unless ``--log-format`` says otherwise)."""
    settings = load_settings(args.config)
    if args.log_format is None:
        set_log_format(settings.log_format)
    if not args.verbose:
        logging.getLogger().setLevel(settings.log_level)
        logging.getLogger("httpx2").setLevel(logging.WARNING)  # not a line per model request
        logging.getLogger("discord").setLevel(logging.WARNING)  # not a line per (re)connection
    return settings


def _announce(line: str) -> None:
    print(f"relaybot: {line}", file=sys.stderr, flush=True)


async def _slack(args: argparse.Namespace) -> int:
    settings = _bot_settings(args)
    return await run_slack(
        settings,
        http=args.http,
        host=args.host,
        port=args.port,
        announce=_announce,
        metrics_port=args.metrics_port,
    )


async def _discord(args: argparse.Namespace, shards: Shards | None) -> int:
    return await run_discord(
        _bot_settings(args), announce=_announce, metrics_port=args.metrics_port, shards=shards,
        sync_commands=args.sync_commands,
    )  # fmt: skip


async def _offline_llm(args: argparse.Namespace) -> int:
    def announce(line: str) -> None:
        print(line, flush=True)

    await run_offline_llm(host=args.host, port=args.port, pace=args.pace, announce=announce)
    return 0
