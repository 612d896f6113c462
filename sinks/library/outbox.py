"""The library's two publishable queues, read by ``sinks.kafka.relay.Relay``: resolved records
(``settle_queue``, for the merge stage) and golden changes (``outbox``, for subscribers of changes)."""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from kintsmesh import kafka
from kintsmesh.registry.catalog import SchemaVersion
from kintsmesh.registry.codec import encode
from kintsmesh.settings import Settings
from kintsmesh.topics import OUTBOX_MARK, changes_topics, resolved_topic
from sinks.kafka.offsets import Offsets, headers_after, store_offsets, stored_offsets
from sinks.kafka.relay import Acks, acknowledged, published
from sinks.library.tables import OUTBOX_LOCK

log = logging.getLogger("kintsmesh.outbox")
OUTBOX_HEADER = "outbox_id"
PARTITIONS_TTL_S = 60.0   # how long the changes topics' partition list is used before it is listed again


class OutboxPublisher:
    """Publish the oldest pending golden changes, then delete them, exactly once.

    Its writers do not all commit in id order (a T+1 load's sessions write new records at once, under the
    shared locks), so exactly the ids published are deleted, never a range: a change with a lower id
    committed after the read is published by the next one. A record's own changes are in id order (each
    is written under the lock of its golden row, or opens it). One publisher
    at a time (``OUTBOX_LOCK``, held from the read to the delete). Each message carries its outbox id in
    a header, and the topics' end offsets are stored with the delete (``OUTBOX_MARK``): when the topics
    end after the mark, a publisher died between the broker's acknowledgement and its delete, and the ids
    found after the mark are deleted instead of being sent again."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.admin: AdminClient | None = None
        self.partitions: list[TopicPartition] = []
        self.listed_at = 0.0

    def __call__(self, conn: psycopg.Connection[Any], producer: Producer, schema: SchemaVersion, limit: int) -> int:
        with conn.transaction():
            locked = conn.execute("SELECT pg_try_advisory_xact_lock(%s)", (OUTBOX_LOCK,)).fetchone()
            if locked is None or locked[0] is not True:
                return 0   # another merge process publishes
            self.recover(conn)
            rows = conn.execute("SELECT outbox_id, topic, key, value FROM outbox ORDER BY outbox_id LIMIT %s",
                                (limit,)).fetchall()
            if not rows:
                return 0
            acks = Acks()
            for outbox_id, topic, key, value in rows:
                producer.produce(topic, key=key.encode(), value=encode(schema, value),
                                 headers=[(OUTBOX_HEADER, str(outbox_id).encode())], on_delivery=acks)
            if not acknowledged(producer, acks):
                log.warning("outbox: %d changes not acknowledged; they are checked against the topics and"
                            " published again if missing", len(rows))
                return 0
            conn.execute("DELETE FROM outbox WHERE outbox_id = ANY(%s)", ([r[0] for r in rows],))
            store_offsets(conn, OUTBOX_MARK, acks.ends)
        return len(rows)

    def _ends(self) -> Offsets:
        """The changes topics' end offsets, all in one request (one per partition cost the broker ~110 requests a
        second at 300 changes/s); their partitions are listed again every ``PARTITIONS_TTL_S``."""
        if self.admin is None:
            self.admin = kafka.admin(self.settings)
        if not self.partitions or time.monotonic() - self.listed_at > PARTITIONS_TTL_S:
            metadata = kafka.topic_metadata(self.admin)
            self.partitions = [TopicPartition(topic, partition) for topic in changes_topics() if topic in metadata
                               for partition in metadata[topic].partitions]
            self.listed_at = time.monotonic()
        if not self.partitions:
            return {}
        answers = self.admin.list_offsets({tp: OffsetSpec.latest() for tp in self.partitions}, request_timeout=10)
        return {(tp.topic, tp.partition): future.result(timeout=15).offset for tp, future in answers.items()}

    def recover(self, conn: psycopg.Connection[Any]) -> int:
        """Under the lock: delete what reached the topics after the mark; how many rows that was."""
        stored = stored_offsets(conn, OUTBOX_MARK)
        ends = self._ends()
        if all(end <= stored.get(key, 0) for key, end in ends.items()):
            return 0
        found, read_to = headers_after(self.settings, changes_topics(), stored, OUTBOX_HEADER)
        ids = [int(i) for i in found if i.isdigit()]
        deleted = conn.execute("DELETE FROM outbox WHERE outbox_id = ANY(%s)", (ids,)).rowcount if ids else 0
        store_offsets(conn, OUTBOX_MARK, read_to)
        if deleted:
            log.warning("outbox: %d changes were published before a crash; they are not sent again", deleted)
        return deleted


def publish_queued(conn: psycopg.Connection[Any], producer: Producer, schema: SchemaVersion, limit: int) -> int:
    """Publish the resolved records after the relay's mark on ``gldm.<entity>.resolved`` keyed by canonical
    id (the repartition), then move the mark; the merge stage deletes the rows once merged. Queue rows are
    written under ``lock_resolve`` (never shared), so their seq grows in commit order."""
    rows = conn.execute("SELECT seq, entity, canonical_id, queued_at FROM settle_queue"
                        " WHERE seq > (SELECT published_seq FROM settle_relay) ORDER BY seq LIMIT %s",
                        (limit,)).fetchall()
    conn.commit()
    if not rows:
        return 0
    for seq, entity, cid, queued_at in rows:
        producer.produce(resolved_topic(entity), key=cid.encode(), value=encode(schema, {
            "entity": entity, "canonical_id": cid, "seq": seq, "resolved_at": int(queued_at.timestamp() * 1000)}))
    if not published(producer, "settle queue", len(rows)):
        return 0
    with conn.transaction():
        conn.execute("UPDATE settle_relay SET published_seq = greatest(published_seq, %s)", (rows[-1][0],))
    return len(rows)
