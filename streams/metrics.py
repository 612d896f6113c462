"""The normalize stage's Prometheus metrics, all in one object built on an injected registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class NormalizeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
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
