"""Life events through the real stack: a simulated day's events against the city's ground truth, a
SIGKILLed life-event worker, and the daily pass re-run, without a duplicate id."""

from __future__ import annotations

import pickle
import threading
import time
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
import requests
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from kintsmesh import kafka
from kintsmesh.security.tokens import issue
from kintsmesh.settings import CITY_TZ, RESOURCE_LIBRARY_DB
from kintsmesh.simulate.city import City
from kintsmesh.simulate.runner import run_simulation
from monitoring.lag import wait_for_pipeline
from sinks.events import LifeEvents
from sinks.library.dossier import audit_history
from sinks.subscriptions import SubscriptionSink, subscriber_key
from streams.events.predicates import anniversary
from streams.events.rules import rules
from streams.events.subscriptions import Subscription, subscriber_event_id, subscriptions

pytestmark = pytest.mark.integration

WINDOW_DAYS = 6   # live births are dated up to six days back; every other live fact today
CHANGE_TYPES = {"BIRTH_REGISTERED", "MARRIAGE_REGISTERED", "DIVORCE_REGISTERED", "DEATH_REGISTERED",
                "ENTERPRISE_ESTABLISHED", "ENTERPRISE_DEREGISTERED", "RESIDENCE_CHANGED"}
CALENDAR_AGES = {6: "SCHOOL_AGE_REACHED", 12: "SCHOOL_AGE_REACHED", 60: "SENIOR_AGE_REACHED"}


def topic_ends(consumer: Consumer, topics: list[str] | None = None) -> dict[tuple[str, int], int]:
    metadata = consumer.list_topics(timeout=10).topics
    wanted = topics or sorted({r.topic for r in rules().values()} | {s.topic for s in subscriptions().values()})
    return {(t, p): consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1]
            for t in wanted if t in metadata for p in metadata[t].partitions}


def published_since(settings, start: dict[tuple[str, int], int], topics: list[str] | None = None) -> list[dict[str, Any]]:
    """Every record on the events.life.* topics (or ``topics``) after ``start``, decoded by Confluent's stock
    AvroDeserializer with nothing but the registry's URL: what a downstream subscriber runs."""
    consumer = Consumer({**kafka.client_config(settings), "group.id": f"t-events-{time.time()}",
                         "enable.auto.commit": False, "log_level": 0})
    deserialize = AvroDeserializer(SchemaRegistryClient(settings.registry_client_config()))
    try:
        ends = topic_ends(consumer, topics)
        consumer.assign([TopicPartition(t, p, start.get((t, p), 0)) for (t, p) in ends])
        position = {tp: start.get(tp, 0) for tp in ends}
        events, deadline = [], time.monotonic() + 120
        while any(position[tp] < ends[tp] for tp in ends) and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=1.0):
                if message.error() or message.offset() is None:
                    continue
                position[(message.topic(), message.partition())] = message.offset() + 1
                events.append(deserialize(message.value(), SerializationContext(message.topic(), MessageField.VALUE)))
        return events
    finally:
        consumer.close()


def published_before(settings, ids: set[str], moment: datetime) -> bool:
    """Whether every one of ``ids`` was published before ``moment`` (delivered later: a backlog)."""
    if not ids:
        return True
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        row = conn.execute("SELECT count(*) FROM life_event WHERE event_id = ANY(%s::uuid[]) AND published_at < %s",
                           (list(ids), moment)).fetchone()
    return bool(row and row[0] == len(ids))


def truth_for(city: City, first: date, last: date) -> set[tuple[str, date, str]]:
    """(type, day, subject) of the change-triggered events the city's facts make between two days:
    subjects are RICs (hukou people: the registry records their deaths), USCCs, birth certificate numbers."""
    within = lambda d: d is not None and first <= d <= last   # noqa: E731
    truth = set()
    for p in city.people.values():
        if within(p.death) and p.hukou:
            truth.add(("DEATH_REGISTERED", p.death, p.ric))
        if within(p.birth) and "cszmbh" in p.keys:
            truth.add(("BIRTH_REGISTERED", p.birth, p.keys["cszmbh"]))
    for m in city.marriages:
        if within(m.on):
            kind = "MARRIAGE_REGISTERED" if m.kind == "结婚" else "DIVORCE_REGISTERED"
            truth |= {(kind, m.on, m.husband), (kind, m.on, m.wife)}
    for day, ric in city.moves:   # a household moved: each living member's registered address changed
        # ... except a baby registered in the same run: its registration and the move can land in one
        # merge batch, and a golden record whose first address is already the new one has not moved
        # (whether they do is timing; the comparison leaves newborns' moves out on both sides)
        if within(day) and not within(city.people[ric].birth):
            truth.add(("RESIDENCE_CHANGED", day, ric))
    for e in city.enterprises.values():   # by registration number: a legacy enterprise's row has no USCC
        if within(e.established):
            truth.add(("ENTERPRISE_ESTABLISHED", e.established, e.reg_no))
        if within(e.closed):
            truth.add(("ENTERPRISE_DEREGISTERED", e.closed, e.reg_no))
    return truth


def subject(event: dict[str, Any]) -> str:
    if event["event_type"] == "BIRTH_REGISTERED":
        return event["attributes"]["certificate_no"]
    if event["subject_kind"] == "LEGAL_ENTITY":
        return event["attributes"].get("registration_no")
    return event["subject_code"]


def test_a_simulated_day_publishes_the_truths_events_once_even_across_a_sigkill(settings, tmp_path, fresh_seed, kill):
    today = datetime.now(CITY_TZ).date()
    consumer = Consumer({**kafka.client_config(settings), "group.id": "t-ends", "log_level": 0})
    start = topic_ends(consumer)
    consumer.close()
    # after the ends: an event published before it is on the topics before ``start`` (a subscriber's backlog)
    began = datetime.now(timezone.utc)

    sim = settings.model_copy(update={"stack_dir": tmp_path})
    run_simulation(sim, seed=fresh_seed, initial=400, rate=None, duration_s=0, dirty_rate=0.0, truth_path=None,
                   today=today)
    # the city merged before it lives: a registration and a move of it merged in one batch would give
    # its golden record one address only, and no RESIDENCE_CHANGED (a CI run on a busy machine did that)
    assert wait_for_pipeline(settings, timeout_s=600) == {"normalize": 0, "merge": 0, "events": 0}
    live = threading.Thread(target=run_simulation, args=(sim,), kwargs=dict(
        seed=fresh_seed, initial=None, rate=80, duration_s=40, dirty_rate=0.0, truth_path=None))
    live.start()
    time.sleep(20)
    # mid-run: between, or inside, its transactions and publications; the supervisor starts it again
    kill(["events"])
    live.join()
    left = wait_for_pipeline(settings, timeout_s=600)
    assert left == {"normalize": 0, "merge": 0, "events": 0}, f"still to do: {left}"

    with open(tmp_path / "sim" / "city.pickle", "rb") as fh:
        city: City = pickle.load(fh)
    events = published_since(settings, start, sorted({r.topic for r in rules().values()}))
    ids = Counter(e["event_id"] for e in events)
    assert ids and max(ids.values()) == 1, f"published twice: {[i for i, n in ids.items() if n > 1][:5]}"

    first = today - timedelta(days=WINDOW_DAYS)
    truth = truth_for(city, first, today)
    known = ({s for _, _, s in truth_for(city, date.min, date.max)} | set(city.people)
             | {e.reg_no for e in city.enterprises.values()})
    newborns = {ric for ric, p in city.people.items() if first <= p.birth}   # moved or not: see truth_for
    got = {(e["event_type"], e["occurred_on"], subject(e)) for e in events
           if e["event_type"] in CHANGE_TYPES and subject(e) in known and first <= e["occurred_on"] <= today
           and not (e["event_type"] == "RESIDENCE_CHANGED" and subject(e) in newborns)}
    kinds = Counter(t for t, _, _ in truth)
    assert kinds["BIRTH_REGISTERED"] > 0 and kinds["RESIDENCE_CHANGED"] > 0 and len(truth) >= 5, kinds
    assert got == truth, {"missing": sorted(truth - got)[:10], "unexpected": sorted(got - truth)[:10]}
    for event in events:   # each event names the source records it was derived from (a service, its reasons)
        assert event["evidence"] or (event["event_type"] == "SERVICE_ELIGIBLE" and event["attributes"]["reasons"]), event
    # a birth names the newborn's golden person, the certificate's holder, also when the newborn merged in a
    # later batch than its certificate (the event is held back for the version that links it); a birth names
    # its certificate only when no person holds it (a newborn waiting in the review queue)
    births = {subject(e): e["subject_id"] for e in events if e["event_type"] == "BIRTH_REGISTERED"
              and subject(e) in known}
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        holders = {no: holder or f"certificate:{cid}" for no, cid, holder in conn.execute(
            "SELECT certificate_no, certificate_id, holder_person_id FROM certificate WHERE certificate_no = ANY(%s)",
            (list(births),))}
    assert births == holders, {no: (births[no], holders.get(no)) for no in births if births[no] != holders.get(no)}

    # every subscriber received exactly the events it wants, each once, and no field outside its allowance
    # (each under its own ids and subject pseudonyms: mapped back here with the subscriber's key)
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        every_id = [str(i) for (i,) in conn.execute("SELECT event_id FROM life_event")]
    for subscription in subscriptions().values():
        key = subscriber_key(settings, subscription.name)
        library_id = {subscriber_event_id(key, i): i for i in every_id}
        delivered = published_since(settings, start, [subscription.topic])
        wanted = {e["event_id"] for e in events if subscription.wants(e)}
        got_ids = Counter(library_id.get(d["event_id"], d["event_id"]) for d in delivered)
        assert wanted <= set(got_ids) and (not got_ids or max(got_ids.values()) == 1), subscription.name
        assert published_before(settings, set(got_ids) - wanted, began), subscription.name   # earlier tests' events
        allowed = set(subscription.fields) | {"subject_ref"}
        for record in delivered:
            assert set(record) <= allowed, (subscription.name, set(record) - allowed)
            assert set(record.get("attributes") or {}) <= set(subscription.attributes), subscription.name
            assert record["event_type"] in subscription.events
            for key, values in subscription.filters.items():
                assert record.get("attributes", {}).get(key) in values


def test_the_daily_pass_finds_exactly_who_crosses_an_age_that_day_and_a_rerun_adds_nothing(settings, tmp_path,
                                                                                         fresh_seed):
    today = datetime.now(CITY_TZ).date()
    sim = settings.model_copy(update={"stack_dir": tmp_path})
    run_simulation(sim, seed=fresh_seed, initial=1500, rate=None, duration_s=0, dirty_rate=0.0, truth_path=None,
                   today=today)
    with open(tmp_path / "sim" / "city.pickle", "rb") as fh:
        city: City = pickle.load(fh)
    left = wait_for_pipeline(settings, timeout_s=600)
    assert left == {"normalize": 0, "merge": 0, "events": 0}, f"still to do: {left}"

    # registered residents (the police registry holds every one with their birth date) crossing an age
    def crossing(day: date) -> set[tuple[str, str]]:
        return {(CALENDAR_AGES[years], p.ric) for p in city.people.values() for years in CALENDAR_AGES
                if p.hukou and anniversary(p.birth, years) == day and (p.death is None or p.death > day)}

    # the past day of the last year with the most crossings in this city (a back-fill)
    day = max((today - timedelta(days=n) for n in range(1, 366)),
              key=lambda d: (any(t == "SCHOOL_AGE_REACHED" for t, _ in crossing(d)), len(crossing(d))))
    expected = crossing(day)
    assert expected, "the city has nobody crossing an age in the past year"

    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        events = LifeEvents(settings, conn)
        events.prepare()
        first = events.daily_pass(day)
        again = events.daily_pass(day)
        events.publish()
        found = {(t, code) for t, code in conn.execute(
            "SELECT event_type, subject_code FROM life_event WHERE occurred_on = %s AND trigger = 'CALENDAR'", (day,))
            if code in city.people and city.people[code].hukou}
        events.close()
    assert found == expected, {"missing": sorted(expected - found)[:10], "unexpected": sorted(found - expected)[:10]}
    assert again["events"] == first["events"] and again["new"] == 0
    # the pass looks up only the birth dates that reach an age that day, not the library
    assert first["people"] < 50, first

    # school age: no event carries a dossier; the education bureau fetches it from the API with a token of its
    # scope: the registered child is eligible, its parents are its guardians (no RIC or name of theirs returned)
    children = sorted(ric for t, ric in expected if t == "SCHOOL_AGE_REACHED")
    assert children, "no registered child reaches school age on any day of the past year"
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        asked = {ric: (level, year, dossier) for ric, level, year, dossier in conn.execute(
            "SELECT subject_code, event->'attributes'->>'level', event->'attributes'->>'enrolment_year', event->>'dossier'"
            " FROM life_event WHERE subject_code = ANY(%s) AND event_type = 'SCHOOL_AGE_REACHED' AND occurred_on = %s",
            (children, day))}
    assert set(asked) == set(children) and not any(d for _, _, d in asked.values())
    bureau = {"Authorization": f"Bearer {issue(settings.secrets_dir, 'education-bureau')}"}
    for ric in children:
        level, year, _ = asked[ric]
        answer = requests.get(f"{settings.api_endpoint}/dossiers/school-enrolment/{ric}", verify=str(settings.trusted_ca),
                              params={"level": level, "year": year}, headers=bureau, timeout=10)
        assert answer.status_code == 200, answer.text
        dossier = answer.json()
        assert dossier["verdict"]["verdict"] == "ELIGIBLE", dossier
        parents = {city.people[ric].mother, city.people[ric].father} - {None}
        known_parents = {p for p in parents if city.people[p].hukou}
        relations = [g["relation"] for g in dossier["guardians"]]
        assert len({"mother", "father"} & set(relations)) >= len(known_parents), dossier
        assert not any({"ric", "name", "household_no", "address"} & set(g) for g in dossier["guardians"]), dossier
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        accesses = audit_history(conn, children[0])
    assert any(a["requester"] == "education-bureau" and a["channel"] == "http" and a["outcome"] == "ELIGIBLE"
               and a["purpose"].startswith("Compulsory Education Law") for a in accesses), accesses


def test_a_new_subscriber_is_back_filled_once_from_its_date_and_a_restart_delivers_nothing_again(settings):
    today = datetime.now(CITY_TZ).date()
    name = f"test_backfill_{int(time.time())}"
    newcomer = Subscription(name=name, description="test", events=("BIRTH_REGISTERED", "SCHOOL_AGE_REACHED"),
                            fields=("event_id", "event_type", "occurred_on", "attributes"), attributes=("name",),
                            backfill_from=today - timedelta(days=6))
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        expected = {str(i) for (i,) in conn.execute(
            "SELECT event_id FROM life_event WHERE event_type = ANY(%s) AND occurred_on >= %s",
            (list(newcomer.events), newcomer.backfill_from))}
        assert expected, "no events to back-fill: the life-event tests before this one publish some"
        events = LifeEvents(settings, conn)
        first = SubscriptionSink(settings, conn, events.producer, events.registry, {name: newcomer})
        first.prepare()
        assert first.deliver()[name] == len(expected)
        assert first.deliver()[name] == 0
        again = SubscriptionSink(settings, conn, events.producer, events.registry, {name: newcomer})
        again.prepare()                                   # a restart: recovers, finds nothing unrecorded
        assert again.deliver()[name] == 0
        events.close()
        conn.execute("DELETE FROM subscription WHERE subscriber = %s", (name,))
        conn.commit()
    delivered = published_since(settings, {}, [newcomer.topic])
    key = subscriber_key(settings, name)
    assert sorted(d["event_id"] for d in delivered) == sorted(subscriber_event_id(key, i) for i in expected)
    assert all(set(d) <= {"event_id", "subject_ref", "event_type", "occurred_on", "attributes"} for d in delivered)
