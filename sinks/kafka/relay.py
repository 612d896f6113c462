"""Publishing what a stage wrote to a table, after its commit: the outbox pattern.

``Relay`` is a thread that publishes rows a stage wrote in its transactions (resolved records on
``gldm.<entity>.resolved``, golden changes on ``gldm.<entity>.changes``, and those T+1 loads and
review decisions wrote) on its own connection and producer, so that no stage waits for Kafka's
acknowledgements. ``Acks`` and ``acknowledged`` are the delivery check every publisher shares
(the relays, life events, subscriptions): rows are marked published only once the broker has them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
from confluent_kafka import Message, Producer

from kintsmesh import kafka
from kintsmesh.registry.catalog import SchemaVersion
from kintsmesh.settings import RESOURCE_LIBRARY_DB, Settings
from sinks.kafka.offsets import Offsets
from sinks.kafka.stage import LibraryStage, M, library_lost, reason_of

log = logging.getLogger("kintsmesh.relay")

Publish = Callable[[psycopg.Connection[Any], Producer, SchemaVersion, int], int]


class Acks:
    """A producer's delivery reports for one flush: failures, and the end offset reached per partition."""

    def __init__(self) -> None:
        self.failed: list[str] = []
        self.ends: Offsets = {}

    def __call__(self, error: Any, message: Message) -> None:
        if error is not None:
            self.failed.append(str(error))
            return
        key = (message.topic() or "", message.partition() or 0)
        self.ends[key] = max(self.ends.get(key, 0), (message.offset() or 0) + 1)


def acknowledged(producer: Producer, acks: Acks | None = None, timeout_s: float = 30) -> bool:
    """Whether everything produced so far reached the broker (and none of ``acks`` failed)."""
    return producer.flush(timeout_s) == 0 and not (acks is not None and acks.failed)


class Relay(threading.Thread):
    """Runs ``publish`` on its own connection and producer until it publishes less than a page; woken
    after a batch that wrote rows, else once a second."""

    def __init__(self, name: str, settings: Settings, schema: SchemaVersion, publish: Publish,
                 limit: int = 5000) -> None:
        super().__init__(name=name, daemon=True)
        self.schema, self.publish_rows, self.limit = schema, publish, limit
        self.dsn = settings.dsn(RESOURCE_LIBRARY_DB)
        self.conn = psycopg.connect(self.dsn)
        self.producer = kafka.reliable_producer(settings)
        self.wake = threading.Event()
        self.running = True

    def run(self) -> None:
        while self.running:
            self.wake.clear()   # before reading: a wake-up during the publish is not lost
            try:
                while self.running and self.publish() == self.limit:
                    pass   # a full page: more is waiting
            except psycopg.OperationalError as exc:   # the library restarting: one line, not a traceback
                log.warning("%s: the resource library is unavailable (%s); retrying in 1 s", self.name, reason_of(exc))
                self._recover()
            except Exception:   # noqa: BLE001 - the relay must outlive a bad moment; its gauge shows it stuck
                log.exception("%s: publishing failed; retrying in 1 s", self.name)
                self._recover()
            self.wake.wait(1.0)
        self.producer.flush(10)
        self.conn.close()

    def _recover(self) -> None:
        """After a failed publish: a second's pause, then a fresh connection if the old one broke."""
        time.sleep(1)
        try:
            if library_lost(self.conn):
                self.conn = psycopg.connect(self.dsn)
            else:
                self.conn.rollback()
        except psycopg.OperationalError as exc:
            log.warning("%s: the resource library is unavailable (%s)", self.name, reason_of(exc))

    def stop(self) -> None:
        self.running = False
        self.wake.set()
        self.join(30)

    def publish(self) -> int:
        return self.publish_rows(self.conn, self.producer, self.schema, self.limit)


class RelayingStage(LibraryStage[M]):
    """A stage whose transactions write rows that its relay publishes after commit (resolve: the settle
    queue; merge: the outbox). The relay is woken after a batch that wrote rows; rows other writers
    (T+1 loads, review decisions) left are published within a second."""

    relay: Relay | None = None

    def start_relay(self, name: str, schema: SchemaVersion, publish: Publish) -> None:
        self.relay = Relay(name, self.settings, schema, publish)
        self.relay.start()

    def tick(self, wrote: int) -> None:
        if wrote and self.relay is not None:
            self.relay.wake.set()

    def finish(self) -> None:
        if self.relay is not None:
            self.relay.stop()


def published(producer: Producer, what: str, n: int) -> bool:
    """``acknowledged``, logging what stays to be published again when not."""
    if not acknowledged(producer):
        log.warning("%s: %d of %d not acknowledged yet; they stay to be published again", what, len(producer), n)
        return False
    return True
