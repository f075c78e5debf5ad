"""``python -m bench.sse``: Server-Sent Events decoders on the same bytes, MB/s and ratios.

Decoders, each driven the way its library drives it:

- ``core.sse`` — :class:`core.sse.SSEDecoder`, ``feed(read)`` per read.
- ``httpx-sse`` — what ``EventSource.iter_sse`` does under its response: httpx's incremental
  UTF-8 text decoder (empty text skipped, as httpx's ``TextChunker`` does), its
  ``SSELineDecoder``, ``line.rstrip("\\n")``, its ``SSEDecoder.decode(line)``. Only the
  ``httpx.Response`` plumbing around it is left out, which flatters httpx-sse.
- ``openai`` / ``anthropic`` — the SDKs' ``_streaming.SSEDecoder().iter_bytes(reads)``, which
  ``Stream`` calls on ``response.iter_bytes()``.

Shapes: an OpenAI-like stream of 20,000 events (as ``tests.fakes`` writes them, some text
multi-byte) cut at seeded random points into reads of 1 to 16 KiB, the same bytes in 64-byte
reads, one 16 MiB event in 1 KiB reads (with the same event at 4 MiB, to show how each decoder
scales), and an Anthropic-like stream in 1 to 16 KiB reads.

Every decoder decodes every shape once untimed and must give the same events. Then each
round runs every decoder once, in a rotating order, timed in CPU seconds of this process
(``time.process_time``: a shared machine's other load is not counted); the table shows the
median MB/s and the median over rounds of our ratio to each peer in the same round.
"""

from __future__ import annotations

import argparse
import codecs
import functools
import gc
import importlib
import importlib.util
import random
import statistics
import sys
import time
import types
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench import median_ratio
from core.sse import SSEDecoder
from tests.fakes.streams import anthropic_events, openai_chunks

__all__ = ["DECODERS", "Result", "Shape", "main", "run", "shapes"]

OURS = "core.sse"

Decoder = Callable[[Sequence[bytes]], Iterator[tuple[str, str]]]
"""Decodes a whole stream given as its reads; yields ``(event type, data)`` per event."""


# --- the decoders ---------------------------------------------------------------------------


def _ours(reads: Sequence[bytes]) -> Iterator[tuple[str, str]]:
    decoder = SSEDecoder()
    for read in reads:
        for event in decoder.feed(read):
            yield event.event, event.data
    for event in decoder.close():
        yield event.event, event.data


@functools.cache
def _httpx_sse_module() -> types.ModuleType:
    """``httpx_sse._decoders``. Its package ``__init__`` imports ``httpx``, which this project
    does not install (it uses httpx2), so without ``httpx`` the decoders module is loaded under
    a bare stand-in package; it needs nothing from ``httpx``."""
    try:
        return importlib.import_module("httpx_sse._decoders")
    except ModuleNotFoundError as exc:
        if exc.name != "httpx":
            raise
    spec = importlib.util.find_spec("httpx_sse")
    if spec is None or spec.submodule_search_locations is None:
        raise ModuleNotFoundError("httpx_sse")
    package = types.ModuleType("httpx_sse")
    package.__path__ = list(spec.submodule_search_locations)
    saved = sys.modules.get("httpx_sse")
    sys.modules["httpx_sse"] = package
    try:
        return importlib.import_module("httpx_sse._decoders")
    finally:
        if saved is None:
            del sys.modules["httpx_sse"]
        else:
            sys.modules["httpx_sse"] = saved


def _httpx_sse(reads: Sequence[bytes]) -> Iterator[tuple[str, str]]:
    module: Any = _httpx_sse_module()
    text_decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # httpx TextDecoder
    lines = module.SSELineDecoder()
    decoder = module.SSEDecoder()

    def texts() -> Iterator[str]:
        for read in reads:
            text = text_decoder.decode(read)
            if text:  # httpx's TextChunker drops empty text
                yield text
        text = text_decoder.decode(b"", True)
        if text:
            yield text

    def all_lines() -> Iterator[str]:  # httpx_sse._api._iter_sse_lines
        for text in texts():
            yield from lines.decode(text)
        yield from lines.flush()

    for line in all_lines():  # EventSource.iter_sse
        line = line.rstrip("\n")
        sse = decoder.decode(line)
        if sse is not None:
            yield sse.event, sse.data


@functools.cache
def _module(name: str) -> types.ModuleType:
    return importlib.import_module(name)


def _sdk(module_name: str) -> Decoder:
    def decode(reads: Sequence[bytes]) -> Iterator[tuple[str, str]]:
        module: Any = _module(module_name)
        for sse in module.SSEDecoder().iter_bytes(iter(reads)):
            yield sse.event or "message", sse.data

    return decode


DECODERS: dict[str, Decoder] = {
    OURS: _ours,
    "httpx-sse": _httpx_sse,
    "openai": _sdk("openai._streaming"),
    "anthropic": _sdk("anthropic._streaming"),
}


# --- the shapes -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Shape:
    """One stream, cut into reads. ``scaled`` is the same kind of stream ``scale`` times
    smaller, timed alongside to show how each decoder's cost grows."""

    name: str
    reads: Sequence[bytes]
    scaled: Sequence[bytes] | None = None
    scale: int = 1

    @property
    def size(self) -> int:
        return sum(map(len, self.reads))


def cut(data: bytes, low: int, high: int, *, seed: int = 0) -> list[bytes]:
    """``data`` cut at seeded random points into reads of ``low`` to ``high`` bytes."""
    rng = random.Random(seed)
    reads, at = [], 0
    while at < len(data):
        step = rng.randint(low, high)
        reads.append(data[at : at + step])
        at += step
    return reads


def _words(count: int) -> str:
    """``count`` six-character words, one per delta; one in six is multi-byte (é, à)."""
    vocabulary = ["relay ", "token ", "stream", " bytes", " déjà ", "hello "]
    return "".join(vocabulary[i % len(vocabulary)] for i in range(count))


def openai_stream(events: int) -> bytes:
    """An OpenAI Chat Completions stream with ``events`` text deltas."""
    return b"".join(openai_chunks(_words(events), pieces=6))


def anthropic_stream(events: int) -> bytes:
    """An Anthropic Messages stream with ``events`` text deltas."""
    return b"".join(anthropic_events(_words(events), pieces=6))


def big_event(size: int) -> bytes:
    """One ``data:`` line of about ``size`` bytes of JSON (multi-byte text included)."""
    filler = ("lorem ipsum déjà vu " * (size // 21 + 1)).encode()[: size - 40]
    return b'data: {"type":"blob","text":"' + filler + b'"}\n\n'


def shapes(*, events: int = 20_000, big: int = 16 << 20) -> list[Shape]:
    """The benchmark's shapes; smaller ``events`` and ``big`` make a quick run."""
    realistic = openai_stream(events)
    return [
        Shape(
            name=f"OpenAI-like, {events:,} events, 1-16 KiB reads",
            reads=cut(realistic, 1024, 16384),
        ),
        Shape(name=f"OpenAI-like, {events:,} events, 64-byte reads", reads=cut(realistic, 64, 64)),
        Shape(
            name=f"one {big / (1 << 20):g} MiB event, 1 KiB reads",
            reads=cut(big_event(big), 1024, 1024),
            scaled=cut(big_event(big // 4), 1024, 1024),
            scale=4,
        ),
        Shape(
            name=f"Anthropic-like, {events:,} events, 1-16 KiB reads",
            reads=cut(anthropic_stream(events), 1024, 16384, seed=1),
        ),
    ]


# --- measuring ------------------------------------------------------------------------------


@dataclass(kw_only=True)
class Result:
    """CPU seconds per round for each decoder on one shape."""

    shape: Shape
    seconds: dict[str, list[float]] = field(default_factory=dict)
    scaled_seconds: dict[str, list[float]] = field(default_factory=dict)
    events: int = 0

    def mb_per_s(self, name: str) -> float:
        return self.shape.size / 1e6 / statistics.median(self.seconds[name])

    def ratio(self, peer: str) -> float:
        """Our speed over the peer's: the median over rounds of their time / our time."""
        return median_ratio(self.seconds[peer], self.seconds[OURS])

    def growth(self, name: str) -> float | None:
        """Time on the shape over time on the ``scale``-times smaller one (linear: ``scale``)."""
        if not self.scaled_seconds:
            return None
        return median_ratio(self.seconds[name], self.scaled_seconds[name])

    def fastest_peer(self) -> str:
        return max((n for n in self.seconds if n != OURS), key=self.mb_per_s)


def _consume(decoder: Decoder, reads: Sequence[bytes]) -> float:
    """CPU seconds to decode ``reads`` to the end, touching each event as a consumer would."""
    start = time.process_time()
    deque(decoder(reads), maxlen=0)
    return time.process_time() - start


def run(
    shape_list: Sequence[Shape],
    *,
    rounds: int = 5,
    decoders: dict[str, Decoder] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Result]:
    """Check that every decoder agrees on every shape, then time them, interleaved."""
    decoders = decoders or DECODERS
    results = []
    for shape in shape_list:
        expected = list(_ours(shape.reads))
        for name, decoder in decoders.items():
            got = list(decoder(shape.reads))
            if got != expected:
                raise AssertionError(f"{name} decodes {shape.name!r} differently from {OURS}")
        result = Result(shape=shape, events=len(expected))
        names = list(decoders)
        for round_ in range(rounds):
            if progress:
                progress(f"{shape.name}: round {round_ + 1}/{rounds}")
            order = names[round_ % len(names) :] + names[: round_ % len(names)]
            gc.collect()  # once a round: a full collection costs more than a small shape
            for name in order:
                seconds = _consume(decoders[name], shape.reads)
                result.seconds.setdefault(name, []).append(seconds)
                if shape.scaled is not None:
                    scaled = _consume(decoders[name], shape.scaled)
                    result.scaled_seconds.setdefault(name, []).append(scaled)
        results.append(result)
    return results


def table(results: Sequence[Result]) -> str:
    lines = []
    for result in results:
        shape = result.shape
        lines.append(
            f"\n{shape.name}: {shape.size / 1e6:.1f} MB in {len(shape.reads):,} reads, "
            f"{result.events:,} events"
        )
        head = f"  {'decoder':<11} {'MB/s':>8}  {'core.sse speed-up':>17}"
        if shape.scaled is not None:
            head += f"  {f'time at {shape.scale}x size':>17}"
        lines.append(head)
        for name in result.seconds:
            row = f"  {name:<11} {result.mb_per_s(name):8.1f}  "
            row += f"{'':>17}" if name == OURS else f"{result.ratio(name):16.2f}x"
            growth = result.growth(name)
            if growth is not None:
                row += f"  {growth:16.1f}x"
            lines.append(row)
        peer = result.fastest_peer()
        lines.append(f"  core.sse vs the fastest peer ({peer}): {result.ratio(peer):.2f}x")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7, help="timed runs per decoder and shape")
    parser.add_argument("--quick", action="store_true", help="small shapes, 2 rounds")
    args = parser.parse_args(argv)
    if args.quick:
        shape_list, rounds = shapes(events=2_000, big=1 << 20), 2
    else:
        shape_list, rounds = shapes(), args.rounds
    print(f"Python {sys.version.split()[0]}; CPU time of this process, median of {rounds} rounds")

    def progress(message: str) -> None:
        print(f"\r  {message:<70}", end="", file=sys.stderr, flush=True)

    results = run(shape_list, rounds=rounds, progress=progress if sys.stderr.isatty() else None)
    print(table(results))


if __name__ == "__main__":
    main()
