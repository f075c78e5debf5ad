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
``core.settings``). Failures print one line starting with ``relaybot:`` and exit non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from contextlib import aclosing
from typing import Any, TextIO

from bots.console_bot import run_console
from bots.discord_client import DiscordUnavailable
from bots.discord_runner import run_discord
from bots.offline import run_offline_llm
from bots.runtime import Runtime
from bots.slack_server import run_slack
from bots.slack_workspace import SlackUnreachable
from core.assembly import MessageAssembler
from core.engine import TurnRequest
from core.errors import LLMError
from core.events import (
    AttemptVoid,
    EngineEvent,
    ReasoningDelta,
    TextDelta,
    ToolFinished,
    ToolStarted,
    TurnFailed,
    TurnFinished,
    Usage,
)
from core.messages import AssistantMessage, ConversationKey, ModelRequest, UserMessage
from core.retry import retrying_stream
from core.settings import Settings, SettingsError, load_settings
from core.store.base import StoreError
from core.store.memory import MemoryStore

__all__ = ["main"]


class TurnFailedError(Exception):
    """The turn ended in a message for the user: printed as one line, exit status 1."""


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


async def ask(
    args: argparse.Namespace, settings: Settings, *, stdout: TextIO, stderr: TextIO
) -> int:
    def announce(line: str) -> None:
        print(f"relaybot: {line}", file=stderr, flush=True)

    async with Runtime.start(settings, announce=announce, store=MemoryStore()) as runtime:
        if args.once:
            message = await _one_call(
                runtime, args.prompt, stdout=stdout, stderr=stderr, live=not args.json
            )
            if args.json:
                print(json.dumps(message_json(message), ensure_ascii=False), file=stdout)
            return 0
        request = TurnRequest(
            key=ConversationKey(platform="console", workspace="local", channel="ask", thread="1"),
            user_id="local",
            user_name="you",
            text=args.prompt,
            platform="a terminal",
        )
        view = TerminalView(stdout, stderr, show_reasoning=settings.llm.show_reasoning)
        async with aclosing(runtime.engine.run_turn(request)) as events:
            async for event in events:
                view.show(event)
    return 0


async def _one_call(
    runtime: Runtime, prompt: str, *, stdout: TextIO, stderr: TextIO, live: bool
) -> AssistantMessage:
    llm = runtime.settings.llm
    request = ModelRequest(
        model=runtime.endpoint.model,
        messages=(UserMessage(text=prompt),),
        system=llm.system_prompt,
        max_tokens=llm.max_tokens,
        temperature=llm.temperature,
    )
    assembler = MessageAssembler()
    view = TerminalView(stdout, stderr, show_reasoning=False)
    async with retrying_stream(runtime.client, request, llm.retry_policy()) as events:
        async for event in events:
            assembler.feed(event)
            if live and isinstance(event, TextDelta | AttemptVoid):
                view.show(event)
    message = assembler.message()
    if live:
        truncated = message.finish_reason == "length"
        view.show(TurnFinished(text=message.text, usage=Usage(), rounds=1, truncated=truncated))
    return message


class TerminalView:
    """Engine events on a terminal. On a TTY the answer streams as it comes; piped, only the
    finished answer is written, so a retried stream never appears twice in the output."""

    def __init__(self, stdout: TextIO, stderr: TextIO, *, show_reasoning: bool) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self.live = stdout.isatty()
        self.show_reasoning = show_reasoning
        self.mid_line = False  # the streamed text on screen does not end with a newline

    def show(self, event: EngineEvent) -> None:
        match event:
            case TextDelta(text=text) if self.live and text:
                self.stdout.write(text)
                self.stdout.flush()
                self.mid_line = not text.endswith("\n")
            case ReasoningDelta(text=text) if self.show_reasoning:
                self.stderr.write(text)
            case AttemptVoid() if self.live:
                self._end_line()
                print("relaybot: (the answer restarts here)", file=self.stderr)
            case ToolStarted(activity=activity):
                self._end_line()
                print(f"… {activity}", file=self.stderr, flush=True)
            case ToolFinished(ok=ok, summary=summary):
                print(f"{'✓' if ok else '✗'} {summary}", file=self.stderr, flush=True)
            case TurnFinished(text=text, truncated=truncated):
                self.stdout.write("\n" if self.live else text + "\n")
                self.stdout.flush()
                if truncated:
                    print("relaybot: the answer was cut at the token limit", file=self.stderr)
            case TurnFailed(message=message):
                if self.live:
                    self.stdout.write("\n")
                raise TurnFailedError(message)

    def _end_line(self) -> None:
        """Start status lines on a line of their own, below the streamed text."""
        if self.mid_line:
            self.stdout.write("\n")
            self.stdout.flush()
            self.mid_line = False


def message_json(message: AssistantMessage) -> dict[str, Any]:
    """The ``--once --json`` shape, the same for both protocols."""
    return {
        "text": message.text,
        "reasoning": message.reasoning,
        "tool_calls": [
            {
                "id": call.id,
                "name": call.name,
                "arguments": call.arguments if call.arguments is not None else call.raw_arguments,
            }
            for call in message.tool_calls
        ],
        "finish_reason": message.finish_reason,
        "usage": {
            "input_tokens": message.usage.input_tokens,
            "output_tokens": message.usage.output_tokens,
        },
    }
