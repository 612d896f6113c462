"""``kintsmesh streams resolve``: ``gldm.{person,legal_entity}.candidates`` -> identity decisions ->
``gldm.*.resolved``. (The coded entities' candidates go to the merge stage directly.)

The resolve stage (group ``kintsmesh-resolve``) decides identity: stale check, canonical id,
contributions, late matches, review queue (``sinks.library.Merger.resolve``). In the same
transaction, with its consumed offsets, it queues every golden record it touched in
``settle_queue``; a relay publishes each on ``gldm.<entity>.resolved`` **keyed by canonical id**,
so the merge stage that owns that id merges all its changes in order.

A candidate that cannot be decoded, or whose resolve fails on its own, goes to ``dlq.merge`` with
the reason; the rest of its batch still goes on.
"""

from __future__ import annotations

import time
from collections import defaultdict

from confluent_kafka import Message

from kintsmesh import topics
from kintsmesh.settings import Settings
from monitoring.metrics import ResolveMetrics
from sinks.kafka.offsets import Offsets, batch_offsets, store_offsets
from sinks.kafka.stage import described, serve_worker
from sinks.library import BatchReport, Incoming, lock_resolve
from sinks.library.outbox import publish_queued
from sinks.library.stage import MergerStage


class ResolveWorker(MergerStage[ResolveMetrics]):
    """``gldm.*.candidates`` -> identity decisions (contributions, review queue) -> ``settle_queue``."""

    name = "resolve"
    group = topics.RESOLVE_GROUP
    batch_size = 2000
    linger_s = 0.1

    def topics(self) -> list[str]:
        return topics.resolve_inputs()

    def start(self) -> None:
        self.start_publishing(topics.resolved_topics(), topics.RESOLVED_SUBJECT, "gov.gldm.Resolved", "settle-relay",
                              publish_queued)

    def process(self, messages: list[Message]) -> int:
        started = time.perf_counter()
        items: list[Incoming] = []
        sources: list[Message] = []
        offsets = batch_offsets(messages)
        for message in messages:
            try:
                items.append(Incoming.of((message.topic() or "").split(".")[1], self.decode(message)))
                sources.append(message)
            except Exception as exc:  # noqa: BLE001 - whatever the bytes, the message reaches dlq.merge
                self.reject(message, "undecodable_candidate", described(exc))
        report, queued = self.in_isolation(items, sources, self._resolve, offsets, (BatchReport(), 0), _add)
        self._observe(report, items, time.perf_counter() - started)
        self.commit_offsets(offsets)
        return queued

    def _resolve(self, items: list[Incoming], offsets: Offsets) -> tuple[BatchReport, int]:
        with self.conn.transaction():
            self.metrics.lock_wait.labels("resolve").observe(lock_resolve(self.conn))
            report, settlement = self.merger.resolve(items)
            queued = self.merger.queue(settlement)
            store_offsets(self.conn, self.group, offsets)
        return report, queued

    def _observe(self, report: BatchReport, items: list[Incoming], seconds: float) -> None:
        m = self.metrics
        m.batch_seconds.labels("resolve").observe(seconds)
        by_entity: dict[str, int] = defaultdict(int)
        for item in items:
            by_entity[item.entity] += 1
        for entity, n in by_entity.items():
            m.candidates.labels(entity, "read").inc(n)
        m.candidates.labels("all", "unchanged").inc(report.unchanged)
        m.candidates.labels("all", "review").inc(report.to_review)
        for method, n in report.links.items():
            m.links.labels("all", method).inc(n)

    def gauges(self) -> None:
        review, queued = self.conn.execute(
            "SELECT (SELECT count(*) FROM review_queue WHERE status = 'open'), (SELECT count(*) FROM settle_queue)"
        ).fetchone() or (0, 0)
        self.conn.commit()
        self.metrics.review_open.set(review)
        self.metrics.settle_queue.set(queued)


def _add(total: tuple[BatchReport, int], one: tuple[BatchReport, int]) -> tuple[BatchReport, int]:
    total[0].add(one[0])
    return total[0], total[1] + one[1]


def run_resolve_worker(settings: Settings, log_level: str = "warning") -> None:
    serve_worker("resolve", settings.resolve_metrics_port, settings, log_level, ResolveMetrics,
                 lambda metrics: ResolveWorker(settings, metrics))

