"""Operators' view against the real stack: live metric names, and a stopped connector seen
by the lag gauge, the connector metric and the alert while the other departments stay in sync."""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import datetime, timezone

import psycopg
import pytest
import requests
import yaml

from connect.client import ConnectClient
from connect.connectors import connector_name, tables
from kintsmesh.settings import DEPARTMENTS, REPO_ROOT, RESOURCE_LIBRARY_DB
from kintsmesh.simulate.runner import run_simulation
from monitoring.probes import firing_alerts, prometheus_vector
from monitoring.promql import dashboard_expressions, metric_names, recorded_names, rule_expressions

pytestmark = pytest.mark.integration

STOPPED = "housing"  # rentals: about a sixth of the simulated activity
AGE = "department:kintsmesh_newest_change_age_seconds:min"


def scraped_names(url: str, ca: str) -> set[str]:
    """Every metric name an endpoint exports, also families that have no sample yet (HTTPS: verified with ``ca``)."""
    text = requests.get(url, timeout=10, verify=ca).text
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
        names.add(name)
        if kind == "histogram":
            names.update({f"{name}_bucket", f"{name}_sum", f"{name}_count"})
        if kind == "counter" and not name.endswith("_total"):
            names.add(f"{name}_total")
    return names


def test_every_rule_and_dashboard_expression_reads_a_metric_the_stack_exports(settings):
    targets = requests.get(f"{settings.prometheus_endpoint}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
    jobs = {t["labels"]["job"]: t for t in targets}
    assert {"kintsmesh-normalize", "kintsmesh-resolve", "kintsmesh-merge", "kintsmesh-monitor", "kafka-connect"} <= set(jobs)
    deadline = time.monotonic() + 60
    while any(t["health"] != "up" for t in jobs.values()) and time.monotonic() < deadline:
        time.sleep(2)
        targets = requests.get(f"{settings.prometheus_endpoint}/api/v1/targets", timeout=10).json()["data"]["activeTargets"]
        jobs = {t["labels"]["job"]: t for t in targets}
    assert all(t["health"] == "up" for t in jobs.values()), {j: t["lastError"] for j, t in jobs.items()}
    exported = {"up"}.union(*(scraped_names(t["scrapeUrl"], str(settings.trusted_ca)) for t in jobs.values()))
    rules = yaml.safe_load((REPO_ROOT / "monitoring/alerts.yml").read_text())
    dashboard = json.loads((REPO_ROOT / "monitoring/grafana/dashboards/kintsmesh.json").read_text())
    known = exported | recorded_names(rules)
    for where, expressions in (("alerts.yml", rule_expressions(rules)), ("dashboard", dashboard_expressions(dashboard))):
        for name, expr in expressions.items():
            missing = metric_names(expr) - known
            assert not missing, f"{where}: {name} reads {missing}, which no component exports"


def ages(settings) -> dict[str, float]:
    return {dict(labels)["department"]: value for labels, value in prometheus_vector(settings, AGE).items()}


def behind(settings) -> dict[str, float]:
    """Seconds between each department's newest commit (PostgreSQL's commit timestamps) and the newest
    change of it merged (the merge worker's gauge): a quiet department is not behind, a stopped one is."""
    merged = {dict(labels)["department"]: value for labels, value in prometheus_vector(
        settings, "max by (department) (kintsmesh_merge_newest_source_commit_timestamp_seconds)").items()}
    gaps = {}
    for department in DEPARTMENTS:
        with psycopg.connect(settings.dsn(department)) as conn:
            newest = max((conn.execute(f"SELECT extract(epoch FROM max(pg_xact_commit_timestamp(xmin)))::float8"
                                       f" FROM public.{table}").fetchone()[0] or 0.0)
                         for table in tables(settings, department))
        gaps[department] = newest - merged.get(department, 0.0)
    return gaps


def wait_for(condition, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(2)
    raise AssertionError(f"not within {timeout_s:.0f} s: {what}")


def test_a_stopped_connector_shows_in_the_lag_gauge_metric_and_alert_while_others_stay_in_sync(
        settings, tmp_path, fresh_seed):
    client = ConnectClient.of(settings)
    sim = settings.model_copy(update={"stack_dir": tmp_path})
    seed = fresh_seed
    run_simulation(sim, seed=seed, initial=300, rate=None, duration_s=0, dirty_rate=0.0, truth_path=None)
    live = threading.Thread(target=run_simulation, args=(sim,), kwargs=dict(
        # long enough to outlast every phase below on a loaded host: the stopped department must keep committing
        seed=seed, initial=None, rate=60, duration_s=170, dirty_rate=0.0, truth_path=None))
    live.start()
    try:
        # every department in sync first: its newest commit merged, give or take 10 s
        wait_for(lambda: all(gap < 10 for gap in behind(settings).values()), 90,
                 f"every department within 10 s of its newest commit: {behind(settings)}")
        client.stop(connector_name(STOPPED))
        stopped_at = datetime.now(timezone.utc)

        # the exporter's connector metric and the alert (pending: its `for` is 2 min) see it
        running = f'kintsmesh_connector_running{{department="{STOPPED}"}}'
        wait_for(lambda: prometheus_vector(settings, f"{running} == 0"), 30, f"{running} == 0")
        # a house of its own committed while stopped: the simulator changes most of its small city's houses
        # again within a minute, and a golden version keeps only the latest commit of a batch, so which of
        # its changes keep a version from inside the window is chance; this one is changed by nobody else
        marker = f"TM{time.time_ns()}"[:24]
        with psycopg.connect(settings.dsn(STOPPED), autocommit=True) as conn:
            conn.execute("INSERT INTO fw_jbxx (fwbm, ldbm, zl, jzmj, fwyt, qszt)"
                         " SELECT %s, ldbm, zl, jzmj, fwyt, qszt FROM fw_jbxx LIMIT 1", (marker,))
            committed = conn.execute("SELECT pg_xact_commit_timestamp(xmin) FROM fw_jbxx WHERE fwbm = %s",
                                     (marker,)).fetchone()[0]
        state = prometheus_vector(settings, f'kintsmesh_connector_state{{department="{STOPPED}"}} == 1')
        assert [dict(labels)["state"] for labels in state] == ["STOPPED"]
        wait_for(lambda: [a for a in firing_alerts(settings) if a["labels"]["alertname"] == "KintsmeshConnectorDown"
                          and a["labels"].get("department") == STOPPED], 30, "KintsmeshConnectorDown pending")

        # its newest-change age climbs while every other department stays in sync
        wait_for(lambda: ages(settings).get(STOPPED, 0) > 40, 75, f"{STOPPED}'s newest change older than 40 s")
        gaps = behind(settings)
        assert gaps[STOPPED] > 30, gaps
        others = {d: round(gap, 1) for d, gap in gaps.items() if d != STOPPED}
        assert all(gap < 10 for gap in others.values()), others
        # and its heartbeats stopped with it, while every other connector's keep coming (every 10 s)
        beats = {dict(labels)["department"]: age for labels, age in prometheus_vector(
            settings, "department:kintsmesh_capture_heartbeat_age_seconds:min").items()}
        assert beats[STOPPED] > 30, beats
        assert all(beats[d] < 30 for d in DEPARTMENTS if d != STOPPED), beats
        assert prometheus_vector(settings, 'kintsmesh_connector_running{department!="%s"} == 0' % STOPPED) == {}

        # resumed, it catches up: fresh again, and what was committed while it was stopped is merged
        client.resume(connector_name(STOPPED))
        resumed_at = datetime.now(timezone.utc)
        wait_for(lambda: behind(settings)[STOPPED] < 10, 90, f"{STOPPED} back in sync after resume")
        with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
            versions = [valid_from for (valid_from,) in conn.execute(
                "SELECT valid_from FROM golden_history WHERE entity = 'house' AND canonical_id = %s", (marker,))]
        assert stopped_at < committed < resumed_at
        # its one version dated by that commit (Debezium carries the commit time in milliseconds)
        assert len(versions) == 1 and abs((versions[0] - committed).total_seconds()) < 0.001, \
            f"the house committed at {committed} while {STOPPED}'s connector was stopped: versions {versions}"
        wait_for(lambda: prometheus_vector(settings, f"{running} == 1"), 30, f"{running} == 1")
    finally:
        client.resume(connector_name(STOPPED))  # never leave the shared stack with a stopped connector
        live.join()


def test_a_quiet_departments_replication_slot_does_not_hold_back_the_clusters_wal(settings):
    # other databases of the departments' cluster write WAL (here 30 MB in its postgres database); the
    # department databases stay quiet, yet the heartbeat query lets every slot confirm past it within a few
    # heartbeats
    from monitoring.probes import replication_slots

    table = f"wal_filler_{int(time.time())}"
    with psycopg.connect(settings.dsn("postgres", cluster="departments"), autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} AS SELECT g, repeat('x', 100) AS pad FROM generate_series(1, 250000) g")
        conn.execute(f"DROP TABLE {table}")
        written = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
    assert max(slot.retained_bytes for slot in replication_slots(settings, DEPARTMENTS)) > 16 * 2**20
    slots = wait_for(lambda: (s := replication_slots(settings, DEPARTMENTS)) and all(
        slot.retained_bytes < 8 * 2**20 for slot in s) and s, 60,
        f"every department slot within 8 MiB of the WAL end ({written}): {replication_slots(settings, DEPARTMENTS)}")
    assert {slot.department for slot in slots} == set(DEPARTMENTS)
    assert all(slot.active for slot in slots)
