"""The mapping's per-process cache of standardized values: the same results as the standardizers give,
values of different types kept apart, no shared mutable value, and a new day starting it over."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from streams.normalize import mapping
from streams.normalize import standardize as std
from streams.normalize.mapping import STANDARDIZERS, FieldRule, _standardized


@pytest.fixture(autouse=True)
def empty_cache():
    mapping._results.clear()
    yield
    mapping._results.clear()


@pytest.mark.parametrize("standardizer, raws", [
    ("text", ["  张三 ", "ＡＢＣ", 1, True, 1.0, None]),
    ("resident_id", ["110101199003074477", "11010119900307447x", "123"]),
    ("person_name", ["张　三", "  李四"]),
    ("date", ["2020-02-29", 18000, "1990/3/7"]),
])
def test_kept_results_are_what_the_standardizer_gives(standardizer, raws):
    rule = FieldRule("field", source="column", standardizer=standardizer)
    for raw in raws * 2:   # the second time from the cache
        try:
            expected = STANDARDIZERS[standardizer](raw)
        except std.Rejected as refused:
            with pytest.raises(std.Rejected) as again:
                _standardized(rule, raw)
            assert again.value.reason == refused.reason
            continue
        assert _standardized(rule, raw) == expected


def test_equal_values_of_different_types_are_kept_apart():
    rule = FieldRule("field", source="column", standardizer="text")
    assert [_standardized(rule, raw).value for raw in (1, True, 1.0, "1")] == ["1", "True", "1.0", "1"]


def test_an_address_is_not_shared_between_records():
    rule = FieldRule("address", source="column", standardizer="address")
    first, second = (_standardized(rule, "广东省深圳市南山区粤海街道科技园社区科苑路15号") for _ in range(2))
    assert first.value == second.value and first.value is not second.value


def test_a_new_day_starts_the_cache_over(monkeypatch):
    rule = FieldRule("field", source="column", standardizer="text")
    _standardized(rule, "kept")
    mapping.forget_standardized_on_a_new_day()
    assert mapping._results   # the same day: kept
    monkeypatch.setattr(mapping, "_results_day", date.today() - timedelta(days=1))
    mapping.forget_standardized_on_a_new_day()
    assert not mapping._results
