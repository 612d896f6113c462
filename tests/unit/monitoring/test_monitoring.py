"""Alert rules (promtool), the Prometheus configs, the dashboard, the T+1 schedule and the status view."""

from __future__ import annotations

import json
import subprocess
from datetime import date, datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from connect.client import ConnectorStatus, TaskStatus
from kintsmesh.settings import CITY_TZ_NAME, DEPARTMENTS, REPO_ROOT, Settings
from kintsmesh.stack import prerequisites
from kintsmesh.stack.components import Prometheus
from monitoring.exporter import batch_counts
from monitoring.probes import BatchRun
from monitoring.promql import dashboard_expressions, metric_names, recorded_names, rule_expressions
from monitoring.schedule import BatchSchedule, load_schedules
from monitoring.status import Snapshot, render, verdict

MONITORING = REPO_ROOT / "monitoring"
RULES = yaml.safe_load((MONITORING / "alerts.yml").read_text())
RULE_TESTS = yaml.safe_load((MONITORING / "alerts_test.yml").read_text())
DASHBOARD = json.loads((MONITORING / "grafana/dashboards/kintsmesh.json").read_text())
CST = ZoneInfo(CITY_TZ_NAME)


def promtool() -> str:
    _, path = prerequisites.prometheus_binary()  # installs Debian's prometheus (with promtool) when missing
    assert path is not None, "promtool is not on PATH after installing prometheus"
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, cwd=MONITORING)


# ---------------------------------------------------------------- rules


def test_promtool_rule_tests_pass():
    result = run("test", "rules", "alerts_test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_rule_tests_fail_when_an_expectation_is_wrong(tmp_path: Path):
    # the suite is not vacuous: one wrong expected value turns it red
    (tmp_path / "alerts.yml").write_text((MONITORING / "alerts.yml").read_text())
    broken = (MONITORING / "alerts_test.yml").read_text().replace("value: 300", "value: 301", 1)
    (tmp_path / "alerts_test.yml").write_text(broken)
    result = subprocess.run([promtool(), "test", "rules", "alerts_test.yml"], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode != 0
    assert "department:kintsmesh_newest_change_age_seconds:min" in result.stdout + result.stderr


def test_every_alert_is_tested_both_firing_and_not_firing():
    alerts = {rule["alert"] for group in RULES["groups"] for rule in group["rules"] if "alert" in rule}
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in RULE_TESTS["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    assert alerts == firing, alerts ^ firing
    assert alerts == quiet, alerts ^ quiet
    assert len(alerts) >= 9


def test_every_alert_has_a_severity_and_a_summary():
    for group in RULES["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
                assert rule["annotations"]["summary"], rule["alert"]


def test_promtool_accepts_the_local_and_the_compose_prometheus_configs(tmp_path: Path):
    local = Prometheus(Settings(stack_dir=tmp_path))
    local.prepare()
    result = run("check", "config", str(local.config_file))
    assert result.returncode == 0, result.stdout + result.stderr
    rules = sum(len(group["rules"]) for group in RULES["groups"])
    assert f"SUCCESS: {rules} rules found" in result.stdout
    compose = yaml.safe_load((MONITORING / "prometheus-compose.yml").read_text())
    compose["rule_files"] = [str(MONITORING / "alerts.yml")]  # mounted at /etc/prometheus in the container
    (tmp_path / "compose.yml").write_text(yaml.safe_dump(compose))
    result = run("check", "config", str(tmp_path / "compose.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------- PromQL names


@pytest.mark.parametrize("expr, names", [
    ('histogram_quantile(0.99, sum by (department, le) (rate(a_seconds_bucket{department=~"$department"}[$__rate_interval])))',
     {"a_seconds_bucket"}),
    ('kintsmesh_connector_state{state="FAILED"} == 1 or kintsmesh_connector_tasks{state="FAILED"} > 0',
     {"kintsmesh_connector_state", "kintsmesh_connector_tasks"}),
    ("time() - max by (department) (x_seconds offset 5m)", {"x_seconds"}),
    ("group:a:sum > 1e3 and sum by (group) (delta(b[10m])) > 0", {"group:a:sum", "b"}),
    ('up{job="by"} == 0', {"up"}),
])
def test_metric_names_of_an_expression(expr, names):
    assert metric_names(expr) == names


def test_every_rule_and_dashboard_expression_reads_a_metric():
    for name, expr in {**rule_expressions(RULES), **dashboard_expressions(DASHBOARD)}.items():
        assert metric_names(expr), (name, expr)


def test_dashboard_panels_use_the_provisioned_datasource_and_recorded_names_exist():
    datasource = yaml.safe_load((MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = datasource["datasources"][0]["uid"]
    for panel in DASHBOARD["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == uid, panel["title"]
    recorded = recorded_names(RULES)
    used = set().union(*(metric_names(e) for e in dashboard_expressions(DASHBOARD).values()))
    assert {n for n in used if ":" in n} <= recorded
    ids = [panel["id"] for panel in DASHBOARD["panels"]]
    assert len(ids) == len(set(ids))


# ---------------------------------------------------------------- T+1 schedule


def test_the_extract_for_day_d_is_due_at_six_on_d_plus_one():
    schedule = BatchSchedule("hrss", datetime.strptime("06:00", "%H:%M").time(), CST)
    before_six = datetime(2026, 11, 28, 5, 59, tzinfo=CST)
    after_six = datetime(2026, 11, 28, 6, 0, tzinfo=CST)
    assert schedule.expected_date(before_six) == date(2026, 11, 26)
    assert schedule.expected_date(after_six) == date(2026, 11, 27)
    assert not schedule.overdue(date(2026, 11, 26), before_six)
    assert schedule.overdue(date(2026, 11, 26), after_six)
    assert not schedule.overdue(date(2026, 11, 27), after_six)
    assert schedule.overdue(None, before_six)
    # a UTC clock: 22:30 UTC on the 27th is 06:30 on the 28th in Shanghai
    assert schedule.expected_date(datetime(2026, 11, 27, 22, 30, tzinfo=timezone.utc)) == date(2026, 11, 27)


def test_the_schedule_file_names_known_departments():
    schedules = load_schedules()
    assert {s.department for s in schedules} <= set(DEPARTMENTS)
    assert "hrss" in {s.department for s in schedules}


def test_batch_counts_flatten_the_reconciliation_report():
    report = {"rows": 10, "rejected": 1, "candidates": {"read": 9, "merged": 5, "unchanged": 4, "sent_to_review": 0,
                                                        "conflicts": 2, "golden_updates": 5}}
    assert batch_counts(report) == {"rows": 10, "rejected": 1, "merged": 5, "unchanged": 4, "sent_to_review": 0,
                                    "conflicts": 2, "golden_updates": 5}
    assert batch_counts({}) == dict.fromkeys(batch_counts(report), 0.0)


# ---------------------------------------------------------------- status view


def snapshot() -> Snapshot:
    now = datetime(2026, 11, 28, 9, 0, tzinfo=timezone.utc)
    running = lambda d: ConnectorStatus(f"kintsmesh-{d}", "RUNNING", (TaskStatus(0, "RUNNING"),))  # noqa: E731
    snap = Snapshot(now, connectors={d: running(d) for d in DEPARTMENTS},
                    schedules=[BatchSchedule("hrss", datetime.strptime("06:00", "%H:%M").time(), CST)])
    snap.connectors["market"] = ConnectorStatus("kintsmesh-market", "STOPPED")
    snap.connectors["health"] = ConnectorStatus("kintsmesh-health", "RUNNING", (TaskStatus(0, "FAILED", "boom"),))
    snap.by_department = {d: {"golden_p99_s": 0.4, "newest_age_s": 2.0, "events_per_s": 12.0} for d in DEPARTMENTS}
    snap.by_department["police"]["golden_p99_s"] = 45.0
    snap.by_department["education"]["newest_age_s"] = 3600.0
    snap.by_department["housing"]["golden_p99_s"] = float("nan")  # no change in the window
    snap.by_department["civil_affairs"]["heartbeat_age_s"] = 3.0
    snap.by_department["civil_affairs"]["event_p99_s"] = 1.25
    snap.by_department["hrss"]["heartbeat_age_s"] = 400.0       # running, but nothing heard for minutes
    snap.batches = {"hrss": BatchRun("hrss", date(2026, 11, 26), now, {"rows": 1234})}
    snap.dlq = {"dlq.police": 7}
    return snap


def test_status_verdict_per_department():
    snap = snapshot()
    verdicts = {d: verdict(snap, d)[0] for d in DEPARTMENTS}
    assert verdicts == {"police": "lagging", "civil_affairs": "in sync", "health": "capture down",
                        "hrss": "capture stalled", "housing": "in sync", "market": "capture down", "education": "quiet"}
    snap.connectors.pop("police")
    assert verdict(snap, "police")[0] == "unknown"


def test_status_is_never_in_sync_while_a_stage_is_down_or_messages_wait():
    snap = snapshot()
    snap.stages = {name: "up" for name in ("postgres", "kafka", "normalize", "merge")}
    assert verdict(snap, "civil_affairs")[0] == "in sync"
    snap.raw_waiting = {"civil_affairs": 12_000}
    assert verdict(snap, "civil_affairs") == ("behind (12,000 waiting)", "bold red")
    assert verdict(snap, "housing")[0] == "in sync"          # its own raw topics are drained
    snap.group_lag = {"kintsmesh-normalize": 12_000, "kintsmesh-merge": 5_000}
    assert verdict(snap, "housing")[0] == "behind (5,000 waiting)"   # merge is shared by every department
    snap.stages["merge"] = "down, restarting"
    assert {verdict(snap, d)[0] for d in DEPARTMENTS} == {"merge down, restarting"}


def test_status_view_shows_states_lags_dlq_and_an_overdue_batch():
    from rich.console import Console

    console = Console(width=160, record=True)
    console.print(render(snapshot()))
    text = console.export_text()
    assert "stopped" in text and "running (failed)" in text and "running, beat 3.0 s ago" in text
    assert "45.0 s" in text and "400 ms" in text
    assert "event p99" in text and "1.2 s" in text   # commit -> life event (civil affairs)
    assert "11-26 1,234 rows" in text and "(overdue)" in text  # 09:00 UTC is after 06:00 in Shanghai
    assert "60 min ago" in text
