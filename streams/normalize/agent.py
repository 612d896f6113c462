"""The normalize stage's Faust app: the agent over ``raw.*``, producing ``gldm.<entity>.candidates`` and ``dlq.<dept>``.

Thin shell: decode, call ``normalize_event`` (pure), encode with the registered
Avro schemas (single-object encoding), send, count. Run it with
``kintsmesh streams worker`` (``kintsmesh stack up`` starts one).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import faust

from connect.connectors import available_departments, raw_topics
from kintsmesh import kafka, topics
from kintsmesh.registry.catalog import SchemaVersion
from kintsmesh.registry.client import SchemaRegistry
from kintsmesh.settings import Settings
from monitoring.lag import group_lag
from monitoring.metrics import NormalizeMetrics
from streams.normalize import gldm
from streams.normalize.route import route

BATCH = 500            # events per take_events() batch
log = logging.getLogger("kintsmesh.normalize")
BATCH_WITHIN_S = 0.05  # ... or whatever arrived within this long (20 ms made batches of ~6 at 300/s: more CPU, more lag)


def prepare(settings: Settings) -> dict[str, SchemaVersion]:
    """Create the output topics and register every GLDM schema under its topic's subject.

    Returns entity -> schema version, plus 'rejected' for the DLQ record. The raw topics exist
    already (``stack up`` creates every pipeline topic: an agent subscribed to a topic that does
    not exist yet ignores it for good)."""
    kafka.ensure_topics(settings, topics.candidate_topics(), settings.kafka_partitions)
    kafka.ensure_topics(settings, [topics.dlq_topic(d) for d in available_departments()], 1)
    store = SchemaRegistry(settings)
    try:
        versions = {
            entity: store.register(topics.value_subject(topics.candidates_topic(entity)), gldm.schema(name))
            for entity, name in gldm.RECORD_NAMES.items()
        }
        versions["rejected"] = store.register(topics.DLQ_SUBJECT, gldm.schema(gldm.REJECTED_RECORD))
        return versions
    finally:
        store.close()


class Worker(faust.Worker):
    """Faust's worker without its terminal spinner. To spin on every log line, the spinner sets the
    root logger to DEBUG, so that aiokafka built a log record for every message sent (6% of the
    normalize worker's time, measured with py-spy); the root logger keeps the level asked for."""

    def on_setup_root_logger(self, logger: Any, level: int) -> None:
        self.spinner = None


def faust_app(settings: Settings, app_id: str, datadir: str) -> faust.App:
    return faust.App(
        app_id,
        broker=kafka.faust_broker(settings),
        broker_credentials=kafka.faust_credentials(settings),
        store="memory://",
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        topic_partitions=settings.kafka_partitions,
        topic_replication_factor=settings.replication_factor,
        producer_acks=-1,   # every in-sync replica
        producer_linger_ms=5,
        stream_buffer_maxsize=8192,
        broker_commit_every=2000,
        consumer_auto_offset_reset="earliest",
        datadir=datadir or str(settings.stack_dir / app_id),
        Worker=Worker,
    )


def create_app(settings: Settings, versions: dict[str, SchemaVersion], metrics: NormalizeMetrics,
               datadir: str = "", inputs: list[str] | None = None, prefix: str = "",
               app_id: str = topics.NORMALIZE_GROUP) -> faust.App:
    """The normalize app. ``inputs``/``prefix``/``app_id`` let the benchmark run it on its own topics."""
    app = faust_app(settings, app_id, datadir)
    raw = app.topic(*(inputs or raw_topics(settings)), key_type=bytes, value_type=bytes)
    outputs = {entity: prefix + topics.candidates_topic(entity) for entity in gldm.RECORD_NAMES}
    dlq = {d: prefix + topics.dlq_topic(d) for d in available_departments()}

    async def normalize_batch(events: list[Any]) -> None:
        # each output is handed to the producer without waiting, and the whole batch's deliveries are
        # awaited before the next batch, so offsets are only acknowledged (and committed) for events whose
        # outputs the broker has
        deliveries = []
        for event in events:
            message = event.message
            started = time.perf_counter()
            routed = route(message.topic, message.partition, message.offset, event.key, event.value,
                           int(time.time() * 1000), versions, outputs, dlq)
            for topic, key, value in routed.sends:
                deliveries.append(await app.producer.send(topic, key, value, None, None, None))
            result = routed.result
            metrics.child(metrics.events_in, result.department).inc()
            if result.committed_ms and message.timestamp and not result.snapshot:
                metrics.child(metrics.sync_lag_raw, result.department, result.table or "?").observe(
                    max(0.0, message.timestamp - result.committed_ms / 1000))
            if result.skipped:
                metrics.skipped.labels(result.department, result.skipped).inc()
            elif result.rejection is not None:
                metrics.rejected.labels(result.department, result.rejection.reason).inc()
            else:
                for candidate in result.candidates:
                    metrics.child(metrics.candidates_out, result.department, candidate.entity).inc()
                if result.retraction:
                    metrics.retractions.labels(result.department).inc()
                for column in result.unknown_columns:
                    metrics.unknown_columns.labels(result.department, result.table or "?", column).inc()
            metrics.child(metrics.seconds, result.department).observe(time.perf_counter() - started)
        await asyncio.gather(*deliveries)

    @app.agent(raw)
    async def normalize(stream: faust.StreamT) -> None:
        await in_batches(stream, normalize_batch)

    watch = kafka.AssignmentWatch(settings.assignment_timeout_s)
    names = inputs or raw_topics(settings)

    @app.timer(interval=5.0)
    async def watch_assignment() -> None:
        """A worker whose consumer holds no partition while raw events wait, and no other member takes them,
        exits (it holds no batch then); the supervisor starts one that joins the group afresh."""
        if app.consumer.assignment():
            watch.stuck(True, lambda: 0, time.monotonic())
            return
        try:
            waiting = await asyncio.get_running_loop().run_in_executor(None, group_lag, settings, app_id, names)
        except Exception as exc:  # noqa: BLE001 - the broker not answering: ask again next time
            log.debug("normalize: cannot measure the waiting events: %s", exc)
            return
        stuck = watch.stuck(False, lambda: waiting, time.monotonic())
        if stuck is not None:
            log.error("normalize: no partition assigned for %.0f s while %d raw events wait; exiting for a new"
                      " worker to join the group", stuck, waiting)
            logging.shutdown()
            os._exit(75)

    return app


def unacknowledged_exit(events: list[Any]) -> None:
    """A batch whose outputs the broker did not all take (a broker restart, a bug of ours, a stop in the
    middle of it) must not be acknowledged. Faust's ``take_events`` acknowledges a batch whenever the loop
    leaves it, an exception or a cancellation included (its ``finally``), and the next commit would then
    skip it: the events were lost on a broker restart that way, and a SIGTERM in the middle of a batch could
    lose what was not sent yet. So the worker stops here, before anything is acknowledged; the supervisor
    starts it again (unless the stack is being stopped) and it reads the batch again from the last commit
    (downstream, a candidate seen twice changes nothing)."""
    log.exception("normalize: %d events of a batch were not all delivered; exiting without acknowledging"
                  " them, to read them again", len(events))
    logging.shutdown()
    os._exit(75)


async def in_batches(stream: Any, handle: Callable[[list[Any]], Awaitable[None]],
                     unacknowledged: Callable[[list[Any]], None] = unacknowledged_exit) -> None:
    """``handle`` each batch of ``stream``; a batch it does not finish — an exception, or a stop (a SIGTERM
    cancels the agent) in the middle of it — is ``unacknowledged``."""
    async for events in stream.take_events(BATCH, within=BATCH_WITHIN_S):
        try:
            await handle(events)
        except BaseException:   # noqa: BLE001 - CancelledError too: see unacknowledged_exit
            unacknowledged(events)
            raise


def create_passthrough_app(settings: Settings, metrics: NormalizeMetrics, inputs: list[str], output: str,
                           app_id: str, datadir: str = "") -> faust.App:
    """The benchmark's yardstick: the same framework and settings, forwarding raw bytes untouched."""
    app = faust_app(settings, app_id, datadir)
    source = app.topic(*inputs, key_type=bytes, value_type=bytes)

    @app.agent(source)
    async def passthrough(stream: faust.StreamT) -> None:
        async for events in stream.take_events(BATCH, within=BATCH_WITHIN_S):  # type: ignore[attr-defined]
            await asyncio.gather(*[await app.producer.send(output, e.key, e.value, None, None, None) for e in events])
            metrics.events_in.labels("passthrough").inc(len(events))

    return app
