"""What the lag exporter and ``kintsmesh status`` read from the running stack.

Each probe asks one system (Kafka Connect's REST API, Kafka's admin API, the resource
library) and returns plain values; a system that does not answer raises ``TransientError``
so that the caller can show it as unknown instead of as zero.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import psycopg
import requests
from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec

from connect.client import ConnectClient, ConnectorStatus
from connect.connectors import connector_name
from kintsmesh import kafka
from kintsmesh.errors import TransientError
from kintsmesh.settings import RESOURCE_LIBRARY_DB, Settings
from kintsmesh.topics import MARKS_PREFIX

# the stack's workers that commit their offsets to Kafka (the merge worker keeps its own with the
# resource library); listed, not discovered, so that a benchmark's or a replay's leftover group
# does not read as a worker falling behind
KAFKA_GROUPS = ("kintsmesh-normalize",)
TIMEOUT_S = 5.0


def connector_states(settings: Settings, departments: Iterable[str]) -> dict[str, ConnectorStatus]:
    """department -> its Debezium connector's state (``MISSING`` when it is not configured)."""
    client = ConnectClient.of(settings, timeout_s=TIMEOUT_S)
    return {d: client.status(connector_name(d)) for d in departments}


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int
    end: int

    @property
    def lag(self) -> int:
        return max(0, self.end - max(self.committed, 0))


class KafkaProbe:
    """Topic sizes and consumer-group positions through one admin client."""

    def __init__(self, settings: Settings) -> None:
        self.admin = kafka.admin(settings, socket_timeout_ms=3000)

    def _wait(self, futures: dict[Any, Any]) -> dict[Any, Any]:
        try:
            return {key: future.result(timeout=TIMEOUT_S) for key, future in futures.items()}
        except KafkaException as exc:
            raise TransientError(f"Kafka did not answer: {exc.args[0]}") from exc

    def topics(self) -> dict[str, list[int]]:
        return {name: sorted(t.partitions) for name, t in kafka.topic_metadata(self.admin, TIMEOUT_S).items()}

    def offsets(self, partitions: list[TopicPartition], spec: OffsetSpec) -> dict[tuple[str, int], int]:
        if not partitions:
            return {}
        answers = self._wait(self.admin.list_offsets({tp: spec for tp in partitions}))
        return {(tp.topic, tp.partition): info.offset for tp, info in answers.items()}

    def newest_timestamps(self, topics: Iterable[str]) -> dict[str, float]:
        """Each topic's newest message timestamp in epoch seconds (KIP-734 max-timestamp offsets);
        topics that do not exist or hold nothing are left out."""
        known = self.topics()
        partitions = [TopicPartition(t, p) for t in topics for p in known.get(t, [])]
        if not partitions:
            return {}
        answers = self._wait(self.admin.list_offsets({tp: OffsetSpec.max_timestamp() for tp in partitions}))
        newest: dict[str, float] = {}
        for tp, info in answers.items():
            if info.offset >= 0 and info.timestamp > 0:
                newest[tp.topic] = max(newest.get(tp.topic, 0.0), info.timestamp / 1000)
        return newest

    def messages(self, topics: Iterable[str]) -> dict[str, int]:
        """Messages each topic retains now (end minus start offsets, over its partitions)."""
        known = self.topics()
        partitions = [TopicPartition(t, p) for t in topics for p in known.get(t, [])]
        ends = self.offsets(partitions, OffsetSpec.latest())
        starts = self.offsets(partitions, OffsetSpec.earliest())
        sizes = {t: 0 for t in topics if t in known}
        for (topic, partition), end in ends.items():
            sizes[topic] += max(0, end - starts.get((topic, partition), 0))
        return sizes

    def group_offsets(self, groups: Iterable[str]) -> dict[str, dict[tuple[str, int], int]]:
        """Committed offsets of the given Kafka consumer groups."""
        committed: dict[str, dict[tuple[str, int], int]] = {}
        for group in groups:  # the admin API takes one group per request
            answer = self._wait(self.admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)]))
            for result in answer.values():
                committed[group] = {(tp.topic, tp.partition): tp.offset
                                    for tp in result.topic_partitions if tp.offset >= 0}
        return committed

    def lags(self, stored: dict[str, dict[tuple[str, int], int]]) -> list[PartitionLag]:
        """Per group and partition: committed offset vs end offset. ``stored`` adds groups whose
        offsets live outside Kafka (the merge worker keeps its own in the resource library)."""
        positions = {**self.group_offsets(KAFKA_GROUPS), **stored}
        wanted = {tp for offsets in positions.values() for tp in offsets}
        ends = self.offsets([TopicPartition(t, p) for t, p in sorted(wanted)], OffsetSpec.latest())
        return [PartitionLag(group, topic, partition, offset, ends.get((topic, partition), offset))
                for group, offsets in sorted(positions.items()) for (topic, partition), offset in sorted(offsets.items())]


@dataclass(frozen=True)
class BatchRun:
    department: str
    batch_date: date
    finished_at: datetime
    report: dict[str, Any]


def library_state(settings: Settings) -> tuple[dict[str, dict[tuple[str, int], int]], dict[str, BatchRun]]:
    """Offsets stored with the library by group, and the last completed T+1 batch per department."""
    stored: dict[str, dict[tuple[str, int], int]] = {}
    try:
        with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB), connect_timeout=int(TIMEOUT_S)) as conn:
            for group, topic, partition, offset in conn.execute(   # consumers only, not publication marks
                    "SELECT group_id, topic, partition, next_offset FROM consumer_offset WHERE NOT starts_with(group_id, %s)",
                    (MARKS_PREFIX,)):
                stored.setdefault(group, {})[(topic, partition)] = offset
            batches = {row[0]: BatchRun(*row) for row in conn.execute(
                "SELECT DISTINCT ON (department) department, batch_date, finished_at, report FROM batch_run"
                " ORDER BY department, finished_at DESC")}
    except psycopg.Error as exc:
        raise TransientError(f"the resource library could not be read: {exc}") from exc
    return stored, batches


@dataclass(frozen=True)
class SlotState:
    department: str
    active: bool
    retained_bytes: int  # WAL the slot holds back: written but not yet confirmed by Debezium


def replication_slots(settings: Settings, departments: Iterable[str]) -> list[SlotState]:
    """Each department's Debezium replication slot: is a connector attached, how much WAL it holds back.
    A stopped connector's slot keeps every change (nothing is lost) and grows the disk meanwhile."""
    slots = []
    try:
        with psycopg.connect(settings.dsn("postgres", cluster="departments"), connect_timeout=int(TIMEOUT_S)) as conn:
            rows = conn.execute(
                "SELECT database, active, pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint"
                " FROM pg_replication_slots WHERE slot_type = 'logical'").fetchall()
    except psycopg.Error as exc:
        raise TransientError(f"PostgreSQL could not be read: {exc}") from exc
    wanted = set(departments)
    for database, active, retained in rows:
        if database in wanted:
            slots.append(SlotState(database, bool(active), int(retained or 0)))
    return slots


def prometheus_vector(settings: Settings, expr: str) -> dict[tuple[tuple[str, str], ...], float]:
    """An instant query: labels (sorted, without ``__name__``) -> value."""
    try:
        response = requests.get(f"{settings.prometheus_endpoint}/api/v1/query", params={"query": expr},
                                 timeout=TIMEOUT_S)
        response.raise_for_status()
    except requests.RequestException as exc:
        raise TransientError(f"Prometheus did not answer {expr!r}: {exc}") from exc
    result = response.json()["data"]["result"]
    return {tuple(sorted((k, v) for k, v in r["metric"].items() if k != "__name__")): float(r["value"][1])
            for r in result}


def firing_alerts(settings: Settings) -> list[dict[str, Any]]:
    """Alerts Prometheus holds now (state ``pending`` or ``firing``), with their labels and activeAt."""
    try:
        response = requests.get(f"{settings.prometheus_endpoint}/api/v1/alerts", timeout=TIMEOUT_S)
        response.raise_for_status()
    except requests.RequestException as exc:
        raise TransientError(f"Prometheus did not answer: {exc}") from exc
    alerts: list[dict[str, Any]] = response.json()["data"]["alerts"]
    return alerts
