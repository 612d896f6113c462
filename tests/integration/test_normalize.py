"""The normalize worker on the real stack: every raw event is a candidate, a retraction or a DLQ record."""

from __future__ import annotations

import json
import os
import time
from collections import Counter, defaultdict
from datetime import date

import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from connect.connectors import raw_topics
from kintsmesh import kafka
from kintsmesh.settings import DEPARTMENTS, RESOURCE_LIBRARY_DB
from kintsmesh.simulate.runner import run_simulation
from kintsmesh.topics import candidate_topics, dlq_topic
from monitoring.lag import wait_for_group, wait_for_pipeline
from streams.normalize.mapping import mappings
from tests.integration.scaleout import metric_total, second_process
from tests.integration.test_merge import read_truth

pytestmark = pytest.mark.integration


def end_offsets(consumer: Consumer, topics: list[str]) -> dict[tuple[str, int], int]:
    offsets = {}
    metadata = consumer.list_topics(timeout=10).topics
    for topic in topics:
        for partition in (metadata[topic].partitions if topic in metadata else {0: None}):
            offsets[(topic, partition)] = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
    return offsets


def read_from(consumer: Consumer, start: dict[tuple[str, int], int], quiet_s: float = 8.0, timeout_s: float = 240.0):
    """Everything after ``start`` on those topics (new partitions from 0), until nothing arrives for ``quiet_s``."""
    consumer.assign([TopicPartition(t, p, o) for (t, p), o in start.items()])
    messages, deadline, last = [], time.monotonic() + timeout_s, time.monotonic()
    while time.monotonic() - last < quiet_s and time.monotonic() < deadline:
        batch = [m for m in consumer.consume(1000, timeout=1.0) if not m.error()]
        if batch:
            messages += batch
            last = time.monotonic()
    return messages


def test_every_raw_event_of_a_dirty_simulated_run_is_accounted_for(settings, tmp_path, fresh_seed):
    consumer = Consumer({**kafka.client_config(settings), "group.id": f"t-{os.getpid()}-{time.time()}",
                         "enable.auto.commit": False, "log_level": 0})
    raw = raw_topics(settings)
    outputs = candidate_topics() + [dlq_topic(d) for d in DEPARTMENTS]
    raw_start, out_start = end_offsets(consumer, raw), end_offsets(consumer, outputs)

    # a small city of its own (its own seed namespace and state folder), 5% dirty, then live changes
    sim = settings.model_copy(update={"stack_dir": tmp_path})
    seed = fresh_seed
    run_simulation(sim, seed=seed, initial=200, rate=None, duration_s=0, dirty_rate=0.05, truth_path=None)
    run_simulation(sim, seed=seed, initial=None, rate=150, duration_s=6, dirty_rate=0.05, truth_path=None)
    # whether a small dirty city yields a row the mapping must reject depends on the seed: one for sure
    with psycopg.connect(settings.dsn("civil_affairs")) as conn:
        conn.execute("INSERT INTO hy_djxx (djid, djlx, nf_xm, nvf_xm, djrq) VALUES (%s, '复婚', '张三', '李四', current_date)",
                     (9_000_000_000 + seed,))

    raw_events = [m for m in read_from(consumer, raw_start, quiet_s=5) if m.value() is not None]
    assert len(raw_events) > 1000
    behind = wait_for_group(settings, "kintsmesh-normalize", raw, timeout_s=900)
    assert behind == 0, f"the normalize worker is still {behind} events behind"
    outputs_read = read_from(consumer, out_start, quiet_s=3)
    consumer.close()

    # read as any downstream consumer would: Confluent's stock deserializer, the registry's URL, no project code
    deserialize = AvroDeserializer(SchemaRegistryClient(settings.registry_client_config()))
    normalized: set[tuple] = set()
    dlq: set[tuple] = set()
    reasons: Counter[str] = Counter()
    for message in outputs_read:
        record = deserialize(message.value(), SerializationContext(message.topic(), MessageField.VALUE))
        if message.topic().startswith("dlq."):
            dlq.add((record["source_topic"], record["source_partition"], record["source_offset"]))
            reasons[record["reason"]] += 1
        else:
            p = record["provenance"]
            normalized.add((p["department"], p["table"], p["primary_key"], p["change_lsn"], p["op"], record["retracted"]))

    per_department: dict[str, Counter[str]] = defaultdict(Counter)
    missing = []
    for message in raw_events:
        event = json.loads(message.value())
        department = message.topic().split(".")[1]
        row = event["before"] if event["op"] == "d" else event["after"]
        mapping = mappings()[(department, event["source"]["table"])]
        op = {"c": "CREATE", "u": "UPDATE", "d": "DELETE", "r": "SNAPSHOT"}[event["op"]]
        identity = (department, mapping.table, mapping.primary_key(row), event["source"]["lsn"], op, event["op"] == "d")
        if (message.topic(), message.partition(), message.offset()) in dlq:
            per_department[department]["dlq"] += 1
        elif identity in normalized:
            per_department[department]["retraction" if event["op"] == "d" else "candidate"] += 1
        else:
            missing.append(identity)
        per_department[department]["raw"] += 1
    assert not missing, f"{len(missing)} raw events with no candidate, retraction or DLQ record: {missing[:3]}"
    for department, counts in per_department.items():
        assert counts["raw"] == counts["candidate"] + counts["retraction"] + counts["dlq"], (department, counts)
    assert per_department["civil_affairs"]["dlq"] > 0 and reasons["unknown_marriage_registration_code"] > 0, reasons
    assert sum(c["retraction"] for c in per_department.values()) > 0
    # besides the row written to be rejected, what the simulator's dirt may cause
    assert set(reasons) - {"unknown_marriage_registration_code"} <= {"impossible_date", "invalid_date", "date_out_of_range", "missing_required_field",
                            "unknown_gender_code", "unknown_marital_code", "unknown_ethnicity_code"}, reasons


def test_a_second_normalize_process_shares_the_raw_partitions(settings, tmp_path, fresh_seed):
    """Scale-out of the Faust stage: a second worker joins the ``kintsmesh-normalize`` group, the raw
    topics' partitions are shared, both normalize changes of a new city and every one of its houses
    reaches the library."""
    port, family = settings.normalize_metrics_port + 10, "kintsmesh_normalize_events_in"
    first_before = metric_total(settings.normalize_metrics_port, family)
    env = {"KINTSMESH_NORMALIZE_METRICS_PORT": str(port), "KINTSMESH_KAFKA_PRINCIPAL": "normalize",
           "KINTSMESH_PG_ROLE": "none"}
    with second_process(settings, tmp_path, ["streams", "worker", "--datadir", str(tmp_path / "normalize-2")], env,
                        port, family):
        time.sleep(15)   # the group rebalances: Faust's workers settle their assignment
        sim = settings.model_copy(update={"stack_dir": tmp_path})
        truth_file = tmp_path / "truth.jsonl"
        run_simulation(sim, seed=fresh_seed, initial=300, rate=None, duration_s=0, dirty_rate=0.0,
                       truth_path=str(truth_file), today=date(2026, 11, 27))
        left = wait_for_pipeline(settings, timeout_s=900)
        assert left == {"normalize": 0, "merge": 0, "events": 0}, f"still to do: {left}"
        first = metric_total(settings.normalize_metrics_port, family) - first_before
        other = metric_total(port, family)
    assert first > 0 and other > 0, (first, other)
    houses = {r["house"] for (db, table, _), r in read_truth(truth_file).items() if (db, table) == ("housing", "fw_jbxx")}
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        found = {h for (h,) in conn.execute("SELECT house_id FROM house WHERE house_id = ANY(%s)", (list(houses),))}
    assert houses and found == houses
