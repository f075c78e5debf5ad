"""One variant of ``bench.load`` at one N, in a process of its own (``python -m bench.load_run``).

``bench.load`` starts this module once per variant and N, so that each variant's CPU time and
peak RSS are its own: ``--variant relaybot`` answers N questions through the bot's turn path
(the journal on SQLite, :class:`~bots.turns.TurnWorker`, :class:`~core.engine.ConversationEngine`
built by :class:`~bots.runtime.Runtime`, :class:`~adapters.live.LiveReply` on an instant
surface); ``--variant sdk`` reads N streams with the plain ``openai`` SDK loop. Both ask the
paced gateway at ``--url`` (``python -m tests.fakes.llm_gateway --pace``) at once and print one
JSON object (:class:`Sample`) on stdout. ``--variant per-token`` is ``relaybot`` reading every
token as it comes (``llm.read_interval = 0``), to show what gathered reads are worth.

The measured window opens just before the N answers start and closes when the last one ends;
CPU is ``time.process_time`` over it, lag is a 10 ms ticker's oversleep within it.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import resource
import tempfile
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["VARIANTS", "Sample", "main", "measure"]

VARIANTS = ("relaybot", "per-token", "sdk")
PROMPT = "Tell me a long story."
MODEL = "fake/model"
TICK = 0.010
"""The lag ticker's sleep: each tick records how much later than this it woke."""


@dataclass(kw_only=True)
class Sample:
    """What one variant did at one N (times in seconds, lists unsorted)."""

    variant: str
    n: int
    tokens: int
    cpu: float = 0.0
    wall: float = 0.0
    lags: list[float] = field(default_factory=list)
    first_text: list[float] = field(default_factory=list)
    """Per answer: from the gateway's send of the first delta to its text being visible."""
    peak_rss: int = 0
    """Bytes (``ru_maxrss``: the process's peak, its start-up included)."""
    completed: int = 0
    failed: int = 0
    note: str = ""


class Stopwatch:
    """The measured window: CPU and wall time, and a 10 ms ticker's oversleep."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._cpu = self._wall = 0.0
        self._ticker: asyncio.Task[None] | None = None

    def __enter__(self) -> Stopwatch:
        self._ticker = asyncio.create_task(self._tick(), name="lag ticker")
        self._cpu, self._wall = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self._cpu = time.process_time() - self._cpu
        self._wall = time.perf_counter() - self._wall
        if self._ticker is not None:
            self._ticker.cancel()

    def into(self, sample: Sample) -> None:
        sample.cpu, sample.wall, sample.lags = self._cpu, self._wall, self.lags

    async def _tick(self) -> None:
        clock = time.perf_counter
        while True:
            started = clock()
            await asyncio.sleep(TICK)
            self.lags.append(max(0.0, clock() - started - TICK))


def stamp_of(text: str) -> float | None:
    """The send time the paced gateway put at the start of an answer's text."""
    from tests.fakes.llm_gateway import PACED_STAMP

    found = PACED_STAMP.match(text)
    return float(found.group(1)) if found else None


# --- relaybot: the turn path on an instant surface ------------------------------------------


class InstantSurface:
    """A platform that answers every call at once and keeps only what a benchmark reads: the
    current draft of each message and when the first text became visible (wall clock)."""

    def __init__(self) -> None:
        from adapters.surface import SurfaceLimits

        # Slack's message size and a one-second edit interval; no shared budget scopes.
        self._limits = SurfaceLimits(max_length=12_000, edit_interval=1.0)
        self.drafts: dict[str, Any] = {}
        self.first_text_at: float | None = None
        self.stamp: float | None = None

    @property
    def limits(self) -> Any:
        return self._limits

    def render(self, markdown: str) -> str:
        return markdown

    async def post(self, draft: Any) -> str:
        ref = f"m{len(self.drafts) + 1}"
        self._show(ref, draft)
        return ref

    async def edit(self, ref: str, draft: Any) -> None:
        self._show(ref, draft)

    async def delete(self, ref: str) -> None:
        self.drafts.pop(ref, None)

    def _show(self, ref: str, draft: Any) -> None:
        self.drafts[ref] = draft
        if self.first_text_at is None and draft.text:
            self.first_text_at = time.time()
            self.stamp = stamp_of(draft.text)

    def whole(self) -> tuple[str, bool]:
        """The answer as shown (every message's text joined) and whether it is final."""
        drafts = list(self.drafts.values())
        return "".join(d.text for d in drafts), bool(drafts) and all(d.final for d in drafts)


class BenchPlatform:
    """The worker's :class:`~bots.turns.Platform`: an instant surface per turn, a ``LiveReply``
    with the usual placeholder."""

    def __init__(self, budget: Any) -> None:
        self.budget = budget
        self.surfaces: dict[int, InstantSurface] = {}

    async def prepare(self, lease: Any) -> Any:
        return lease

    async def surface(self, turn: Any) -> InstantSurface:
        return self.surfaces.setdefault(turn.id, InstantSurface())

    def reply(
        self,
        turn: Any,
        surface: Any,
        *,
        on_gone: Callable[[], None],
        on_posted: Callable[[tuple[str, ...]], Awaitable[None]],
    ) -> Any:
        from adapters.live import LiveReply

        return LiveReply(
            surface, self.budget, on_gone=on_gone, on_posted=on_posted, name=f"turn {turn.id}"
        )

    async def finished(self, turn: Any) -> None:
        pass


async def relaybot(
    url: str, n: int, tokens: int, sample: Sample, *, read_interval: float | None = None
) -> None:
    """N questions accepted at once into the SQLite journal and answered by a ``TurnWorker``,
    the engine built by ``Runtime.start`` with ``llm.max_concurrent_requests = N`` (and
    ``llm.read_interval``, unless the default)."""
    from bots.runtime import Runtime
    from bots.settings import load_settings
    from bots.turns import TurnWorker, worker_timing
    from core.messages import ConversationKey, UserMessage
    from tests.fakes.llm_gateway import paced_text

    with tempfile.TemporaryDirectory(prefix="relaybot-load-") as directory:
        llm: dict[str, Any] = {
            "base_url": url + "/v1",
            "model": MODEL,
            "max_concurrent_requests": n,
        }
        if read_interval is not None:
            llm["read_interval"] = read_interval
        overrides = {
            "llm": llm,
            "store": {"url": f"sqlite:///{Path(directory) / 'bench.db'}"},
            "tools": {"weather_enabled": False},
        }
        settings = load_settings(environ={}, overrides=overrides)
        async with Runtime.start(settings, announce=lambda line: None) as runtime:
            platform = BenchPlatform(runtime.budget)
            worker = TurnWorker(
                store=runtime.store, engine=runtime.engine, platform=platform,
                budget=runtime.budget, timing=worker_timing(settings.store), name="bench",
            )  # fmt: skip
            await worker.start()
            store = runtime.store

            async def ask(i: int) -> None:
                key = ConversationKey(platform="bench", workspace="w", channel="c", thread=str(i))
                question = UserMessage(text=PROMPT, author_id=f"u{i}", author_name="someone")
                await store.accept(
                    event_id=f"bench:{i}", key=key, order="000000000001", question=question,
                    platform="a benchmark", claim_ttl=600,
                )  # fmt: skip
                worker.wake(key)

            try:
                with Stopwatch() as watch:
                    await asyncio.gather(*(ask(i) for i in range(n)))
                    await worker.idle()
            finally:
                await worker.close()
        watch.into(sample)
    for surface in platform.surfaces.values():
        text, final = surface.whole()
        stamp, shown_at = surface.stamp, surface.first_text_at
        if stamp is None or shown_at is None or not final:
            continue
        if text == paced_text(tokens, stamp):
            sample.completed += 1
            sample.first_text.append(shown_at - stamp)
    sample.failed = n - sample.completed
    sample.note = "llm.max_concurrent_requests = N (below N the rest would queue past it)"


# --- the plain openai SDK loop ---------------------------------------------------------------


async def sdk(url: str, n: int, tokens: int, sample: Sample) -> None:
    """N ``chat.completions.create(stream=True)`` loops on one ``AsyncOpenAI``, each keeping
    its text; the client's pool is sized for N, as relaybot's is (the SDK's default is 1,000
    connections)."""
    import httpx2
    import openai

    from tests.fakes.llm_gateway import paced_text

    limits = httpx2.Limits(max_connections=n + 16, max_keepalive_connections=max(10, n // 4))
    client = openai.AsyncOpenAI(
        base_url=url + "/v1", api_key="bench", max_retries=0,
        http_client=openai.DefaultAsyncHttpxClient(limits=limits),
    )  # fmt: skip
    messages: Any = [{"role": "user", "content": PROMPT}]

    async def one() -> None:
        parts: list[str] = []
        first_at: float | None = None
        chunks = await client.chat.completions.create(
            model=MODEL, messages=messages, stream=True, stream_options={"include_usage": True}
        )
        async for chunk in chunks:
            if chunk.choices and (content := chunk.choices[0].delta.content):
                if first_at is None:
                    first_at = time.time()
                parts.append(content)
        text = "".join(parts)
        stamp = stamp_of(text)
        if first_at is not None and stamp is not None and text == paced_text(tokens, stamp):
            sample.completed += 1
            sample.first_text.append(first_at - stamp)

    try:
        with Stopwatch() as watch:
            outcomes = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
    finally:
        await client.close()
    watch.into(sample)
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    sample.failed = n - sample.completed
    sample.note = f"{len(errors)} raised" if errors else ""


RUNNERS: dict[str, Callable[[str, int, int, Sample], Coroutine[Any, Any, None]]] = {
    "relaybot": relaybot,
    "per-token": functools.partial(relaybot, read_interval=0.0),
    "sdk": sdk,
}


def measure(variant: str, *, url: str, n: int, tokens: int) -> Sample:
    """Run one variant at N against the paced gateway at ``url``; its sample."""
    sample = Sample(variant=variant, n=n, tokens=tokens)
    asyncio.run(RUNNERS[variant](url, n, tokens, sample))
    sample.peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    return sample


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    parser.add_argument("--url", required=True, help="the paced gateway's URL")
    parser.add_argument("--n", type=int, required=True, help="concurrent answers")
    parser.add_argument("--tokens", type=int, required=True, help="deltas per answer")
    args = parser.parse_args(argv)
    sample = measure(args.variant, url=args.url, n=args.n, tokens=args.tokens)
    print(json.dumps(asdict(sample)), flush=True)


if __name__ == "__main__":
    main()
