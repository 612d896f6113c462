"""``make demo``'s live part: department activity while change events flow, shown per department."""

from __future__ import annotations

import argparse
import threading
import time

from kintsmesh.settings import DEPARTMENTS, Settings
from kintsmesh.simulate.events import LiveStats
from kintsmesh.simulate.runner import run_simulation
from kintsmesh.watch import RawTopicWatcher, percentile, wait_for_capture_to_settle, wait_for_group


def normalize_summary(settings: Settings) -> None:
    """Per department: raw events normalized, GLDM candidates, retractions, DLQ records (from the worker's metrics)."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    from streams.app import raw_topics

    behind = wait_for_group(settings, "kintsmesh-normalize", raw_topics(settings), timeout_s=600,
                            report=lambda n: print(f"  normalize worker catching up: {n:,} raw events to go", flush=True))
    text = requests.get(f"http://127.0.0.1:{settings.normalize_metrics_port}/metrics", timeout=5).text
    table: dict[str, dict[str, float]] = {d: {} for d in DEPARTMENTS}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith("_total") and "department" in sample.labels:
                column = sample.name.removeprefix("kintsmesh_normalize_").removesuffix("_total")
                row = table.setdefault(sample.labels["department"], {})
                row[column] = row.get(column, 0) + sample.value
    print(f"normalize (raw -> GLDM){' (still ' + format(behind, ',') + ' behind)' if behind else ''}:")
    print(f"  {'department':<14}{'raw events':>12}{'candidates':>12}{'retractions':>13}{'DLQ':>8}")
    for department, row in table.items():
        print(f"  {department:<14}{row.get('events_in', 0):>12,.0f}{row.get('candidates_out', 0):>12,.0f}"
              f"{row.get('retractions', 0):>13,.0f}{row.get('rejected', 0):>8,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    settings = Settings()
    print("capturing what is already in the department databases (snapshot / bulk load) ...", flush=True)
    total = wait_for_capture_to_settle(
        settings, report=lambda n: print(f"  {n:,} change events on raw.* so far", flush=True))
    print(f"capture caught up: {total:,} change events on raw.* topics", flush=True)
    watcher = RawTopicWatcher(settings).start()
    print(f"live department activity: {args.rate:.0f} changes/s for {args.duration:.0f} s; "
          "change events on raw.<dept>.* (commit -> topic latency):", flush=True)
    result: list[LiveStats | None] = []
    simulation = threading.Thread(target=lambda: result.append(run_simulation(
        settings, seed=args.seed, initial=None, rate=args.rate, duration_s=args.duration,
        dirty_rate=0.03, truth_path=None)))
    simulation.start()
    while simulation.is_alive():
        simulation.join(timeout=10)
        counts, latencies = watcher.snapshot()
        line = "  ".join(f"{d}={counts.get(d, 0):,}" for d in DEPARTMENTS)
        print(f"[{time.strftime('%H:%M:%S')}] events {line}  | p50 {percentile(latencies, 50):.0f} ms "
              f"p99 {percentile(latencies, 99):.0f} ms", flush=True)
    if not result or result[0] is None:
        watcher.stop()
        raise SystemExit("demo: the live simulation failed (see the error above)")
    written = result[0].changes
    watcher.wait_for(written, timeout_s=60)
    counts, latencies = watcher.snapshot()
    watcher.stop()
    print(f"changes committed: {written:,}; change events captured: {sum(counts.values()):,} "
          f"(p50 {percentile(latencies, 50):.0f} ms, p99 {percentile(latencies, 99):.0f} ms commit -> topic)")
    normalize_summary(settings)


if __name__ == "__main__":
    main()
