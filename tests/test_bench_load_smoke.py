"""``bench.load`` still runs end to end at tiny N (structure only, nothing timed): every variant
ran in their own processes against the paced gateway, and every answer arrived whole. Likewise
``bench.readpath``: every reader read every stream whole."""

from __future__ import annotations

from bench import load, readpath
from bench.load_run import VARIANTS


def test_load_bench_runs_every_variant_and_completes_every_answer() -> None:
    ns, tokens, rate = load.QUICK
    samples = load.run(load.Ladder(ns=ns, tokens=tokens, rate=rate))

    assert [(s.n, s.variant) for s in samples] == [(n, v) for n in ns for v in VARIANTS]
    for sample in samples:
        assert (sample.completed, sample.failed) == (sample.n, 0), sample.variant
        assert len(sample.first_text) == sample.n
        assert sample.lags
        assert sample.peak_rss > 0
    text = load.table(samples)
    assert "N=5 relaybot: CPU/token" in text
    assert "N=5 per-token: CPU/token" in text
    assert "largest N with lag p99 < 100 ms: relaybot" in text


def test_readpath_bench_runs_every_reader_and_reads_every_token() -> None:
    """``bench.readpath`` (the read path alone) checks each reader read every stream whole, in
    its warm-up and in every round; here with 3 streams of 10 deltas, one round."""
    per_1k = readpath.run(list(readpath.READERS), n=3, tokens=10, rate=200.0, rounds=1)

    assert list(per_1k) == list(readpath.READERS)
    assert all(len(values) == 1 and values[0] > 0 for values in per_1k.values())
    rows = readpath.table(per_1k).splitlines()[1:]
    assert rows[0].split()[-1] == "1.00x"  # LLMClient against itself
    assert len(rows) == len(readpath.READERS)
