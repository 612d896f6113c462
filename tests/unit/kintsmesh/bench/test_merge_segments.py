"""``bench merge``: the lag in parts, percentiles per part, apart for resolved and coded records; the median of runs."""

from kintsmesh.bench.merge import SEGMENTS, lag_segments, median_run, target_p99_ms


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


def test_several_runs_report_the_one_with_the_median_p99_whole() -> None:
    runs = [({"lag_p99_ms": p99, "lag_p50_ms": p50}, f"series {p99}")
            for p99, p50 in ((2042, 700), (901, 498), (1254, 558))]
    assert median_run(runs) == ({"lag_p99_ms": 1254, "lag_p50_ms": 558}, "series 1254")
    assert median_run(runs[:2])[0]["lag_p99_ms"] == 901   # an even number: the lower middle run
    assert median_run(runs[:1]) == runs[0]


def test_the_lag_target_is_issue_21s_for_the_rate() -> None:
    assert target_p99_ms(300) == 1000 and target_p99_ms(1000) == 2000
