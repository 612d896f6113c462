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
``gldm.<entity>.changes`` after commit. More merge processes share the partitions and commit side by side:
a transaction holds the library's settle lock shared and fences its own partitions (``lock_merge``); what
two of them may both touch is locked where it is touched (golden rows, RICs and merged-away persons links
look for: ``sinks.library.settle.Settler``), and one that meets another's change is done again
(``RETRIES``). Held records, which any partition's person may release, are released under the settle
lock alone.

Crash safety (SIGKILL at any point loses and duplicates nothing): a batch is done and recorded with
its offsets, or neither; a ``gldm.*.resolved`` message whose queue row is gone was merged already
and is recomputed to no effect; a golden change published twice (a crash between publishing and
deleting it) carries the same (canonical_id, version), deduplicable by that pair.
"""

from __future__ import annotations

import random
import time

import psycopg
from confluent_kafka import Message

from kintsmesh import topics
from kintsmesh.errors import TransientError
from kintsmesh.settings import Settings
from monitoring.metrics import MergeMetrics
from sinks.dlq import DeadLetters
from sinks.kafka.offsets import Offsets, batch_offsets, store_offsets
from sinks.kafka.stage import described, library_lost, reason_of, serve_worker
from sinks.library import BatchReport, Contended, Incoming, Settlement, lock_merge, lock_settle
from sinks.library.held import UNRESOLVED, Held, Origin, send_expired
from sinks.library.outbox import OutboxPublisher
from sinks.library.stage import MergerStage

# what a transaction committing beside another's may meet, and is done again for (RETRIES times at most,
# then the batch goes one by one, as for any failure)
CONTENDED = (Contended, psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure,
             psycopg.errors.UniqueViolation)
RETRIES = 4

Named = tuple[int, str, str]   # settle_queue seq, entity, canonical id
Work = Named | Incoming        # a resolved record to settle, or a coded candidate to merge whole


class MergeWorker(MergerStage[MergeMetrics]):
    """``gldm.*.resolved`` -> golden records, history, provenance -> ``outbox``."""

    name = "merge"
    side_by_side = True
    group = topics.MERGE_GROUP
    batch_size = 5000
    linger_s = 0.1

    def __init__(self, settings: Settings, metrics: MergeMetrics) -> None:
        super().__init__(settings, metrics)
        self._came_from: dict[int, Message] = {}   # a work item of the batch -> its message
        self._next_release = 0.0
        self._dead: DeadLetters | None = None   # dlq.merge, for held records (``_release_held``)

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
        self._came_from.clear()
        for message in messages:
            topic = message.topic() or ""
            try:
                value = self.decode(message)
                if topic.endswith(".candidates"):
                    work.append(Incoming.of(topic.split(".")[1], value))
                else:
                    work.append((int(value["seq"]), value["entity"], value["canonical_id"]))
                self._came_from[id(work[-1])] = message
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
        """One transaction beside the other merge processes' (``lock_merge``); done again, up to
        ``RETRIES`` times, when one committing beside it changed what it read."""
        coded = [w for w in work if isinstance(w, Incoming)]
        named = [w for w in work if not isinstance(w, Incoming)]
        # the batch's partitions: its offsets', or, one item at a time, the item's message's
        messages = (self._came_from[id(w)] for w in work)
        partitions = {*offsets, *((m.topic() or "", m.partition() or 0) for m in messages)}
        for attempt in range(RETRIES + 1):
            try:
                with self.conn.transaction():
                    # (coded records: no other stage resolves them, so no resolve lock)
                    self.metrics.lock_wait.labels("merge").observe(lock_merge(self.conn, partitions))
                    report, settlement = (self.merger.merge_coded(coded, self._origin) if coded
                                          else (BatchReport(), Settlement()))
                    if named:
                        report, settlement = _add((report, settlement), self.merger.settle_queued(named))
                    store_offsets(self.conn, self.group, offsets)
                return report, settlement
            except CONTENDED as exc:
                if attempt == RETRIES:
                    raise
                self.metrics.retried.labels(type(exc).__name__).inc()
                self.log.info("merge: a batch of %d is done again (%s)", len(work), reason_of(exc))
                time.sleep(random.uniform(0.01, 0.05) * 2 ** attempt)
        raise AssertionError("unreachable")

    def _origin(self, item: Incoming) -> Origin | None:
        """Where a coded candidate of the batch came from (for its DLQ record should it be held too long)."""
        message = self._came_from.get(id(item))
        if message is None:
            return None
        return Origin(message.topic() or "", message.partition() or 0, message.offset() or 0, message.key(),
                      message.value())

    def tick(self, wrote: int) -> None:
        """After every poll: merge the held records whose person arrived, send those held past
        ``reference_hold_s`` to ``dlq.merge`` (a look every quarter second, the library's lock only when one is
        due)."""
        now = time.monotonic()
        if now >= self._next_release:
            self._next_release = now + 0.25
            try:
                wrote += self._release_held()
            except TransientError as exc:   # the DLQ did not answer: the holds stay, asked again next time
                self.log.warning("merge: %s", exc)
        super().tick(wrote)

    def _release_held(self) -> int:
        holds = self.merger.holds
        # a look without the library's lock (a record may stay held for an hour: four locked transactions a
        # second for nothing, each seen as a merge batch); it ends its own transaction, so the release below
        # is one of its own and not a savepoint in it (which kept the lock taken below, seconds on)
        due = holds.due(self.settings.reference_hold_s)
        self.conn.commit()
        if not due:
            return 0
        started = time.perf_counter()
        with self.conn.transaction():
            self.metrics.lock_wait.labels("merge").observe(lock_settle(self.conn))
            ready = holds.ready()
            report, settlement = BatchReport(), Settlement()
            try:
                if ready:
                    with self.conn.transaction():
                        report, settlement = self.merger.merge_settled([h.item for h in ready])
            except Exception as exc:  # noqa: BLE001 - one that cannot be merged must not stay held forever
                if library_lost(self.conn):
                    raise
                self.log.warning("merge: %d held records whose person arrived failed to merge together (%s); each"
                                 " goes alone", len(ready), reason_of(exc))
                report, settlement = self._one_by_one(ready)
            # (also waits for the broker to have the merge_failed records above: nothing leaves the table unsent)
            self.metrics.rejected.labels(UNRESOLVED).inc(
                len(send_expired(holds, self._dead_letters(), self.settings.reference_hold_s)))
        self.metrics.held_released.inc(len(ready) - report.held)
        self._observe(report, settlement, time.perf_counter() - started)
        return sum(report.outbox.values())

    def _one_by_one(self, ready: list[Held]) -> tuple[BatchReport, Settlement]:
        total = (BatchReport(), Settlement())
        for held in ready:
            try:
                with self.conn.transaction():
                    total = _add(total, self.merger.merge_settled([held.item]))
            except Exception as exc:  # noqa: BLE001
                if library_lost(self.conn):
                    raise
                self.log.error("%s: merge_failed: %s", held.source, described(exc))
                self.metrics.rejected.labels("merge_failed").inc()
                self._dead_letters().send(held.dlq_record("merge_failed", described(exc)))
        return total

    def _dead_letters(self) -> DeadLetters:
        if self._dead is None:   # a broker restarting: TransientError; the release is rolled back and asked again
            self._dead = DeadLetters(self.settings, self.dlq)
        return self._dead

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
        self.metrics.held.set(self.merger.holds.count())
        self.conn.commit()
        self.metrics.outbox.set(outbox[0] if outbox else 0)


def _add(total: tuple[BatchReport, Settlement], one: tuple[BatchReport, Settlement]) -> tuple[BatchReport, Settlement]:
    total[0].add(one[0])
    total[1].add_causes(one[1])
    return total


def run_merge_worker(settings: Settings, log_level: str = "warning") -> None:
    """One stage per process (resolve and merge as two threads of one process made each wait for the
    other's hold on the interpreter at every database round trip)."""
    serve_worker("merge", settings.merge_metrics_port, settings, log_level, MergeMetrics,
                 lambda metrics: MergeWorker(settings, metrics))
