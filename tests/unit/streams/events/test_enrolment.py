"""The school-enrolment verdict on plain dossiers: every outcome with its reason."""

from __future__ import annotations

from datetime import date

import pytest

from streams.events.enrolment import (ELIGIBLE, MISSING_EVIDENCE, NOT_ELIGIBLE, conditions, enrolment_year,
                                      parse_conditions, verdict, window_start)
from streams.events.rules import RuleError, rules


def child(born: str, household: str | None = None, died: str | None = None) -> dict:
    return {"ric": "440304202009010013", "name": "林小明", "birth_date": born, "household_no": household,
            "death_date": died}


def guardian(months: int, filings: int = 0, address: str | None = "福田区景华社区1号") -> dict:
    return {"ric": "440304199001010028", "name": "林母", "relation": "mother", "household_no": None,
            "address": address, "insured_months": months,
            "rental_filings": [{"certificate_no": f"ZL{i}"} for i in range(filings)]}


def test_a_registered_child_of_age_is_eligible_on_that_ground():
    result = verdict({"child": child("2020-08-31", household="440000000001")}, "primary", 2026)
    assert result["verdict"] == ELIGIBLE and result["category"] == "household_registration"


def test_born_1_september_is_too_young_for_this_year_and_eligible_next():
    too_young = verdict({"child": child("2020-09-01", household="440000000001")}, "primary", 2026)
    assert too_young["verdict"] == NOT_ELIGIBLE and "2026-09-01" in too_young["reasons"][0]
    assert verdict({"child": child("2020-09-01", household="440000000001")}, "primary", 2027)["verdict"] == ELIGIBLE


def test_a_leap_day_child_completes_six_on_1_march():
    assert verdict({"child": child("2020-02-29", household="H")}, "primary", 2026)["verdict"] == ELIGIBLE


def test_a_child_who_died_is_not_eligible():
    assert verdict({"child": child("2020-05-01", household="H", died="2025-01-01")}, "primary", 2026)["verdict"] == NOT_ELIGIBLE


def test_past_the_age_is_not_eligible():
    assert verdict({"child": child("2012-05-01", household="H")}, "primary", 2026)["verdict"] == NOT_ELIGIBLE
    assert verdict({"child": child("2014-05-01", household="H")}, "junior_high", 2026)["verdict"] == ELIGIBLE


def test_a_non_registered_child_needs_a_resident_insured_guardian_and_says_what_is_missing():
    base = {"child": child("2020-03-01"), "birth_certificate": {"certificate_no": "Q1"}}
    assert verdict({**base, "guardians": [guardian(18, filings=1)]}, "primary", 2026)["verdict"] == ELIGIBLE
    short = verdict({**base, "guardians": [guardian(7)]}, "primary", 2026)
    assert short["verdict"] == MISSING_EVIDENCE and "7 months in the last 24 (12 needed)" in short["reasons"][0]
    nowhere = verdict({**base, "guardians": [guardian(20, address=None)]}, "primary", 2026)
    assert nowhere["verdict"] == MISSING_EVIDENCE and "rental filing" in nowhere["reasons"][0]
    orphan = verdict({"child": child("2020-03-01"), "guardians": [], "birth_certificate": None}, "primary", 2026)
    assert orphan["verdict"] == MISSING_EVIDENCE and len(orphan["reasons"]) == 2


def test_a_child_the_library_does_not_hold_is_missing_evidence_not_a_crash():
    assert verdict({"child": None}, "primary", 2026)["verdict"] == MISSING_EVIDENCE


def test_the_coming_september_and_the_insurance_window():
    assert enrolment_year(date(2026, 8, 31)) == 2026 and enrolment_year(date(2026, 9, 1)) == 2027
    assert window_start(date(2026, 11, 27)) == "202411"
    assert window_start(date(2026, 1, 5), 24) == "202401"


def test_the_conditions_are_data_and_the_ages_come_from_the_school_age_rule():
    terms = conditions()
    school = rules()["SCHOOL_AGE_REACHED"].variants
    assert terms.ages == {v["level"]: v["age"] for v in school} == {"primary": 6, "junior_high": 12}
    assert terms.cutoff == (8, 31) and (terms.insured_months, terms.window_months) == (12, 24)
    stricter = parse_conditions({"insured_months": 6, "window_months": 6}, school)
    assert stricter.window_months == 6
    with pytest.raises(RuleError, match="insured_months <= window_months"):
        parse_conditions({"insured_months": 30, "window_months": 24}, school)
    with pytest.raises(RuleError, match="whole numbers"):
        parse_conditions({"insured_months": "a year"}, school)
    with pytest.raises(RuleError, match="one common 'by' date"):
        parse_conditions({"insured_months": 1, "window_months": 2},
                         ({"level": "primary", "age": 6, "by": "08-31"}, {"level": "junior_high", "age": 12, "by": "09-30"}))
