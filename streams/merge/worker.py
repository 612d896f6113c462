"""``kintsmesh streams merge``: ``gldm.*.resolved`` (keyed by canonical id) and the coded entities'
``gldm.*.candidates`` -> golden records -> ``gldm.*.changes``.

A coded candidate (a house, a certificate, a relationship, an insurance month: its canonical id is a
code in the record) needs no identity decision: the merge stage takes it from its candidates topic and
writes its contribution and its golden record in one transaction (``Merger.merge``), with no resolve
hop and no settle-queue round trip. Persons and legal entities come resolved.

The merge stage (group ``kintsmesh-merge``) owns the partitions of the canonical ids it consumes:
all changes of one subject are merged by one consumer, in order. It recomputes each record from
its contributions (survivorship), writes history and provenance, links references to people,
deletes the queue rows and writes the golden changes to the ``outbox``, all with its consumed
offsets in one transaction (``sinks.kafka.stage``); a relay publishes the changes on
``gldm.<entity>.changes`` after commit. More merge processes share the ``gldm.*.resolved`` partitions.

Crash safety (SIGKILL at any point loses and duplicates nothing): a batch is done and recorded with
its offsets, or neither; a ``gldm.*.resolved`` message whose queue row is gone was merged already
and is recomputed to no effect; a golden change published twice (a crash between publishing and
deleting it) carries the same (canonical_id, version), deduplicable by that pair.
"""

from __future__ import annotations

import time

from confluent_kafka import Message

from kintsmesh import topics
from kintsmesh.settings import Settings
from monitoring.metrics import MergeMetrics
from sinks.kafka.offsets import Offsets, batch_offsets, store_offsets
from sinks.kafka.stage import described, serve_worker
from sinks.library import BatchReport, Incoming, Settlement, lock_settle
from sinks.library.outbox import OutboxPublisher
from sinks.library.stage import MergerStage

Named = tuple[int, str, str]   # settle_queue seq, entity, canonical id
Work = Named | Incoming        # a resolved record to settle, or a coded candidate to merge whole


class MergeWorker(MergerStage[MergeMetrics]):
    """``gldm.*.resolved`` -> golden records, history, provenance -> ``outbox``."""

    name = "merge"
    group = topics.MERGE_GROUP
    batch_size = 5000
    linger_s = 0.1

    def topics(self) -> list[str]:
        return [*topics.resolved_topics(), *topics.coded_candidate_topics()]

    def start(self) -> None:
        # the age of each department's newest merged change must be known from the start, also for a
        # department whose connector stopped before this worker (re)started
        for department, newest in self.conn.execute(
                "SELECT department, extract(epoch FROM max(committed_at))::float8 FROM contribution"
                " WHERE position[1] = 0 GROUP BY department"):
            if newest is not None:
                self.metrics.newest_commit.labels(department).set(newest)
        self.conn.commit()
        self.start_publishing(topics.changes_topics(), topics.CHANGES_SUBJECT, "gov.gldm.GoldenChange", "outbox-relay",
                              OutboxPublisher(self.settings))

    def process(self, messages: list[Message]) -> int:
        """A resolved message names a record and its queue row (see ``Merger.settle_queued``); a coded
        candidate is merged whole. A batch that fails is merged again one message at a time; one that
        fails alone goes to ``dlq.merge`` with the reason (a named record also leaves the queue;
        ``kintsmesh dlq replay merge`` after a fix merges it again)."""
        started = time.perf_counter()
        work: list[Work] = []
        sources: list[Message] = []
        for message in messages:
            topic = message.topic() or ""
            try:
                value = self.decode(message)
                if topic.endswith(".candidates"):
                    work.append(Incoming.of(topic.split(".")[1], value))
                else:
                    work.append((int(value["seq"]), value["entity"], value["canonical_id"]))
                sources.append(message)
            except Exception as exc:  # noqa: BLE001 - whatever the bytes, the message reaches dlq.merge
                self.reject(message, "undecodable_candidate" if topic.endswith(".candidates")
                            else "undecodable_resolved", described(exc))
        offsets = batch_offsets(messages)
        report, settlement = self.in_isolation(work, sources, self._settle, offsets, (BatchReport(), Settlement()),
                                               _add, forget=self._dequeue)
        self._observe(report, settlement, time.perf_counter() - started)
        self.commit_offsets(offsets)
        return sum(report.outbox.values())

    def _settle(self, work: list[Work], offsets: Offsets) -> tuple[BatchReport, Settlement]:
        coded = [w for w in work if isinstance(w, Incoming)]
        named = [w for w in work if not isinstance(w, Incoming)]
        with self.conn.transaction():
            lock_settle(self.conn)   # (coded records: no other stage resolves them, so no resolve lock)
            report, settlement = self.merger.merge_settled(coded) if coded else (BatchReport(), Settlement())
            if named:
                report, settlement = _add((report, settlement), self.merger.settle_queued(named))
            store_offsets(self.conn, self.group, offsets)
        return report, settlement

    def _dequeue(self, record: Work) -> None:
        if isinstance(record, Incoming):
            return   # a coded candidate: its DLQ record is all there is
        with self.conn.transaction():
            self.conn.execute("DELETE FROM settle_queue WHERE seq = %s", (record[0],))

    def _observe(self, report: BatchReport, settlement: Settlement, seconds: float) -> None:
        m = self.metrics
        m.batch_seconds.labels("merge").observe(seconds)
        for entity, n in report.outbox.items():
            m.golden_updates.labels(entity).inc(n)
        m.conflicts.inc(report.conflicts)
        now = time.time()
        newest: dict[str, float] = {}
        for causes in settlement.causes.values():
            for prov in causes.values():
                committed = prov.get("committed_at")
                if committed and prov.get("batch_id") is None:
                    # the initial snapshot's rows are the initial load, reported apart from live sync lag
                    lag = m.snapshot_lag if prov.get("op") == "SNAPSHOT" else m.sync_lag
                    lag.labels(prov["department"], prov["table"]).observe(max(0.0, now - committed / 1000))
                    newest[prov["department"]] = max(newest.get(prov["department"], 0.0), committed / 1000)
        for department, ts in newest.items():
            m.newest_commit.labels(department).set(ts)

    def gauges(self) -> None:
        outbox = self.conn.execute("SELECT count(*) FROM outbox").fetchone()
        self.conn.commit()
        self.metrics.outbox.set(outbox[0] if outbox else 0)


def _add(total: tuple[BatchReport, Settlement], one: tuple[BatchReport, Settlement]) -> tuple[BatchReport, Settlement]:
    total[0].add(one[0])
    for key, causes in one[1].causes.items():
        total[1].causes.setdefault(key, {}).update(causes)
    return total


def run_merge_worker(settings: Settings, log_level: str = "warning") -> None:
    """One stage per process (resolve and merge as two threads of one process made each wait for the
    other's hold on the interpreter at every database round trip)."""
    serve_worker("merge", settings.merge_metrics_port, settings, log_level, MergeMetrics,
                 lambda metrics: MergeWorker(settings, metrics))
