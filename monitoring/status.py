"""``kintsmesh status``: is every department in sync, and if not, which and since when.

Connector states, DLQ sizes, consumer lag and T+1 batches are read directly (they must show
even when Prometheus is down); rates and lag percentiles come from Prometheus, which holds
their history. ``render`` is pure: a ``Snapshot`` in, a rich renderable out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from connect.client import ConnectorStatus
from kintsmesh.errors import KintsmeshError
from kintsmesh.settings import DEPARTMENTS, Settings
from kintsmesh.topics import DLQ_STAGES, NORMALIZE_GROUP, RAW_PREFIX, dlq_topic
from monitoring import probes
from monitoring.exporter import dlq_topics
from monitoring.schedule import BatchSchedule, load_schedules

LAG_ALERT_S = 30.0       # KintsmeshSyncLagHigh's threshold (monitoring/alerts.yml)
SILENT_ALERT_S = 900.0   # KintsmeshDepartmentSilent's threshold
HEARTBEAT_ALERT_S = 60.0  # KintsmeshCaptureStalled's threshold
BEHIND_MESSAGES = 1000   # messages waiting for a stage, above which a department is "behind", not "in sync"
# the processes a change passes through: while one of them is not up, no department is in sync
PIPELINE = ("departments", "postgres", "kafka", "registry", "connect", "normalize", "resolve", "merge", "events")

# what the departments look like now: the last minute (the alert rules use 5 minutes, for stability)
QUERIES = {
    "events_per_s": "sum by (department) (rate(kintsmesh_normalize_events_in_total[1m]))",
    "raw_p99_s": "histogram_quantile(0.99, sum by (department, le) (rate(kintsmesh_sync_lag_raw_seconds_bucket[1m])))",
    "golden_p99_s": "histogram_quantile(0.99, sum by (department, le) (rate(kintsmesh_sync_lag_golden_seconds_bucket[1m])))",
    "event_p99_s": "histogram_quantile(0.99, sum by (department, le) (rate(kintsmesh_sync_lag_event_seconds_bucket[1m])))",
    "newest_age_s": "time() - max by (department) (kintsmesh_merge_newest_source_commit_timestamp_seconds)",
    "heartbeat_age_s": "time() - max by (department) (kintsmesh_capture_heartbeat_timestamp_seconds)",
}


@dataclass
class Snapshot:
    taken_at: datetime
    connectors: dict[str, ConnectorStatus] = field(default_factory=dict)
    by_department: dict[str, dict[str, float]] = field(default_factory=dict)  # query name -> value
    dlq: dict[str, int] = field(default_factory=dict)
    group_lag: dict[str, int] = field(default_factory=dict)
    raw_waiting: dict[str, int] = field(default_factory=dict)   # department -> raw messages not yet normalized
    stages: dict[str, str] = field(default_factory=dict)        # pipeline component -> "up" or what it is instead
    batches: dict[str, probes.BatchRun] = field(default_factory=dict)
    schedules: list[BatchSchedule] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # systems that did not answer


def stage_states(settings: Settings) -> dict[str, str]:
    """Each pipeline process of the local stack: up, down (the supervisor restarts it), stopped (held by
    ``stack down``) or starting. Against a stack run elsewhere (docker-compose), nothing: its own orchestrator
    watches its processes, and the lag below still shows a stage that does not keep up."""
    from kintsmesh.stack.components import components

    if not (settings.stack_dir / "run").is_dir():
        return {}
    states = {}
    for component in components(settings):
        if component.name.rstrip("0123456789") in PIPELINE:   # kafka2, kafka3: the other brokers
            status = component.status()
            states[component.name] = ("up" if status.healthy else "stopped" if component.held and status.pid is None
                                      else "down, restarting" if status.pid is None else "starting")
    return states


def take(settings: Settings, kafka: probes.KafkaProbe) -> Snapshot:
    snap = Snapshot(datetime.now(timezone.utc), schedules=load_schedules())
    snap.stages = stage_states(settings)
    stored: dict[str, dict[tuple[str, int], int]] = {}
    try:
        snap.connectors = probes.connector_states(settings, DEPARTMENTS)
    except KintsmeshError as exc:
        snap.problems.append(f"Kafka Connect: {exc}")
    try:
        stored, snap.batches = probes.library_state(settings)
    except KintsmeshError as exc:
        snap.problems.append(f"resource library: {exc}")
    try:
        snap.dlq = kafka.messages(dlq_topics())
        for p in kafka.lags(stored):
            snap.group_lag[p.group] = snap.group_lag.get(p.group, 0) + p.lag
            if p.group == NORMALIZE_GROUP and p.topic.startswith(f"{RAW_PREFIX}."):
                source = p.topic.split(".")[1]
                snap.raw_waiting[source] = snap.raw_waiting.get(source, 0) + p.lag
    except KintsmeshError as exc:
        snap.problems.append(f"Kafka: {exc}")
    try:
        for name, expr in QUERIES.items():
            for labels, value in probes.prometheus_vector(settings, expr).items():
                department = dict(labels).get("department")
                if department:
                    snap.by_department.setdefault(department, {})[name] = value
        snap.alerts = probes.firing_alerts(settings)
    except KintsmeshError as exc:
        snap.problems.append(f"Prometheus: {exc}")
    return snap


def verdict(snap: Snapshot, department: str) -> tuple[str, str]:
    """(text, style): stage down / capture down / capture stalled / behind / lagging / quiet / in sync / unknown."""
    status = snap.connectors.get(department)
    values = snap.by_department.get(department, {})
    down = [name for name, state in snap.stages.items() if state != "up"]
    if down:
        return f"{down[0]} {snap.stages[down[0]]}", "bold red"
    if status is None:
        return "unknown", "yellow"
    if not status.running:
        return "capture down", "bold red"
    waiting = snap.raw_waiting.get(department, 0) + sum(
        n for group, n in snap.group_lag.items() if group != NORMALIZE_GROUP)
    if waiting > BEHIND_MESSAGES:
        return f"behind ({waiting:,} waiting)", "bold red"
    heartbeat = values.get("heartbeat_age_s")
    if heartbeat is not None and heartbeat > HEARTBEAT_ALERT_S:
        return "capture stalled", "bold red"
    lag = values.get("golden_p99_s")
    if lag is not None and lag == lag and lag > LAG_ALERT_S:  # NaN: no change in the window
        return "lagging", "bold red"
    age = values.get("newest_age_s")
    if age is not None and age > SILENT_ALERT_S:
        # heartbeats still arrive: the department wrote nothing, the capture path is fine
        return "quiet", "yellow"
    return "in sync", "green"


def _seconds(value: float | None) -> str:
    if value is None or value != value:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"


def _batch(snap: Snapshot, department: str) -> Text:
    schedule = next((s for s in snap.schedules if s.department == department), None)
    run = snap.batches.get(department)
    if run is None:
        return Text("none (overdue)", "bold red") if schedule else Text("-")
    rows = int(run.report.get("rows") or 0)
    text = f"{run.batch_date:%m-%d} {rows:,} rows {_seconds((snap.taken_at - run.finished_at).total_seconds())} ago"
    late = schedule is not None and schedule.overdue(run.batch_date, snap.taken_at)
    return Text(text + (" (overdue)" if late else ""), "bold red" if late else "")


def render(snap: Snapshot) -> Group:
    table = Table(title=f"Kintsmesh at {snap.taken_at.astimezone():%Y-%m-%d %H:%M:%S %Z}: commit -> raw topic"
                        " -> golden record -> life event, per department", title_justify="left", padding=(0, 1))
    for column, justify in (("department", "left"), ("state", "left"), ("capture", "left"), ("ev/s", "right"),
                            ("raw p99", "right"), ("golden p99", "right"), ("event p99", "right"),
                            ("newest", "right"),
                            ("DLQ", "right"), ("last T+1", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for department in DEPARTMENTS:
        status = snap.connectors.get(department)
        values = snap.by_department.get(department, {})
        text, style = verdict(snap, department)
        tasks = ",".join(t.state for t in status.tasks) if status else ""
        connector = status.connector_state.lower() + (f" ({tasks.lower()})" if tasks != "RUNNING" else "") if status else "?"
        if "heartbeat_age_s" in values:
            connector += f", beat {_seconds(values['heartbeat_age_s'])} ago"
        rate = values.get("events_per_s")
        table.add_row(department, Text(text, style), connector,
                      f"{rate:,.1f}" if rate is not None else "-",
                      _seconds(values.get("raw_p99_s")), _seconds(values.get("golden_p99_s")),
                      _seconds(values.get("event_p99_s")),
                      _seconds(values.get("newest_age_s")) + (" ago" if "newest_age_s" in values else ""),
                      f"{snap.dlq[dlq_topic(department)]:,}" if dlq_topic(department) in snap.dlq else "-",
                      _batch(snap, department))
    lines: list[Any] = [table]
    if snap.stages:
        lines.append(Text("processes: " + "  ".join(f"{name} {state}" for name, state in snap.stages.items()),
                          "bold red" if any(state != "up" for state in snap.stages.values()) else ""))
    lag = "  ".join(f"{group.removeprefix('kintsmesh-')} {n:,}" for group, n in sorted(snap.group_lag.items()))
    lines.append(Text(f"consumer lag (messages): {lag or '-'}"
                      + "".join(f"    {dlq_topic(s)}: {snap.dlq.get(dlq_topic(s), '-')}" for s in DLQ_STAGES)))
    for alert in sorted(snap.alerts, key=lambda a: (a["state"] != "firing", sorted(a["labels"].items()))):
        labels = alert["labels"]
        where = labels.get("department") or labels.get("topic") or labels.get("group") or labels.get("job") or ""
        since = alert.get("activeAt", "?")[:19].replace("T", " ")
        lines.append(Text(f"alert {alert['state']:<7} {labels['alertname']} {where} since {since} UTC",
                          "bold red" if alert["state"] == "firing" else "yellow"))
    for problem in snap.problems:
        lines.append(Text(f"not answering: {problem}", "yellow"))
    return Group(*lines)


def show(settings: Settings, watch_s: float | None = None) -> int:
    """Print the view once, or refresh it every ``watch_s`` seconds until Ctrl-C."""
    console = Console(width=None if Console().is_terminal else 140)
    kafka = probes.KafkaProbe(settings)  # one admin client for every refresh
    if watch_s is None:
        console.print(render(take(settings, kafka)))
        return 0
    with Live(render(take(settings, kafka)), console=console, refresh_per_second=1, screen=False) as live:
        try:
            while True:
                time.sleep(watch_s)
                live.update(render(take(settings, kafka)))
        except KeyboardInterrupt:
            pass
    return 0
