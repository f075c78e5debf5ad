"""``bench.load`` still runs end to end at tiny N (structure only, nothing timed): both variants
ran in their own processes against the paced gateway, and every answer arrived whole."""

from __future__ import annotations

from bench import load
from bench.load_run import VARIANTS


def test_load_bench_runs_both_variants_and_completes_every_answer() -> None:
    ns, tokens, rate = load.QUICK
    samples = load.run(load.Ladder(ns=ns, tokens=tokens, rate=rate))

    assert [(s.n, s.variant) for s in samples] == [(n, v) for n in ns for v in VARIANTS]
    for sample in samples:
        assert (sample.completed, sample.failed) == (sample.n, 0), sample.variant
        assert len(sample.first_text) == sample.n
        assert sample.lags
        assert sample.peak_rss > 0
    text = load.table(samples)
    assert "N=5: CPU/token" in text
    assert "largest N with lag p99 < 100 ms: relaybot" in text
