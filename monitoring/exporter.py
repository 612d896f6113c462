"""The lag exporter: what no single worker knows, probed at each Prometheus scrape.

Debezium connector and task states (Kafka Connect REST), each connector's newest heartbeat,
the replication slots' WAL held back, consumer lag per group and partition (Kafka offsets, and
the merge worker's offsets stored with the resource library), DLQ sizes, and the last T+1 batch
per department with whether today's is overdue.
``kintsmesh monitor serve`` runs it (``kintsmesh stack up`` starts one); metrics on
``settings.monitor_metrics_port``.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from connect.connectors import available_departments
from kintsmesh.errors import KintsmeshError
from kintsmesh.settings import Settings
from kintsmesh.topics import DLQ_STAGES, dlq_topic, heartbeat_topic
from monitoring import probes
from monitoring.schedule import BatchSchedule, load_schedules

log = logging.getLogger(__name__)

CONNECTOR_STATES = ("RUNNING", "PAUSED", "STOPPED", "FAILED", "UNASSIGNED", "RESTARTING", "MISSING")
BATCH_COUNTS = ("rows", "rejected", "merged", "unchanged", "sent_to_review", "conflicts", "golden_updates")


def dlq_topics() -> list[str]:
    return [dlq_topic(d) for d in (*available_departments(), *DLQ_STAGES)]


class StackCollector(Collector):
    """Builds every family afresh on each scrape; a probe that fails reports ``up 0`` and its
    families are left out (absent, not zero: a dead Connect must not read as "no lag")."""

    def __init__(self, settings: Settings, schedules: list[BatchSchedule] | None = None) -> None:
        self.settings = settings
        self.departments = available_departments()
        self.schedules = load_schedules() if schedules is None else schedules
        self.kafka = probes.KafkaProbe(settings)

    def collect(self) -> Iterator[Metric]:
        started = time.perf_counter()
        up = GaugeMetricFamily("kintsmesh_monitor_probe_up", "1 if the exporter could read this system",
                               labels=["probe"])
        stored: dict[str, dict[tuple[str, int], int]] = {}  # offsets kept with the library, by group
        for probe, families in (("connect", self._connectors), ("postgres", self._slots),
                                ("library", lambda: self._library(stored)), ("kafka", lambda: self._kafka(stored))):
            try:
                collected = list(families())
            except KintsmeshError as exc:
                log.warning("probe %s failed: %s", probe, exc)
                up.add_metric([probe], 0)
                if probe == "kafka":   # after a broker restart the old admin client kept timing out: a new one
                    self.kafka = probes.KafkaProbe(self.settings)
                continue
            up.add_metric([probe], 1)
            yield from collected
        yield up
        yield GaugeMetricFamily("kintsmesh_monitor_probe_seconds", "Time the last scrape spent probing",
                                value=time.perf_counter() - started)

    def _connectors(self) -> Iterator[Metric]:
        state = GaugeMetricFamily("kintsmesh_connector_state", "1 for the Debezium connector's current state",
                                  labels=["department", "state"])
        tasks = GaugeMetricFamily("kintsmesh_connector_tasks", "Connector tasks in each state",
                                  labels=["department", "state"])
        running = GaugeMetricFamily("kintsmesh_connector_running",
                                    "1 if the connector and all its tasks are RUNNING", labels=["department"])
        for department, status in probes.connector_states(self.settings, self.departments).items():
            for name in CONNECTOR_STATES:
                state.add_metric([department, name], float(status.connector_state == name))
                tasks.add_metric([department, name], float(sum(t.state == name for t in status.tasks)))
            running.add_metric([department], float(status.running))
        yield from (state, tasks, running)

    def _slots(self) -> Iterator[Metric]:
        active = GaugeMetricFamily("kintsmesh_replication_slot_active",
                                   "1 if a connector is attached to the department's replication slot", labels=["department"])
        retained = GaugeMetricFamily("kintsmesh_replication_slot_retained_bytes",
                                     "WAL the department's replication slot holds back (not yet confirmed by Debezium)",
                                     labels=["department"])
        for slot in probes.replication_slots(self.settings, self.departments):
            active.add_metric([slot.department], float(slot.active))
            retained.add_metric([slot.department], slot.retained_bytes)
        yield from (active, retained)

    def _library(self, stored: dict[str, dict[tuple[str, int], int]]) -> Iterator[Metric]:
        offsets, batches = probes.library_state(self.settings)
        stored.update(offsets)
        now = datetime.now(timezone.utc)
        finished = GaugeMetricFamily("kintsmesh_batch_last_finished_timestamp_seconds",
                                     "When the department's last T+1 batch load finished", labels=["department"])
        business = GaugeMetricFamily("kintsmesh_batch_last_business_date_timestamp_seconds",
                                     "Business day of the last T+1 batch (local midnight)", labels=["department"])
        counts = GaugeMetricFamily("kintsmesh_batch_last_rows", "Outcome counts of the last T+1 batch",
                                   labels=["department", "outcome"])
        overdue = GaugeMetricFamily("kintsmesh_batch_overdue",
                                    "1 once a T+1 department's extract is past its due time (monitoring/batches.yaml)",
                                    labels=["department"])
        for run in batches.values():
            finished.add_metric([run.department], run.finished_at.timestamp())
            for outcome, value in batch_counts(run.report).items():
                counts.add_metric([run.department, outcome], value)
        for schedule in self.schedules:
            last = batches.get(schedule.department)
            if last is not None:
                midnight = datetime.combine(last.batch_date, datetime.min.time(), schedule.zone)
                business.add_metric([schedule.department], midnight.timestamp())
            overdue.add_metric([schedule.department],
                               float(schedule.overdue(last.batch_date if last else None, now)))
        yield from (finished, business, counts, overdue)

    def _kafka(self, stored: dict[str, dict[tuple[str, int], int]]) -> Iterator[Metric]:
        lag = GaugeMetricFamily("kintsmesh_consumer_lag_messages",
                                "Messages on a partition not yet processed by the group", labels=["group", "topic", "partition"])
        for p in self.kafka.lags(stored):
            lag.add_metric([p.group, p.topic, str(p.partition)], p.lag)
        dlq = GaugeMetricFamily("kintsmesh_dlq_messages", "Records held in a dead-letter topic", labels=["topic"])
        for topic, size in self.kafka.messages(dlq_topics()).items():
            dlq.add_metric([topic], size)
        heartbeat = GaugeMetricFamily(
            "kintsmesh_capture_heartbeat_timestamp_seconds",
            "Newest Debezium heartbeat of the department's connector: capture is alive even when the department is quiet",
            labels=["department"])
        topics = {heartbeat_topic(d): d for d in self.departments}
        for topic, newest in self.kafka.newest_timestamps(topics).items():
            heartbeat.add_metric([topics[topic]], newest)
        yield from (lag, dlq, heartbeat)


def batch_counts(report: dict[str, Any]) -> dict[str, float]:
    """The reconciliation report (sinks.batch.load_batch) flattened to the exported outcomes."""
    candidates = report.get("candidates", {})
    flat = {"rows": report.get("rows"), "rejected": report.get("rejected"), **candidates}
    return {name: float(flat.get(name) or 0) for name in BATCH_COUNTS}


def serve(settings: Settings) -> None:
    """Serve /metrics until SIGTERM / SIGINT."""
    registry = CollectorRegistry()
    registry.register(StackCollector(settings))
    start_http_server(settings.monitor_metrics_port, addr=settings.metrics_host, registry=registry)
    print(f"lag exporter: http://{settings.metrics_host}:{settings.monitor_metrics_port}/metrics", flush=True)
    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
