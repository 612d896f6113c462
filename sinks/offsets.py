"""Consumer offsets kept in the resource library, written in the transaction of the work they caused.

A worker that writes to the library (merge, life events) stores the next offset of
every partition it consumed in ``consumer_offset`` inside the same transaction as
its writes, and on every partition assignment seeks to them: a batch is either
done and recorded, or neither, whatever kills the process.
"""

from __future__ import annotations

from typing import Any

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from kintsmesh.settings import RESOURCE_LIBRARY_DB, Settings

Offsets = dict[tuple[str, int], int]   # (topic, partition) -> next offset


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


def library_lag(settings: Settings, group: str, topics: list[str]) -> int:
    """Messages on ``topics`` a library-writing worker has not done yet: end offsets minus stored ones."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"{group}-lag", "log_level": 0})
    try:
        metadata = consumer.list_topics(timeout=10).topics
        ends = {(t, p): consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1]
                for t in topics if t in metadata for p in metadata[t].partitions}
    finally:
        consumer.close()
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        stored = stored_offsets(conn, group)
    return sum(max(0, end - stored.get(tp, 0)) for tp, end in ends.items())
