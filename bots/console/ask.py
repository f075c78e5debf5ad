"""``relaybot ask``: one prompt answered in the terminal.

The answer streams to stdout while tool activity goes to stderr; piped, only the finished
answer is written. ``--once`` makes one model call without tools (``--json`` prints the
assembled message as one JSON object, the same for both protocols).
"""

from __future__ import annotations

import argparse
import json
from contextlib import aclosing
from typing import Any, TextIO, assert_never
from uuid import uuid4

from bots.runtime import Runtime
from bots.settings import Settings
from core.assembly import MessageAssembler
from core.events import (
    AttemptVoid,
    EngineEvent,
    ModelRetrying,
    ReasoningDelta,
    TextDelta,
    ToolFinished,
    ToolStarted,
    TurnFailed,
    TurnFinished,
    Usage,
    WaitingForSlot,
)
from core.lease import owner_id
from core.messages import AssistantMessage, ConversationKey, ModelRequest, UserMessage
from core.retry import retrying_stream
from core.store.base import ConversationStore
from core.store.journal import Lease
from core.store.memory import MemoryStore

__all__ = ["TerminalView", "TurnFailedError", "ask", "message_json"]


class TurnFailedError(Exception):
    """The turn ended in a message for the user: printed as one line, exit status 1."""


async def ask(
    args: argparse.Namespace, settings: Settings, *, stdout: TextIO, stderr: TextIO
) -> int:
    def announce(line: str) -> None:
        print(f"relaybot: {line}", file=stderr, flush=True)

    start = Runtime.start(settings, announce=announce, store=MemoryStore(), read_interval=0.0)
    async with start as runtime:  # printed as it comes: every token read at once
        if args.once:
            message = await _one_call(
                runtime, args.prompt, stdout=stdout, stderr=stderr, live=not args.json
            )
            if args.json:
                print(json.dumps(message_json(message), ensure_ascii=False), file=stdout)
            return 0
        lease = await _asked(runtime.store, args.prompt)
        view = TerminalView(stdout, stderr, show_reasoning=settings.llm.show_reasoning)
        async with aclosing(runtime.engine.run_turn(lease)) as events:
            async for event in events:
                view.show(event)
    return 0


async def _asked(store: ConversationStore, prompt: str) -> Lease:
    """The prompt accepted as a turn of the journal, and taken by this process."""
    key = ConversationKey(platform="console", workspace="local", channel="ask", thread="1")
    question = UserMessage(text=prompt, author_id="local", author_name="you")
    turn = await store.accept(
        event_id=f"ask:{uuid4()}", key=key, order="1", question=question,
        platform="a terminal", claim_ttl=60,
    )  # fmt: skip
    lease = await store.take(key, owner=owner_id(), lease_seconds=60)
    if turn is None or lease is None:  # a new memory store holds no other claim or turn
        raise RuntimeError("the terminal's question could not be accepted")
    return lease


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
            case (
                TextDelta() | ReasoningDelta() | AttemptVoid() | ModelRetrying() | WaitingForSlot()
            ):
                pass  # piped, empty, reasoning not shown, a retry, a wait: only the answer counts
            case _:
                assert_never(event)

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
