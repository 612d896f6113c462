"""The replicated option (KINTSMESH_KAFKA_BROKERS=3) as real processes beside the stack: three KRaft nodes
on other ports, every topic three times, min.insync.replicas 2; one broker SIGKILLed loses no
acknowledged write and refuses none; with two of three gone a write is refused, never acknowledged by one."""

from __future__ import annotations

import os
import signal
import uuid

import pytest
from confluent_kafka import TopicPartition

from kintsmesh import kafka
from kintsmesh.stack.components import components
from kintsmesh.stack.process import terminate, wait_until

pytestmark = pytest.mark.integration


def delivered(producer, topic: str, count: int) -> list[str]:
    errors: list[str] = []
    for n in range(count):
        producer.produce(topic, key=str(n).encode(), value=b"x" * 100,
                         on_delivery=lambda err, _msg: errors.append(str(err)) if err else None)
    producer.flush(60)
    return errors


def test_three_brokers_lose_no_acknowledged_write_when_one_dies(settings, tmp_path):
    three = settings.model_copy(update={"stack_dir": tmp_path, "kafka_brokers": 3, "kafka_port": 29092,
                                        "kafka_controller_port": 29093, "kafka_jmx_port": 29105,
                                        "bootstrap_servers": None})
    (tmp_path / "lib").symlink_to(settings.stack_dir / "lib")   # the jars the stack resolved
    brokers = [c for c in components(three) if c.name.startswith("kafka")]
    try:
        for broker in brokers:
            broker.prepare()
            broker.start()
        assert wait_until(lambda: all(b.status().healthy for b in brokers), 180, 1.0), "three brokers not up"
        topic = f"replicated-{uuid.uuid4().hex[:8]}"
        kafka.ensure_topics(three, [topic], 3)
        metadata = kafka.admin(three).list_topics(topic, timeout=10).topics[topic]
        assert all(len(p.replicas) == 3 for p in metadata.partitions.values())
        producer = kafka.reliable_producer(three)
        assert delivered(producer, topic, 500) == []
        os.kill(brokers[1].pid(), signal.SIGKILL)   # one of three
        assert delivered(producer, topic, 500) == []   # still 2 in sync: acknowledged
        consumer = kafka.consumer(three, f"check-{uuid.uuid4()}", enable_auto_commit=False)
        ends = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=20)[1] for p in metadata.partitions]
        assert sum(ends) == 1000
        consumer.close()
        os.kill(brokers[2].pid(), signal.SIGKILL)   # two of three: no write may be acknowledged by one replica
        strict = kafka.producer(three, enable_idempotence=True, acks="all", message_timeout_ms=8000)
        assert len(delivered(strict, topic, 20)) == 20
    finally:
        for broker in brokers:
            pid = broker.pid()
            if pid is not None:
                terminate(pid, timeout_s=20)
