"""Every stage's Prometheus metrics, one object per stage built on an injected registry.

The stages only count; names, help texts, labels and buckets are here, next to the alert rules and
the dashboard that read them."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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


def _stage_metrics(stage: str, registry: CollectorRegistry) -> tuple[Counter, Histogram, Histogram]:
    return (Counter(f"kintsmesh_{stage}_rejected_total", f"Messages the {stage} stage sent to dlq.merge",
                    ["reason"],
                    registry=registry),
            Histogram("kintsmesh_merge_batch_seconds", "One resolve or merge transaction", ["stage"],
                      registry=registry, buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)),
            Histogram("kintsmesh_merge_lock_wait_seconds", "How long a resolve or merge transaction waited for the"
                      " library's lock (resolve: one writer at a time; merge: the settle lock shared and its"
                      " partitions' fences; with its round trip)", ["stage"], registry=registry,
                      buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)))


def consumer_rebuilds(registry: CollectorRegistry) -> Counter:
    """Every library stage's: its consumer built again after holding no partition while messages waited."""
    return Counter("kintsmesh_consumer_rebuilds", "Consumers built again after holding no partition while their"
                   " topics had messages waiting", registry=registry)


class ResolveMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.rejected, self.batch_seconds, self.lock_wait = _stage_metrics("resolve", registry)
        self.consumer_rebuilds = consumer_rebuilds(registry)
        self.candidates = Counter("kintsmesh_merge_candidates_total", "Candidates read by the resolve stage",
                                  ["entity", "outcome"], registry=registry)
        self.links = Counter("kintsmesh_merge_links_total", "Identity links made, by method",
                             ["entity", "method"], registry=registry)
        self.review_open = Gauge("kintsmesh_review_queue_open", "Identity decisions waiting for review",
                                 registry=registry)
        self.settle_queue = Gauge("kintsmesh_merge_settle_queue_pending",
                                  "Golden records resolved and not yet merged (settle_queue)", registry=registry)


class MergeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.rejected, self.batch_seconds, self.lock_wait = _stage_metrics("merge", registry)
        self.consumer_rebuilds = consumer_rebuilds(registry)
        self.golden_updates = Counter("kintsmesh_merge_golden_updates_total", "Golden record versions written",
                                      ["entity"], registry=registry)
        self.conflicts = Counter("kintsmesh_merge_conflicts_total", "Source values that lost survivorship",
                                 registry=registry)
        self.sync_lag = Histogram("kintsmesh_sync_lag_golden_seconds",
                                  "Department commit to golden record committed in the resource library",
                                  ["department", "table"], registry=registry, buckets=LAG_BUCKETS)
        self.snapshot_lag = Histogram("kintsmesh_snapshot_lag_golden_seconds",
                                      "Debezium's initial snapshot read to golden record committed: the initial"
                                      " load, apart from live sync lag", ["department", "table"], registry=registry,
                                      buckets=LAG_BUCKETS)
        self.newest_commit = Gauge("kintsmesh_merge_newest_source_commit_timestamp_seconds",
                                   "Commit time of the newest source change merged, per department",
                                   ["department"], registry=registry)
        self.outbox = Gauge("kintsmesh_merge_outbox_pending", "Golden changes not yet published", registry=registry)
        self.held = Gauge("kintsmesh_merge_held_references",
                          "Records held because the person they name is not in the library (yet)", registry=registry)
        self.held_released = Counter("kintsmesh_merge_held_released_total",
                                     "Held records merged once their person arrived", registry=registry)
        self.retried = Counter("kintsmesh_merge_retried_total",
                               "Merge transactions done again because one committing beside them changed what"
                               " they read (a deadlock, a record both made, a person matched away)", ["reason"],
                               registry=registry)


class EventMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.consumer_rebuilds = consumer_rebuilds(registry)
        self.detected = Counter("kintsmesh_life_events_detected_total", "Life events detected for the first time",
                                ["type", "trigger"], registry=registry)
        self.published = Counter("kintsmesh_life_events_published_total", "Life events published",
                                 ["type"], registry=registry)
        self.rule_seconds = Histogram("kintsmesh_life_event_rule_seconds",
                                      "Evaluating every rule on one golden change or one person",
                                      ["trigger"], registry=registry,
                                      buckets=(1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05))
        self.sync_lag = Histogram("kintsmesh_sync_lag_event_seconds",
                                  "Department commit to the life event it caused being published",
                                  ["department", "table"], registry=registry, buckets=LAG_BUCKETS)
        self.pending = Gauge("kintsmesh_life_events_pending", "Life events detected, not yet published",
                             registry=registry)
        self.daily_pass_day = Gauge("kintsmesh_life_event_daily_pass_day_timestamp_seconds",
                                    "The newest day the daily (calendar) pass completed, as midnight Asia/Shanghai",
                                    registry=registry)
        self.delivered = Counter("kintsmesh_subscription_delivered_total",
                                 "Life events delivered to a subscriber's topic (sub.<subscriber>.life)",
                                 ["subscriber"], registry=registry)
        self.daily_pass_seconds = Gauge("kintsmesh_life_event_daily_pass_seconds",
                                        "Duration of the latest daily pass", registry=registry)

    def observe_published(self, events: list[dict[str, Any]]) -> None:
        """Life events just published: counted by type; the lag from the commit that caused each."""
        now = time.time()
        for event in events:
            self.published.labels(event["event_type"]).inc()
            committed = event.get("source_committed_at")
            # commit -> event is the lag of what a change caused; a calendar event's source (the birth
            # date's row) was committed long before the day came
            if committed and event["evidence"] and event["trigger"] == "CHANGE":
                source = event["evidence"][0]
                self.sync_lag.labels(source["department"], source["table"]).observe(max(0.0, now - committed / 1000))
