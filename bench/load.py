"""``python -m bench.load``: N concurrent live answers in one process, relaybot against the
plain ``openai`` SDK loop.

A paced gateway (``python -m tests.fakes.llm_gateway --pace 40 --chunks 415``) runs as a
separate process, so serving costs the measured processes nothing: every request gets 415
text deltas at 40 per second, the first stamped with the wall-clock moment it was sent. For
each N of the ladder, interleaved (relaybot N, SDK N, then the next N), each variant runs in a
fresh process of its own (:mod:`bench.load_run`), so their CPU and RSS are measured apart:

- ``relaybot`` — N questions accepted at once into the SQLite journal (a temp dir) and
  answered by :class:`~bots.turns.TurnWorker`: :class:`~core.engine.ConversationEngine` as
  :class:`~bots.runtime.Runtime` builds it, with ``llm.max_concurrent_requests = N`` (the
  default, 1,000, would make those past it wait for whole answers), and
  :class:`~adapters.live.LiveReply` on an instant surface (Slack's length, one edit a second
  per message, no shared budget).
- ``per-token`` — the same, reading every token as it comes (``llm.read_interval = 0``; the
  default gathers what comes within 0.2 s into one read once an answer has begun).
- ``sdk`` — N ``AsyncOpenAI().chat.completions.create(stream=True)`` loops accumulating the
  deltas, the client's pool sized to N as relaybot's is.

Per N and variant: CPU seconds per 1,000 tokens delivered (``time.process_time`` over the
window from the first question to the last answer), event-loop lag p50/p99 (a 10 ms ticker's
oversleep), first visible text p50/p99 (from the gateway's send of the first delta to the
surface showing it, or the SDK loop receiving it), peak RSS, completed/failed and the window's
wall time (an answer alone takes 414 / 40 = 10.35 s). Then the ratios relaybot/SDK and, for
each variant, the largest N of the ladder whose lag p99 stays under 100 ms.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import gateway_url, stop_gateway
from bench.load_run import VARIANTS, Sample

__all__ = ["Ladder", "lag_limit_n", "main", "paced_gateway", "run", "table"]

ROOT = Path(__file__).resolve().parent.parent
LADDER = (100, 300, 1000, 2000)
TOKENS, RATE = 415, 40.0
QUICK: tuple[tuple[int, ...], int, float] = ((3, 5), 20, 100.0)
"""``--quick``: the ladder, tokens per answer and rate of a smoke run."""
LAG_LIMIT = 0.100
RUN_TIMEOUT = 900.0
"""Seconds one variant at one N may take before the run is abandoned."""


@dataclass(frozen=True, kw_only=True)
class Ladder:
    """What one run measures: the Ns, and each answer's tokens and pace."""

    ns: tuple[int, ...] = LADDER
    tokens: int = TOKENS
    rate: float = RATE


@contextlib.contextmanager
def paced_gateway(tokens: int, rate: float, *, timeout: float = 30.0) -> Iterator[str]:
    """The paced gateway as a child process; yields its URL, stops it on exit."""
    command = [sys.executable, "-m", "tests.fakes.llm_gateway", "--port", "0"]
    command += ["--chunks", str(tokens), "--pace", str(rate)]
    process = subprocess.Popen(
        command, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True
    )
    try:
        yield gateway_url(process, timeout)
    finally:
        process.terminate()
        stop_gateway(process)


def measure_in_process(variant: str, *, url: str, n: int, tokens: int) -> Sample:
    """One variant at N in a fresh process (:mod:`bench.load_run`); its sample."""
    command = [sys.executable, "-m", "bench.load_run", "--variant", variant, "--url", url]
    command += ["--n", str(n), "--tokens", str(tokens)]
    done = subprocess.run(
        command, cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=RUN_TIMEOUT, check=False,
    )  # fmt: skip
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"{variant} at N={n} exited with status {done.returncode}:\n{tail}")
    return Sample(**json.loads(lines[-1]))


def run(ladder: Ladder, *, progress: Callable[[str], None] | None = None) -> list[Sample]:
    """Start the paced gateway, run every variant at every N (interleaved), stop it."""
    samples = []
    with paced_gateway(ladder.tokens, ladder.rate) as url:
        for n in ladder.ns:
            for variant in VARIANTS:
                if progress:
                    progress(f"N={n}: {variant}")
                samples.append(measure_in_process(variant, url=url, n=n, tokens=ladder.tokens))
    return samples


# --- the table ------------------------------------------------------------------------------


def _percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def cpu_per_1k(sample: Sample) -> float:
    delivered = sample.completed * sample.tokens
    return sample.cpu / delivered * 1000 if delivered else float("nan")


def lag_limit_n(samples: Sequence[Sample], variant: str) -> int | None:
    """The largest N of the ladder at which ``variant`` kept lag p99 under 100 ms, all its
    answers complete (``None``: not even the smallest)."""
    passed = [
        s.n
        for s in samples
        if s.variant == variant and s.failed == 0 and _percentile(s.lags, 99) < LAG_LIMIT
    ]
    return max(passed, default=None)


def _row(s: Sample) -> str:
    ms = 1000
    return (
        f"  {s.n:>5} {s.variant:<9} {cpu_per_1k(s):9.3f} "
        f"{_percentile(s.lags, 50) * ms:8.1f} {_percentile(s.lags, 99) * ms:8.1f} "
        f"{_percentile(s.first_text, 50) * ms:8.0f} {_percentile(s.first_text, 99) * ms:8.0f} "
        f"{s.peak_rss / 2**20:7.0f} {s.completed:>6}/{s.failed:<4} {s.wall:6.1f}"
    )


def _ratios(ours: Sample, sdk: Sample) -> str:
    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}x" if b > 0 and a == a and b == b else "-"

    lag = ratio(_percentile(ours.lags, 99), _percentile(sdk.lags, 99))
    first = ratio(_percentile(ours.first_text, 99), _percentile(sdk.first_text, 99))
    return (
        f"  N={ours.n} {ours.variant}: CPU/token {ratio(cpu_per_1k(ours), cpu_per_1k(sdk))}, "
        f"lag p99 {lag}, "
        f"first text p99 {first}, peak RSS {ratio(ours.peak_rss, sdk.peak_rss)}"
    )


def table(samples: Sequence[Sample]) -> str:
    head = (
        f"  {'N':>5} {'variant':<9} {'CPU s/1k':>9} {'lag p50':>8} {'lag p99':>8} "
        f"{'1st p50':>8} {'1st p99':>8} {'RSS MiB':>7} {'done/failed':>11} {'wall s':>6}"
    )
    lines = [head + "   (lag and first text in ms)"]
    lines += [_row(s) for s in samples]
    lines.append("against the SDK loop, same N:")
    by_n: dict[int, dict[str, Sample]] = {}
    for s in samples:
        by_n.setdefault(s.n, {})[s.variant] = s
    for pair in by_n.values():
        for ours in ("relaybot", "per-token"):
            if ours in pair and "sdk" in pair:
                lines.append(_ratios(pair[ours], pair["sdk"]))
    limits = {v: lag_limit_n(samples, v) for v in VARIANTS}
    shown = {v: "none" if n is None else str(n) for v, n in limits.items()}
    line = (
        f"largest N with lag p99 < 100 ms: relaybot {shown['relaybot']}, per-token "
        f"{shown['per-token']}, SDK {shown['sdk']}"
    )
    if limits["relaybot"] and limits["sdk"]:
        line += f" (relaybot {limits['relaybot'] / limits['sdk']:.1f}x the SDK's)"
    lines.append(line)
    notes = sorted({s.note for s in samples if s.note})
    lines += [f"note: {note}" for note in notes]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ladder", help="comma-separated Ns (default 100,300,1000,2000)")
    parser.add_argument("--tokens", type=int, default=TOKENS, help="deltas per answer")
    parser.add_argument("--rate", type=float, default=RATE, help="deltas per second")
    parser.add_argument("--quick", action="store_true", help="N = 3, 5; 20 deltas at 100/s")
    args = parser.parse_args(argv)
    ns: tuple[int, ...]
    if args.quick:
        ns, tokens, rate = QUICK
    else:
        ns, tokens, rate = LADDER, args.tokens, args.rate
    if args.ladder:
        ns = tuple(int(part) for part in args.ladder.split(","))
    ladder = Ladder(ns=tuple(ns), tokens=tokens, rate=rate)

    def progress(message: str) -> None:
        print(f"\r  {message:<40}", end="", file=sys.stderr, flush=True)

    started = time.monotonic()
    samples = run(ladder, progress=progress if sys.stderr.isatty() else None)
    print(
        f"Python {sys.version.split()[0]}; {tokens} deltas per answer at {rate:g}/s from a "
        f"paced gateway process; each variant in its own process; took "
        f"{time.monotonic() - started:.0f} s"
    )
    print(table(samples))


if __name__ == "__main__":
    main()
