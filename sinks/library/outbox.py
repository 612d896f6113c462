"""The library's two publishable queues, read by ``sinks.kafka.relay.Relay``: resolved records
(``settle_queue``, for the merge stage) and golden changes (``outbox``, for subscribers of changes)."""

from __future__ import annotations

from typing import Any

import psycopg
from confluent_kafka import Producer

from kintsmesh.registry.catalog import SchemaVersion
from kintsmesh.registry.codec import encode
from kintsmesh.topics import resolved_topic
from sinks.kafka.relay import published


def publish_outbox(conn: psycopg.Connection[Any], producer: Producer, schema: SchemaVersion, limit: int) -> int:
    """Publish the oldest pending golden changes, then delete them. The outbox's ids grow in commit order
    because its writers are serialized (``lock_settle``), so deleting up to the last id published never
    deletes a change committed after the read."""
    rows = conn.execute("SELECT outbox_id, topic, key, value FROM outbox ORDER BY outbox_id LIMIT %s",
                        (limit,)).fetchall()
    conn.commit()
    if not rows:
        return 0
    for _, topic, key, value in rows:
        producer.produce(topic, key=key.encode(), value=encode(schema, value))
    if not published(producer, "outbox", len(rows)):
        return 0
    with conn.transaction():
        conn.execute("DELETE FROM outbox WHERE outbox_id <= %s", (rows[-1][0],))
    return len(rows)


def publish_queued(conn: psycopg.Connection[Any], producer: Producer, schema: SchemaVersion, limit: int) -> int:
    """Publish the resolved records after the relay's mark on ``gldm.<entity>.resolved`` keyed by canonical
    id (the repartition), then move the mark; the merge stage deletes the rows once merged. Queue rows are
    written under ``lock_resolve``, so their seq grows in commit order, as the outbox's ids do."""
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
