"""The registry's storage: a compacted, single-partition Kafka topic of schema versions and
compatibility levels (the way Confluent Schema Registry and Karapace keep ``_schemas``).

The registry server replays the topic into a ``SchemaCatalog``; registering appends one record
(key ``schema/<subject>/<version>``) and re-reads the topic, so that of two writers racing for the
same version the one appended first wins and the other retries. Only the server writes it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from kintsmesh import kafka
from kintsmesh.errors import TransientError
from kintsmesh.kafka import ensure_topics
from kintsmesh.registry.catalog import SchemaCatalog, SchemaVersion, config_record, dumps
from kintsmesh.settings import Settings
from kintsmesh.topics import REGISTRY_TOPIC

SCHEMAS_TOPIC = REGISTRY_TOPIC
log = logging.getLogger("kintsmesh.registry")


class SchemaLog:
    def __init__(self, settings: Settings, topic: str = SCHEMAS_TOPIC) -> None:
        self.settings = settings
        self.topic = topic
        self.catalog = SchemaCatalog()
        self._offset = 0
        self.skipped = 0   # records of the topic that are not a schema version or a level (poison): skipped
        self._lock = threading.Lock()   # one registration at a time in this process
        ensure_topics(settings, [topic], partitions=1, config={"cleanup.policy": "compact", "min.compaction.lag.ms": "0"})
        self._producer = kafka.producer(settings, enable_idempotence=True, acks="all")
        self._consumer = kafka.consumer(settings, f"schema-store-{uuid.uuid4()}", enable_auto_commit=False)
        self.refresh()

    def refresh(self, timeout_s: float = 30.0) -> None:
        """Replay records appended since the last refresh, up to the topic's current end."""
        end = self._end(timeout_s)
        if end <= self._offset:
            return
        self._consumer.assign([TopicPartition(self.topic, 0, self._offset)])
        deadline = time.monotonic() + timeout_s
        while self._offset < end:
            if time.monotonic() > deadline:
                raise TransientError(f"schema topic {self.topic}: replay stuck at offset {self._offset} of {end}")
            for message in self._consumer.consume(500, timeout=1.0):
                offset, value = message.offset(), message.value()
                if message.error() or offset is None:
                    continue
                self._offset = offset + 1
                if value is None:
                    continue
                try:
                    self.catalog.apply(json.loads(value))
                except Exception as exc:  # noqa: BLE001 - one poison record must not keep the registry down
                    self.skipped += 1
                    log.error("schema topic %s: offset %d is not a schema version or a level (%s: %s); skipped",
                              self.topic, offset, type(exc).__name__, str(exc)[:200])

    def _end(self, timeout_s: float) -> int:
        """The topic's end offset; a topic just created has no leader for a moment (retried)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return int(self._consumer.get_watermark_offsets(TopicPartition(self.topic, 0), timeout=10)[1])
            except KafkaException as exc:
                if time.monotonic() > deadline:
                    raise TransientError(f"schema topic {self.topic}: {exc.args[0].str()}") from None
                time.sleep(0.5)

    def _append(self, key: str, value: dict[str, Any]) -> None:
        self._producer.produce(self.topic, key=key.encode(), value=dumps(value))
        if self._producer.flush(30) != 0:
            raise TransientError(f"schema topic {self.topic}: the write was not acknowledged")
        self.refresh()

    def register(self, subject: str, schema: Any) -> SchemaVersion:
        """Register ``schema`` under ``subject`` (idempotent); IncompatibleSchema if the subject's
        compatibility level refuses it."""
        with self._lock:
            for _ in range(5):
                self.refresh()
                candidate = self.catalog.candidate(subject, schema)
                if candidate in self.catalog.subjects.get(subject, []):
                    return candidate
                self._append(candidate.key, candidate.record())
                stored = self.catalog.version(subject, candidate.version)
                if stored is not None and stored.text == candidate.text:
                    return stored
        raise TransientError(f"could not register a schema for {subject}: other writers kept winning the version")

    def set_level(self, subject: str | None, level: str | None) -> None:
        with self._lock:
            self._append(*config_record(subject, level))

    def close(self) -> None:
        self._consumer.close()
        self._producer.flush(10)
