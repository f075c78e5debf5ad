"""``python -m bench.stream``: CPU per streamed chunk, ``LLMClient`` against the official SDKs.

The loopback gateway (``python -m tests.fakes.llm_gateway``) runs as a separate process per
protocol, so serving costs this process nothing. It answers every request with the same
stream of ``--chunks`` text deltas (OpenAI: ``chat.completion.chunk`` objects; Anthropic: typed
events), written as 1 to 16 KiB writes. Each consumer reads the whole stream to its end and
keeps the text, as a bot must:

- ``LLMClient openai`` / ``LLMClient anthropic`` — :class:`core.client.LLMClient`, collecting
  every :class:`~core.events.TextDelta`.
- ``openai SDK`` — ``AsyncOpenAI(...).chat.completions.create(stream=True)``, collecting
  ``chunk.choices[0].delta.content``.
- ``anthropic SDK`` — ``AsyncAnthropic(...).messages.create(stream=True)``, collecting each
  ``text_delta``.
- ``openai SDK .stream()`` / ``anthropic SDK .stream()`` (for information) — the SDKs' helpers
  that also assemble the message, against ``LLMClient ... + assembler``, which feeds every
  event to :class:`~core.assembly.MessageAssembler`, as the engine does.

Every consumer keeps one HTTP client (connections reused) and runs once untimed, checking its
text. Then each round runs every consumer once, in a rotating order; a run is timed in CPU
seconds of this process (``time.process_time``), so waiting on the gateway and other load on a
shared machine are not counted. The table shows the median CPU seconds per 10,000 chunks and
the median over rounds of each ratio of peers timed in the same round.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import gateway_url, median_ratio, stop_gateway
from core.assembly import MessageAssembler
from core.client import LLMClient, new_stream_session
from core.events import TextDelta
from core.messages import ModelRequest, UserMessage
from core.protocols import AnthropicProtocol, OpenAIProtocol

__all__ = ["Result", "expected_text", "gateway_processes", "main", "run"]

ROOT = Path(__file__).resolve().parent.parent
PROTOCOLS = ("openai", "anthropic")
OURS = {"openai": "LLMClient openai", "anthropic": "LLMClient anthropic"}
SDKS = {"openai": "openai SDK", "anthropic": "anthropic SDK"}
ASSEMBLED, HELPER = " + assembler", " .stream()"
PROMPT = "Say something long."
MODEL = "fake/model"


def expected_text(chunks: int) -> str:
    """The text the gateway streams for ``--chunks`` (see ``tests.fakes.llm_gateway``)."""
    vocabulary = ["relay ", "token ", "stream", " bytes", " déjà ", "hello "]
    return "".join(vocabulary[i % len(vocabulary)] for i in range(chunks))


@contextlib.contextmanager
def gateway_processes(chunks: int, *, timeout: float = 30.0) -> Iterator[dict[str, str]]:
    """Run the loopback gateway as a child process per protocol (started together); yield
    their URLs by protocol; stop them on exit."""
    processes = {}
    try:
        for protocol in PROTOCOLS:
            command = [sys.executable, "-m", "tests.fakes.llm_gateway", "--port", "0"]
            command += ["--protocol", protocol, "--chunks", str(chunks)]
            processes[protocol] = subprocess.Popen(
                command,
                cwd=ROOT,  # ``-m`` finds ``tests`` from here
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                text=True,
            )
        yield {p: gateway_url(process, timeout) for p, process in processes.items()}
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            stop_gateway(process)


# --- the consumers --------------------------------------------------------------------------


class Consumer:
    """Reads one streamed answer to its end and returns its text; keeps its HTTP client."""

    name: str
    protocol: str

    def open(self, url: str) -> None:
        """Make the client for the gateway at ``url``."""
        raise NotImplementedError

    async def run(self) -> str:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class Ours(Consumer):
    """``LLMClient`` on the named wire protocol, keeping the text of every ``TextDelta``; with
    ``assemble``, feeding every event to a ``MessageAssembler`` instead."""

    def __init__(self, protocol: str, *, assemble: bool = False) -> None:
        self.name = OURS[protocol] + (ASSEMBLED if assemble else "")
        self.protocol = protocol
        self._assemble = assemble
        self._request = ModelRequest(
            model=MODEL, messages=(UserMessage(text=PROMPT),), max_tokens=64
        )

    def open(self, url: str) -> None:
        """Called in the running loop (an aiohttp session belongs to one)."""
        self._http = new_stream_session()  # as the bots stream (core.transport)
        if self.protocol == "openai":
            protocol: OpenAIProtocol | AnthropicProtocol = OpenAIProtocol()
            url += "/v1"
        else:
            protocol = AnthropicProtocol()
        self._client = LLMClient(http=self._http, protocol=protocol, base_url=url, api_key="x")

    async def run(self) -> str:
        if self._assemble:
            assembler = MessageAssembler()
            async with self._client.stream(self._request) as events:
                async for event in events:
                    assembler.feed(event)
            return assembler.message().text
        parts = []
        async with self._client.stream(self._request) as events:
            async for event in events:
                if isinstance(event, TextDelta):
                    parts.append(event.text)
        return "".join(parts)

    async def close(self) -> None:
        await self._http.close()


class OpenAISDK(Consumer):
    """``chat.completions.create(stream=True)``; with ``helper``, ``chat.completions.stream()``."""

    def __init__(self, *, helper: bool = False) -> None:
        self.name = SDKS["openai"] + (HELPER if helper else "")
        self.protocol = "openai"
        self._helper = helper
        self._messages: Any = [{"role": "user", "content": PROMPT}]

    def open(self, url: str) -> None:
        import openai

        self._client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="x", max_retries=0)

    async def run(self) -> str:
        options: Any = {"include_usage": True}
        if self._helper:
            async with self._client.chat.completions.stream(
                model=MODEL, messages=self._messages, max_tokens=64, stream_options=options
            ) as stream:
                async for _ in stream:
                    pass
                completion = await stream.get_final_completion()
            return completion.choices[0].message.content or ""
        parts = []
        chunks = await self._client.chat.completions.create(
            model=MODEL,
            messages=self._messages,
            max_tokens=64,
            stream=True,
            stream_options=options,
        )
        async for chunk in chunks:
            if chunk.choices:
                content = chunk.choices[0].delta.content
                if content:
                    parts.append(content)
        return "".join(parts)

    async def close(self) -> None:
        await self._client.close()


class AnthropicSDK(Consumer):
    """``messages.create(stream=True)``; with ``helper``, ``messages.stream()``."""

    def __init__(self, *, helper: bool = False) -> None:
        self.name = SDKS["anthropic"] + (HELPER if helper else "")
        self.protocol = "anthropic"
        self._helper = helper
        self._messages: Any = [{"role": "user", "content": PROMPT}]

    def open(self, url: str) -> None:
        import anthropic

        self._client = anthropic.AsyncAnthropic(base_url=url, api_key="x", max_retries=0)

    async def run(self) -> str:
        if self._helper:
            async with self._client.messages.stream(
                model=MODEL, messages=self._messages, max_tokens=64
            ) as stream:
                async for _ in stream:
                    pass
                message = await stream.get_final_message()
            return "".join(block.text for block in message.content if block.type == "text")
        parts = []
        events = await self._client.messages.create(
            model=MODEL, messages=self._messages, max_tokens=64, stream=True
        )
        async for event in events:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                parts.append(event.delta.text)
        return "".join(parts)

    async def close(self) -> None:
        await self._client.close()


def consumers(*, helpers: bool = True) -> list[Consumer]:
    """Ours and the SDKs', per protocol; with ``helpers``, the SDKs' assembling helpers too,
    and ours with ``MessageAssembler``."""
    out: list[Consumer] = [Ours("openai"), OpenAISDK(), Ours("anthropic"), AnthropicSDK()]
    if helpers:
        out += [Ours("openai", assemble=True), OpenAISDK(helper=True)]
        out += [Ours("anthropic", assemble=True), AnthropicSDK(helper=True)]
    return out


# --- measuring ------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Result:
    """CPU seconds per 10,000 chunks, per round, for each consumer."""

    chunks: int
    per_10k: dict[str, list[float]] = field(default_factory=dict)

    def median(self, name: str) -> float:
        return statistics.median(self.per_10k[name])

    def ratio(self, ours: str, peer: str) -> float:
        return median_ratio(self.per_10k[ours], self.per_10k[peer])


async def _timed(consumer: Consumer, chunks: int) -> float:
    start = time.process_time()
    text = await consumer.run()
    seconds = time.process_time() - start
    if len(text) != len(expected_text(chunks)):
        raise AssertionError(f"{consumer.name} read {len(text)} characters, not the whole text")
    return seconds * 10_000 / chunks


async def measure(
    urls: dict[str, str],
    *,
    chunks: int,
    rounds: int,
    helpers: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Result:
    """Open every consumer on the gateway of its protocol, check its text once, then time
    ``rounds`` rounds, interleaved."""
    result = Result(chunks=chunks)
    peers = consumers(helpers=helpers)
    try:
        for consumer in peers:
            consumer.open(urls[consumer.protocol])
            if await consumer.run() != expected_text(chunks):
                raise AssertionError(f"{consumer.name} assembled a different text")
        for round_ in range(rounds):
            if progress:
                progress(f"round {round_ + 1}/{rounds}")
            shift = round_ % len(peers)
            gc.collect()
            for consumer in peers[shift:] + peers[:shift]:
                seconds = await _timed(consumer, chunks)
                result.per_10k.setdefault(consumer.name, []).append(seconds)
    finally:
        for consumer in peers:
            with contextlib.suppress(Exception):
                await consumer.close()
    return result


def run(
    *,
    chunks: int,
    rounds: int,
    helpers: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Result:
    """Start a gateway process per protocol, measure, stop them."""
    with gateway_processes(chunks) as urls:
        return asyncio.run(
            measure(urls, chunks=chunks, rounds=rounds, helpers=helpers, progress=progress)
        )


def table(result: Result) -> str:
    lines = [f"  {'consumer':<32} {'CPU s / 10k chunks':>18}"]
    for name in result.per_10k:
        lines.append(f"  {name:<32} {result.median(name):18.4f}")
    lines.append("")
    pairs = [(OURS[p], SDKS[p]) for p in PROTOCOLS]
    pairs += [(OURS[p] + ASSEMBLED, SDKS[p] + HELPER) for p in PROTOCOLS]
    for ours, peer in pairs:
        if ours in result.per_10k and peer in result.per_10k:
            lines.append(f"  {ours} / {peer}: {result.ratio(ours, peer):.2f}x")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=20_000, help="text deltas per stream")
    parser.add_argument("--rounds", type=int, default=5, help="timed runs per consumer")
    parser.add_argument("--quick", action="store_true", help="2,000 chunks, 2 rounds")
    parser.add_argument("--no-helpers", action="store_true", help="skip the SDKs' .stream()")
    args = parser.parse_args(argv)
    chunks, rounds = (2_000, 2) if args.quick else (args.chunks, args.rounds)

    def progress(message: str) -> None:
        print(f"\r  {message:<40}", end="", file=sys.stderr, flush=True)

    result = run(
        chunks=chunks,
        rounds=rounds,
        helpers=not args.no_helpers,
        progress=progress if sys.stderr.isatty() else None,
    )
    print(
        f"Python {sys.version.split()[0]}; {chunks:,} chunks per stream; CPU time of this "
        f"process, median of {rounds} rounds"
    )
    print(table(result))


if __name__ == "__main__":
    main()
