"""``kintsmesh streams merge``: the merge worker, ``gldm.*.candidates`` → resource library → ``gldm.*.changes``.

Crash safety (SIGKILL at any point loses and duplicates nothing):

* the consumed offsets are written to ``consumer_offset`` **in the same PostgreSQL
  transaction** as the merge they caused; on start (and on every partition
  assignment) the consumer seeks to them, so a batch is either merged and
  recorded or neither. Kafka-side commits are made too, only for lag monitoring;
* a batch replayed anyway (another worker's, or after a library restore) is a
  no-op: each source row's position is compared with the merged one;
* golden changes go to the ``outbox`` table in that same transaction and are
  published afterwards (idempotent producer), then deleted. A crash between
  publish and delete publishes a change again with the same (canonical_id,
  version): at-least-once on the topic, deduplicable by that pair.

A candidate that cannot be decoded, or whose merge fails on its own, goes to
``dlq.merge`` with the reason; the rest of its batch still merges.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from typing import Any

import psycopg
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from kintsmesh.registry.catalog import SchemaVersion, UnknownSchema
from kintsmesh.registry.codec import UndecodableMessage, decode, encode
from kintsmesh.registry.client import SchemaRegistry
from kintsmesh.settings import RESOURCE_LIBRARY_DB, Settings
from kintsmesh.topics import ensure_topics
from sinks.library import MERGE_SESSION, TABLES, BatchReport, Incoming, Merger, lock_library
from sinks.offsets import (
    LibraryUnavailable, broker_error, close_quietly, library_lag, library_lost, seek_to_stored, serve_worker,
    store_offsets,
)
from streams.dlq import rejected_message
from streams.metrics import LAG_BUCKETS
from streams.normalize import gldm

log = logging.getLogger("kintsmesh.merge")
GROUP = "kintsmesh-merge"
DLQ_TOPIC = gldm.dlq_topic("merge")


def changes_topic(entity: str) -> str:
    return f"gldm.{entity}.changes"


class MergeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.candidates = Counter("kintsmesh_merge_candidates_total", "Candidates read by the merge worker",
                                  ["entity", "outcome"], registry=registry)
        self.links = Counter("kintsmesh_merge_links_total", "Identity links made, by method",
                             ["entity", "method"], registry=registry)
        self.golden_updates = Counter("kintsmesh_merge_golden_updates_total", "Golden record versions written",
                                      ["entity"], registry=registry)
        self.conflicts = Counter("kintsmesh_merge_conflicts_total", "Source values that lost survivorship",
                                 registry=registry)
        self.rejected = Counter("kintsmesh_merge_rejected_total", "Candidates sent to dlq.merge", ["reason"],
                                registry=registry)
        self.batch_seconds = Histogram("kintsmesh_merge_batch_seconds", "One merge transaction",
                                       registry=registry, buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
        self.sync_lag = Histogram("kintsmesh_sync_lag_golden_seconds",
                                  "Department commit to golden record committed in the resource library",
                                  ["department", "table"], registry=registry, buckets=LAG_BUCKETS)
        self.newest_commit = Gauge("kintsmesh_merge_newest_source_commit_timestamp_seconds",
                                   "Commit time of the newest source change merged, per department",
                                   ["department"], registry=registry)
        self.review_open = Gauge("kintsmesh_review_queue_open", "Identity decisions waiting for review",
                                 registry=registry)
        self.outbox = Gauge("kintsmesh_merge_outbox_pending", "Golden changes not yet published", registry=registry)


class MergeWorker:
    def __init__(self, settings: Settings, metrics: MergeMetrics, batch_size: int = 2000,
                 max_wait_s: float = 0.05) -> None:
        self.settings = settings
        self.metrics = metrics
        self.batch_size = batch_size
        self.max_wait_s = max_wait_s
        self.running = True
        self.registry = SchemaRegistry(settings)
        self.change_schema: SchemaVersion | None = None
        self.rejected_schema: SchemaVersion | None = None
        self.relay: OutboxRelay | None = None
        self.conn = psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB), options=MERGE_SESSION)
        self.merger = Merger(self.conn)
        self.consumer = Consumer({
            "bootstrap.servers": settings.kafka_bootstrap, "group.id": GROUP, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "log_level": 3,
        })
        self.producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "enable.idempotence": True,
                                  "acks": "all", "linger.ms": 5, "log_level": 3})

    # ------------------------------------------------------------------ setup

    def prepare(self) -> None:
        ensure_topics(self.settings, [changes_topic(e) for e in TABLES], self.settings.kafka_partitions)
        ensure_topics(self.settings, [gldm.candidates_topic(e) for e in TABLES], self.settings.kafka_partitions)
        ensure_topics(self.settings, [DLQ_TOPIC], 1)
        self.change_schema = self.registry.register("gldm.changes-value", gldm.schema("gov.gldm.GoldenChange"))
        self.rejected_schema = self.registry.register("dlq-value", gldm.schema(gldm.REJECTED_RECORD))
        # the age of each department's newest merged change must be known from the start, also for a
        # department whose connector stopped before this worker (re)started
        for department, newest in self.conn.execute(
                "SELECT department, extract(epoch FROM max(committed_at))::float8 FROM contribution"
                " WHERE position[1] = 0 GROUP BY department"):
            if newest is not None:
                self.metrics.newest_commit.labels(department).set(newest)
        self.conn.commit()

    # ------------------------------------------------------------------ loop

    def run(self) -> None:
        self.prepare()
        assert self.change_schema is not None
        self.relay = relay = OutboxRelay(self.settings, self.change_schema)
        relay.start()
        self.consumer.subscribe(candidate_topics(), on_assign=seek_to_stored(self.conn, GROUP))
        last_gauges = 0.0
        while self.running:
            messages = self.consumer.consume(self.batch_size, timeout=self.max_wait_s)
            batch = [m for m in messages if not broker_error(m, log)]
            if batch and self.process(batch).outbox:
                relay.wake.set()   # this worker's changes at once; T+1 loads' and review decisions' within a second
            if time.monotonic() - last_gauges > 5:
                self._gauges()
                last_gauges = time.monotonic()
        relay.stop()
        self.consumer.close()
        self.producer.flush(10)
        self.conn.close()

    def process(self, messages: list[Message]) -> BatchReport:
        started = time.perf_counter()
        items: list[Incoming] = []
        sources: list[Message] = []
        offsets: dict[tuple[str, int], int] = {}
        for message in messages:
            topic, partition, offset = message.topic() or "", message.partition() or 0, message.offset() or 0
            offsets[(topic, partition)] = offset + 1
            try:
                items.append(Incoming.of(topic.split(".")[1], self._decode(message.value())))
                sources.append(message)
            except (UndecodableMessage, UnknownSchema) as exc:
                self._reject(message, "undecodable_candidate", str(exc))
        try:
            report = self._merge(items, offsets)
        except psycopg.Error as exc:
            if library_lost(self.conn):   # not the batch's fault: it is merged again once the library is back
                raise LibraryUnavailable() from exc
            self.conn.rollback()
            log.warning("batch of %d failed (%s); merging one by one to isolate it", len(items), exc)
            report = BatchReport()
            for item, message in zip(items, sources):
                try:
                    one = self._merge([item], {})
                    report.add(one)
                except psycopg.Error as one:
                    if library_lost(self.conn):
                        raise LibraryUnavailable() from one
                    self.conn.rollback()
                    self._reject(message, "merge_failed", str(one).splitlines()[0])
            self._merge([], offsets)
        self._observe(report, items, time.perf_counter() - started)
        self.consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=True)
        return report

    def _merge(self, items: list[Incoming], offsets: dict[tuple[str, int], int]) -> BatchReport:
        with self.conn.transaction():
            lock_library(self.conn)
            report = self.merger.merge_bulk(items)
            store_offsets(self.conn, GROUP, offsets)
        return report

    def _decode(self, value: bytes | None) -> dict[str, Any]:
        if value is None:
            raise UndecodableMessage("a tombstone on a candidates topic")
        return decode(value, self.registry)

    def _reject(self, message: Message, reason: str, detail: str) -> None:
        assert self.rejected_schema is not None
        self.metrics.rejected.labels(reason).inc()
        record = rejected_message("merge", message, reason, detail)
        self.producer.produce(DLQ_TOPIC, key=message.key(), value=encode(self.rejected_schema, record))
        self.producer.flush(30)

    # ------------------------------------------------------------------ metrics

    def _observe(self, report: BatchReport, items: list[Incoming], seconds: float) -> None:
        m = self.metrics
        m.batch_seconds.observe(seconds)
        by_entity: dict[str, int] = defaultdict(int)
        for item in items:
            by_entity[item.entity] += 1
        for entity, n in by_entity.items():
            m.candidates.labels(entity, "read").inc(n)
        m.candidates.labels("all", "unchanged").inc(report.unchanged)
        m.candidates.labels("all", "review").inc(report.to_review)
        for method, n in report.links.items():
            m.links.labels("all", method).inc(n)
        for entity, n in report.outbox.items():
            m.golden_updates.labels(entity).inc(n)
        m.conflicts.inc(report.conflicts)
        now = time.time()
        newest: dict[str, float] = {}
        for item in items:
            prov = item.provenance
            committed = prov.get("committed_at")
            if committed and prov.get("batch_id") is None:
                m.sync_lag.labels(prov["department"], prov["table"]).observe(max(0.0, now - committed / 1000))
                newest[prov["department"]] = max(newest.get(prov["department"], 0.0), committed / 1000)
        for department, ts in newest.items():
            m.newest_commit.labels(department).set(ts)

    def _gauges(self) -> None:
        review = self.conn.execute("SELECT count(*) FROM review_queue WHERE status = 'open'").fetchone()
        outbox = self.conn.execute("SELECT count(*) FROM outbox").fetchone()
        self.conn.commit()
        self.metrics.review_open.set(review[0] if review else 0)
        self.metrics.outbox.set(outbox[0] if outbox else 0)

    def stop(self, *_: Any) -> None:
        self.running = False

    def abandon(self) -> None:
        """Let go of everything after the library went away; what was not committed is merged again."""
        if self.relay is not None:
            self.relay.stop()
        close_quietly(self.consumer.close, lambda: self.producer.flush(5), self.conn.close)


class OutboxRelay(threading.Thread):
    """Publishes the outbox — this worker's golden changes and what T+1 loads and review decisions
    queued — on its own connection and producer, so that merging never waits for Kafka's
    acknowledgements; woken after a batch that queued changes, else once a second."""

    def __init__(self, settings: Settings, schema: SchemaVersion, limit: int = 5000) -> None:
        super().__init__(name="outbox-relay", daemon=True)
        self.schema, self.limit = schema, limit
        self.dsn = settings.dsn(RESOURCE_LIBRARY_DB)
        self.conn = psycopg.connect(self.dsn)
        self.producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "enable.idempotence": True,
                                  "acks": "all", "linger.ms": 5, "log_level": 3})
        self.wake = threading.Event()
        self.running = True

    def run(self) -> None:
        while self.running:
            self.wake.clear()   # before reading: a wake-up during the publish is not lost
            try:
                while self.running and self.publish() == self.limit:
                    pass   # a full page: more is waiting
            except Exception:   # noqa: BLE001 - the relay must outlive a bad moment; the outbox gauge shows it stuck
                log.exception("outbox relay: publishing failed; retrying in 1 s")
                time.sleep(1)
                try:
                    if library_lost(self.conn):
                        self.conn = psycopg.connect(self.dsn)
                    else:
                        self.conn.rollback()
                except psycopg.OperationalError as exc:
                    log.warning("outbox relay: the resource library is unavailable (%s)", exc)
            self.wake.wait(1.0)
        self.producer.flush(10)
        self.conn.close()

    def stop(self) -> None:
        self.running = False
        self.wake.set()
        self.join(30)

    def publish(self) -> int:
        """Publish the oldest pending golden changes, then delete them. The outbox's ids grow in commit
        order because merges are serialized (``lock_library``), so deleting up to the last id published
        never deletes a change committed after the read."""
        rows = self.conn.execute("SELECT outbox_id, topic, key, value FROM outbox ORDER BY outbox_id LIMIT %s",
                                 (self.limit,)).fetchall()
        self.conn.commit()
        if not rows:
            return 0
        for _, topic, key, value in rows:
            self.producer.produce(topic, key=key.encode(), value=encode(self.schema, value))
        if self.producer.flush(30) != 0:
            log.warning("outbox: %d changes not acknowledged yet; they stay in the outbox", len(self.producer))
            return 0
        with self.conn.transaction():
            self.conn.execute("DELETE FROM outbox WHERE outbox_id <= %s", (rows[-1][0],))
        return len(rows)


def run_merge_worker(settings: Settings, log_level: str = "warning") -> None:
    serve_worker("merge", settings.merge_metrics_port, settings, log_level, MergeMetrics,
                 lambda metrics: MergeWorker(settings, metrics))


def candidate_topics() -> list[str]:
    return [gldm.candidates_topic(e) for e in TABLES]


def merge_lag(settings: Settings) -> int:
    """Candidates on the topics not yet merged, and golden changes merged but not yet published on
    ``gldm.<entity>.changes`` (the outbox): 0 means every change the candidates made is on its topic."""
    return library_lag(settings, GROUP, candidate_topics(), "SELECT count(*) FROM outbox")


def wait_for_merge(settings: Settings, timeout_s: float, report: Any = lambda behind: None) -> int:
    """Block until the merge worker has merged everything on the candidate topics; returns what is left."""
    from kintsmesh.watch import wait_for_zero

    return wait_for_zero(lambda: merge_lag(settings), timeout_s, report)
