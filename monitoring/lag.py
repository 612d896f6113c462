"""How far behind each stage is: the lag queries behind ``kintsmesh status``, the demo, the benchmarks
and the tests' waits.

A Kafka-committing consumer (normalize) is behind by its committed offsets; a stage that keeps its
offsets with the resource library (resolve, merge, life events) by those, plus the rows it wrote and
has still to act on (the settle queue, the outbox, held and unpublished events) — read in one
snapshot so that work moving from a topic into a table is never on neither side.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg
from confluent_kafka import KafkaException, TopicPartition

from connect.connectors import raw_topics
from kintsmesh import kafka, topics
from kintsmesh.settings import RESOURCE_LIBRARY_DB, Settings
from kintsmesh.watch import raw_event_total
from streams.events.rules import change_entities
from streams.events.subscriptions import subscriptions

# life events detected and not yet published, held ones included (the pending gauge, the worker's lag)
EVENTS_PENDING_SQL = "(SELECT count(*) FROM life_event WHERE published_at IS NULL) + (SELECT count(*) FROM held_event)"


def group_lag(settings: Settings, group: str, names: list[str]) -> int:
    """Events on the topics ``names`` that consumer group ``group`` has not committed yet."""
    consumer = kafka.consumer(settings, group, enable_auto_commit=False)
    try:
        metadata = consumer.list_topics(timeout=10).topics
        partitions = [TopicPartition(t, p) for t in names if t in metadata for p in metadata[t].partitions]
        behind = 0
        for tp in consumer.committed(partitions, timeout=10):
            end = consumer.get_watermark_offsets(tp, timeout=10)[1]
            behind += max(0, end - max(tp.offset, 0))
        return behind
    finally:
        consumer.close()


def wait_for_group(settings: Settings, group: str, names: list[str], timeout_s: float,
                   report: Callable[[int], object] = lambda behind: None) -> int:
    """Block until ``group`` has caught up with the topics ``names`` (or the timeout); returns the remaining lag."""
    return wait_for_zero(lambda: group_lag(settings, group, names), timeout_s, report, every_s=2.0)


def raw_total(settings: Settings) -> int:
    """Change events ever captured onto the raw topics."""
    consumer = kafka.consumer(settings, "kintsmesh-lag-raw")
    try:
        return raw_event_total(consumer)
    finally:
        consumer.close()


def wait_for_pipeline(settings: Settings, timeout_s: float,
                      report: Callable[[str, int], object] = lambda stage, behind: None,
                      life_events: bool = True, quiet_s: float = 3.0) -> dict[str, int]:
    """Block until normalize has read every raw event, merge has merged every candidate and the
    life-event worker (unless ``life_events`` is false) has evaluated every golden change and published
    and delivered its events, in that order, and no change was captured meanwhile nor in the ``quiet_s``
    after the pass began (Debezium takes a moment to capture a commit: a change captured after normalize
    was found caught up would otherwise be missed by the stages checked after it);
    returns what each stage still had to do when it stopped waiting (0: caught up)."""
    deadline = time.monotonic() + timeout_s
    while True:
        captured, began = raw_total(settings), time.monotonic()
        remaining = lambda: max(1.0, deadline - time.monotonic())   # noqa: E731
        left = {"normalize": wait_for_group(settings, topics.NORMALIZE_GROUP, raw_topics(settings), remaining(),
                                            lambda n: report("normalize", n))}
        left["merge"] = wait_for_zero(lambda: merge_lag(settings), remaining(), lambda n: report("merge", n))
        if life_events:
            left["events"] = wait_for_zero(lambda: events_lag(settings), remaining(), lambda n: report("events", n))
        if any(left.values()) or time.monotonic() >= deadline:
            return left
        time.sleep(max(0.0, quiet_s - (time.monotonic() - began)))
        if raw_total(settings) == captured:
            return left


def wait_for_capture(settings: Settings, timeout_s: float, report: Callable[[int], object] = lambda behind: None) -> int:
    """Block until every Debezium replication slot has confirmed the WAL written before this call: every
    change committed by then is on the raw topics (a Connect that was down, or is catching up after a
    restart, holds its backlog in the WAL, where no consumer lag shows it). Returns the bytes still
    unconfirmed (0: captured). A slot confirms past other databases' WAL on its heartbeat (10 s)."""
    with psycopg.connect(settings.dsn("postgres", cluster="departments")) as conn:
        now = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
    target = now[0] if now else None

    def behind() -> int:
        with psycopg.connect(settings.dsn("postgres", cluster="departments")) as conn:
            row = conn.execute("SELECT coalesce(sum(greatest(pg_wal_lsn_diff(%s, confirmed_flush_lsn), 0)), 0)::bigint"
                               " FROM pg_replication_slots WHERE slot_type = 'logical'", (target,)).fetchone()
        return int(row[0]) if row else 0

    return wait_for_zero(behind, timeout_s, report, every_s=2.0)


def wait_for_zero(measure: Callable[[], int], timeout_s: float, report: Callable[[int], object],
                  every_s: float = 1.0) -> int:
    """Poll ``measure`` until it is 0 or the timeout; returns the last value. The passing errors of a broker
    or a database restarting (a coordinator moving, a refused connection) are waited out until the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            left = measure()
        except (KafkaException, psycopg.OperationalError):
            if time.monotonic() >= deadline:
                raise
            time.sleep(every_s)
            continue
        if left == 0 or time.monotonic() >= deadline:
            return left
        report(left)
        time.sleep(every_s)


def library_lag(settings: Settings, group: str, names: list[str], pending_sql: str = "0",
                params: tuple[Any, ...] = ()) -> int:
    """Work on the topics ``names`` a library-writing worker has not finished: end offsets minus the offsets stored
    with the library, plus what ``pending_sql`` counts (rows the worker wrote and has still to act on).

    The ends are read first, then the stored offsets and the pending rows in one statement (one snapshot):
    a worker moves work from a topic into its pending rows in the transaction that stores the offsets,
    so the work is counted on one side or the other. Two separate reads, pending rows first, could see
    neither side and report 0 while it was in between (a held life event went missing that way)."""
    consumer = kafka.consumer(settings, f"{group}-lag")
    try:
        metadata = consumer.list_topics(timeout=10).topics
        ends = {(t, p): consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)[1]
                for t in names if t in metadata for p in metadata[t].partitions}
    finally:
        consumer.close()
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        row = conn.execute(
            "SELECT (SELECT coalesce(array_agg(ARRAY[topic, partition::text, next_offset::text]), '{}')"
            f" FROM consumer_offset WHERE group_id = %s), ({pending_sql})", (group, *params)).fetchone()
    assert row is not None
    stored = {(t, int(p)): int(o) for t, p, o in row[0]}
    return sum(max(0, end - stored.get(tp, 0)) for tp, end in ends.items()) + int(row[1])


def merge_lag(settings: Settings) -> int:
    """Candidates on the topics not yet resolved (persons, legal entities) or merged (the coded entities,
    which the merge stage takes directly), records resolved and not yet merged (``settle_queue``: a row
    lives until the merge stage merged it) and golden changes merged but not yet published on
    ``gldm.<entity>.changes`` (the outbox): 0 means every change the candidates made is on its topic."""
    return (library_lag(settings, topics.RESOLVE_GROUP, topics.resolve_inputs(),
                        "SELECT (SELECT count(*) FROM settle_queue) + (SELECT count(*) FROM outbox)")
            + library_lag(settings, topics.MERGE_GROUP, topics.coded_candidate_topics()))


def wait_for_merge(settings: Settings, timeout_s: float, report: Any = lambda behind: None) -> int:
    """Block until everything on the candidate topics is merged and published; returns what is left."""
    return wait_for_zero(lambda: merge_lag(settings), timeout_s, report)


def events_lag(settings: Settings) -> int:
    """Golden changes the life-event worker has not evaluated yet, events held or not yet published, and
    events not yet looked at for some subscriber."""
    return library_lag(
        settings, topics.EVENTS_GROUP, [topics.changes_topic(e) for e in change_entities()],
        f"SELECT {EVENTS_PENDING_SQL} + (SELECT coalesce(sum(m.newest - s.last_seq), 0) FROM subscription s,"
        " (SELECT coalesce(max(seq), 0) AS newest FROM life_event) m WHERE s.subscriber = ANY(%s))",
        (list(subscriptions()),))
