"""Subscriptions on plain values: a field outside a subscriber's allowance is never in its records or schema."""

from __future__ import annotations

import io
import uuid
from datetime import date

import fastavro
import pytest

from streams.events.rules import evaluate_change, evaluate_person, rules
from streams.events.services import Profile, eligible_event, judge, services
from streams.events.subscriptions import (ALWAYS, SubscriptionError, parse_subscriptions, pseudonym,
                                          subscriber_event_id, subscriber_schema, subscriptions)
from streams.normalize import gldm
from tests.unit.streams.events.test_life_events import CALENDAR_CASES, CHANGE_CASES, NOW

FULL = gldm.schema("gov.gldm.LifeEvent")


def one_event_of_every_type() -> dict[str, dict]:
    events = {}
    for fires, _ in CHANGE_CASES.values():
        for event in evaluate_change(fires, NOW):
            events.setdefault(event["event_type"], event)
    for (person, day), _ in CALENDAR_CASES.values():
        for event in evaluate_person(person, day, [], NOW):
            events.setdefault(event["event_type"], event)
    sixty = Profile("P~1", "440304196612051234", birth_date=date(1966, 12, 5), household_no="1", district="福田区")
    verdict = judge(services()["senior_card"], sixty, date(2026, 12, 5))
    assert verdict is not None
    events["SERVICE_ELIGIBLE"] = eligible_event(sixty, "senior_card", verdict, date(2026, 12, 5), [], NOW, None)
    assert set(events) == set(rules())
    return events


KEY = b"a subscriber's secret"
NARROW = parse_subscriptions({"narrow": {"events": sorted(rules()), "fields": ["attributes.district"]}}, FULL)["narrow"]


@pytest.mark.parametrize("subscription", [*subscriptions().values(), NARROW], ids=lambda s: s.name)
def test_no_field_outside_the_allowance_on_any_event_type(subscription):
    schema = subscriber_schema(subscription, FULL)
    parsed = fastavro.parse_schema(schema)
    allowed_top = set(subscription.fields) | {"subject_ref"}
    assert {f["name"] for f in schema["fields"]} == allowed_top
    for event_type, event in one_event_of_every_type().items():
        record = subscription.project(event, KEY)
        assert set(record) <= allowed_top, event_type
        assert set(ALWAYS) <= set(record)
        assert set(record.get("attributes", {})) <= set(subscription.attributes), event_type
        out = io.BytesIO()
        fastavro.schemaless_writer(out, parsed, record)          # the record fits the subscriber's schema
        back = fastavro.schemaless_reader(io.BytesIO(out.getvalue()), parsed)
        assert set(back) <= allowed_top
        for name in {"subject_id", "subject_code", "evidence", "attributes", "source_committed_at"} - allowed_top:
            assert name not in back, (event_type, name)
        if not {"subject_code", "occurrence", "evidence"} & allowed_top and len(event.get("subject_code") or "") >= 15:
            assert event["subject_code"].encode() not in out.getvalue(), event_type   # no RIC in the bytes


def test_ids_are_the_subscribers_own_stable_and_unlinkable():
    death = one_event_of_every_type()["DEATH_REGISTERED"]
    mine, again, theirs = NARROW.project(death, KEY), NARROW.project(death, KEY), NARROW.project(death, b"other key")
    assert mine == again                                              # stable: it deduplicates
    assert mine["event_id"] != death["event_id"] and mine["event_id"] != theirs["event_id"]
    assert mine["subject_ref"] != theirs["subject_ref"] and death["subject_id"] not in mine["subject_ref"]
    assert uuid.UUID(mine["event_id"])                                # still a UUID for clients that parse one


def test_the_narrowest_subscriber_sees_only_ids_type_day_and_district():
    marriage = one_event_of_every_type()["MARRIAGE_REGISTERED"]
    assert NARROW.project(marriage, KEY) == {
        "event_id": subscriber_event_id(KEY, marriage["event_id"]), "subject_ref": pseudonym(KEY, marriage["subject_id"]),
        "event_type": "MARRIAGE_REGISTERED", "occurred_on": date(2026, 11, 27), "attributes": {}}   # no district known


def test_types_and_filters_decide_who_receives_an_event():
    events = one_event_of_every_type()
    tax = subscriptions()["futian_tax_office"]
    established = events["ENTERPRISE_ESTABLISHED"]
    assert tax.wants(established)                                       # 福田区
    assert not tax.wants({**established, "attributes": {**established["attributes"], "district": "南山区"}})
    assert not tax.wants(events["DEATH_REGISTERED"])
    assert subscriptions()["education_bureau"].wants(events["SCHOOL_AGE_REACHED"])


def test_a_bad_subscription_is_refused_with_the_reason():
    with pytest.raises(SubscriptionError, match="unknown field"):
        parse_subscriptions({"x": {"events": ["DEATH_REGISTERED"], "fields": ["ric_of_everyone"]}}, FULL)
    with pytest.raises(SubscriptionError, match="unknown or no event types"):
        parse_subscriptions({"x": {"events": ["WEDDING"], "fields": []}}, FULL)
