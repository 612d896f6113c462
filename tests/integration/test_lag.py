"""The lag that `wait_for_pipeline`, the demo and the benchmarks wait on never reads 0 while a worker
moves work from a topic into its pending rows (a held life event, a golden change in the outbox)."""

from __future__ import annotations

import threading
import uuid

import psycopg
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from kintsmesh import kafka
from kintsmesh.kafka import ensure_topics
from kintsmesh.settings import RESOURCE_LIBRARY_DB
from monitoring.lag import library_lag
from sinks.kafka.offsets import store_offsets

pytestmark = pytest.mark.integration


def test_work_moving_from_a_topic_into_pending_rows_is_counted_at_every_moment(settings):
    name = uuid.uuid4().hex[:12]
    topic, group, table = f"test.lag.{name}", f"test-lag-{name}", f"test_lag_{name}"
    ensure_topics(settings, [topic], 1)
    producer = Producer({**kafka.client_config(settings), "log_level": 0})
    producer.produce(topic, b"one piece of work")
    assert producer.flush(10) == 0
    dsn = settings.dsn(RESOURCE_LIBRARY_DB)
    with psycopg.connect(dsn) as conn:
        conn.execute(f"CREATE TABLE {table} (piece int)")
    stop = threading.Event()
    moves = [0]

    def worker() -> None:
        """Takes the message into a pending row with its offset, as the workers do, then gives it back."""
        with psycopg.connect(dsn) as conn:
            while not stop.is_set():
                with conn.transaction():
                    store_offsets(conn, group, {(topic, 0): 1})
                    conn.execute(f"INSERT INTO {table} VALUES (1)")
                with conn.transaction():
                    conn.execute(f"DELETE FROM {table}")
                    conn.execute("DELETE FROM consumer_offset WHERE group_id = %s", (group,))
                moves[0] += 1

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        readings = [library_lag(settings, group, [topic], f"SELECT count(*) FROM {table}") for _ in range(150)]
    finally:
        stop.set()
        thread.join(10)
        with psycopg.connect(dsn) as conn:
            conn.execute(f"DROP TABLE {table}")
            conn.execute("DELETE FROM consumer_offset WHERE group_id = %s", (group,))
        AdminClient({**kafka.client_config(settings), "log_level": 0}).delete_topics([topic])
    assert moves[0] > len(readings), "the work did not move often enough to test anything"
    assert set(readings) == {1}, f"the one piece of work was counted {sorted(set(readings))} times"
