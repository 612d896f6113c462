"""``kintsmesh bench capture``: commit-to-topic latency at a fixed rate, and the highest sustained capture rate.

1. Latency: the simulator writes live department changes at ``--rate`` changes/s
   (one small transaction per department write, as department systems do; the
   city must be loaded and the ground truth is appended as for any live run) and
   every change event's commit -> log-append latency is recorded.
2. Throughput: ``--burst`` contribution rows are COPYed into hrss.sb_jfmx as fast
   as PostgreSQL takes them; the capture rate is events on the topic divided by the
   time from the first commit to the last event appended. The rows are deleted after.
"""

from __future__ import annotations

import os
import platform
import time
from datetime import datetime, timezone

import psycopg

from kintsmesh import stack
from kintsmesh.errors import KintsmeshError
from kintsmesh.bench import write_result
from kintsmesh.bench.plot import write_lag_plot
from kintsmesh.settings import Settings
from kintsmesh.simulate.runner import redo_unfinished, run_simulation
from kintsmesh.watch import RawTopicWatcher, percentile
from monitoring.lag import wait_for_capture

DOWNSTREAM = ["normalize", "resolve", "merge"]



def _latency_run(settings: Settings, rate: float, duration_s: float) -> tuple[dict[str, float], list[tuple[float, float]]]:
    redo_unfinished(settings, seed=99, dirty_rate=0.03)   # an interrupted earlier run's changes: not measured
    watcher = RawTopicWatcher(settings).start()
    stats = run_simulation(settings, seed=99, initial=None, rate=rate, duration_s=duration_s,
                           dirty_rate=0.03, truth_path=None)
    assert stats is not None  # a rate was given
    watcher.wait_for(stats.changes, timeout_s=60)
    counts, latencies = watcher.snapshot()
    series = watcher.series()
    watcher.stop()
    return {
        "rate_per_s": stats.changes / stats.elapsed_s,
        "changes_written": stats.changes,
        "events_captured": sum(counts.values()),
        "latency_p50_ms": percentile(latencies, 50),
        "latency_p99_ms": percentile(latencies, 99),
        "latency_max_ms": max(latencies) if latencies else float("nan"),
    }, series


def _throughput_run(settings: Settings, burst: int) -> dict[str, float]:
    tag = f"BN{int(time.time()) % 10**6:06d}"
    persons = max(1, burst // 120)
    watcher = RawTopicWatcher(settings, accept=lambda key, value: str(key.get("grbh", "")).startswith(tag)).start()
    with psycopg.connect(settings.dsn("hrss")) as conn:
        with conn.cursor() as cur, cur.copy("COPY sb_cbry (grbh, xm, xb) FROM STDIN") as copy:
            for i in range(persons):
                copy.write_row([f"{tag}{i:06d}", "压测", "M"])
        conn.commit()
        started_ms = time.time() * 1000
        written = 0
        while written < burst:
            with conn.cursor() as cur, cur.copy("COPY sb_jfmx (grbh, jfny, xzdm, jfjs) FROM STDIN") as copy:
                for _ in range(min(2000, burst - written)):
                    month = written // persons
                    copy.write_row([f"{tag}{written % persons:06d}", f"{1900 + month // 12:04d}{month % 12 + 1:02d}", "110", 5000])
                    written += 1
            conn.commit()
        write_s = time.time() - started_ms / 1000
        complete = watcher.wait_for(persons + burst, timeout_s=300)
        counts, _ = watcher.snapshot()
        last_ms = watcher.last_ms or started_ms
        watcher.stop()
        conn.execute("DELETE FROM sb_jfmx WHERE grbh LIKE %s", [tag + "%"])
        conn.execute("DELETE FROM sb_cbry WHERE grbh LIKE %s", [tag + "%"])
        conn.commit()
    captured = sum(counts.values())
    if not complete:
        raise KintsmeshError(f"bench capture: only {captured:,} of {persons + burst:,} events arrived within 300 s")
    return {
        "burst_rows": persons + burst,
        "write_rows_per_s": (persons + burst) / write_s,
        "events_per_s": captured / ((last_ms - started_ms) / 1000),
    }


def run_capture_bench(settings: Settings, rate: float, duration_s: float, burst: int) -> dict[str, object]:
    # the capture stage alone: on two cores, normalize and merge working through the same changes
    # starve Connect and Kafka (bench merge measures the whole pipeline, commit -> golden record)
    print("bench capture: normalize and merge paused for the run (restarted at the end)", flush=True)
    stack.down(settings, DOWNSTREAM)
    try:
        return _capture_bench(settings, rate, duration_s, burst)
    finally:
        stack.up(settings, DOWNSTREAM)


def _capture_bench(settings: Settings, rate: float, duration_s: float, burst: int) -> dict[str, object]:
    # what was committed before (a city just loaded) captured first: its backlog is not the latency measured
    if wait_for_capture(settings, 300) > 0:
        raise KintsmeshError("bench capture: Debezium did not catch up with the changes committed before the run")
    print(f"capture latency at {rate:.0f} changes/s for {duration_s:.0f} s ...", flush=True)
    latency, series = _latency_run(settings, rate, duration_s)
    write_lag_plot("capture", series, f"commit -> change event on raw.* at {latency['rate_per_s']:,.0f} changes/s"
                   f" (p50 {latency['latency_p50_ms']:,.0f} ms, p99 {latency['latency_p99_ms']:,.0f} ms)")
    print(f"capture throughput: {burst:,} rows written as fast as possible ...", flush=True)
    throughput = _throughput_run(settings, burst)
    result: dict[str, object] = {
        "events_per_s": round(throughput["events_per_s"], 1),
        "latency_p50_ms": round(latency["latency_p50_ms"], 1),
        "latency_p99_ms": round(latency["latency_p99_ms"], 1),
        "rate_per_s": round(latency["rate_per_s"], 1),
        "detail": {"latency_run": latency, "throughput_run": throughput},
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, whole stack on one host",
        "downstream": "normalize and merge paused during the run",
    }
    print(f"{'metric':<34}{'value':>12}")
    print(f"{'achieved write rate (changes/s)':<34}{result['rate_per_s']:>12}")
    print(f"{'commit->topic p50 (ms)':<34}{result['latency_p50_ms']:>12}")
    print(f"{'commit->topic p99 (ms)':<34}{result['latency_p99_ms']:>12}")
    print(f"{'sustained capture (events/s)':<34}{result['events_per_s']:>12}")
    write_result("capture", result)
    return result
