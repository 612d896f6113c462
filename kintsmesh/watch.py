"""Watch the raw change topics: events per department and commit-to-topic latency.

Raw topics are created with ``message.timestamp.type=LogAppendTime``, so a
record's timestamp is when the broker appended it; Debezium's ``source.ts_ms``
is the commit time in the department database. Their difference is capture lag.
Used by the demo and by ``kintsmesh bench capture``. How far each stage is behind is
``monitoring.lag``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable

from confluent_kafka import Consumer, TopicPartition

from kintsmesh import kafka
from kintsmesh.settings import Settings
from kintsmesh.topics import RAW_PREFIX


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def raw_event_total(consumer: Consumer) -> int:
    """Events ever appended to the raw change topics (sum of their end offsets)."""
    total = 0
    for name, topic in consumer.list_topics(timeout=10).topics.items():
        if name.startswith(f"{RAW_PREFIX}."):
            for partition in topic.partitions:
                total += consumer.get_watermark_offsets(TopicPartition(name, partition), timeout=10)[1]
    return total


def wait_for_capture_to_settle(settings: Settings, quiet_s: float = 5.0, timeout_s: float = 600.0,
                               report: Callable[[int], object] = lambda total: None) -> int:
    """Block until no new raw change event has appeared for ``quiet_s`` (a backlog was captured)."""
    consumer = kafka.consumer(settings, "kintsmesh-settle")
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


class RawTopicWatcher:
    """Consumes ``raw.*`` from the current end in a background thread."""

    def __init__(self, settings: Settings, accept: Callable[[dict, dict], bool] | None = None) -> None:
        self.consumer = kafka.consumer(settings, f"kintsmesh-watch-{uuid.uuid4()}", auto_offset_reset="latest",
                                       enable_auto_commit=False, topic_metadata_refresh_interval_ms=2000)
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
