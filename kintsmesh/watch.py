"""Watch the raw change topics: events per department and commit-to-topic latency.

Raw topics are created with ``message.timestamp.type=LogAppendTime``, so a
record's timestamp is when the broker appended it; Debezium's ``source.ts_ms``
is the commit time in the department database. Their difference is capture lag.
Used by the demo and by ``kintsmesh bench capture``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable

import psycopg
from confluent_kafka import Consumer, KafkaException, TopicPartition

from kintsmesh.settings import Settings


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def raw_event_total(consumer: Consumer) -> int:
    """Events ever appended to the raw change topics (sum of their end offsets)."""
    total = 0
    for name, topic in consumer.list_topics(timeout=10).topics.items():
        if name.startswith("raw."):
            for partition in topic.partitions:
                total += consumer.get_watermark_offsets(TopicPartition(name, partition), timeout=10)[1]
    return total


def wait_for_capture_to_settle(settings: Settings, quiet_s: float = 5.0, timeout_s: float = 600.0,
                               report: Callable[[int], object] = lambda total: None) -> int:
    """Block until no new raw change event has appeared for ``quiet_s`` (a backlog was captured)."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "kintsmesh-settle", "log_level": 0})
    try:
        deadline = time.monotonic() + timeout_s
        last, last_change = raw_event_total(consumer), time.monotonic()
        while time.monotonic() - last_change < quiet_s and time.monotonic() < deadline:
            time.sleep(1.0)
            total = raw_event_total(consumer)
            if total != last:
                last, last_change = total, time.monotonic()
                report(total)
        return last
    finally:
        consumer.close()


def group_lag(settings: Settings, group: str, topics: list[str]) -> int:
    """Events on ``topics`` that consumer group ``group`` has not committed yet."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group,
                         "enable.auto.commit": False, "log_level": 0})
    try:
        metadata = consumer.list_topics(timeout=10).topics
        partitions = [TopicPartition(t, p) for t in topics if t in metadata for p in metadata[t].partitions]
        behind = 0
        for tp in consumer.committed(partitions, timeout=10):
            end = consumer.get_watermark_offsets(tp, timeout=10)[1]
            behind += max(0, end - max(tp.offset, 0))
        return behind
    finally:
        consumer.close()


def wait_for_group(settings: Settings, group: str, topics: list[str], timeout_s: float,
                   report: Callable[[int], object] = lambda behind: None) -> int:
    """Block until ``group`` has caught up with ``topics`` (or the timeout); returns the remaining lag."""
    return wait_for_zero(lambda: group_lag(settings, group, topics), timeout_s, report, every_s=2.0)


def wait_for_pipeline(settings: Settings, timeout_s: float,
                      report: Callable[[str, int], object] = lambda stage, behind: None,
                      life_events: bool = True) -> dict[str, int]:
    """Block until normalize has read every raw event, merge has merged every candidate and the
    life-event worker (unless ``life_events`` is false) has evaluated every golden change and published
    and delivered its events, in that order;
    returns what each stage still had to do when it stopped waiting (0: caught up)."""
    from sinks.events import events_lag
    from sinks.worker import merge_lag
    from streams.app import raw_topics

    left = {"normalize": wait_for_group(settings, "kintsmesh-normalize", raw_topics(settings), timeout_s,
                                        lambda n: report("normalize", n))}
    left["merge"] = wait_for_zero(lambda: merge_lag(settings), timeout_s, lambda n: report("merge", n))
    if life_events:
        left["events"] = wait_for_zero(lambda: events_lag(settings), timeout_s, lambda n: report("events", n))
    return left


def wait_for_zero(measure: Callable[[], int], timeout_s: float, report: Callable[[int], object],
                  every_s: float = 1.0) -> int:
    """Poll ``measure`` until it is 0 or the timeout; returns the last value. The passing errors of a broker
    or a database restarting (a coordinator moving, a refused connection) are waited out until the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            left = measure()
        except (KafkaException, psycopg.OperationalError):
            if time.monotonic() >= deadline:
                raise
            time.sleep(every_s)
            continue
        if left == 0 or time.monotonic() >= deadline:
            return left
        report(left)
        time.sleep(every_s)


class RawTopicWatcher:
    """Consumes ``raw.*`` from the current end in a background thread."""

    def __init__(self, settings: Settings, accept: Callable[[dict, dict], bool] | None = None) -> None:
        self.consumer = Consumer({
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"kintsmesh-watch-{uuid.uuid4()}",
            "auto.offset.reset": "latest",
            "enable.auto.commit": False,
            "topic.metadata.refresh.interval.ms": 2000,
            "log_level": 0,
        })
        self.accept = accept or (lambda key, value: True)
        self.per_department: Counter[str] = Counter()
        self.samples: list[tuple[float, float]] = []  # (log-append time in s, commit -> topic in ms)
        self.first_ms: float | None = None
        self.last_ms: float | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._assigned = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self, timeout_s: float = 30.0) -> RawTopicWatcher:
        self.consumer.subscribe(["^raw\\..*"], on_assign=self._from_the_end)
        self._thread.start()
        self._assigned.wait(timeout_s)
        return self

    def _from_the_end(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # explicit end offsets: "latest" would be resolved lazily, after writes may have begun
        for partition in partitions:
            partition.offset = consumer.get_watermark_offsets(partition, timeout=10)[1]
        consumer.assign(partitions)
        self._assigned.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            for message in self.consumer.consume(1000, timeout=0.2):
                payload, raw_key = message.value(), message.key()
                if message.error() or payload is None:
                    continue
                value = json.loads(payload)
                source = value.get("source") or {}
                if source.get("snapshot") not in (None, "false"):
                    continue
                key = json.loads(raw_key) if raw_key else {}
                if not self.accept(key, value):
                    continue
                appended_ms = message.timestamp()[1]
                with self._lock:
                    self.per_department[source.get("db", "?")] += 1
                    self.samples.append((appended_ms / 1000, appended_ms - source["ts_ms"]))
                    self.first_ms = appended_ms if self.first_ms is None else self.first_ms
                    self.last_ms = appended_ms

    def snapshot(self) -> tuple[Counter[str], list[float]]:
        with self._lock:
            return Counter(self.per_department), [latency for _, latency in self.samples]

    def series(self) -> list[tuple[float, float]]:
        with self._lock:
            return list(self.samples)

    def wait_for(self, count: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if sum(self.snapshot()[0].values()) >= count:
                return True
            time.sleep(0.2)
        return False

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.consumer.close()
