"""The ``relaybot`` command line (also ``python -m bots``).

- ``relaybot ask PROMPT`` runs one conversation turn — the model, and the tools it asks for —
  and streams the answer to the terminal. ``--once --json`` makes one model call without
  tools and prints the assembled assistant message as one JSON object.
- ``relaybot console`` chats in the terminal: one conversation per session, kept in the store.
- ``relaybot slack`` runs the Slack bot over Socket Mode (``SLACK_BOT_TOKEN``,
  ``SLACK_APP_TOKEN``); ``relaybot slack --http --port N`` serves Slack's events at
  ``/slack/events`` instead (``SLACK_SIGNING_SECRET``), with ``GET /health``.
- ``relaybot discord`` runs the Discord bot (``DISCORD_BOT_TOKEN``) over the gateway; it prints
  the link that adds it to a server.
- ``relaybot offline-llm --port N`` serves the offline model for any compatible client.

Settings come from ``--config`` / ``RELAYBOT_CONFIG``, the environment and the flags (see
``bots.settings``). Failures print one line starting with ``relaybot:`` and exit non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import Any

from bots.console.ask import TurnFailedError, ask
from bots.console.chat import run_console
from bots.discord.client import DiscordUnavailable
from bots.discord.runner import run_discord
from bots.offline import run_offline_llm
from bots.settings import Settings, load_settings
from bots.slack.server import run_slack
from bots.slack.workspace import SlackUnreachable
from core.errors import LLMError
from core.settings import SettingsError
from core.store.base import StoreError

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relaybot", description=__doc__.splitlines()[0])
    parser.add_argument("--config", metavar="PATH", help="TOML settings file (or RELAYBOT_CONFIG)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("console", help="chat in the terminal (/reset, /exit)")

    ask = commands.add_parser("ask", help="answer one prompt, streaming, with tools")
    ask.add_argument("prompt", help="what to ask")
    ask.add_argument("--protocol", choices=["anthropic", "openai"])
    ask.add_argument("--base-url", help="gateway base URL (default: OfoxAI for the protocol)")
    ask.add_argument("--model", help="model name as the gateway spells it")
    ask.add_argument("--system", help="system prompt")
    ask.add_argument("--max-tokens", type=int)
    ask.add_argument("--temperature", type=float)
    ask.add_argument("--timeout", type=float, help="total seconds per model call")
    ask.add_argument("--idle-timeout", type=float, help="longest silence in a stream, seconds")
    ask.add_argument("--attempts", type=int, help="attempts before giving up on a failure")
    ask.add_argument("--once", action="store_true", help="one model call, no tools")
    ask.add_argument("--json", action="store_true", help="with --once: print the message as JSON")

    slack = commands.add_parser("slack", help="run the Slack bot (Socket Mode, or --http)")
    slack.add_argument("--http", action="store_true", help="serve Slack's HTTP events instead")
    slack.add_argument("--host", default="0.0.0.0", help="with --http: address to listen on")
    slack.add_argument("--port", type=int, default=3000, help="with --http: port to listen on")

    commands.add_parser("discord", help="run the Discord bot")

    offline = commands.add_parser("offline-llm", help="serve the offline model")
    offline.add_argument("--host", default="127.0.0.1")
    offline.add_argument("--port", type=int, default=8080)
    offline.add_argument("--pace", type=float, default=0.03, help="seconds between words")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(  # a failed turn is reported by its own line, not a log record
        level=logging.DEBUG if args.verbose else logging.ERROR,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "offline-llm":
            return asyncio.run(_offline_llm(args))
        if args.command == "console":
            return asyncio.run(run_console(load_settings(args.config)))
        if args.command == "slack":
            return asyncio.run(_slack(args))
        if args.command == "discord":
            return asyncio.run(_discord(args))
        if args.json and not args.once:
            raise SettingsError("--json needs --once (tools are not run in JSON mode)")
        settings = load_settings(args.config, overrides=_ask_overrides(args))
        return asyncio.run(ask(args, settings, stdout=sys.stdout, stderr=sys.stderr))
    except SettingsError as error:
        print(f"relaybot: {error}", file=sys.stderr)
        return 2
    except (LLMError, StoreError, TurnFailedError, SlackUnreachable, DiscordUnavailable) as error:
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


def _bot_settings(args: argparse.Namespace) -> Settings:
    """Settings for a long-running bot, which logs at its configured level."""
    settings = load_settings(args.config)
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
        settings, http=args.http, host=args.host, port=args.port, announce=_announce
    )


async def _discord(args: argparse.Namespace) -> int:
    return await run_discord(_bot_settings(args), announce=_announce)


async def _offline_llm(args: argparse.Namespace) -> int:
    def announce(line: str) -> None:
        print(line, flush=True)

    await run_offline_llm(host=args.host, port=args.port, pace=args.pace, announce=announce)
    return 0
