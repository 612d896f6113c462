"""The outbox publisher (``sinks.library.outbox``) against the real broker, as the merge principal: a change
that reached its topic before a crash kept its publisher from deleting it is deleted, not sent again; one
that did not is published with its outbox id."""

from __future__ import annotations

import time

import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition
from psycopg.types.json import Jsonb

from kintsmesh import kafka, topics
from kintsmesh.bench.resolve import scratch_library
from kintsmesh.registry.client import SchemaRegistry
from kintsmesh.registry.codec import encode
from sinks.kafka.offsets import store_offsets
from sinks.library.outbox import OUTBOX_HEADER, OutboxPublisher
from streams.normalize import gldm

pytestmark = pytest.mark.integration

TOPIC = topics.changes_topic("house")
CRASHED, PENDING = 9_000_000_000_001, 9_000_000_000_002   # far beyond the live library's outbox ids


def change(outbox_id: int) -> dict:
    return {"entity": "house", "canonical_id": f"HOUSE-OUTBOX-TEST-{outbox_id}", "version": 1, "op": "CREATE",
            "changed_fields": ["house_id"], "before": None, "after": "{}", "cause": None, "source_committed_at": None,
            "merged_at": 0}


def headers_on(settings, since: dict[tuple[str, int], int], wanted: set[str]) -> list[str]:
    """The ``wanted`` outbox ids found on the changes topics after ``since`` (10 s to find them, and 2 more for
    a second copy of any)."""
    consumer = Consumer(kafka.client_config(settings, group_id="kintsmesh-test-outbox", enable_auto_commit=False))
    try:
        consumer.assign([TopicPartition(t, p, o) for (t, p), o in since.items()])
        found: list[str] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found += [v.decode() for m in consumer.consume(1000, timeout=1.0) if not m.error()
                      for k, v in (m.headers() or []) if k == OUTBOX_HEADER and v.decode() in wanted]
            if set(found) == wanted:
                deadline = min(deadline, time.monotonic() + 2)
        return found
    finally:
        consumer.close()


def test_a_change_published_before_a_crash_is_deleted_not_sent_again(settings):
    merge = settings.model_copy(update={"kafka_principal": "merge"})
    schema = SchemaRegistry(merge).register(topics.CHANGES_SUBJECT, gldm.schema("gov.gldm.GoldenChange"))
    publisher = OutboxPublisher(merge)
    ends = publisher._ends()   # every partition of every changes topic, in one request
    assert {t for t, _ in ends} == set(topics.changes_topics()) and all(o >= 0 for o in ends.values())
    with psycopg.connect(scratch_library(settings, "kintsmesh_test_outbox")) as conn:
        store_offsets(conn, topics.OUTBOX_MARK, ends)   # the last publisher's mark: the topics as they end now
        for outbox_id in (CRASHED, PENDING):
            conn.execute("INSERT INTO outbox (outbox_id, topic, key, value) VALUES (%s, %s, %s, %s)",
                         (outbox_id, TOPIC, change(outbox_id)["canonical_id"], Jsonb(change(outbox_id))))
        conn.commit()
        # the crashed publisher: its message reached the topic, its delete never committed
        producer = kafka.reliable_producer(merge)
        producer.produce(TOPIC, key=b"crashed", value=encode(schema, change(CRASHED)),
                         headers=[(OUTBOX_HEADER, str(CRASHED).encode())])
        assert producer.flush(30) == 0
        assert publisher(conn, producer, schema, 100) == 1   # only the one still pending
        assert conn.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
    assert sorted(headers_on(settings, ends, {str(CRASHED), str(PENDING)})) == [str(CRASHED), str(PENDING)]  # once each
