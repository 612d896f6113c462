"""The normalize stage's Prometheus metrics, all in one object built on an injected registry."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram


# shared by every sync-lag histogram (raw, golden, life event): 5 ms .. 15 min, dense around the 1 s target
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0)


class NormalizeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._children: dict[tuple[str, tuple[str, ...]], Any] = {}
        self.events_in = Counter("kintsmesh_normalize_events_in_total", "Raw change events read", ["department"],
                                 registry=registry)
        self.candidates_out = Counter("kintsmesh_normalize_candidates_out_total", "GLDM candidates produced",
                                      ["department", "entity"], registry=registry)
        self.retractions = Counter("kintsmesh_normalize_retractions_total", "Deletes turned into retractions",
                                   ["department"], registry=registry)
        self.rejected = Counter("kintsmesh_normalize_rejected_total", "Raw events sent to the DLQ",
                                ["department", "reason"], registry=registry)
        self.skipped = Counter("kintsmesh_normalize_skipped_total", "Raw records that are not changes (tombstones)",
                               ["department", "kind"], registry=registry)
        self.unknown_columns = Counter("kintsmesh_normalize_unknown_columns_total",
                                       "Columns present in a source row but not in its mapping (schema drift)",
                                       ["department", "table", "column"], registry=registry)
        self.seconds = Histogram("kintsmesh_normalize_processing_seconds", "Time to normalize one raw event",
                                 ["department"], registry=registry,
                                 buckets=(0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05, 0.1))
        # sync lag (a): commit in the department database -> change on its raw topic (log-append time)
        self.sync_lag_raw = Histogram("kintsmesh_sync_lag_raw_seconds",
                                      "Department commit to change event on raw.<dept>.* (Kafka log-append time)",
                                      ["department", "table"], registry=registry, buckets=LAG_BUCKETS)

    def child(self, metric: Counter | Histogram, *labels: str) -> Any:
        """``metric.labels(*labels)``, memoized: labels() validates and locks on every call, which
        for four metrics per event cost the worker more than a few standardizers."""
        key = (metric._name, labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found
