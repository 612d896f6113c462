"""``bench merge``'s lag in parts: percentiles per part, apart for resolved and coded records."""

from kintsmesh.bench.merge import SEGMENTS, lag_segments


def test_each_part_has_its_own_percentiles_per_path() -> None:
    # 100 resolved records: arrival 1..100 ms, transaction 10 ms, settle 200 ms; one coded record
    rows = [(True, float(i), 10.0, 200.0) for i in range(1, 101)] + [(False, 5.0, 30.0, 0.0)]
    parts = lag_segments(rows)
    assert parts["resolved"]["rows"] == 100 and parts["coded"]["rows"] == 1
    resolved = parts["resolved"]["p50_p99_ms"]
    assert list(resolved) == list(SEGMENTS)
    assert resolved[SEGMENTS[0]] == [51.0, 99.0]
    assert resolved[SEGMENTS[1]] == [10.0, 10.0] and resolved[SEGMENTS[2]] == [200.0, 200.0]
    assert parts["coded"]["p50_p99_ms"] == {SEGMENTS[0]: [5.0, 5.0], SEGMENTS[1]: [30.0, 30.0], SEGMENTS[2]: [0.0, 0.0]}


def test_a_path_without_records_is_left_out() -> None:
    assert lag_segments([(False, 1.0, 2.0, 0.0)]).keys() == {"coded"}
    assert lag_segments([]) == {}
