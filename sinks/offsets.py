"""Kafka consumers that write to the resource library (merge, life events): their offsets, kept in
the library and written in the transaction of the work they caused, and their process entry.

A worker that writes to the library (merge, life events) stores the next offset of
every partition it consumed in ``consumer_offset`` inside the same transaction as
its writes, and on every partition assignment seeks to them: a batch is either
done and recorded, or neither, whatever kills the process.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition
from prometheus_client import CollectorRegistry, start_http_server

from kintsmesh.errors import TransientError
from kintsmesh.settings import RESOURCE_LIBRARY_DB, Settings
from kintsmesh.stack.supervise import RESTART_DELAYS_S

M = TypeVar("M")

Offsets = dict[tuple[str, int], int]   # (topic, partition) -> next offset
# Groups under this prefix are not consumers: they mark how far a publisher's own topic was written
# when it last recorded a publication (life events, subscriptions), for crash recovery.
MARKS_PREFIX = "kintsmesh-marks-"


def stored_offsets(conn: psycopg.Connection[Any], group: str) -> Offsets:
    return {(t, p): o for t, p, o in conn.execute(
        "SELECT topic, partition, next_offset FROM consumer_offset WHERE group_id = %s", (group,))}


def store_offsets(conn: psycopg.Connection[Any], group: str, offsets: Offsets) -> None:
    """Record consumed offsets (never moving one back); call inside the work's transaction."""
    if not offsets:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO consumer_offset (group_id, topic, partition, next_offset) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset ="
            " GREATEST(consumer_offset.next_offset, EXCLUDED.next_offset)",
            [(group, t, p, o) for (t, p), o in offsets.items()])


def seek_to_stored(conn: psycopg.Connection[Any], group: str):  # type: ignore[no-untyped-def]
    """An ``on_assign`` callback: start every assigned partition where the library says it stopped."""
    def on_assign(consumer: Consumer, partitions: list[TopicPartition]) -> None:
        stored = stored_offsets(conn, group)
        conn.commit()
        for tp in partitions:
            tp.offset = stored.get((tp.topic, tp.partition), OFFSET_BEGINNING)
        consumer.assign(partitions)
    return on_assign


def batch_offsets(messages: list[Any]) -> Offsets:
    """The next offset to consume per partition after ``messages``."""
    offsets: Offsets = {}
    for message in messages:
        offsets[(message.topic() or "", message.partition() or 0)] = (message.offset() or 0) + 1
    return offsets


def library_lag(settings: Settings, group: str, topics: list[str], pending_sql: str = "0",
                params: tuple[Any, ...] = ()) -> int:
    """Work on ``topics`` a library-writing worker has not finished: end offsets minus the offsets stored
    with the library, plus what ``pending_sql`` counts (rows the worker wrote and has still to act on).

    The ends are read first, then the stored offsets and the pending rows in one statement (one snapshot):
    a worker moves work from a topic into its pending rows in the transaction that stores the offsets,
    so the work is counted on one side or the other. Two separate reads, pending rows first, could see
    neither side and report 0 while it was in between (a held life event went missing that way)."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"{group}-lag", "log_level": 0})
    try:
        metadata = consumer.list_topics(timeout=10).topics
        ends = {(t, p): consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1]
                for t in topics if t in metadata for p in metadata[t].partitions}
    finally:
        consumer.close()
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        row = conn.execute(
            "SELECT (SELECT coalesce(array_agg(ARRAY[topic, partition::text, next_offset::text]), '{}')"
            f" FROM consumer_offset WHERE group_id = %s), ({pending_sql})", (group, *params)).fetchone()
    assert row is not None
    stored = {(t, int(p)): int(o) for t, p, o in row[0]}
    return sum(max(0, end - stored.get(tp, 0)) for tp, end in ends.items()) + int(row[1])


def broker_error(message: Message, log: logging.Logger) -> bool:
    """Whether a consumed message is an error event (logged unless it only marks a partition's end)."""
    error = message.error()
    if error is None:
        return False
    if error.code() != KafkaError._PARTITION_EOF:
        log.warning("consumer: %s", error)
    return True


class LibraryUnavailable(Exception):
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
                        str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__, delay)
            stopping.wait(delay)


class Acks:
    """A producer's delivery reports for one flush: failures, and the end offset reached per partition."""

    def __init__(self) -> None:
        self.failed: list[str] = []
        self.ends: Offsets = {}

    def __call__(self, error: Any, message: Message) -> None:
        if error is not None:
            self.failed.append(str(error))
            return
        key = (message.topic() or "", message.partition() or 0)
        self.ends[key] = max(self.ends.get(key, 0), (message.offset() or 0) + 1)


def headers_after(settings: Settings, topics: list[str], stored: Offsets, header: str,
                  timeout_s: float = 60) -> tuple[list[str], Offsets]:
    """The values of ``header`` on every message after the ``stored`` offsets (0 for a partition
    without one) to the topics' ends, and those ends: what reached the topics after the last mark."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "kintsmesh-recover",
                         "enable.auto.commit": False, "log_level": 0})
    values: list[str] = []
    ends: Offsets = {}
    try:
        metadata = consumer.list_topics(timeout=10).topics
        for topic in topics:
            for partition in (metadata[topic].partitions if topic in metadata else {}):
                start = stored.get((topic, partition), 0)
                end = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
                if end <= start:
                    continue
                consumer.assign([TopicPartition(topic, partition, start)])
                position, deadline = start, time.monotonic() + timeout_s
                while position < end and time.monotonic() < deadline:
                    for message in consumer.consume(1000, timeout=1.0):
                        if message.error() or message.offset() is None:
                            continue
                        position = max(position, (message.offset() or 0) + 1)
                        values += [h[1].decode() for h in message.headers() or []
                                   if h[0] == header and isinstance(h[1], bytes)]
                if position < end:
                    raise TransientError(f"{topic}[{partition}]: could not read offsets {position}..{end} back")
                ends[(topic, partition)] = end
    finally:
        consumer.close()
    return values, ends
