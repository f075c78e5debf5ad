"""The benchmarks still run (tiny sizes, one round, no timing asserted): they must not rot."""

from __future__ import annotations

from bench import sse, stream


def test_sse_bench_decodes_every_shape_the_same_with_every_decoder() -> None:
    results = sse.run(sse.shapes(events=300, big=64 * 1024), rounds=1)
    assert [result.events for result in results] == [304, 304, 1, 306]
    assert set(results[0].seconds) == set(sse.DECODERS)
    assert "core.sse vs the fastest peer" in sse.table(results)


def test_stream_bench_reads_every_stream_to_the_end() -> None:
    result = stream.run(chunks=300, rounds=1)
    assert set(result.per_10k) == {consumer.name for consumer in stream.consumers()}
    assert "LLMClient openai / openai SDK:" in stream.table(result)
