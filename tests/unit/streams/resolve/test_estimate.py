"""Fellegi–Sunter weights estimated without labels (``streams.resolve.estimate``)."""

from __future__ import annotations

import random
from datetime import date

import pytest

from kintsmesh.bench.resolve import simulated_person_records
from streams.resolve.estimate import M_FLOOR, estimate
from streams.resolve.matching import LEVELS, Weights


@pytest.fixture(scope="module")
def estimated() -> tuple[Weights, dict]:
    records = simulated_person_records(1500, 31, date(2026, 12, 1))
    random.Random(3).shuffle(records)
    return estimate(records, random_pairs=60_000, source="test")


def test_agreement_weighs_for_and_disagreement_against(estimated):
    weights, report = estimated
    for comparison, best, worst in (("name", "exact", "different"), ("birth", "exact", "different"),
                                    ("ric", "exact", "different"), ("address", "exact", "different")):
        assert weights.bits(comparison, best) > 3 > 0 > weights.bits(comparison, worst), (comparison, weights.m)
    assert weights.bits("gender", "same") > 0 > weights.bits("gender", "different")   # half of all pairs agree
    assert weights.bits("name", "exact") > weights.bits("name", "pinyin") > weights.bits("name", "different")
    assert 0 < weights.prior < 0.01 and weights.source == "test"
    assert set(report["sessions"]) == {"ric_body", "name_birth", "name_address"}


def test_every_level_is_a_probability_and_none_is_impossible(estimated):
    weights, _ = estimated
    for part in (weights.m, weights.u):
        for comparison, levels in LEVELS.items():
            assert set(part[comparison]) == set(levels)
            assert sum(part[comparison].values()) == pytest.approx(1, abs=1e-6)
    floored = [p for levels in weights.m.values() for p in levels.values()]
    assert min(floored) >= M_FLOOR * 0.9   # floored, then normalized


def test_too_few_records_are_refused():
    with pytest.raises(ValueError, match="too few"):
        estimate([{"name": "张伟", "findings": []}] * 10)
