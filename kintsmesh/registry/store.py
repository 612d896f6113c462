"""The Kafka-backed schema store: a compacted, single-partition topic of schema versions.

Every process replays the topic into a ``SchemaCatalog``; registering produces one
record (key ``<subject>/<version>``) and re-reads the topic, so of two processes
racing for the same version the one appended first wins and the other retries.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from kintsmesh.errors import TransientError
from kintsmesh.registry.catalog import Compatibility, SchemaCatalog, SchemaVersion, dumps
from kintsmesh.settings import Settings
from kintsmesh.topics import ensure_topics

SCHEMAS_TOPIC = "_kintsmesh_schemas"


class SchemaStore:
    def __init__(self, settings: Settings, topic: str = SCHEMAS_TOPIC) -> None:
        self.settings = settings
        self.topic = topic
        self.catalog = SchemaCatalog()
        self._offset = 0
        ensure_topics(settings, [topic], partitions=1, config={"cleanup.policy": "compact", "min.compaction.lag.ms": "0"})
        self._producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "enable.idempotence": True,
                                   "acks": "all", "log_level": 0})
        self._consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"schema-store-{uuid.uuid4()}",
                                   "enable.auto.commit": False, "log_level": 0})
        self.refresh()

    def refresh(self, timeout_s: float = 30.0) -> None:
        """Replay records appended since the last refresh, up to the topic's current end."""
        partition = TopicPartition(self.topic, 0)
        end = self._consumer.get_watermark_offsets(partition, timeout=10)[1]
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
                if value is not None:
                    self.catalog.apply(json.loads(value))

    def register(self, subject: str, schema: Any, compatibility: Compatibility = "BACKWARD") -> SchemaVersion:
        """Register ``schema`` under ``subject`` (idempotent); IncompatibleSchema if it breaks readers."""
        for _ in range(5):
            self.refresh()
            existing = self.catalog.lookup(subject, schema)
            if existing is not None:
                return existing
            candidate = self.catalog.candidate(subject, schema, compatibility)
            self._producer.produce(self.topic, key=candidate.key.encode(), value=dumps(candidate.record()))
            if self._producer.flush(30) != 0:
                raise TransientError(f"schema topic {self.topic}: the registration was not acknowledged")
            self.refresh()
            stored = self.catalog.subjects[subject][candidate.version - 1]
            if stored.canonical == candidate.canonical:
                return stored
        raise TransientError(f"could not register a schema for {subject}: other writers kept winning the version")

    def versions(self) -> dict[str, list[SchemaVersion]]:
        self.refresh()
        return self.catalog.subjects

    def close(self) -> None:
        self._consumer.close()
        self._producer.flush(10)
