"""The stack outlives a PostgreSQL or a Kafka restart in the middle of its work, and a corrupt message on
any stage's input (runs last: it bounces shared components of the stack)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import date
from pathlib import Path

import psycopg
import pytest

from connect.client import ConnectClient
from connect.connectors import available_departments, connector_name
from kintsmesh import kafka, stack
from kintsmesh.registry.client import SchemaRegistry
from kintsmesh.settings import RESOURCE_LIBRARY_DB
from kintsmesh.simulate.runner import run_simulation
from kintsmesh.stack.process import wait_until
from kintsmesh.topics import (CHANGES_SUBJECT, RESOLVED_SUBJECT, candidates_topic, changes_topic, resolved_topic,
                              value_subject)
from monitoring.lag import merge_lag, wait_for_pipeline
from sinks.dlq import show, summary

pytestmark = pytest.mark.integration

PROCESSES = ("registry", "connect", "normalize", "resolve", "merge", "events", "api", "monitor")
WAITERS = ("registry", "resolve", "merge", "events", "api")


def pids(settings) -> dict[str, int | None]:
    return {c.name: c.pid() for c in stack.components(settings) if c.name in PROCESSES}


def load_city_and_bounce(settings, tmp_path: Path, seed: int, component: str) -> Path:
    """A new city loaded; while the merge worker works through it, ``component`` stops for a few seconds."""
    sim = settings.model_copy(update={"stack_dir": tmp_path})
    truth_file = tmp_path / "truth.jsonl"
    run_simulation(sim, seed=seed, initial=300, rate=None, duration_s=0, dirty_rate=0.03,
                   truth_path=str(truth_file), today=date(2026, 11, 27))
    deadline = time.monotonic() + 120
    while merge_lag(settings) < 500 and time.monotonic() < deadline:
        time.sleep(0.2)
    stack.down(settings, [component])
    time.sleep(5)
    stack.up(settings, [component])
    return truth_file


def assert_nothing_lost(settings, truth_file: Path, workers: dict[str, int | None], dlq_before) -> None:
    assert wait_for_pipeline(settings, timeout_s=600) == {"normalize": 0, "merge": 0, "events": 0}
    # the stages that write the library wait for a component to come back, they do not die of it; the
    # lag exporter (librdkafka has aborted it in a broker restart) and Faust may die, and are started
    # again by the supervisor: they must be up again
    now = pids(settings)
    assert {p: now[p] for p in WAITERS} == {p: workers[p] for p in WAITERS}, "a stage died instead of waiting"
    processes = [c for c in stack.components(settings) if c.name in PROCESSES]
    assert wait_until(lambda: all(c.status().healthy for c in processes), 180, 1.0), pids(settings)
    assert summary(settings, ["merge", "events"]) == dlq_before, "the outage sent candidates or changes to a DLQ"
    # every house of the city reached the library, and no history lost or repeated a version
    truth = [json.loads(line) for line in truth_file.read_text().splitlines()]
    houses = {t["links"]["house"] for t in truth if (t["db"], t["table"]) == ("housing", "fw_jbxx")}
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        found = {h for (h,) in conn.execute("SELECT house_id FROM house WHERE house_id = ANY(%s)", (list(houses),))}
        gaps = conn.execute(
            "SELECT count(*) FROM (SELECT entity, canonical_id, max(version) = count(*) AS ok FROM golden_history"
            " GROUP BY 1, 2) v WHERE NOT ok").fetchone()[0]
    assert houses and found == houses, len(houses - found)
    assert gaps == 0


def test_a_postgresql_restart_mid_merge_loses_nothing_and_sends_nothing_to_the_dlq(settings, tmp_path, fresh_seed):
    dlq_before = summary(settings, ["merge", "events"])
    log_file = settings.stack_dir / "logs" / "merge.log"
    logged_before = log_file.stat().st_size
    workers = pids(settings)
    assert all(workers.values()), workers
    truth_file = load_city_and_bounce(settings, tmp_path, fresh_seed, "postgres")
    assert_nothing_lost(settings, truth_file, workers, dlq_before)
    with log_file.open("rb") as log:   # the worker noticed the outage (and said so) during this test
        log.seek(logged_before)
        assert b"the resource library is unavailable" in log.read()


def test_a_kafka_restart_mid_run_loses_nothing(settings, tmp_path, fresh_seed):
    dlq_before = summary(settings, ["merge", "events"])
    workers = pids(settings)
    assert all(workers.values()), workers
    truth_file = load_city_and_bounce(settings, tmp_path, fresh_seed, "kafka")
    assert_nothing_lost(settings, truth_file, workers, dlq_before)
    client = ConnectClient.of(settings)
    states = {d: client.status(connector_name(d)) for d in available_departments()}
    assert all(s.running for s in states.values()), states


def test_corrupt_avro_on_any_library_stage_input_goes_to_its_dlq_and_the_stage_goes_on(settings):
    """A message whose Avro body its writer's schema cannot read (here: cut after its first byte) on the
    resolve, merge and life-event stages' inputs reaches dlq.merge / dlq.events with the reason, and the
    same processes go on (it stopped the stage before, and its restart met the message again)."""
    versions = SchemaRegistry(settings).versions()
    cases = [(candidates_topic("person"), value_subject(candidates_topic("person")), "merge", "undecodable_candidate"),
             (resolved_topic("person"), RESOLVED_SUBJECT, "merge", "undecodable_resolved"),
             (changes_topic("person"), CHANGES_SUBJECT, "events", "undecodable_change")]
    before = pids(settings)
    producer = kafka.producer(settings)
    keys = {}
    for topic, subject, _, _ in cases:
        keys[topic] = f"corrupt-{uuid.uuid4()}"
        producer.produce(topic, key=keys[topic].encode(),
                         value=b"\x00" + versions[subject][-1].id.to_bytes(4, "big") + b"\x02")
    assert producer.flush(10) == 0
    for topic, _, dlq, reason in cases:
        deadline, found = time.monotonic() + 60, []
        while time.monotonic() < deadline and not found:
            time.sleep(1)
            found = [r for r in show(settings, dlq, reason, 100_000) if r["original_key"] == keys[topic]]
        assert found, f"the corrupt message on {topic} did not reach dlq.{dlq}"
        assert found[0]["source_topic"] == topic and "UndecodableMessage" in found[0]["detail"], found[0]
    after = pids(settings)
    assert {s: after[s] for s in ("resolve", "merge", "events")} == {s: before[s] for s in ("resolve", "merge", "events")}
    assert wait_for_pipeline(settings, 120) == {"normalize": 0, "merge": 0, "events": 0}


def test_a_life_event_its_topic_and_its_subscriber_cannot_take_goes_to_dlq_events_and_the_rest_is_delivered(settings):
    """A recorded life event whose body cannot be encoded (here: an occurred_on that is no date, as a bug
    of ours could write) is sent to dlq.events by the publisher and by each subscriber that wants it,
    marked published, and the life-event worker goes on."""
    events = next(c for c in stack.components(settings) if c.name == "events")
    pid, subject = events.pid(), f"corrupt-{uuid.uuid4()}"
    body = {"event_id": str(uuid.uuid4()), "event_type": "RESIDENCE_CHANGED", "subject_kind": "PERSON",
            "subject_id": subject, "subject_code": None, "occurred_on": "2026-13-45", "trigger": "CHANGE",
            "attributes": {}, "evidence": []}
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        conn.execute("INSERT INTO life_event (event_id, event_type, subject_kind, subject_id, occurred_on, trigger,"
                     " event, detected_at) VALUES (%s, 'RESIDENCE_CHANGED', 'PERSON', %s, '2026-12-01', 'CHANGE', %s,"
                     " now())", (body["event_id"], subject, json.dumps(body)))
    deadline, found = time.monotonic() + 60, []
    while time.monotonic() < deadline and {r["reason"] for r in found} != {"unpublishable_event", "undeliverable_event"}:
        time.sleep(1)
        found = [r for r in show(settings, "events", None, 100_000) if r["original_key"] == subject]
    assert {r["reason"] for r in found} == {"unpublishable_event", "undeliverable_event"}, found
    assert all("ValueError" in r["detail"] for r in found)
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        published = conn.execute("SELECT published_at FROM life_event WHERE event_id = %s", (body["event_id"],)).fetchone()
    assert published[0] is not None and events.pid() == pid
    assert wait_for_pipeline(settings, 120)["events"] == 0


def test_a_killed_worker_is_started_again_by_the_supervisor_and_status_is_not_in_sync_meanwhile(settings):
    """Dead does not stay dead: SIGKILLed, the normalize worker is started again by the stack's supervisor
    (counted in its metrics); until it is healthy no department reads "in sync"; one an operator stops with
    ``stack down`` stays down until ``stack up``."""
    import os
    import signal

    import requests

    from kintsmesh.settings import DEPARTMENTS
    from monitoring import probes
    from monitoring.status import take, verdict

    def restarts() -> float:
        text = requests.get(f"http://127.0.0.1:{settings.supervisor_metrics_port}/metrics", timeout=5).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith('kintsmesh_component_restarts_total{component="normalize"}'))

    normalize = next(c for c in stack.components(settings) if c.name == "normalize")
    before, old = restarts(), normalize.pid()
    assert old is not None
    os.kill(old, signal.SIGKILL)
    time.sleep(0.3)
    snap = take(settings, probes.KafkaProbe(settings))
    assert snap.stages["normalize"] in ("down, restarting", "starting"), snap.stages
    assert {verdict(snap, d)[0] for d in DEPARTMENTS} <= {"normalize down, restarting", "normalize starting"}
    deadline = time.monotonic() + 120
    while not (normalize.pid() not in (None, old) and normalize.status().healthy) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert normalize.pid() not in (None, old) and normalize.status().healthy, "the supervisor did not start it again"
    assert restarts() == before + 1
    assert take(settings, probes.KafkaProbe(settings)).stages["normalize"] == "up"

    stack.down(settings, ["normalize"])
    time.sleep(8)                                  # longer than the supervisor's first backoffs
    assert normalize.pid() is None and normalize.held
    assert take(settings, probes.KafkaProbe(settings)).stages["normalize"] == "stopped"
    stack.up(settings, ["normalize"])
    assert normalize.status().healthy and not normalize.held
    assert wait_for_pipeline(settings, 300) == {"normalize": 0, "merge": 0, "events": 0}
