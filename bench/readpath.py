"""``python -m bench.readpath``: CPU per 1,000 streamed tokens on the read path alone, N streams
at once, ``LLMClient`` against other ways of reading the same streams.

The paced gateway (``python -m tests.fakes.llm_gateway --pace RATE --chunks TOKENS``) runs as a
separate process, so each delta arrives as a read of its own, as from a real model. Each round
runs every reader once, in a rotating order; a reader opens N streams at once and reads them all
to their end, timed in CPU seconds of this process (``time.process_time``), so waiting on the
gateway and other load on a shared machine are not counted. Readers:

- ``LLMClient`` — :class:`core.client.LLMClient` as ``bots.runtime`` builds it (on an aiohttp
  session), collecting each :class:`~core.events.TextDelta` (the read path below the engine).
- ``LLMClient httpx2`` — the same client on an httpx2 client (``core.transport``'s other one).
- ``httpx2 loop`` — httpx2's ``aiter_bytes`` into :class:`~core.sse.SSEDecoder` and the OpenAI
  stream decoder: the read path ``LLMClient`` had before issue 19.
- ``aiohttp loop`` — aiohttp's ``iter_any`` into the same decoders.
- ``openai SDK`` — ``AsyncOpenAI().chat.completions.create(stream=True)``, the plain loop.

The table shows the median CPU seconds per 1,000 tokens and the median over rounds of each
reader's ratio to ``LLMClient`` in the same round.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from bench import median_ratio
from bench.load import paced_gateway

__all__ = ["READERS", "main", "run"]

MODEL = "fake/model"
PROMPT = "Tell me a long story."
OURS = "LLMClient"

Reader = Callable[[str, int], Coroutine[Any, Any, int]]
"""Reads ``n`` streams at once from the gateway at a URL; returns the characters of text read."""


def _request() -> Any:
    from core.messages import ModelRequest, UserMessage

    return ModelRequest(model=MODEL, messages=(UserMessage(text=PROMPT),), max_tokens=4096)


def _body() -> dict[str, Any]:
    from core.protocols import OpenAIProtocol

    return OpenAIProtocol().request_body(_request())


async def llm_client(url: str, n: int) -> int:
    from core.client import new_stream_session

    return await _llm_client(new_stream_session(max_connections=n + 16), url, n)


async def llm_client_httpx2(url: str, n: int) -> int:
    from core.client import new_http_client

    return await _llm_client(new_http_client(max_connections=n + 16), url, n)


async def _llm_client(session: Any, url: str, n: int) -> int:
    from core.client import LLMClient
    from core.events import TextDelta
    from core.protocols import OpenAIProtocol

    request = _request()
    async with session as http:
        client = LLMClient(
            http=http, protocol=OpenAIProtocol(), base_url=url + "/v1", api_key="bench"
        )

        async def one() -> int:
            size = 0
            async with client.stream(request) as events:
                async for event in events:
                    if isinstance(event, TextDelta):
                        size += len(event.text)
            return size

        return sum(await asyncio.gather(*(one() for _ in range(n))))


async def httpx2_loop(url: str, n: int) -> int:
    import httpx2

    from core.events import TextDelta
    from core.protocols import OpenAIProtocol
    from core.sse import SSEDecoder

    protocol, body = OpenAIProtocol(), _body()
    limits = httpx2.Limits(max_connections=n + 16, max_keepalive_connections=max(10, n // 4))
    async with httpx2.AsyncClient(limits=limits) as http:

        async def one() -> int:
            size = 0
            sse, decoder = SSEDecoder(), protocol.decoder()
            async with http.stream("POST", url + "/v1/chat/completions", json=body) as response:
                async for chunk in response.aiter_bytes():
                    for server_event in sse.feed(chunk):
                        for event in decoder.feed(server_event):
                            if isinstance(event, TextDelta):
                                size += len(event.text)
            return size

        return sum(await asyncio.gather(*(one() for _ in range(n))))


async def aiohttp_loop(url: str, n: int) -> int:
    import aiohttp

    from core.events import TextDelta
    from core.protocols import OpenAIProtocol
    from core.sse import SSEDecoder

    protocol, body = OpenAIProtocol(), _body()
    connector = aiohttp.TCPConnector(limit=n + 16)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one() -> int:
            size = 0
            sse, decoder = SSEDecoder(), protocol.decoder()
            async with http.post(url + "/v1/chat/completions", json=body) as response:
                async for chunk in response.content.iter_any():
                    for server_event in sse.feed(chunk):
                        for event in decoder.feed(server_event):
                            if isinstance(event, TextDelta):
                                size += len(event.text)
            return size

        return sum(await asyncio.gather(*(one() for _ in range(n))))


async def openai_sdk(url: str, n: int) -> int:
    import httpx2
    import openai

    limits = httpx2.Limits(max_connections=n + 16, max_keepalive_connections=max(10, n // 4))
    client = openai.AsyncOpenAI(
        base_url=url + "/v1", api_key="bench", max_retries=0,
        http_client=openai.DefaultAsyncHttpxClient(limits=limits),
    )  # fmt: skip
    messages: Any = [{"role": "user", "content": PROMPT}]

    async def one() -> int:
        size = 0
        chunks = await client.chat.completions.create(model=MODEL, messages=messages, stream=True)
        async for chunk in chunks:
            if chunk.choices and (content := chunk.choices[0].delta.content):
                size += len(content)
        return size

    try:
        return sum(await asyncio.gather(*(one() for _ in range(n))))
    finally:
        await client.close()


READERS: dict[str, Reader] = {
    OURS: llm_client,
    "LLMClient httpx2": llm_client_httpx2,
    "httpx2 loop": httpx2_loop,
    "aiohttp loop": aiohttp_loop,
    "openai SDK": openai_sdk,
}


def _timed(reader: Reader, url: str, n: int) -> tuple[float, int]:
    """CPU seconds of one reader's N streams (its client's set-up included) and the text read."""
    gc.collect()
    started = time.process_time()
    size = asyncio.run(reader(url, n))
    return time.process_time() - started, size


def run(
    names: Sequence[str], *, n: int, tokens: int, rate: float, rounds: int
) -> dict[str, list[float]]:
    """CPU seconds per 1,000 tokens of each reader, per round (rotating order)."""
    from tests.fakes.llm_gateway import paced_text

    expected = n * len(paced_text(tokens, 0.0))
    per_1k: dict[str, list[float]] = {name: [] for name in names}
    with paced_gateway(tokens, rate) as url:
        for name in names:  # a warm-up: imports, and a check that every reader reads it all
            _, size = _timed(READERS[name], url, min(n, 4))
            if size != expected // n * min(n, 4):
                raise RuntimeError(f"{name} read {size} characters")
        for index in range(rounds):
            order = list(names[index % len(names) :]) + list(names[: index % len(names)])
            for name in order:
                cpu, size = _timed(READERS[name], url, n)
                if size != expected:
                    raise RuntimeError(f"{name} read {size} of {expected} characters")
                per_1k[name].append(cpu / (n * tokens) * 1000)
    return per_1k


def table(per_1k: dict[str, list[float]]) -> str:
    lines = [f"  {'reader':<16} {'CPU ms/1k tokens':>16} {'/ ' + OURS:>13}"]
    for name, values in per_1k.items():
        ratio = median_ratio(values, per_1k[OURS]) if OURS in per_1k else float("nan")
        lines.append(f"  {name:<16} {statistics.median(values) * 1000:16.2f} {ratio:12.2f}x")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=100, help="streams at once")
    parser.add_argument("--tokens", type=int, default=200, help="deltas per stream")
    parser.add_argument("--rate", type=float, default=80.0, help="deltas per second")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", help="comma-separated readers (default: all)")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(READERS)
    started = time.monotonic()
    per_1k = run(names, n=args.n, tokens=args.tokens, rate=args.rate, rounds=args.rounds)
    print(
        f"Python {sys.version.split()[0]}; {args.n} streams at once, {args.tokens} deltas each "
        f"at {args.rate:g}/s from a paced gateway process; {args.rounds} rounds; took "
        f"{time.monotonic() - started:.0f} s"
    )
    print(table(per_1k))


if __name__ == "__main__":
    main()
