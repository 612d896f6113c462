"""Consumed offsets kept with the resource library, written in the transaction of the work they caused.

A stage that writes to the library (resolve, merge, life events) stores the next offset of
every partition it consumed in ``consumer_offset`` inside the same transaction as
its writes, and on every partition assignment seeks to them: a batch is either
done and recorded, or neither, whatever kills the process. A publisher (life events,
subscriptions) stores its own topic's end offsets the same way, under a mark group
(``kintsmesh.topics.MARKS_PREFIX``), and reads what came after them back on start.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import psycopg
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from kintsmesh import kafka
from kintsmesh.errors import TransientError
from kintsmesh.settings import Settings

Offsets = dict[tuple[str, int], int]   # (topic, partition) -> next offset


def stored_offsets(conn: psycopg.Connection[Any], group: str) -> Offsets:
    return {(t, p): o for t, p, o in conn.execute(
        "SELECT topic, partition, next_offset FROM consumer_offset WHERE group_id = %s", (group,))}


def store_offsets(conn: psycopg.Connection[Any], group: str, offsets: Offsets) -> None:
    """Record consumed offsets (never moving one back); call inside the work's transaction."""
    if not offsets:
        return
    # one statement for every partition (a merge batch reads up to a few dozen: one INSERT each was over half
    # of a live merge transaction's statements)
    conn.execute(
        "INSERT INTO consumer_offset (group_id, topic, partition, next_offset)"
        " SELECT %s, t, p, o FROM unnest(%s::text[], %s::int[], %s::bigint[]) AS u(t, p, o)"
        " ON CONFLICT (group_id, topic, partition) DO UPDATE SET next_offset ="
        " GREATEST(consumer_offset.next_offset, EXCLUDED.next_offset)",
        (group, [t for t, _ in offsets], [p for _, p in offsets], list(offsets.values())))


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


def broker_error(message: Message, log: logging.Logger) -> bool:
    """Whether a consumed message is an error event (logged unless it only marks a partition's end)."""
    error = message.error()
    if error is None:
        return False
    if error.code() != KafkaError._PARTITION_EOF:
        log.warning("consumer: %s", error)
    return True


def headers_after(settings: Settings, topics: list[str], stored: Offsets, header: str,
                  timeout_s: float = 60) -> tuple[list[str], Offsets]:
    """The values of ``header`` on every message after the ``stored`` offsets (0 for a partition
    without one) to the topics' ends, and those ends: what reached the topics after the last mark."""
    consumer = kafka.consumer(settings, "kintsmesh-recover", enable_auto_commit=False)
    values: list[str] = []
    ends: Offsets = {}
    try:
        metadata = consumer.list_topics(timeout=10).topics
        for topic in topics:
            for partition in (metadata[topic].partitions if topic in metadata else {}):
                start = stored.get((topic, partition), 0)
                end = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
                if end <= start:
                    continue
                consumer.assign([TopicPartition(topic, partition, start)])
                position, deadline = start, time.monotonic() + timeout_s
                while position < end and time.monotonic() < deadline:
                    for message in consumer.consume(1000, timeout=1.0):
                        if message.error() or message.offset() is None:
                            continue
                        position = max(position, (message.offset() or 0) + 1)
                        values += [h[1].decode() for h in message.headers() or []
                                   if h[0] == header and isinstance(h[1], bytes)]
                if position < end:
                    raise TransientError(f"{topic}[{partition}]: could not read offsets {position}..{end} back")
                ends[(topic, partition)] = end
    finally:
        consumer.close()
    return values, ends
