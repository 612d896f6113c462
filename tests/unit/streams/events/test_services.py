"""Services for me: the shipped rules read, every condition answers yes, no or "cannot tell", and who is
touched by a golden change is re-evaluated."""

from datetime import date

import pytest

from streams.events.services import (ELIGIBLE, MISSING_EVIDENCE, Profile, ServiceError, age_on, assess, eligible_event,
                                     judge, parse_services, services, touched)

TODAY = date(2026, 12, 5)


def profile(**fields) -> Profile:
    return Profile(**{"person_id": "P1", "ric": "440304196612051234", **fields})


def months(n: int, skip_recent: int = 0) -> frozenset[str]:
    """The last n insured months before TODAY's, the newest ``skip_recent`` left out."""
    out = set()
    for back in range(skip_recent, n + skip_recent):
        index = TODAY.year * 12 + TODAY.month - 1 - back
        out.add(f"{index // 12:04d}{index % 12 + 1:02d}")
    return frozenset(out)


def test_the_shipped_rules_read_and_name_at_least_twenty_services():
    assert len(services()) >= 20
    assert all(s.title and s.department and s.when for s in services().values())


def test_the_sixtieth_birthday_brings_the_senior_card_with_the_photo_to_present():
    sixty = profile(birth_date=date(1966, 12, 5), household_no="440300000001")
    verdict = assess(sixty, TODAY)["senior_card"]
    assert verdict.status == ELIGIBLE and "aged 60 (>= 60)" in verdict.reasons
    assert verdict.missing == ("a recent one-inch photo",)
    assert "senior_card" not in assess(profile(birth_date=date(1966, 12, 6), household_no="1"), TODAY)
    assert "senior_card" not in assess(profile(birth_date=date(1966, 12, 5)), TODAY)   # not resident
    assert age_on(date(2000, 2, 29), date(2026, 2, 28)) == 25 and age_on(date(2000, 2, 29), date(2026, 3, 1)) == 26


def test_what_the_library_cannot_tell_is_missing_evidence_and_the_dead_qualify_for_nothing():
    unknown_age = assess(profile(household_no="1"), TODAY)["senior_card"]
    assert unknown_age.status == MISSING_EVIDENCE and unknown_age.missing[0] == "no birth date"
    assert assess(profile(birth_date=date(1940, 1, 1), household_no="1", death_date=date(2026, 1, 1)), TODAY) == {}


def test_children_insurance_and_enterprises_count():
    mother = profile(gender="2", birth_date=date(1992, 1, 1), household_no="1", insured_months=months(12),
                     children=(date(2026, 8, 1),))
    got = assess(mother, TODAY)
    assert {"childbirth_allowance", "postnatal_care", "newborn_medical_insurance", "child_vaccination"} <= set(got)
    assert "a child aged 0 (<= 0)" in got["childbirth_allowance"].reasons
    short = profile(gender="2", birth_date=date(1992, 1, 1), insured_months=months(11), children=(date(2026, 8, 1),))
    assert "childbirth_allowance" not in assess(short, TODAY)
    laid_off = profile(birth_date=date(1980, 1, 1), insured_months=months(20, skip_recent=3))
    assert assess(laid_off, TODAY)["unemployment_benefit"].status == ELIGIBLE
    assert "unemployment_benefit" not in assess(profile(birth_date=date(1980, 1, 1), insured_months=months(20)), TODAY)
    founder = profile(birth_date=date(1990, 1, 1), enterprises=(date(2025, 6, 1),))
    assert {"startup_subsidy", "startup_guarantee_loan"} <= set(assess(founder, TODAY))
    old_firm = profile(birth_date=date(1990, 1, 1), enterprises=(date(2022, 6, 1),))   # 4.5 years
    assert "startup_subsidy" not in assess(old_firm, TODAY) and "startup_guarantee_loan" in assess(old_firm, TODAY)
    migrant = profile(birth_date=date(1995, 1, 1), rentals=(None,), residence_permits=(date(2027, 1, 1),),
                      insured_months=months(24))
    assert "points_household_registration" in assess(migrant, TODAY)
    assert "residence_permit_application" not in assess(migrant, TODAY)   # holds one already
    assert "residence_permit_application" in assess(profile(birth_date=date(1995, 1, 1), rentals=(None,)), TODAY)


@pytest.mark.parametrize("spec, message", [
    ({"title": "t", "department": "d", "when": {"age": {"minimum": 60}}}, "age"),
    ({"title": "t", "department": "d", "when": {"agee": {"min": 60}}}, "unknown condition 'agee'"),
    ({"title": "t", "department": "d", "when": {"insured_months": {"min": 30, "within": 12}}}, "insured_months"),
    ({"title": "t", "department": "d", "when": {"household_registered": "yes"}}, "household_registered"),
    ({"title": "t", "department": "d", "when": {}}, "conditions under `when`"),
    ({"title": "t", "when": {"age": {"min": 1}}}, "department"),
    ({"title": "t", "department": "d", "when": {"age": {"min": 1}}, "evidence": []}, "unknown keys"),
])
def test_a_malformed_service_is_refused_naming_it(spec, message):
    with pytest.raises(ServiceError, match=message) as raised:
        parse_services({"s": spec}, "services.yaml")
    assert str(raised.value).startswith("services.yaml: service s")


def test_a_change_touches_the_person_its_parents_and_whoever_holds_or_represents_it():
    assert touched("person", {"mother_ric": "M", "father_ric": None}, None, "C") == ({"C"}, {"M"})
    assert touched("social_insurance", {"person_id": "P"}, None, "f") == ({"P"}, set())
    assert touched("certificate", None, {"holder_person_id": "H"}, "c") == ({"H"}, set())
    assert touched("legal_entity", {"legal_representative_ric": "R"}, None, "E~1") == (set(), {"R"})
    assert touched("house", {"address": {}}, None, "H1") == (set(), set())


def test_the_eligible_event_is_deterministic_per_person_service_and_day():
    sixty = profile(birth_date=date(1966, 12, 5), household_no="1", district="福田区")
    verdict = judge(services()["senior_card"], sixty, TODAY)
    assert verdict is not None
    first, again = (eligible_event(sixty, "senior_card", verdict, TODAY, [], 1, None) for _ in range(2))
    assert first["event_id"] == again["event_id"] and first["event_type"] == "SERVICE_ELIGIBLE"
    assert first["attributes"]["service"] == "senior_card" and first["attributes"]["district"] == "福田区"
    assert first["subject_code"] == sixty.ric and first["occurred_on"] == TODAY


def test_a_change_of_any_shape_touches_only_text_ids():
    assert touched("person", [1, 2], "not a record", "C") == (set(), set())
    assert touched("person", {"mother_ric": 440304, "father_ric": ["F"]}, None, "C") == ({"C"}, set())
    assert touched("certificate", {"holder_person_id": {"id": "H"}}, None, "c") == (set(), set())
