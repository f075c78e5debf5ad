"""The ``relaybot`` command line (also ``python -m bots``).

``relaybot ask PROMPT`` streams one answer to the terminal; ``--once --json`` prints the
assembled assistant message of one model call as a JSON object. This module is a composition
root: it reads the environment, builds the HTTP client, the protocol and the LLM client, and
wires them together.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from core.assembly import MessageAssembler
from core.client import LLMClient, Timeouts, new_http_client
from core.errors import LLMError
from core.events import AttemptVoid, StreamEnd, TextDelta
from core.messages import AssistantMessage, ModelRequest, UserMessage
from core.protocols import protocol_for
from core.retry import RetryPolicy, retrying_stream

__all__ = ["main"]

DEFAULT_BASE_URLS = {
    "openai": "https://api.ofox.ai/v1",
    "anthropic": "https://api.ofox.ai/anthropic",
}
DEFAULT_MODELS = {"openai": "openai/gpt-4o", "anthropic": "anthropic/claude-sonnet-4.5"}
KEY_VARIABLE = "OFOX_API_KEY"


class UsageError(Exception):
    """A mistake in how the command was called: one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="relaybot", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    commands = parser.add_subparsers(dest="command", required=True)
    ask = commands.add_parser("ask", help="stream one answer to the terminal")
    ask.add_argument("prompt", help="what to ask")
    ask.add_argument("--protocol", choices=sorted(DEFAULT_BASE_URLS), default="openai")
    ask.add_argument("--base-url", help="gateway base URL (default: OfoxAI for the protocol)")
    ask.add_argument("--model", help="model name (default: a sensible one for the protocol)")
    ask.add_argument("--system", help="system prompt")
    ask.add_argument("--max-tokens", type=int, default=4096)
    ask.add_argument("--temperature", type=float)
    ask.add_argument("--once", action="store_true", help="one model call, no tools")
    ask.add_argument("--json", action="store_true", help="print the assembled message as JSON")
    ask.add_argument("--timeout", type=float, default=600.0, help="total seconds per call")
    ask.add_argument("--idle-timeout", type=float, default=60.0, help="longest silence, seconds")
    ask.add_argument("--attempts", type=int, default=4, help="attempts before giving up")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return asyncio.run(ask(args, stdout=sys.stdout, stderr=sys.stderr))
    except UsageError as error:
        print(f"relaybot: {error}", file=sys.stderr)
        return 2
    except LLMError as error:
        print(f"relaybot: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


async def ask(args: argparse.Namespace, *, stdout: TextIO, stderr: TextIO) -> int:
    if args.json and not args.once:
        raise UsageError("--json needs --once (tools are not run in JSON mode)")
    base_url = args.base_url or DEFAULT_BASE_URLS[args.protocol]
    api_key = os.environ.get(KEY_VARIABLE, "")
    if not api_key and args.base_url is None:
        raise UsageError(f"set {KEY_VARIABLE} to your OfoxAI key, or pass --base-url")
    request = ModelRequest(
        model=args.model or DEFAULT_MODELS[args.protocol],
        messages=(UserMessage(text=args.prompt),),
        system=args.system,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
    )
    timeouts = Timeouts(total=args.timeout, read_idle=args.idle_timeout)
    policy = RetryPolicy(max_attempts=max(1, args.attempts))

    def on_retry(error: LLMError, attempt: int, wait: float) -> None:
        print(f"relaybot: {error} — retrying in {wait:.1f} s", file=stderr)

    async with new_http_client(max_connections=4) as http:
        client = LLMClient(
            http=http,
            protocol=protocol_for(args.protocol),
            base_url=base_url,
            api_key=api_key,
            timeouts=timeouts,
        )
        live = stdout.isatty() and not args.json
        assembler = MessageAssembler()
        async with retrying_stream(client, request, policy, on_retry=on_retry) as events:
            async for event in events:
                assembler.feed(event)
                if live:
                    _show_live(event, stdout, stderr)
    message = assembler.message()
    if args.json:
        print(json.dumps(message_json(message), ensure_ascii=False), file=stdout)
    elif not live:
        stdout.write(message.text + "\n")
    else:
        stdout.write("\n")
    if message.finish_reason == "length" and not args.json:
        print("relaybot: the answer was cut at the token limit (--max-tokens)", file=stderr)
    return 0


def _show_live(event: object, stdout: TextIO, stderr: TextIO) -> None:
    """Stream text to a terminal. A retried call restarts below a visible marker."""
    match event:
        case TextDelta(text=text):
            stdout.write(text)
            stdout.flush()
        case AttemptVoid():
            stdout.write("\n")
            stdout.flush()
            print("relaybot: (the answer restarts here)", file=stderr)
        case StreamEnd():
            stdout.flush()


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
