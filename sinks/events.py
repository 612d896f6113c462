"""The life-event store: record life events in the resource library, publish them on ``events.life.<type>``,
and the daily calendar pass. The worker around it is ``streams.events.worker``.

Exactly-once in effect:

* every event has a deterministic id (``streams.events.rules.event_id``); the
  ``life_event`` table's primary key keeps one row per id, so a replayed change,
  a restarted worker or a re-run daily pass adds nothing;
* the events a batch of changes reveals are inserted **in the same transaction**
  as the batch's consumed offsets (``sinks.kafka.offsets``);
* ``life_event`` is also the outbox: unpublished rows are produced (idempotent
  producer, the id in an ``event_id`` header) under ``FOR UPDATE SKIP LOCKED``
  and marked published in that transaction together with the topics' end
  offsets, so two publishers never send the same rows. After a crash between the
  broker's acknowledgement and that commit, ``recover`` reads the topics from the
  stored ends and marks what it finds there: those events are not sent again.

The daily pass (``daily_pass``) finds who completes a calendar rule's age on a day
by looking up exactly the birth dates that reach it (the ``person_birth_date``
index), so its cost grows with the people concerned, not with the library. The
worker runs it for each new day (Asia/Shanghai); ``kintsmesh events daily``
runs or back-fills it for any date range.
"""

from __future__ import annotations

import logging
import time
from collections import Counter as Tally
from datetime import date, datetime, timezone
from typing import Any

import psycopg
from confluent_kafka import Producer
from psycopg.types.json import Jsonb

from kintsmesh import kafka, topics
from kintsmesh.errors import TransientError
from kintsmesh.registry.catalog import SchemaVersion
from kintsmesh.registry.client import SchemaRegistry
from kintsmesh.registry.codec import encode
from kintsmesh.settings import CITY_TZ, Settings
from monitoring.lag import EVENTS_PENDING_SQL
from monitoring.metrics import EventMetrics
from sinks.dlq import rejected_row
from sinks.kafka.offsets import headers_after, store_offsets, stored_offsets
from sinks.kafka.relay import Acks, acknowledged
from sinks.library.links import named_persons
from sinks.library.population import birthday_pass
from sinks.library.residents import gained_services
from streams.events.rules import HOLD, HOLD_MAX, calendar_birth_dates, evaluate_person, evidence_of, rules
from streams.events.services import eligible_event
from streams.normalize import gldm

log = logging.getLogger("kintsmesh.events")
LIFE_EVENT = "gov.gldm.LifeEvent"
EVENT_ID_HEADER = "event_id"
EVENTS_LOCK = 0x4B4D4C45   # serializes inserts into life_event


def _jsonable(event: dict[str, Any]) -> dict[str, Any]:
    return {**event, "occurred_on": event["occurred_on"].isoformat()}


def _avro(event: dict[str, Any]) -> dict[str, Any]:
    return {**event, "occurred_on": date.fromisoformat(event["occurred_on"])}


class LifeEvents:
    """Record, publish and compute life events over one library connection."""

    def __init__(self, settings: Settings, conn: psycopg.Connection[Any], metrics: EventMetrics | None = None,
                 registry: SchemaRegistry | None = None, producer: Producer | None = None) -> None:
        self.settings = settings
        self.conn = conn
        self.metrics = metrics
        self.registry = registry or SchemaRegistry(settings)
        self.producer = producer or kafka.reliable_producer(settings)
        self.schema: SchemaVersion | None = None
        self.rejected_schema: SchemaVersion | None = None
        self._newest_day = 0.0

    def prepare(self) -> None:
        kafka.ensure_topics(self.settings, events_topics(), self.settings.kafka_partitions)
        self.schema = self.registry.register(topics.EVENTS_SUBJECT, gldm.schema(LIFE_EVENT))
        self.recover()

    # ------------------------------------------------------------------ recording

    def record(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Insert events not seen before (inside the caller's transaction); returns the new ones. An event
        marked to be held (``HOLD``, its subject may still become known) waits in ``held_event`` instead,
        unless its id is recorded already; a final event replaces the held one of its id."""
        held = {e["event_id"]: e for e in events if HOLD in e}
        unique = {e["event_id"]: e for e in events if HOLD not in e}
        for event_id in held.keys() & unique.keys():
            del held[event_id]
        if held:
            self._hold(list(held.values()))
        if not unique:
            return []
        now = datetime.now(timezone.utc)
        with self.conn.cursor() as cur:
            cur.execute("DELETE FROM held_event WHERE event_id = ANY(%s::uuid[])", (list(unique),))
            # one inserting transaction at a time: seqs become visible in order, so a subscription's
            # cursor (sinks/subscriptions.py) never passes one that commits later
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (EVENTS_LOCK,))
            cur.execute(
                "INSERT INTO life_event (event_id, event_type, subject_kind, subject_id, subject_code, occurred_on,"
                " trigger, event, detected_at)"
                " SELECT * FROM unnest(%s::uuid[], %s::text[], %s::text[], %s::text[], %s::text[], %s::date[],"
                " %s::text[], %s::jsonb[], %s::timestamptz[])"
                " ON CONFLICT (event_id) DO NOTHING RETURNING event_id::text",
                ([e["event_id"] for e in unique.values()], [e["event_type"] for e in unique.values()],
                 [e["subject_kind"] for e in unique.values()], [e["subject_id"] for e in unique.values()],
                 [e["subject_code"] for e in unique.values()], [e["occurred_on"] for e in unique.values()],
                 [e["trigger"] for e in unique.values()], [Jsonb(_jsonable(e)) for e in unique.values()],
                 [now] * len(unique)))
            new = [unique[row[0]] for row in cur.fetchall()]
        if self.metrics:
            for event in new:
                self.metrics.detected.labels(event["event_type"], event["trigger"]).inc()
        return new

    def _hold(self, events: list[dict[str, Any]]) -> None:
        self.conn.execute(
            "INSERT INTO held_event (event_id, event, release_at, give_up_at)"
            " SELECT id, event, now() + make_interval(secs => hold), now() + make_interval(secs => hold_max)"
            " FROM unnest(%s::uuid[], %s::jsonb[], %s::float8[], %s::float8[]) AS h(id, event, hold, hold_max)"
            " WHERE NOT EXISTS (SELECT FROM life_event l WHERE l.event_id = h.id) ON CONFLICT (event_id) DO NOTHING",
            ([e["event_id"] for e in events],
             [Jsonb(_jsonable({k: v for k, v in e.items() if k not in (HOLD, HOLD_MAX)})) for e in events],
             [e[HOLD] for e in events], [e.get(HOLD_MAX, e[HOLD]) for e in events]))

    def release_held(self, limit: int = 5000) -> int:
        """Record the held events whose hold is over, each naming the person the library knows by now for
        the record it stood in for (``links.named_persons``): the version that links the newborn may have
        merged while this worker was behind or down, and its event id is this one's, so it could not
        replace it once recorded. An event whose subject's own source row has not linked its person yet
        (still in resolve or merge, or in the review queue) waits on, checked again each second, until its
        ``give_up_at``; then it is recorded as it is. Returns how many were new."""
        with self.conn.transaction():
            rows = self.conn.execute(
                "SELECT event_id::text, event, give_up_at IS NULL OR give_up_at <= now() FROM held_event"
                " WHERE release_at <= now() ORDER BY release_at LIMIT %s FOR UPDATE SKIP LOCKED", (limit,)).fetchall()
            if not rows:
                return 0
            named = named_persons(self.conn, {event["subject_id"] for _, event, _ in rows})
            ready, waiting = [], []
            for event_id, event, expired in rows:
                person = named.get(event["subject_id"])
                if person and person.person_id:
                    ready.append({**event, "subject_id": person.person_id, "subject_code": person.code})
                elif person and not person.settled and not expired:
                    waiting.append(event_id)
                else:
                    ready.append(event)
            if waiting:
                self.conn.execute("UPDATE held_event SET release_at = now() + interval '1 second'"
                                  " WHERE event_id = ANY(%s::uuid[])", (waiting,))
            return len(self.record([_avro(event) for event in ready])) if ready else 0

    # ------------------------------------------------------------------ publishing

    def publish(self, limit: int = 5000) -> int:
        """Publish unpublished events in detection order and mark them; returns how many."""
        assert self.schema is not None, "prepare() first"
        total = 0
        while True:
            acks = Acks()
            with self.conn.transaction():
                rows = self.conn.execute(
                    "SELECT seq, event_id::text, event FROM life_event WHERE published_at IS NULL ORDER BY seq LIMIT %s"
                    " FOR UPDATE SKIP LOCKED", (limit,)).fetchall()
                published = []
                for seq, event_id, event in rows:
                    try:
                        topic, key = topics.events_topic(event["event_type"]), event["subject_id"].encode()
                        value = encode(self.schema, _avro(event))
                    except Exception as exc:  # noqa: BLE001 - one event its topic cannot take must not stop the rest
                        self._unpublishable(seq, event, exc, acks)
                        continue
                    self.producer.produce(topic, key=key, value=value, on_delivery=acks,
                                          headers=[(EVENT_ID_HEADER, event_id.encode())])
                    published.append(event)
                if rows and not acknowledged(self.producer, acks):
                    raise PublishError(f"{len(rows)} life events not acknowledged ({acks.failed[:1]});"
                                       " they stay unpublished")
                if rows:
                    self.conn.execute("UPDATE life_event SET published_at = now() WHERE event_id = ANY(%s::uuid[])",
                                      ([r[1] for r in rows],))
                    store_offsets(self.conn, topics.LIFE_EVENTS_MARK, acks.ends)
            if self.metrics:
                self.metrics.observe_published(published)
            total += len(rows)
            if len(rows) < limit:
                return total

    def _unpublishable(self, seq: int, event: Any, exc: Exception, acks: Acks) -> None:
        """A recorded event its topic cannot take (a bug of ours wrote it): to dlq.events with the reason,
        marked published with the rest once the broker has the DLQ record."""
        log.error("life event seq %s cannot be published: %s: %s", seq, type(exc).__name__, exc)
        if self.rejected_schema is None:
            self.rejected_schema = self.registry.register(topics.DLQ_SUBJECT, gldm.schema(gldm.REJECTED_RECORD))
        record = rejected_row("events", "life_event", seq, topics.events_topic(str(event.get("event_type") if isinstance(event, dict) else None)), event,
                              "unpublishable_event", f"{type(exc).__name__}: {exc}")
        self.producer.produce(topics.dlq_topic("events"), key=record["original_key"],
                              value=encode(self.rejected_schema, record), on_delivery=acks)

    def recover(self) -> int:
        """Mark published what reached the topics after the last mark (a crash between the broker's
        acknowledgement and the commit): read each events topic from the offsets stored with the last
        mark to its end. Without this, those events would be sent again."""
        stored = stored_offsets(self.conn, topics.LIFE_EVENTS_MARK)
        self.conn.commit()
        found, ends = headers_after(self.settings, events_topics(), stored, EVENT_ID_HEADER)
        with self.conn.transaction():
            marked = self.conn.execute("UPDATE life_event SET published_at = now() WHERE event_id = ANY(%s::uuid[])"
                                       " AND published_at IS NULL", (found,)).rowcount if found else 0
            store_offsets(self.conn, topics.LIFE_EVENTS_MARK, ends)
        if marked:
            log.warning("recovered %d life events published before a crash; they are not sent again", marked)
        return marked

    def pending(self) -> int:
        row = self.conn.execute(f"SELECT {EVENTS_PENDING_SQL}").fetchone()
        self.conn.commit()
        return int(row[0]) if row else 0

    # ------------------------------------------------------------------ the calendar

    def daily_pass(self, day: date) -> dict[str, Any]:
        """Detect the calendar events of ``day`` (idempotent: a re-run detects no new id)."""
        started = time.perf_counter()
        born = calendar_birth_dates(day)
        detected_ms = int(time.time() * 1000)
        events: list[dict[str, Any]] = []
        with self.conn.transaction():
            people = self.conn.execute(
                "SELECT p.person_id, p.ric, p.name, p.gender, p.birth_date, p.death_date, p.household_no, p.address,"
                " fp.fields FROM person p LEFT JOIN field_provenance fp"
                " ON fp.entity = 'person' AND fp.canonical_id = p.person_id"
                " WHERE p.birth_date = ANY(%s)", (born,)).fetchall()
            for person_id, ric, name, gender, birth, death, household, address, provenance in people:
                person = {"person_id": person_id, "ric": ric, "name": name, "gender": gender, "birth_date": birth,
                          "death_date": death, "household_no": household, "address": address}
                t0 = time.perf_counter()
                events += evaluate_person(person, day, birth_evidence(provenance), detected_ms)
                if self.metrics:
                    self.metrics.rule_seconds.labels("calendar").observe(time.perf_counter() - t0)
            if day == today_cst():   # a back-filled day is not re-judged: the library holds today's facts, not that day's
                events += self._birthday_services(day, detected_ms)
                birthday_pass(self.conn, day)
            new = self.record(events)
            seconds = time.perf_counter() - started
            self.conn.execute(
                "INSERT INTO calendar_pass (day, finished_at, people, events, seconds) VALUES (%s, now(), %s, %s, %s)"
                " ON CONFLICT (day) DO UPDATE SET finished_at = now(), people = EXCLUDED.people,"
                " events = EXCLUDED.events, seconds = EXCLUDED.seconds", (day, len(people), len(events), seconds))
        if self.metrics:
            self.metrics.daily_pass_seconds.set(seconds)
            self._newest_day = max(self._newest_day, datetime.combine(day, datetime.min.time(), CITY_TZ).timestamp())
            self.metrics.daily_pass_day.set(self._newest_day)
        by_type = Tally(e["event_type"] for e in events)
        return {"day": day.isoformat(), "birth_dates": [d.isoformat() for d in born], "people": len(people),
                "events": len(events), "new": len(new), "by_type": dict(by_type), "seconds": round(seconds, 4)}

    def _birthday_services(self, day: date, detected_ms: int) -> list[dict[str, Any]]:
        """SERVICE_ELIGIBLE for whoever a birthday on ``day`` made eligible: the person a year older, and its
        parents (a child's age counts for them); the evidence is the source of the birthday's birth date."""
        rows = self.conn.execute(
            "SELECT p.person_id, p.ric, p.mother_ric, p.father_ric, fp.fields FROM person p LEFT JOIN field_provenance fp"
            " ON fp.entity = 'person' AND fp.canonical_id = p.person_id"
            " WHERE extract(month FROM p.birth_date) = %s AND extract(day FROM p.birth_date) = %s",
            (day.month, day.day)).fetchall()
        evidence: dict[str, list[dict[str, Any]]] = {}
        for pid, _, mother, father, provenance in rows:
            for key in (pid, mother, father):
                if key:
                    evidence.setdefault(key, birth_evidence(provenance))
        return [eligible_event(profile, name, verdict, day,
                               evidence.get(profile.person_id) or evidence.get(profile.ric or "", []), detected_ms,
                               None, "CALENDAR")
                for profile, name, verdict in gained_services(self.conn, {r[0] for r in rows}, day,
                                                              {ric for r in rows for ric in r[2:4] if ric})]

    def passed(self, day: date) -> bool:
        row = self.conn.execute("SELECT 1 FROM calendar_pass WHERE day = %s", (day,)).fetchone()
        self.conn.commit()
        return row is not None

    def close(self) -> None:
        self.producer.flush(10)


class PublishError(TransientError):
    """The broker did not acknowledge a publish; the events stay in the outbox and are retried."""


def birth_evidence(provenance: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The source row the golden birth date survived from (field_provenance), as evidence."""
    if not provenance:
        return []
    entry = (provenance.get("fields") or {}).get("birth_date") or {}
    sources = provenance.get("sources") or []
    if "source" not in entry or entry["source"] >= len(sources):
        return []
    return evidence_of(sources[entry["source"]], "birth_date")


def events_topics() -> list[str]:
    return sorted({r.topic for r in rules().values()})


def today_cst() -> date:
    return datetime.now(CITY_TZ).date()


def recorded_events(conn: psycopg.Connection[Any], event_type: str | None, subject: str | None,
                    occurred_on: date | None, limit: int) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """``kintsmesh events list``: the newest recorded events (event, published_at) matching the filters,
    and the held ones (event, release_at): held back for their subject (a birth waiting for its
    newborn's person record), not published yet."""
    where: list[str] = ["true"]
    params: list[Any] = []
    for column, value in (("event_type", event_type), ("subject_code", subject), ("occurred_on", occurred_on)):
        if value:
            where.append(f"{column} = %s")
            params.append(value)
    rows = conn.execute(f"SELECT event, published_at FROM life_event WHERE {' AND '.join(where)}"
                        " ORDER BY seq DESC LIMIT %s", (*params, limit)).fetchall()
    held = conn.execute(
        f"SELECT event, release_at FROM (SELECT event, release_at, event->>'event_type' AS event_type,"
        " event->>'subject_code' AS subject_code, (event->>'occurred_on')::date AS occurred_on FROM held_event) h"
        f" WHERE {' AND '.join(where)} ORDER BY release_at LIMIT %s", (*params, limit)).fetchall()
    return rows, held
