"""``kintsmesh streams merge``: resolve, repartition by canonical id, merge.

Two stages, each a Kafka consumer writing to the resource library:

* **resolve** (group ``kintsmesh-resolve``, ``gldm.*.candidates`` keyed by source row) decides
  identity: stale check, canonical id, contributions, late matches, review queue. In the same
  transaction it queues every golden record it touched in ``settle_queue``; a relay publishes each
  on ``gldm.<entity>.resolved`` **keyed by canonical id**;
* **merge** (group ``kintsmesh-merge``, ``gldm.*.resolved``) owns the partitions of those canonical
  ids: all changes of one subject are merged by one consumer, in order. It recomputes each record
  from its contributions (survivorship), writes history and provenance, links references to people,
  deletes the queue rows and writes the golden changes to the ``outbox``, published on
  ``gldm.<entity>.changes`` after commit.

Each stage is a process of its own (``kintsmesh streams resolve``, ``kintsmesh streams merge``); more
merge processes share the ``gldm.*.resolved`` partitions.

Crash safety (SIGKILL at any point loses and duplicates nothing):

* each stage writes the offsets it consumed to ``consumer_offset`` **in the same PostgreSQL
  transaction** as the work they caused; on start (and on every partition assignment) its consumer
  seeks to them, so a batch is either done and recorded or neither. Kafka-side commits are made
  too, only for lag monitoring;
* a candidate replayed anyway is a no-op (its source row's position is compared with the merged
  one); a ``gldm.*.resolved`` message whose queue row is gone was merged already;
* queue rows and golden changes are published by relays after commit (idempotent producer): a
  crash between publishing and marking publishes one again, which the merge stage skips, and a
  golden change again with the same (canonical_id, version), deduplicable by that pair.

A candidate that cannot be decoded, or whose resolve fails on its own, goes to ``dlq.merge`` with the
reason; the rest of its batch still goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import psycopg
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from kintsmesh.registry.catalog import SchemaVersion, UnknownSchema
from kintsmesh.registry.codec import UndecodableMessage, decode, encode
from kintsmesh.registry.client import SchemaRegistry
from kintsmesh.settings import RESOURCE_LIBRARY_DB, Settings
from kintsmesh.topics import ensure_topics
from sinks.library import MERGE_SESSION, TABLES, BatchReport, Incoming, Merger, Settlement, lock_resolve, lock_settle
from sinks.offsets import (
    LibraryUnavailable, batch_offsets, broker_error, close_quietly, library_lag, library_lost, seek_to_stored,
    serve_worker, store_offsets,
)
from streams.dlq import rejected_message
from streams.metrics import LAG_BUCKETS
from streams.normalize import gldm

log = logging.getLogger("kintsmesh.merge")
RESOLVE_GROUP = "kintsmesh-resolve"
GROUP = "kintsmesh-merge"
DLQ_TOPIC = gldm.dlq_topic("merge")


def changes_topic(entity: str) -> str:
    return f"gldm.{entity}.changes"


def resolved_topic(entity: str) -> str:
    return f"gldm.{entity}.resolved"


def _stage_metrics(stage: str, registry: CollectorRegistry) -> tuple[Counter, Histogram]:
    return (Counter(f"kintsmesh_{stage}_rejected_total", f"Messages the {stage} stage sent to dlq.merge", ["reason"],
                    registry=registry),
            Histogram("kintsmesh_merge_batch_seconds", "One resolve or merge transaction", ["stage"],
                      registry=registry, buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)))


class ResolveMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.rejected, self.batch_seconds = _stage_metrics("resolve", registry)
        self.candidates = Counter("kintsmesh_merge_candidates_total", "Candidates read by the resolve stage",
                                  ["entity", "outcome"], registry=registry)
        self.links = Counter("kintsmesh_merge_links_total", "Identity links made, by method",
                             ["entity", "method"], registry=registry)
        self.review_open = Gauge("kintsmesh_review_queue_open", "Identity decisions waiting for review",
                                 registry=registry)
        self.settle_queue = Gauge("kintsmesh_merge_settle_queue_pending",
                                  "Golden records resolved and not yet merged (settle_queue)", registry=registry)


class MergeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.rejected, self.batch_seconds = _stage_metrics("merge", registry)
        self.golden_updates = Counter("kintsmesh_merge_golden_updates_total", "Golden record versions written",
                                      ["entity"], registry=registry)
        self.conflicts = Counter("kintsmesh_merge_conflicts_total", "Source values that lost survivorship",
                                 registry=registry)
        self.sync_lag = Histogram("kintsmesh_sync_lag_golden_seconds",
                                  "Department commit to golden record committed in the resource library",
                                  ["department", "table"], registry=registry, buckets=LAG_BUCKETS)
        self.newest_commit = Gauge("kintsmesh_merge_newest_source_commit_timestamp_seconds",
                                   "Commit time of the newest source change merged, per department",
                                   ["department"], registry=registry)
        self.outbox = Gauge("kintsmesh_merge_outbox_pending", "Golden changes not yet published", registry=registry)


class _Stage:
    """A consumer whose work and offsets go to the resource library in one transaction."""

    group = ""
    batch_size = 0       # messages per batch at most
    max_wait_s = 0.05    # how long a batch waits to fill

    def __init__(self, settings: Settings, metrics: Any) -> None:
        self.settings, self.metrics = settings, metrics
        self.rejected = metrics.rejected
        self.running = True
        self.registry = SchemaRegistry(settings)
        self.relay: Relay | None = None
        self.conn = psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB), options=MERGE_SESSION)
        self.merger = Merger(self.conn)
        self.consumer = Consumer({
            "bootstrap.servers": settings.kafka_bootstrap, "group.id": self.group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "log_level": 3,
        })
        self.producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "enable.idempotence": True,
                                  "acks": "all", "linger.ms": 5, "log_level": 3})
        self.rejected_schema: SchemaVersion | None = None

    def topics(self) -> list[str]:
        raise NotImplementedError

    def relay_for(self) -> Relay:
        raise NotImplementedError

    def process(self, messages: list[Message]) -> int:
        """Do one batch; returns how many rows it left for its relay."""
        raise NotImplementedError

    def run(self) -> None:
        self.relay = relay = self.relay_for()
        relay.start()
        self.consumer.subscribe(self.topics(), on_assign=seek_to_stored(self.conn, self.group))
        last_gauges = 0.0
        while self.running:
            messages = self.consumer.consume(self.batch_size, timeout=self.max_wait_s)
            batch = [m for m in messages if not broker_error(m, log)]
            if batch and self.process(batch):
                relay.wake.set()   # this stage's rows at once; T+1 loads' and review decisions' within a second
            if time.monotonic() - last_gauges > 5:
                self._gauges()
                last_gauges = time.monotonic()
        relay.stop()
        self.consumer.close()
        self.producer.flush(10)
        self.conn.close()

    def _commit_offsets(self, offsets: dict[tuple[str, int], int]) -> None:
        self.consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=True)

    def _gauges(self) -> None:
        pass

    def _failed(self, exc: Exception) -> None:
        """After a batch, or one item of it, failed: a lost library is not the input's fault (the work is
        done again once the library is back); anything else is rolled back and blamed on the input."""
        if isinstance(exc, psycopg.Error) and library_lost(self.conn):
            raise LibraryUnavailable() from exc
        self.conn.rollback()

    def _reject(self, message: Message, reason: str, detail: str) -> None:
        if self.rejected_schema is None:
            ensure_topics(self.settings, [DLQ_TOPIC], 1)
            self.rejected_schema = self.registry.register("dlq-value", gldm.schema(gldm.REJECTED_RECORD))
        self.rejected.labels(reason).inc()
        record = rejected_message("merge", message, reason, detail)
        self.producer.produce(DLQ_TOPIC, key=message.key(), value=encode(self.rejected_schema, record))
        self.producer.flush(30)

    def stop(self, *_: Any) -> None:
        self.running = False

    def abandon(self) -> None:
        """Let go of everything after the library went away; what was not committed is done again."""
        if self.relay is not None:
            self.relay.stop()
        close_quietly(self.consumer.close, lambda: self.producer.flush(5), self.conn.close)


class ResolveWorker(_Stage):
    """``gldm.*.candidates`` -> identity decisions (contributions, review queue) -> ``settle_queue``."""

    group = RESOLVE_GROUP
    batch_size = 2000
    metrics: ResolveMetrics

    def topics(self) -> list[str]:
        return candidate_topics()

    def relay_for(self) -> Relay:
        ensure_topics(self.settings, candidate_topics(), self.settings.kafka_partitions)
        ensure_topics(self.settings, resolved_topics(), self.settings.kafka_partitions)
        schema = self.registry.register("gldm.resolved-value", gldm.schema("gov.gldm.Resolved"))
        return Relay("settle-relay", self.settings, schema, publish_queued)

    def process(self, messages: list[Message]) -> int:
        started = time.perf_counter()
        items: list[Incoming] = []
        sources: list[Message] = []
        offsets = batch_offsets(messages)
        for message in messages:
            try:
                items.append(Incoming.of((message.topic() or "").split(".")[1], self._decode(message.value())))
                sources.append(message)
            except (UndecodableMessage, UnknownSchema) as exc:
                self._reject(message, "undecodable_candidate", str(exc))
        try:
            report, queued = self._resolve(items, offsets)
        except Exception as exc:  # noqa: BLE001 - a bad candidate must neither stop nor loop the stage
            self._failed(exc)
            log.warning("batch of %d failed (%s); resolving one by one to isolate it", len(items), _reason(exc))
            report, queued = BatchReport(), 0
            for item, message in zip(items, sources):
                try:
                    one, n = self._resolve([item], {})
                    report.add(one)
                    queued += n
                except Exception as failed:  # noqa: BLE001
                    self._failed(failed)
                    self._reject(message, "merge_failed", _reason(failed))
            self._resolve([], offsets)
        self._observe(report, items, time.perf_counter() - started)
        self._commit_offsets(offsets)
        return queued

    def _resolve(self, items: list[Incoming], offsets: dict[tuple[str, int], int]) -> tuple[BatchReport, int]:
        with self.conn.transaction():
            lock_resolve(self.conn)
            report, settlement = self.merger.resolve(items)
            queued = self.merger.queue(settlement)
            store_offsets(self.conn, self.group, offsets)
        return report, queued

    def _decode(self, value: bytes | None) -> dict[str, Any]:
        if value is None:
            raise UndecodableMessage("a tombstone on a candidates topic")
        return decode(value, self.registry)

    def _observe(self, report: BatchReport, items: list[Incoming], seconds: float) -> None:
        m = self.metrics
        m.batch_seconds.labels("resolve").observe(seconds)
        by_entity: dict[str, int] = defaultdict(int)
        for item in items:
            by_entity[item.entity] += 1
        for entity, n in by_entity.items():
            m.candidates.labels(entity, "read").inc(n)
        m.candidates.labels("all", "unchanged").inc(report.unchanged)
        m.candidates.labels("all", "review").inc(report.to_review)
        for method, n in report.links.items():
            m.links.labels("all", method).inc(n)

    def _gauges(self) -> None:
        review, queued = self.conn.execute(
            "SELECT (SELECT count(*) FROM review_queue WHERE status = 'open'), (SELECT count(*) FROM settle_queue)"
        ).fetchone() or (0, 0)
        self.conn.commit()
        self.metrics.review_open.set(review)
        self.metrics.settle_queue.set(queued)


class MergeWorker(_Stage):
    """``gldm.*.resolved`` (keyed by canonical id) -> golden records, history, provenance -> ``outbox``."""

    group = GROUP
    batch_size = 5000
    metrics: MergeMetrics

    def topics(self) -> list[str]:
        return resolved_topics()

    def relay_for(self) -> Relay:
        ensure_topics(self.settings, resolved_topics(), self.settings.kafka_partitions)
        ensure_topics(self.settings, [changes_topic(e) for e in TABLES], self.settings.kafka_partitions)
        schema = self.registry.register("gldm.changes-value", gldm.schema("gov.gldm.GoldenChange"))
        # the age of each department's newest merged change must be known from the start, also for a
        # department whose connector stopped before this worker (re)started
        for department, newest in self.conn.execute(
                "SELECT department, extract(epoch FROM max(committed_at))::float8 FROM contribution"
                " WHERE position[1] = 0 GROUP BY department"):
            if newest is not None:
                self.metrics.newest_commit.labels(department).set(newest)
        self.conn.commit()
        return Relay("outbox-relay", self.settings, schema, publish_outbox)

    def process(self, messages: list[Message]) -> int:
        """A message names a record and its queue row (see ``Merger.settle_queued``). A batch that fails
        is merged again one record at a time; a record that fails alone goes to ``dlq.merge`` with the
        reason and leaves the queue (``kintsmesh dlq replay merge`` after a fix merges it again)."""
        started = time.perf_counter()
        named: list[tuple[tuple[int, str, str], Message]] = []
        for message in messages:
            try:
                value = decode(message.value() or b"", self.registry)
                named.append(((int(value["seq"]), value["entity"], value["canonical_id"]), message))
            except (UndecodableMessage, UnknownSchema, KeyError) as exc:
                self._reject(message, "undecodable_resolved", str(exc))
        offsets = batch_offsets(messages)
        try:
            report, settlement = self._settle([record for record, _ in named], offsets)
        except Exception as exc:  # noqa: BLE001 - a record that cannot be merged must neither stop nor loop the stage
            self._failed(exc)
            log.warning("merging %d records failed (%s); merging one by one to isolate it", len(named), _reason(exc))
            report, settlement = BatchReport(), Settlement()
            for record, message in named:
                try:
                    one, alone = self._settle([record], {})
                    report.add(one)
                    for key, causes in alone.causes.items():
                        settlement.causes.setdefault(key, {}).update(causes)
                except Exception as failed:  # noqa: BLE001
                    self._failed(failed)
                    self._reject(message, "merge_failed", _reason(failed))
                    with self.conn.transaction():
                        self.conn.execute("DELETE FROM settle_queue WHERE seq = %s", (record[0],))
            self._settle([], offsets)
        self._observe(report, settlement, time.perf_counter() - started)
        self._commit_offsets(offsets)
        return sum(report.outbox.values())

    def _settle(self, named: list[tuple[int, str, str]],
                offsets: dict[tuple[str, int], int]) -> tuple[BatchReport, Settlement]:
        with self.conn.transaction():
            lock_settle(self.conn)
            report, settlement = self.merger.settle_queued(named)
            store_offsets(self.conn, self.group, offsets)
        return report, settlement

    def _observe(self, report: BatchReport, settlement: Settlement, seconds: float) -> None:
        m = self.metrics
        m.batch_seconds.labels("merge").observe(seconds)
        for entity, n in report.outbox.items():
            m.golden_updates.labels(entity).inc(n)
        m.conflicts.inc(report.conflicts)
        now = time.time()
        newest: dict[str, float] = {}
        for causes in settlement.causes.values():
            for prov in causes.values():
                committed = prov.get("committed_at")
                if committed and prov.get("batch_id") is None:
                    m.sync_lag.labels(prov["department"], prov["table"]).observe(max(0.0, now - committed / 1000))
                    newest[prov["department"]] = max(newest.get(prov["department"], 0.0), committed / 1000)
        for department, ts in newest.items():
            m.newest_commit.labels(department).set(ts)

    def _gauges(self) -> None:
        outbox = self.conn.execute("SELECT count(*) FROM outbox").fetchone()
        self.conn.commit()
        self.metrics.outbox.set(outbox[0] if outbox else 0)


class Relay(threading.Thread):
    """Publishes rows a stage wrote in its transactions — resolved records, golden changes, and those T+1
    loads and review decisions wrote — on its own connection and producer, so that no stage waits for
    Kafka's acknowledgements; woken after a batch that wrote some, else once a second."""

    def __init__(self, name: str, settings: Settings, schema: SchemaVersion,
                 publish: Callable[[psycopg.Connection[Any], Producer, SchemaVersion, int], int],
                 limit: int = 5000) -> None:
        super().__init__(name=name, daemon=True)
        self.schema, self.publish_rows, self.limit = schema, publish, limit
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
            except Exception:   # noqa: BLE001 - the relay must outlive a bad moment; its gauge shows it stuck
                log.exception("%s: publishing failed; retrying in 1 s", self.name)
                time.sleep(1)
                try:
                    if library_lost(self.conn):
                        self.conn = psycopg.connect(self.dsn)
                    else:
                        self.conn.rollback()
                except psycopg.OperationalError as exc:
                    log.warning("%s: the resource library is unavailable (%s)", self.name, exc)
            self.wake.wait(1.0)
        self.producer.flush(10)
        self.conn.close()

    def stop(self) -> None:
        self.running = False
        self.wake.set()
        self.join(30)

    def publish(self) -> int:
        return self.publish_rows(self.conn, self.producer, self.schema, self.limit)


def _reason(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _flushed(producer: Producer, what: str, n: int) -> bool:
    if producer.flush(30) != 0:
        log.warning("%s: %d of %d not acknowledged yet; they stay to be published again", what, len(producer), n)
        return False
    return True


def publish_outbox(conn: psycopg.Connection[Any], producer: Producer, schema: SchemaVersion, limit: int) -> int:
    """Publish the oldest pending golden changes, then delete them. The outbox's ids grow in commit order
    because its writers are serialized (``lock_settle``), so deleting up to the last id published never
    deletes a change committed after the read."""
    rows = conn.execute("SELECT outbox_id, topic, key, value FROM outbox ORDER BY outbox_id LIMIT %s",
                        (limit,)).fetchall()
    conn.commit()
    if not rows:
        return 0
    for _, topic, key, value in rows:
        producer.produce(topic, key=key.encode(), value=encode(schema, value))
    if not _flushed(producer, "outbox", len(rows)):
        return 0
    with conn.transaction():
        conn.execute("DELETE FROM outbox WHERE outbox_id <= %s", (rows[-1][0],))
    return len(rows)


def publish_queued(conn: psycopg.Connection[Any], producer: Producer, schema: SchemaVersion, limit: int) -> int:
    """Publish the resolved records after the relay's mark on ``gldm.<entity>.resolved`` keyed by canonical
    id (the repartition), then move the mark; the merge stage deletes the rows once merged. Queue rows are
    written under ``lock_resolve``, so their seq grows in commit order, as the outbox's ids do."""
    rows = conn.execute("SELECT seq, entity, canonical_id, queued_at FROM settle_queue"
                        " WHERE seq > (SELECT published_seq FROM settle_relay) ORDER BY seq LIMIT %s",
                        (limit,)).fetchall()
    conn.commit()
    if not rows:
        return 0
    for seq, entity, cid, queued_at in rows:
        producer.produce(resolved_topic(entity), key=cid.encode(), value=encode(schema, {
            "entity": entity, "canonical_id": cid, "seq": seq, "resolved_at": int(queued_at.timestamp() * 1000)}))
    if not _flushed(producer, "settle queue", len(rows)):
        return 0
    with conn.transaction():
        conn.execute("UPDATE settle_relay SET published_seq = greatest(published_seq, %s)", (rows[-1][0],))
    return len(rows)


def run_merge_worker(settings: Settings, stage: str, log_level: str = "warning") -> None:
    """``kintsmesh streams resolve`` / ``kintsmesh streams merge``: one stage per process (two threads in
    one process made each wait for the other's hold on the interpreter at every database round trip)."""
    if stage == "resolve":
        serve_worker("resolve", settings.resolve_metrics_port, settings, log_level, ResolveMetrics,
                     lambda metrics: ResolveWorker(settings, metrics))
    else:
        serve_worker("merge", settings.merge_metrics_port, settings, log_level, MergeMetrics,
                     lambda metrics: MergeWorker(settings, metrics))


def candidate_topics() -> list[str]:
    return [gldm.candidates_topic(e) for e in TABLES]


def resolved_topics() -> list[str]:
    return [resolved_topic(e) for e in TABLES]


def merge_lag(settings: Settings) -> int:
    """Candidates on the topics not yet resolved, records resolved and not yet merged (``settle_queue``:
    a row lives until the merge stage merged it) and golden changes merged but not yet published on
    ``gldm.<entity>.changes`` (the outbox): 0 means every change the candidates made is on its topic."""
    return library_lag(settings, RESOLVE_GROUP, candidate_topics(),
                       "SELECT (SELECT count(*) FROM settle_queue) + (SELECT count(*) FROM outbox)")


def wait_for_merge(settings: Settings, timeout_s: float, report: Any = lambda behind: None) -> int:
    """Block until everything on the candidate topics is merged and published; returns what is left."""
    from kintsmesh.watch import wait_for_zero

    return wait_for_zero(lambda: merge_lag(settings), timeout_s, report)
