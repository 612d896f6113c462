"""Life-event rules on plain values: every rule fires and does not fire, and the calendar's edge cases."""

from __future__ import annotations

import io
import json
from datetime import date, datetime
from typing import Any

import fastavro
import orjson
import pytest

from kintsmesh.settings import CITY_TZ
from sinks.events import birth_evidence
from streams.events.predicates import Change, anniversary, born_for
from streams.events.rules import (HOLD, HOLD_MAX, RuleError, calendar_birth_dates, change_entities, change_from_message,
                                  evaluate_change, evaluate_person, event_id, parse_rules, rules)
from streams.normalize import gldm

NOW = int(datetime(2026, 11, 27, 10, 0, tzinfo=CITY_TZ).timestamp() * 1000)
POLICE_UPDATE = {"department": "police", "table": "rk_jbxx", "primary_key": "RK1", "op": "UPDATE",
                 "commit_lsn": 200, "change_lsn": 190, "committed_at": NOW, "batch_id": None, "line": None,
                 "captured_at": NOW, "role": None}


def change(entity: str, before: dict[str, Any] | None, after: dict[str, Any] | None, *, cause: dict | None = None,
           op: str | None = None, cid: str = "C1", committed_ms: int = NOW) -> Change:
    op = op or ("CREATE" if before is None else "DELETE" if after is None else "UPDATE")
    return Change(entity, cid, 2, op, before, after, cause or {**POLICE_UPDATE, "op": op}, committed_ms)


def address(detail: str, district: str = "福田区") -> dict[str, Any]:
    return {"district": district, "street": "莲花街道", "community": "景华社区", "detail": detail, "full": district + detail}


def person(born: date, died: date | None = None, ric: str = "440304202009010013") -> dict[str, Any]:
    return {"person_id": ric, "ric": ric, "name": "林小明", "gender": "1", "birth_date": born, "death_date": died,
            "household_no": "440000000001", "address": address("1号")}


def types(events: list[dict[str, Any]]) -> list[str]:
    return sorted(e["event_type"] for e in events)


BIRTH_CERT = {"certificate_type": "BIRTH_MEDICAL_CERTIFICATE", "certificate_no": "Q440300001", "holder_name": "林小明",
              "holder_ric": None, "holder_person_id": "P~newborn", "issued_date": "2026-11-25",
              "details": {"born_at": "2026-11-23T18:30:00.000000Z", "mother_ric": "440304199001010028", "father_ric": None}}
MARRIAGE = {"certificate_type": "MARRIAGE", "certificate_no": "J440300-2026-1", "holder_ric": "440304199001010013",
            "holder_name": "王强", "holder_person_id": "440304199001010013", "issued_date": "2026-11-27",
            "issuer": "福田区民政局", "details": {"spouse_ric": "440304199203040028", "spouse_name": "李梅"}}
ENTERPRISE = {"uscc": "91440300MA5FXXXX1A", "name": "深圳市某某科技有限公司", "status": "存续",
              "established_date": "2026-11-26", "deregistered_date": None, "address": address("科技园")}

# For every rule: a case where it fires and one where it does not (a rule without both fails the suite).
CHANGE_CASES: dict[str, tuple[Change, Change]] = {
    "BIRTH_REGISTERED": (change("certificate", None, BIRTH_CERT),
                         change("certificate", BIRTH_CERT, {**BIRTH_CERT, "issuer": "市妇幼"})),
    "MARRIAGE_REGISTERED": (change("certificate", None, MARRIAGE),
                            change("certificate", None, {**MARRIAGE, "certificate_type": "REISSUE"})),
    "DIVORCE_REGISTERED": (change("certificate", None, {**MARRIAGE, "certificate_type": "DIVORCE"}),
                           change("certificate", None, MARRIAGE)),
    "RESIDENCE_CHANGED": (change("person", {"ric": "R", "address": address("1号")}, {"ric": "R", "address": address("9号")}),
                          change("person", {"ric": "R", "address": address("1号")}, {"ric": "R", "address": address("1号")})),
    "DEATH_REGISTERED": (change("person", {"ric": "R", "death_date": None}, {"ric": "R", "death_date": "2026-11-26"}),
                         change("person", {"ric": "R", "death_date": "2026-11-26"}, {"ric": "R", "death_date": "2026-11-26",
                                                                                     "name": "x"})),
    "ENTERPRISE_ESTABLISHED": (change("legal_entity", None, ENTERPRISE),
                               change("legal_entity", ENTERPRISE, {**ENTERPRISE, "name": "新名称"})),
    "ENTERPRISE_DEREGISTERED": (
        change("legal_entity", ENTERPRISE, {**ENTERPRISE, "status": "注销", "deregistered_date": "2026-11-27"}),
        change("legal_entity", ENTERPRISE, {**ENTERPRISE, "status": "存续"})),
}
CALENDAR_CASES: dict[str, tuple[tuple[dict[str, Any], date], tuple[dict[str, Any], date]]] = {
    "SCHOOL_AGE_REACHED": ((person(date(2020, 9, 1)), date(2026, 9, 1)), (person(date(2020, 9, 1)), date(2026, 8, 31))),
    "SENIOR_AGE_REACHED": ((person(date(1966, 11, 27)), date(2026, 11, 27)),
                           (person(date(1966, 11, 27), died=date(2026, 1, 5)), date(2026, 11, 27))),
}


def test_every_rule_has_a_firing_and_a_silent_case():
    # (SERVICE_ELIGIBLE is judged on a resident's profile: tests/unit/streams/events/test_services.py)
    assert set(rules()) == set(CHANGE_CASES) | set(CALENDAR_CASES) | {"SERVICE_ELIGIBLE"}


@pytest.mark.parametrize("name", sorted(CHANGE_CASES))
def test_change_rule_fires_and_stays_silent(name: str):
    fires, silent = CHANGE_CASES[name]
    assert name in types(evaluate_change(fires, NOW))
    assert name not in types(evaluate_change(silent, NOW))


@pytest.mark.parametrize("name", sorted(CALENDAR_CASES))
def test_calendar_rule_fires_and_stays_silent(name: str):
    (who, day), (other, other_day) = CALENDAR_CASES[name]
    assert name in types(evaluate_person(who, day, [], NOW))
    assert name not in types(evaluate_person(other, other_day, [], NOW))


def test_a_birth_is_dated_in_the_citys_time_zone():
    event = evaluate_change(CHANGE_CASES["BIRTH_REGISTERED"][0], NOW)[0]
    assert event["occurred_on"] == date(2026, 11, 24)   # 18:30 UTC on the 23rd is 02:30 on the 24th in Shenzhen


def test_a_birth_names_its_newborn_or_is_held_back_for_the_version_that_links_it():
    unlinked = {**BIRTH_CERT, "holder_person_id": None}
    [held] = evaluate_change(change("certificate", None, unlinked), NOW)
    assert held["subject_id"] == "certificate:C1" and held[HOLD] == rules()["BIRTH_REGISTERED"].hold_s > 0
    assert held[HOLD_MAX] == rules()["BIRTH_REGISTERED"].hold_max_s > held[HOLD]
    [linked] = evaluate_change(change("certificate", unlinked, BIRTH_CERT), NOW)
    [first_seen_linked] = evaluate_change(change("certificate", None, BIRTH_CERT), NOW)
    assert linked["subject_id"] == "P~newborn" and HOLD not in linked and HOLD not in first_seen_linked
    assert held["event_id"] == linked["event_id"] == first_seen_linked["event_id"]   # one event, whichever comes
    # moved to another person later (a late match), or another version still unlinked: not news
    assert evaluate_change(change("certificate", BIRTH_CERT, {**BIRTH_CERT, "holder_person_id": "440304"}), NOW) == []
    assert evaluate_change(change("certificate", unlinked, {**unlinked, "issuer": "市妇幼"}), NOW) == []


def test_hold_s_is_a_number_of_seconds_and_hold_max_s_no_shorter():
    spec = {"trigger": "change", "entity": "certificate", "predicate": "birth_certificate_issued"}
    assert parse_rules({"B": spec})["B"].hold_s == 0
    assert parse_rules({"B": {**spec, "hold_s": 5}})["B"].hold_max_s == 5   # no longer wait unless asked
    with pytest.raises(RuleError, match="hold_s"):
        parse_rules({"B": {**spec, "hold_s": "soon"}})
    with pytest.raises(RuleError, match="hold_max_s"):
        parse_rules({"B": {**spec, "hold_s": 10, "hold_max_s": 5}})
    with pytest.raises(RuleError, match="hold_max_s"):
        parse_rules({"B": {**spec, "hold_max_s": -1}})


def test_born_31_august_enrols_this_year_born_1_september_next_year():
    aug = evaluate_person(person(date(2020, 8, 31)), date(2026, 8, 31), [], NOW)
    sep = evaluate_person(person(date(2020, 9, 1)), date(2026, 9, 1), [], NOW)
    assert [(e["attributes"]["level"], e["attributes"]["enrolment_year"]) for e in aug] == [("primary", "2026")]
    assert [(e["attributes"]["level"], e["attributes"]["enrolment_year"]) for e in sep] == [("primary", "2027")]


def test_junior_high_at_twelve():
    events = evaluate_person(person(date(2014, 3, 10)), date(2026, 3, 10), [], NOW)
    assert [(e["event_type"], e["attributes"]["level"], e["attributes"]["enrolment_year"]) for e in events] == [
        ("SCHOOL_AGE_REACHED", "junior_high", "2026")]


def test_a_leap_day_birthday_is_reached_on_1_march_of_a_common_year_and_on_29_february_of_a_leap_year():
    leapling = person(date(2020, 2, 29))
    assert anniversary(date(2020, 2, 29), 6) == date(2026, 3, 1)
    assert types(evaluate_person(leapling, date(2026, 3, 1), [], NOW)) == ["SCHOOL_AGE_REACHED"]
    assert types(evaluate_person(leapling, date(2026, 2, 28), [], NOW)) == []
    assert anniversary(date(2016, 2, 29), 12) == date(2028, 2, 29)
    assert date(2020, 2, 29) in calendar_birth_dates(date(2026, 3, 1))     # the daily pass looks them up
    assert date(2020, 2, 29) not in calendar_birth_dates(date(2026, 2, 28))
    assert born_for(date(2028, 2, 29), 6) == []                             # 2022 has no 29 February
    assert born_for(date(2028, 2, 29), 12) == [date(2016, 2, 29)]


def test_a_death_recorded_after_the_birthday_does_not_undo_it_a_death_before_does():
    born = date(2020, 5, 10)
    assert types(evaluate_person(person(born, died=date(2026, 6, 1)), date(2026, 5, 10), [], NOW)) == ["SCHOOL_AGE_REACHED"]
    assert types(evaluate_person(person(born, died=date(2026, 5, 10)), date(2026, 5, 10), [], NOW)) == []
    assert types(evaluate_person(person(born, died=date(2024, 1, 1)), date(2026, 5, 10), [], NOW)) == []


def test_an_enterprise_reopened_and_closed_again_is_deregistered_twice_but_established_once():
    closed = {**ENTERPRISE, "status": "注销", "deregistered_date": "2026-11-27"}
    reopened = {**ENTERPRISE, "status": "存续", "deregistered_date": None}
    closed_again = {**ENTERPRISE, "status": "注销", "deregistered_date": "2026-12-20"}
    later = int(datetime(2026, 12, 20, 10, tzinfo=CITY_TZ).timestamp() * 1000)
    first = evaluate_change(change("legal_entity", ENTERPRISE, closed), NOW)
    again = evaluate_change(change("legal_entity", reopened, closed_again, committed_ms=later), later)
    assert types(evaluate_change(change("legal_entity", closed, reopened), NOW)) == []   # reopening is no new establishment
    assert types(first) == types(again) == ["ENTERPRISE_DEREGISTERED"]
    assert first[0]["event_id"] != again[0]["event_id"]
    assert [e["occurred_on"] for e in first + again] == [date(2026, 11, 27), date(2026, 12, 20)]


def test_the_same_fact_always_gets_the_same_id_and_different_facts_different_ones():
    a = evaluate_change(CHANGE_CASES["MARRIAGE_REGISTERED"][0], NOW)
    b = evaluate_change(CHANGE_CASES["MARRIAGE_REGISTERED"][0], NOW + 60_000)   # redelivered a minute later
    assert [e["event_id"] for e in a] == [e["event_id"] for e in b]
    assert len({e["event_id"] for e in a}) == 2                                   # one per spouse
    assert {e["subject_code"] for e in a} == {"440304199001010013", "440304199203040028"}
    assert event_id("DEATH_REGISTERED", "R/x") != event_id("BIRTH_REGISTERED", "R/x")


def test_a_fact_from_long_before_the_change_is_history_not_an_event():
    old_marriage = {**MARRIAGE, "issued_date": "2001-05-01"}
    assert evaluate_change(change("certificate", None, old_marriage), NOW) == []
    old_enterprise = {**ENTERPRISE, "established_date": "2010-01-01"}
    assert evaluate_change(change("legal_entity", None, old_enterprise), NOW) == []


def test_residence_changes_only_on_an_authoritative_update():
    moved = ({"ric": "R", "address": address("1号")}, {"ric": "R", "address": address("9号", "南山区")})
    education = {**POLICE_UPDATE, "department": "education", "table": "xs_xj"}
    assert types(evaluate_change(change("person", *moved), NOW)) == ["RESIDENCE_CHANGED"]
    assert evaluate_change(change("person", *moved, cause=education), NOW) == []
    assert evaluate_change(change("person", *moved, cause={**POLICE_UPDATE, "op": "CREATE"}), NOW) == []
    assert evaluate_change(change("person", {"ric": "R", "address": None}, moved[1]), NOW) == []   # a first address
    event = evaluate_change(change("person", *moved), NOW)[0]
    assert event["attributes"]["previous_district"] == "福田区" and event["attributes"]["district"] == "南山区"


def test_a_move_merged_with_a_later_registration_of_the_same_person_is_still_a_move():
    """One version from a police move and a marriage registration (a CI run merged the two in one batch): its
    cause is the registration, the latest; the move is among its causes, and the event names the move."""
    moved = ({"ric": "R", "address": address("1号"), "marital_status": "10"},
             {"ric": "R", "address": address("9号", "南山区"), "marital_status": "20"})
    registered = {**POLICE_UPDATE, "department": "civil_affairs", "table": "hy_djxx", "primary_key": "M1", "op": "CREATE"}
    both = Change("person", "C1", 3, "UPDATE", *moved, registered, NOW, causes=(POLICE_UPDATE, registered))
    (event,) = evaluate_change(both, NOW)
    assert event["event_type"] == "RESIDENCE_CHANGED" and event["evidence"][0]["primary_key"] == "RK1"
    alone = Change("person", "C1", 3, "UPDATE", *moved, registered, NOW, causes=(registered,))
    assert evaluate_change(alone, NOW) == []   # the registration alone moved nobody
    decoded = change_from_message({"entity": "person", "canonical_id": "C1", "version": 3, "op": "UPDATE",
                                   "before": orjson.dumps(moved[0]).decode(), "after": orjson.dumps(moved[1]).decode(),
                                   "cause": registered, "causes": [POLICE_UPDATE, registered], "source_committed_at": NOW})
    assert types(evaluate_change(decoded, NOW)) == ["RESIDENCE_CHANGED"]


def test_events_carry_their_evidence_and_encode_with_the_registered_schema():
    events = evaluate_change(CHANGE_CASES["DEATH_REGISTERED"][0], NOW)
    assert events[0]["evidence"] == [{"department": "police", "table": "rk_jbxx", "primary_key": "RK1", "role": None,
                                      "position": [0, 200, 190], "committed_at": NOW, "field": None}]
    decoded = change("person", {"ric": "R"}, {"ric": "R", "death_date": "2026-11-26"},
                     cause={**POLICE_UPDATE, "committed_at": datetime.fromtimestamp(NOW / 1000, CITY_TZ)})
    assert evaluate_change(decoded, NOW)[0]["evidence"][0]["committed_at"] == NOW   # as the Avro decoder gives it
    provenance = {"sources": [{"department": "health", "table": "cszm", "primary_key": "Q1", "role": "child",
                               "position": [0, 5, 4], "committed_at": NOW}],
                  "fields": {"birth_date": {"source": 0}}}
    calendar = evaluate_person(person(date(2020, 9, 1)), date(2026, 9, 1), birth_evidence(provenance), NOW)
    assert calendar[0]["evidence"][0]["field"] == "birth_date"
    parsed = fastavro.parse_schema(gldm.schema("gov.gldm.LifeEvent"))
    for event in events + calendar:
        out = io.BytesIO()
        fastavro.schemaless_writer(out, parsed, event)
        back = fastavro.schemaless_reader(io.BytesIO(out.getvalue()), parsed)
        assert back["event_id"] == event["event_id"] and back["occurred_on"] == event["occurred_on"]


def test_a_broken_rule_file_is_refused_with_the_reason():
    with pytest.raises(RuleError, match="unknown change predicate"):
        parse_rules({"X": {"trigger": "change", "entity": "person", "predicate": "nope"}})
    with pytest.raises(RuleError, match="trigger must be"):
        parse_rules({"X": {"trigger": "hourly", "entity": "person", "predicate": "age_reached"}})
    with pytest.raises(RuleError, match="needs an age"):
        parse_rules({"X": {"trigger": "calendar", "entity": "person", "predicate": "age_reached", "variants": [{}]}})


def test_a_new_rule_is_only_an_entry_in_the_rule_file():
    extra = parse_rules({"ADULTHOOD_REACHED": {"trigger": "calendar", "entity": "person", "predicate": "age_reached",
                                               "variants": [{"age": 18, "level": "adult"}]}})
    assert date(2008, 11, 27) in calendar_birth_dates(date(2026, 11, 27), extra)
    events = evaluate_person(person(date(2008, 11, 27)), date(2026, 11, 27), [], NOW, extra)
    assert [(e["event_type"], json.dumps(e["attributes"]["age"])) for e in events] == [("ADULTHOOD_REACHED", '"18"')]
    assert extra["ADULTHOOD_REACHED"].topic == "events.life.adulthood_reached"


def test_the_worker_watches_exactly_the_entities_the_change_rules_name():
    assert change_entities() == ["certificate", "legal_entity", "person"]


def test_commit_to_event_lag_is_observed_for_change_triggered_events_only():
    from prometheus_client import CollectorRegistry

    from monitoring.metrics import EventMetrics

    registry = CollectorRegistry()
    source = {"department": "police", "table": "rk_jbxx"}
    committed = int(datetime(2020, 1, 1).timestamp() * 1000)   # the birth date's row, years ago
    EventMetrics(registry).observe_published([
        {"event_type": "RESIDENCE_CHANGED", "trigger": "CHANGE", "source_committed_at": committed, "evidence": [source]},
        {"event_type": "SCHOOL_AGE_REACHED", "trigger": "CALENDAR", "source_committed_at": committed,
         "evidence": [source]},
    ])
    count = registry.get_sample_value("kintsmesh_sync_lag_event_seconds_count", {"department": "police",
                                                                                 "table": "rk_jbxx"})
    assert count == 1
    assert registry.get_sample_value("kintsmesh_life_events_published_total", {"type": "SCHOOL_AGE_REACHED"}) == 1
