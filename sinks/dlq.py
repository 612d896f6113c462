"""Dead-letter queues: ``kintsmesh dlq list | show | replay``, what a stage rejected, and putting it back after a fix.

Replay re-publishes a rejected event's original key and value to the raw topic it
came from, so the (fixed) normalize worker processes it again; the merge stage
ignores stale source positions, so a late replay cannot overwrite newer facts.
Replayed DLQ offsets are committed under the group ``kintsmesh-dlq-replay``: a
record is replayed once; if it is rejected again it is a new DLQ record.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import orjson
from confluent_kafka import TopicPartition

from kintsmesh import kafka
from kintsmesh.errors import TransientError
from kintsmesh.registry.client import SchemaRegistry
from kintsmesh.registry.codec import decode, encode
from kintsmesh.settings import Settings
from kintsmesh.topics import DLQ_REPLAY_GROUP, DLQ_SUBJECT, dlq_topic
from streams.normalize import gldm


def rejected_message(stage: str, message: Any, reason: str, detail: str) -> dict[str, Any]:
    """A RejectedRecord for a message a later stage (merge, events) could not process: the
    original bytes with their coordinates, for ``dlq.<stage>``."""
    return {
        "department": stage, "source_topic": message.topic() or "", "source_partition": message.partition() or 0,
        "source_offset": message.offset() or 0, "table": None, "primary_key": None, "reason": reason,
        "field": None, "detail": detail[:500], "original_key": message.key(), "original_value": message.value(),
        "rejected_at": int(time.time() * 1000),
    }


def rejected_row(stage: str, table: str, row_id: int, destination: str, row: Any, reason: str,
                 detail: str) -> dict[str, Any]:
    """A RejectedRecord for a library row a publisher could not send to ``destination`` (a life event
    the events topic or a subscriber cannot take): the row as JSON, its id as the offset."""
    subject = row.get("subject_id") if isinstance(row, dict) else None
    return {
        "department": stage, "source_topic": destination, "source_partition": 0, "source_offset": row_id,
        "table": table, "primary_key": str(row_id), "reason": reason, "field": None, "detail": detail[:500],
        "original_key": str(subject).encode() if subject is not None else None,
        "original_value": orjson.dumps(row, default=str), "rejected_at": int(time.time() * 1000),
    }


EXTRACT_SOURCE = "extract:"   # source_topic of a T+1 line's record: the extract file, not a topic


def rejected_line(department: str, table: str, path: Any, line: int, primary_key: str | None, reason: str,
                  field: str | None, detail: str, row: Any) -> dict[str, Any]:
    """A RejectedRecord for a T+1 extract line: the file as its source, the line number as its offset."""
    return {
        "department": department, "source_topic": f"{EXTRACT_SOURCE}{path}", "source_partition": 0,
        "source_offset": line, "table": table, "primary_key": primary_key, "reason": reason, "field": field,
        "detail": f"line {line}: {detail}"[:500], "original_key": primary_key.encode() if primary_key else None,
        "original_value": orjson.dumps(row, default=repr) if row is not None else None,
        "rejected_at": int(time.time() * 1000),
    }


class DeadLetters:
    """A producer of RejectedRecords to one ``dlq.<name>``; ``close`` raises unless the broker has them all."""

    def __init__(self, settings: Settings, name: str) -> None:
        self.topic = dlq_topic(name)
        kafka.ensure_topics(settings, [self.topic], 1)
        self.schema = SchemaRegistry(settings).register(DLQ_SUBJECT, gldm.schema(gldm.REJECTED_RECORD))
        self.producer = kafka.reliable_producer(settings)

    def send(self, record: dict[str, Any]) -> None:
        self.producer.produce(self.topic, key=record["original_key"], value=encode(self.schema, record))
        self.producer.poll(0)

    def flush(self) -> None:
        """Raises unless the broker has every record sent so far."""
        if self.producer.flush(60) != 0:
            raise TransientError(f"{self.topic}: {len(self.producer)} rejected records not acknowledged")

    def close(self) -> None:
        self.flush()


def _read(settings: Settings, department: str, group: str | None = None) -> tuple[list[dict[str, Any]], list[TopicPartition]]:
    """A department's DLQ records from the start (or from ``group``'s committed position) to the
    current end, and those end positions."""
    registry = SchemaRegistry(settings)
    topic = dlq_topic(department)
    consumer = kafka.consumer(settings, group or "kintsmesh-dlq-read", enable_auto_commit=False)
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        partitions = list(metadata.partitions) if metadata and metadata.partitions else []
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        starts = {p: 0 for p in partitions}
        if group and partitions:
            starts.update({tp.partition: max(tp.offset, 0)
                           for tp in consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)})
        consumer.assign([TopicPartition(topic, p, starts[p]) for p in partitions])
        records: list[dict[str, Any]] = []
        pending = {p for p in partitions if starts[p] < ends[p]}
        while pending:
            for message in consumer.consume(500, timeout=2.0):
                offset = message.offset()
                if message.error() or offset is None or message.partition() not in pending:
                    continue
                if offset < ends[message.partition()]:
                    records.append(decode(message.value() or b"", registry))
                if offset + 1 >= ends[message.partition()]:
                    pending.discard(message.partition())
        return records, [TopicPartition(topic, p, ends[p]) for p in partitions]
    finally:
        consumer.close()


def summary(settings: Settings, departments: list[str]) -> dict[str, Counter[str]]:
    return {d: Counter(record["reason"] for record in _read(settings, d)[0]) for d in departments}


def show(settings: Settings, department: str, reason: str | None, limit: int) -> list[dict[str, Any]]:
    shown = []
    for record in _read(settings, department)[0]:
        if reason is None or record["reason"] == reason:
            original = record["original_value"]
            record = {**record, "original_key": (record["original_key"] or b"").decode(errors="replace"),
                      "original_value": _as_json(original)}
            shown.append(record)
            if len(shown) >= limit:
                break
    return shown


def _as_json(value: bytes | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return value.decode(errors="replace")


def replay(settings: Settings, department: str, reason: str | None) -> int:
    """Re-publish the department's DLQ records to their raw topics.

    Without ``--reason``, only records not replayed before, and the position is then
    committed; with it, every record of that reason (a duplicate replay is harmless:
    the merge stage ignores positions it has already applied).
    """
    group = f"{DLQ_REPLAY_GROUP}-{department}" if reason is None else None
    records, ends = _read(settings, department, group=group)
    producer = kafka.producer(settings, enable_idempotence=True)
    replayed = 0
    for record in records:
        if record["source_topic"].startswith(EXTRACT_SOURCE):
            continue   # a T+1 line: load the corrected extract again
        if reason is None or record["reason"] == reason:
            producer.produce(record["source_topic"], key=record["original_key"], value=record["original_value"],
                             partition=record["source_partition"])
            replayed += 1
    if producer.flush(30) != 0:
        raise TransientError(f"dlq replay: {department}: not every replayed event was acknowledged; nothing committed")
    if group and ends:
        committer = kafka.consumer(settings, group)
        committer.commit(offsets=ends, asynchronous=False)
        committer.close()
    return replayed
