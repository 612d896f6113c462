"""``kintsmesh bench aggregates``: decision support's figures.

freshness: department commit → population cells updated, for every golden person change of a live run
at ``--rate`` changes/s through the whole stack (the merge benchmark's city; the life-event stage notes
when it applied each change, ``population_applied``). recount: every cell counted again from the golden
persons of the scratch library of ``--people`` (the dossier benchmark's, 1,000,000 by default).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import psycopg

from kintsmesh.bench import write_result
from kintsmesh.bench.dossier import LIBRARY, ensure_library
from kintsmesh.errors import KintsmeshError
from kintsmesh.settings import CITY_TZ, RESOURCE_LIBRARY_DB, Settings
from kintsmesh.watch import percentile
from monitoring.lag import wait_for_pipeline
from sinks.library.population import freshness_ms, recount

TARGET_P99_MS = 5000


def run_aggregates_bench(settings: Settings, rate: float, duration_s: float, people: int) -> dict[str, Any]:
    from kintsmesh.bench.merge import SEED, bench_city
    from kintsmesh.simulate.runner import run_simulation

    sim = bench_city(settings)
    print(f"bench aggregates: {rate:,.0f} changes/s for {duration_s:.0f} s through the whole stack ...", flush=True)
    started_ms = int(time.time() * 1000)
    stats = run_simulation(sim, seed=SEED, initial=None, rate=rate, duration_s=duration_s, dirty_rate=0.03,
                           truth_path=None)
    if any(wait_for_pipeline(settings, 900).values()):   # the life-event stage too: it keeps the cells
        raise KintsmeshError("bench aggregates: the pipeline did not catch up")
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        lags = freshness_ms(conn, started_ms)
    if not lags:
        raise KintsmeshError("bench aggregates: no golden person change was applied to the population cells")

    ensure_library(settings, people)
    with psycopg.connect(settings.dsn(LIBRARY)) as conn:
        counted = recount(conn, datetime.now(CITY_TZ).date())
    result = {"freshness_p50_ms": round(percentile(lags, 50), 1), "freshness_p99_ms": round(percentile(lags, 99), 1),
              "freshness_max_ms": round(max(lags), 1), "changes_applied": len(lags),
              "rate_per_s": round(stats.changes / stats.elapsed_s, 1) if stats else rate,
              "recount_s": counted["seconds"], "people": people, "residents_counted": counted["residents"],
              "cells": counted["cells"], "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    print(f"  department commit -> population cells updated: p50 {result['freshness_p50_ms']:,.0f} ms,"
          f" p99 {result['freshness_p99_ms']:,.0f} ms over {len(lags):,} person changes at {result['rate_per_s']:,.0f}"
          f" changes/s   (target p99 <= {TARGET_P99_MS:,} ms)")
    print(f"  recount of {people:,} people: {counted['seconds']} s ({counted['residents']:,} residents in"
          f" {counted['cells']:,} cells)")
    write_result("aggregates", result)
    return result
