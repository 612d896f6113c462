"""``kintsmesh streams events``: golden changes and the calendar -> life events -> subscribers.

The life-event stage (group ``kintsmesh-life-events``) evaluates the rules (``streams.events.rules``)
on every golden change on ``gldm.*.changes`` and records the events it reveals with its consumed
offsets in one transaction (``sinks.events.LifeEvents``). Between batches it releases held events
whose wait is over, runs the daily calendar pass once per new day (Asia/Shanghai), publishes new
events on ``events.life.<type>`` and delivers them to each subscriber's topic (``sinks.subscriptions``).
A change no rule can read goes to ``dlq.events`` with the reason.

In the same transaction it keeps decision support's population cells (``sinks.library.population``) and
re-evaluates the services of the residents the batch touched, recording SERVICE_ELIGIBLE for those who
became eligible (``sinks.library.residents``, published on ``events.service.eligible``).
"""

from __future__ import annotations

import time
from datetime import date, timedelta
from typing import Any

import psycopg
from confluent_kafka import Message

from kintsmesh import kafka, topics
from kintsmesh.settings import RESOURCE_LIBRARY_DB, Settings
from monitoring.metrics import EventMetrics
from sinks.events import LifeEvents, PublishError, today_cst
from sinks.kafka.offsets import batch_offsets, store_offsets
from sinks.kafka.stage import LibraryStage, described, serve_worker
from sinks.library.population import apply_changes
from sinks.library.residents import gained_services
from sinks.subscriptions import DeliveryError, SubscriptionSink
from streams.events.predicates import Change
from streams.events.rules import change_entities, change_from_message, evaluate_change, evidence_of
from streams.events.services import eligible_event, touched


class LifeEventWorker(LibraryStage[EventMetrics]):
    name = "events"
    group = topics.EVENTS_GROUP
    dlq = "events"
    batch_size = 2000
    max_wait_s = 0.1

    def __init__(self, settings: Settings, metrics: EventMetrics) -> None:
        super().__init__(settings, metrics)
        self.events = LifeEvents(settings, self.conn, metrics, self.registry, self.producer)
        self.sink = SubscriptionSink(settings, self.conn, self.producer, self.registry)
        self.last_calendar = self.last_publish = self.last_release = 0.0

    def topics(self) -> list[str]:
        return [topics.changes_topic(e) for e in change_entities()]

    def start(self) -> None:
        self.events.prepare()
        self.sink.prepare()
        kafka.ensure_topics(self.settings, self.topics(), self.settings.kafka_partitions)

    def tick(self, detected: int) -> None:
        now = time.monotonic()
        if now - self.last_release > 1.0:   # held events whose wait is over
            self.last_release = now
            detected += self.events.release_held()
        if now - self.last_calendar > 10:   # a new day is noticed within ten seconds
            self.last_calendar = now
            if not self.events.passed(today_cst()):
                result = self.events.daily_pass(today_cst())
                self.log.info("daily pass %s: %s", today_cst(), result)
                detected += result["new"]
        # new events at once; what another process detected (kintsmesh events daily), within a second
        if detected or now - self.last_publish > 1.0:
            self.last_publish = now
            try:
                self.events.publish()
                for subscriber, n in self.sink.deliver().items():
                    self.metrics.delivered.labels(subscriber).inc(n)
            except (PublishError, DeliveryError) as exc:
                self.log.warning("%s (retried)", exc)

    def gauges(self) -> None:
        self.metrics.pending.set(self.events.pending())

    def process(self, messages: list[Message]) -> int:
        """Evaluate the rules on a batch of golden changes; record new events with the offsets."""
        detected_ms = int(time.time() * 1000)
        events: list[dict[str, Any]] = []
        changes: list[Change] = []
        for message in messages:
            try:
                change = change_from_message(self.decode(message))
            except Exception as exc:  # noqa: BLE001 - whatever the bytes, the message reaches dlq.events
                self.reject(message, "undecodable_change", described(exc))
                continue
            t0 = time.perf_counter()
            try:
                events += evaluate_change(change, detected_ms)
            except Exception as exc:  # noqa: BLE001 - a change no rule can evaluate must not stop the stage
                self.reject(message, "rule_failed", described(exc))
                continue
            self.metrics.rule_seconds.labels("change").observe(time.perf_counter() - t0)
            changes.append(change)
        with self.conn.transaction():
            apply_changes(self.conn, [(c.before, c.after, c.committed_ms) for c in changes if c.entity == "person"],
                          today_cst())
            t0 = time.perf_counter()
            events += self.eligibility(changes, detected_ms)
            self.metrics.rule_seconds.labels("eligibility").observe(time.perf_counter() - t0)
            new = self.events.record(events)
            store_offsets(self.conn, self.group, batch_offsets(messages))
        return len(new)

    def eligibility(self, changes: list[Change], detected_ms: int) -> list[dict[str, Any]]:
        """SERVICE_ELIGIBLE for whoever the batch's changes made eligible for a service (inside the batch's
        transaction: the eligibility kept and the events recorded commit with the offsets)."""
        today = today_cst()
        ids: set[str] = set()
        rics: set[str] = set()
        cause: dict[str, Change] = {}   # person id or RIC -> the first change that touched it
        for change in changes:
            found, named = touched(change.entity, change.after, change.before, change.canonical_id)
            ids |= found
            rics |= named
            for key in found | named:
                cause.setdefault(key, change)
        events = []
        for profile, name, verdict in gained_services(self.conn, ids, today, rics):
            first = cause.get(profile.person_id) or cause.get(profile.ric or "")
            events.append(eligible_event(profile, name, verdict, today, evidence_of(first.cause) if first else [],
                                         detected_ms, first.committed_ms if first else None))
        return events


def run_event_worker(settings: Settings, log_level: str = "warning") -> None:
    serve_worker("events", settings.events_metrics_port, settings, log_level, EventMetrics,
                 lambda metrics: LifeEventWorker(settings, metrics))


def run_daily(settings: Settings, first: date, last: date) -> list[dict[str, Any]]:
    """``kintsmesh events daily``: the calendar pass for each day of a range, then publish."""
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        events = LifeEvents(settings, conn)
        events.prepare()
        results = []
        day = first
        while day <= last:
            results.append(events.daily_pass(day))
            day += timedelta(days=1)
        results.append({"published": events.publish()})
        events.close()
    return results
