"""``kintsmesh bench normalize``: events/s through one normalize worker process, against two yardsticks.

The same N Debezium events (the simulator's rows, 5% dirty) are written once to
``bench<run>.<dept>.public.<table>`` topics; then, one after another, on the same broker:

1. the normalize worker (a separate process, as in production) on those topics,
   writing to ``bench<run>.gldm.*`` / ``bench<run>.dlq.*``;
2. a passthrough agent in the same framework with the same settings, forwarding
   the raw bytes untouched: normalize / passthrough is what our transform costs;
3. a plain confluent-kafka consume -> produce loop: the ceiling for any Python stage.

Rates are taken from the first to the last event processed (start-up excluded); the two workers
run alternately, twice each, and the best run of each counts.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from datetime import date, datetime, timezone

import requests
from confluent_kafka import TopicPartition

from kintsmesh import kafka
from kintsmesh.bench import write_result
from kintsmesh.bench.cpu import process_cpu_s
from kintsmesh.errors import KintsmeshError
from kintsmesh.kafka import ensure_topics
from kintsmesh.settings import DEPARTMENTS, Settings
from kintsmesh.simulate.city import build_city
from kintsmesh.simulate.debezium import change_event
from kintsmesh.simulate.departments import DepartmentViews, initial_rows
from kintsmesh.topics import candidate_topics, dlq_topic, raw_topic

BENCH_METRICS_PORT = 19199
ROUNDS = 2


def _write_input(settings: Settings, run: str, events: int) -> tuple[list[str], int]:
    """The input topics and how many events they hold."""
    people = max(200, events // 6)  # 8-9 department rows per person: enough rows, trimmed to ``events``
    city = build_city(7, people, date.today())
    rows = initial_rows(city, DepartmentViews(city, random.Random(8), dirty_rate=0.05))[:events]
    topics = sorted({raw_topic(r.database, r.table, prefix=run) for r in rows})
    outputs = [f"{run}.{name}" for name in candidate_topics()]
    outputs += [f"{run}.{dlq_topic(d)}" for d in DEPARTMENTS] + [f"{run}.passthrough", f"{run}.client"]
    ensure_topics(settings, topics + outputs, settings.kafka_partitions)
    producer = kafka.producer(settings, linger_ms=20)
    for lsn, row in enumerate(rows, start=1000):
        producer.produce(raw_topic(row.database, row.table, prefix=run), key=row.key.encode(), value=change_event(row, lsn=lsn))
        if lsn % 10000 == 0:
            producer.poll(0)
    if producer.flush(60) != 0:
        raise KintsmeshError("bench normalize: the input events were not all acknowledged")
    return topics, len(rows)


def _processed(port: int) -> float:
    # only the counter (prometheus-client's name[] filter): the scrape is served inside the measured worker
    text = requests.get(f"http://127.0.0.1:{port}/metrics", params={"name[]": "kintsmesh_normalize_events_in_total"},
                        timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("kintsmesh_normalize_events_in_total{"))


def _worker_rate(settings: Settings, topics: list[str], run: str, total: int, passthrough: bool,
                 round_: int) -> tuple[float, float]:
    """Events/s and CPU microseconds per event of the worker process, from its first event processed to
    its last (start-up excluded; ``/proc`` ticks of 10 ms over runs of seconds)."""
    app_id = f"{run}-{'passthrough' if passthrough else 'normalize'}-{round_}"
    env = {**os.environ, "KINTSMESH_NORMALIZE_METRICS_PORT": str(BENCH_METRICS_PORT),
           "KINTSMESH_STACK_DIR": str(settings.stack_dir)}
    cmd = [sys.executable, "-m", "kintsmesh.cli", "streams", "worker", "--datadir", str(settings.stack_dir / "bench" / app_id),
           "--bench-inputs", ",".join(topics), "--bench-prefix", f"{run}.", "--bench-app-id", app_id]
    (settings.stack_dir / "bench").mkdir(parents=True, exist_ok=True)
    log = open(settings.stack_dir / "logs" / f"bench-{app_id}.log", "w")
    worker = subprocess.Popen([*cmd, *(["--passthrough"] if passthrough else [])], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        first_at = first_n = first_cpu = None
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            if worker.poll() is not None:
                raise KintsmeshError(f"bench normalize: the {app_id} worker exited; see {log.name}")
            try:
                done = _processed(BENCH_METRICS_PORT)
            except requests.RequestException:
                time.sleep(0.5)
                continue
            now = time.monotonic()
            if done and first_at is None:
                first_at, first_n, first_cpu = now, done, process_cpu_s(worker.pid)
            if done >= total and first_at is not None and first_n is not None:
                cpu = process_cpu_s(worker.pid)
                if cpu is None or first_cpu is None:
                    raise KintsmeshError(f"bench normalize: the {app_id} worker's CPU time could not be read")
                events = max(done - first_n, 1)
                return events / max(now - first_at, 1e-6), (cpu - first_cpu) / events * 1e6
            time.sleep(0.2)
        raise KintsmeshError(f"bench normalize: the {app_id} worker did not finish within 900 s")
    finally:
        worker.terminate()
        worker.wait(30)
        log.close()


def _client_ceiling(settings: Settings, topics: list[str], run: str, total: int) -> float:
    consumer = kafka.consumer(settings, f"{run}-client", enable_auto_commit=False)
    producer = kafka.producer(settings, linger_ms=5)
    metadata = consumer.list_topics(timeout=10).topics
    consumer.assign([TopicPartition(t, p, 0) for t in topics for p in metadata[t].partitions])
    done, started = 0, None
    while done < total:
        batch = consumer.consume(1000, timeout=2.0)
        if not batch:
            raise KintsmeshError("bench normalize: the client loop ran dry before reading every event")
        started = started or time.monotonic()
        for message in batch:
            producer.produce(f"{run}.client", key=message.key(), value=message.value())
        producer.poll(0)
        done += len(batch)
    producer.flush(60)
    elapsed = time.monotonic() - (started or time.monotonic())
    consumer.close()
    return done / max(elapsed, 1e-6)


def run_normalize_bench(settings: Settings, events: int) -> dict[str, object]:
    run = f"bench{int(time.time())}"
    print(f"writing {events:,} Debezium events (5% dirty) to {run}.<dept>.public.<table> ...", flush=True)
    topics, events = _write_input(settings, run, events)
    rates: dict[bool, list[float]] = {False: [], True: []}
    cpu: dict[bool, list[float]] = {False: [], True: []}
    for round_ in range(1, ROUNDS + 1):   # alternated, best of each: the other processes' noise hits both alike
        for passthrough in (False, True):
            print(f"round {round_}/{ROUNDS}: {'passthrough agent (same framework, same settings)' if passthrough else 'normalize worker'} ...",
                  end=" ", flush=True)
            rate, cpu_us = _worker_rate(settings, topics, run, events, passthrough, round_)
            rates[passthrough].append(rate)
            cpu[passthrough].append(cpu_us)
            print(f"{rate:,.0f} events/s, {cpu_us:,.0f} µs of CPU per event", flush=True)
    normalize, passthrough_rate = max(rates[False]), max(rates[True])
    print("plain confluent-kafka consume -> produce loop ...", flush=True)
    ceiling = _client_ceiling(settings, topics, run, events)
    result: dict[str, object] = {
        "events_per_s": round(normalize, 1),
        "passthrough_events_per_s": round(passthrough_rate, 1),
        "ratio": round(normalize / passthrough_rate, 3),
        "cpu_us_per_event": round(min(cpu[False]), 1),
        "passthrough_cpu_us_per_event": round(min(cpu[True]), 1),
        "rounds": {"normalize": [round(r, 1) for r in rates[False]], "passthrough": [round(r, 1) for r in rates[True]],
                   "normalize_cpu_us_per_event": [round(c, 1) for c in cpu[False]],
                   "passthrough_cpu_us_per_event": [round(c, 1) for c in cpu[True]]},
        "client_ceiling_events_per_s": round(ceiling, 1),
        "events": events,
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, whole stack on one host",
    }
    print(f"{'normalize worker (events/s)':<38}{result['events_per_s']:>12}")
    print(f"{'passthrough agent, Faust (events/s)':<38}{result['passthrough_events_per_s']:>12}")
    print(f"{'ratio normalize / passthrough':<38}{result['ratio']:>12}")
    print(f"{'normalize worker CPU (µs per event)':<38}{result['cpu_us_per_event']:>12}")
    print(f"{'passthrough CPU (µs per event)':<38}{result['passthrough_cpu_us_per_event']:>12}")
    print(f"{'confluent-kafka loop ceiling (events/s)':<38}{result['client_ceiling_events_per_s']:>12}")
    write_result("normalize", result)
    return result
