"""The one consumer base of every stage that writes to the resource library (resolve, merge, life events).

A ``LibraryStage`` consumes a batch, does its work in one PostgreSQL transaction together with the
offsets it consumed (``sinks.kafka.offsets``), and seeks to the stored offsets on every assignment:
a batch is either done and recorded, or neither, whatever kills the process. A message that cannot
be read, or whose work fails on its own, goes to the stage's DLQ with the reason (``in_isolation``
finds it in a failed batch); the rest of its batch goes on.

``serve_worker`` is the process around a stage: logging, metrics, signals, and building the stage
again when the resource library goes away.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import psycopg
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from prometheus_client import CollectorRegistry, start_http_server

from kintsmesh import kafka, topics
from kintsmesh.errors import RESTART_DELAYS_S, TransientError
from kintsmesh.registry.catalog import SchemaVersion
from kintsmesh.registry.client import SchemaRegistry
from kintsmesh.registry.codec import UndecodableMessage, decode, encode
from kintsmesh.settings import RESOURCE_LIBRARY_DB, Settings
from sinks.dlq import rejected_message
from sinks.kafka.offsets import Offsets, broker_error, seek_to_stored, stored_offsets
from streams.normalize import gldm

M = TypeVar("M")
T = TypeVar("T")
R = TypeVar("R")


class LibraryUnavailable(TransientError):
    """The worker's connection to the resource library broke (a restart, a failover, the network)."""


def library_lost(conn: psycopg.Connection[Any]) -> bool:
    return conn.closed or conn.broken


def close_quietly(*closers: Callable[[], Any]) -> None:
    """Abandoning a worker: a broken connection may refuse to close cleanly; each closer is tried."""
    for close in closers:
        try:
            close()
        except Exception as exc:  # noqa: BLE001 - best effort, the process goes on
            logging.getLogger("kintsmesh").debug("while abandoning: %s", exc)


def reason_of(exc: BaseException) -> str:
    """An exception's first line, for a DLQ record or a log line."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def described(exc: BaseException) -> str:
    """An exception as a DLQ record's detail: its type and its first line."""
    return f"{type(exc).__name__}: {reason_of(exc)}"


class LibraryStage(Generic[M]):
    """A consumer whose work and offsets go to the resource library in one transaction.

    Subclasses name their ``group``, ``topics()`` and DLQ, and fill in ``process`` (one batch, returns
    how many rows it left for a publisher); ``start``, ``tick``, ``gauges`` and ``finish`` are hooks
    around the loop."""

    name = ""                 # the stage, in logs
    group = ""
    dlq = ""                  # dlq.<dlq>: where what this stage cannot read or do goes
    batch_size = 0            # messages per batch at most
    max_wait_s = 0.05         # how long a batch waits to fill
    linger_s = 0.0            # ... and how much longer, when changes are flowing (``_batch``)
    LINGER_FROM = 5           # messages within ``max_wait_s``: a flow, not a lone change
    session_options = ""      # PostgreSQL session settings of the stage's connection

    def __init__(self, settings: Settings, metrics: M, producer: Producer | None = None) -> None:
        self.settings, self.metrics = settings, metrics
        self.log = logging.getLogger(f"kintsmesh.{self.name}")
        self.running = True
        self.registry = SchemaRegistry(settings)
        self.conn = (psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB), options=self.session_options)
                     if self.session_options else psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)))
        self.consumer = self._consumer()
        self.assignment_watch = kafka.AssignmentWatch(settings.assignment_timeout_s)
        self.producer = producer or kafka.reliable_producer(settings)
        self.rejected_schema: SchemaVersion | None = None

    # ------------------------------------------------------------------ what a stage fills in

    def topics(self) -> list[str]:
        raise NotImplementedError

    def process(self, messages: list[Message]) -> int:
        """Do one batch; returns how many rows it left to be published."""
        raise NotImplementedError

    def start(self) -> None:
        """Before subscribing: topics, schemas, publishers."""

    def tick(self, wrote: int) -> None:
        """After every poll, whether it brought messages or not."""

    def gauges(self) -> None:
        """Every five seconds."""

    def finish(self) -> None:
        """After the loop, before the connections close."""

    # ------------------------------------------------------------------ the loop

    def _consumer(self) -> Consumer:
        return kafka.consumer(self.settings, self.group, log_level=3, enable_auto_commit=False,
                              auto_offset_reset="earliest")

    def _batch(self) -> list[Message]:
        """The next batch: what arrives within ``max_wait_s``; when that is a flow of changes (at least
        ``LINGER_FROM``) but not a full batch, what arrives within ``linger_s`` more. A lone change goes on
        at once and a backlog comes in full batches; a steady flow comes in fewer, larger batches, so that
        the fixed cost of a transaction is shared by more changes."""
        messages = self.consumer.consume(self.batch_size, timeout=self.max_wait_s)
        if self.linger_s and self.LINGER_FROM <= len(messages) < self.batch_size:
            messages += self.consumer.consume(self.batch_size - len(messages), timeout=self.linger_s)
        return messages

    def run(self) -> None:
        # the DLQ exists from the start: an empty DLQ reads 0 in the exporter, not "absent"
        kafka.ensure_topics(self.settings, [topics.dlq_topic(self.dlq)], 1)
        self.start()
        self.consumer.subscribe(self.topics(), on_assign=seek_to_stored(self.conn, self.group))
        last_gauges = 0.0
        while self.running:
            batch = [m for m in self._batch() if not broker_error(m, self.log)]
            self.tick(self.process(batch) if batch else 0)
            if time.monotonic() - last_gauges > 5:
                self.gauges()
                self.watch_assignment()
                last_gauges = time.monotonic()
        self.finish()
        self.consumer.close()
        self.producer.flush(10)
        self.conn.close()

    def stop(self, *_: Any) -> None:
        self.running = False

    def waiting(self) -> int:
        """Messages in this stage's topics after the offsets stored with the library."""
        stored = stored_offsets(self.conn, self.group)
        self.conn.commit()   # a read: no transaction left open (as in seek_to_stored)
        total = 0
        for topic in self.topics():
            metadata = self.consumer.list_topics(topic, timeout=5).topics.get(topic)
            for partition in (metadata.partitions if metadata is not None else {}):
                low, high = self.consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=5)
                total += max(0, high - max(stored.get((topic, partition), low), low))
        return total

    def watch_assignment(self) -> None:
        """A consumer that holds no partition while its topics have messages waiting, and no other member of
        the group takes them, for ``assignment_timeout_s`` is built again (``kafka.AssignmentWatch``)."""
        try:
            stuck = self.assignment_watch.stuck(bool(self.consumer.assignment()), self.waiting, time.monotonic())
        except Exception as exc:  # noqa: BLE001 - the broker not answering: ask again next time
            self.log.debug("%s: cannot measure the waiting messages: %s", self.name, exc)
            return
        if stuck is None:
            return
        self.log.warning("%s: no partition assigned for %.0f s while messages wait; building the consumer again",
                         self.name, stuck)
        close_quietly(self.consumer.close)
        self.consumer = self._consumer()
        self.consumer.subscribe(self.topics(), on_assign=seek_to_stored(self.conn, self.group))
        rebuilt = getattr(self.metrics, "consumer_rebuilds", None)
        if rebuilt is not None:
            rebuilt.inc()

    def abandon(self) -> None:
        """Let go of everything after the library went away; what was not committed is done again."""
        self.finish()
        close_quietly(self.consumer.close, lambda: self.producer.flush(5), self.conn.close)

    # ------------------------------------------------------------------ helpers for process()

    def decode(self, message: Message) -> dict[str, Any]:
        value = message.value()
        if value is None:
            raise UndecodableMessage(f"a tombstone on {message.topic()}")
        return decode(value, self.registry)

    def commit_offsets(self, offsets: Offsets) -> None:
        """Kafka-side commits, for lag monitoring only: the library's offsets are the ones that count."""
        self.consumer.commit(offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=True)

    def in_isolation(self, items: list[T], messages: list[Message], work: Callable[[list[T], Offsets], R],
                     offsets: Offsets, total: R, add: Callable[[R, R], R],
                     forget: Callable[[T], None] | None = None) -> R:
        """``work(items, offsets)`` in one transaction; if it fails, each item alone, the results summed by
        ``add`` from ``total`` (one that fails again goes to the DLQ with the reason, and ``forget`` cleans up
        after it), then the offsets alone."""
        try:
            return work(items, offsets)
        except Exception as exc:  # noqa: BLE001 - a bad item must neither stop nor loop the stage
            self._failed(exc)
            self.log.warning("%s: a batch of %d failed (%s); going one by one to isolate it", self.name, len(items),
                             reason_of(exc))
        for item, message in zip(items, messages):
            try:
                total = add(total, work([item], {}))
            except Exception as failed:  # noqa: BLE001
                self._failed(failed)
                self.reject(message, "merge_failed", reason_of(failed))
                if forget is not None:
                    forget(item)
        work([], offsets)
        return total

    def _failed(self, exc: Exception) -> None:
        """After a batch, or one item of it, failed: a lost library is not the input's fault (the work is
        done again once the library is back); anything else is rolled back and blamed on the input."""
        if isinstance(exc, psycopg.Error) and library_lost(self.conn):
            raise LibraryUnavailable() from exc
        self.conn.rollback()

    def reject(self, message: Message, reason: str, detail: str) -> None:
        """``message`` to ``dlq.<dlq>`` with the reason; the stage goes on."""
        self.log.error("%s[%s]@%s: %s: %s", message.topic(), message.partition(), message.offset(), reason, detail)
        topic = topics.dlq_topic(self.dlq)
        if self.rejected_schema is None:
            self.rejected_schema = self.registry.register(topics.DLQ_SUBJECT, gldm.schema(gldm.REJECTED_RECORD))
        rejected = getattr(self.metrics, "rejected", None)
        if rejected is not None:
            rejected.labels(reason).inc()
        record = rejected_message(self.dlq, message, reason, detail)
        self.producer.produce(topic, key=message.key(), value=encode(self.rejected_schema, record))
        self.producer.flush(30)


def serve_worker(name: str, port: int, settings: Settings, log_level: str,
                 metrics_of: Callable[[CollectorRegistry], M], build: Callable[[M], Any]) -> None:
    """Run a worker process: logging, its metrics on ``port``, SIGTERM / SIGINT stop it cleanly.

    When the resource library goes away (its connection breaks, or it refuses new ones), the worker is
    abandoned — nothing it did outside a committed transaction counts — and built again once the
    library answers: after 1 s, and after 2, 5, 10, then every 30 s while it keeps refusing connections;
    it resumes from the offsets stored with the library. The process itself never exits for that, so
    nothing has to restart it."""
    logging.basicConfig(level=getattr(logging, log_level.upper(), logging.WARNING),
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log = logging.getLogger(f"kintsmesh.{name}")
    registry = CollectorRegistry()
    start_http_server(port, addr=settings.metrics_host, registry=registry)
    metrics = metrics_of(registry)
    stopping = threading.Event()
    current: list[Any] = []

    def stop(*_: Any) -> None:
        stopping.set()
        for worker in current:
            worker.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    failures = 0   # attempts in a row that could not reach the library
    while not stopping.is_set():
        try:
            current[:] = [build(metrics)]
            if failures:
                log.warning("%s worker: the resource library is back; resuming from the offsets stored there", name)
            failures = 0
            log.info("%s worker: metrics on :%s", name, port)
            current[0].run()
            return
        except (LibraryUnavailable, psycopg.OperationalError) as exc:
            if current:
                current.pop().abandon()
            failures += 1
            delay = RESTART_DELAYS_S[min(failures, len(RESTART_DELAYS_S)) - 1]
            cause = exc.__cause__ or exc
            log.warning("%s worker: the resource library is unavailable (%s); starting again in %g s", name,
                        reason_of(cause) if str(cause).strip() else type(cause).__name__, delay)
            stopping.wait(delay)
