"""The lag plot benchmarks write next to their JSON."""

from pathlib import Path

from kintsmesh.bench.plot import per_second, write_lag_plot


def test_per_second_percentiles_bucket_by_seconds_since_the_first_sample():
    series = [(100.0, 10.0), (100.5, 30.0), (101.2, 5.0), (103.9, 7.0)]
    assert [(s, p50) for s, p50, _ in per_second(series)] == [(0, 10.0), (1, 5.0), (3, 7.0)]
    assert per_second(series)[0][2] == 30.0
    assert per_second([]) == []


def test_the_plot_is_a_png(tmp_path: Path):
    out = write_lag_plot("test", [(1000 + i / 10, 50.0 + i) for i in range(100)], "a title", target_ms=1000,
                         path=tmp_path / "lag.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 10_000
