"""The subscription sink: life events → ``sub.<subscriber>.life``, only the fields each subscriber may see.

It reads ``life_event`` (the record of every event, in detection order) from a
cursor per subscriber, keeps the events the subscriber wants (types, filters,
back-fill), projects them to its allowance (``streams.events.subscriptions``: the
subscriber's own event ids and subject pseudonyms, keyed by its secret) and produces
them to its topic, keyed by the pseudonym, with the event's ``seq`` sealed in a header
(Fernet, the sink's own key: the subscriber learns neither the seq nor the event volume). The
cursor and the topic's end offsets move in one transaction after the broker
acknowledged; on start, ``recover`` reads the topic after the stored ends and
moves the cursor past what a crash delivered but did not record, so no event
reaches a subscriber twice and none is skipped.

A new subscriber starts at the newest event; with ``backfill_from`` it first
receives every earlier event that occurred on or after that day.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from datetime import date
from typing import Any

import psycopg
from confluent_kafka import Producer
from cryptography.fernet import Fernet, InvalidToken

from kintsmesh.errors import TransientError
from kintsmesh.kafka import ensure_topics
from kintsmesh.registry.catalog import SchemaVersion
from kintsmesh.registry.client import SchemaRegistry
from kintsmesh.registry.codec import encode
from kintsmesh.settings import Settings
from kintsmesh.topics import DLQ_SUBJECT, dlq_topic, subscription_mark, value_subject
from sinks.dlq import rejected_row
from sinks.kafka.offsets import headers_after, store_offsets, stored_offsets
from sinks.kafka.relay import Acks, acknowledged
from streams.events.subscriptions import Subscription, subscriber_schema, subscriptions
from streams.normalize import gldm

log = logging.getLogger("kintsmesh.subscriptions")
SEQ_HEADER = "seq"


def group(subscription: Subscription) -> str:
    return subscription_mark(subscription.name)


def subscriber_key(settings: Settings, name: str) -> bytes:
    """The secret a subscriber's pseudonyms and event ids are keyed with (never given to it)."""
    return settings.secret(f"subscriber-{name}").encode()


def header_sealer(settings: Settings) -> Fernet:
    key = base64.urlsafe_b64encode(hashlib.sha256(settings.secret("subscription-headers").encode()).digest())
    return Fernet(key)


def unseal(sealer: Fernet, header: str) -> int | None:
    """A delivery's seq from its header: sealed, or written in clear before headers were sealed; None if neither."""
    if header.isdigit():
        return int(header)
    try:
        return int(sealer.decrypt(header))
    except (InvalidToken, ValueError):
        return None


class DeliveryError(TransientError):
    """The broker did not acknowledge a delivery; the cursor stays and it is retried."""


class SubscriptionSink:
    def __init__(self, settings: Settings, conn: psycopg.Connection[Any], producer: Producer, registry: SchemaRegistry,
                 subscribed: dict[str, Subscription] | None = None) -> None:
        self.settings = settings
        self.conn = conn
        self.producer = producer
        self.registry = registry
        self.subscriptions = subscribed if subscribed is not None else subscriptions()
        self.schemas: dict[str, SchemaVersion] = {}
        self.rejected_schema: SchemaVersion | None = None
        self.keys = {name: subscriber_key(settings, name) for name in self.subscriptions}
        self.sealer = header_sealer(settings)

    def prepare(self) -> None:
        """Topics, schemas, a cursor for each new subscriber; then recover what a crash left unrecorded."""
        ensure_topics(self.settings, [s.topic for s in self.subscriptions.values()], self.settings.kafka_partitions)
        full = gldm.schema("gov.gldm.LifeEvent")
        self.rejected_schema = self.registry.register(DLQ_SUBJECT, gldm.schema(gldm.REJECTED_RECORD))
        for name, subscription in self.subscriptions.items():
            self.schemas[name] = self.registry.register(value_subject(subscription.topic), subscriber_schema(subscription, full))
            with self.conn.transaction():
                self.conn.execute(
                    "INSERT INTO subscription (subscriber, start_seq, backfill_from, last_seq)"
                    " SELECT %(name)s, s, %(from)s, CASE WHEN %(from)s::date IS NULL THEN s ELSE 0 END"
                    " FROM (SELECT coalesce(max(seq), 0) AS s FROM life_event) m ON CONFLICT (subscriber) DO NOTHING",
                    {"name": name, "from": subscription.backfill_from})
            self.recover(subscription)

    def _undeliverable(self, subscription: Subscription, seq: int, event: Any, exc: Exception, acks: Acks) -> None:
        """An event this subscriber cannot be sent (its projection or encoding failed) goes to dlq.events
        with the reason; the cursor moves past it only once the broker has that record."""
        log.error("%s: life event seq %s cannot be delivered: %s: %s", subscription.name, seq, type(exc).__name__, exc)
        assert self.rejected_schema is not None, "prepare() first"
        record = rejected_row("subscriptions", "life_event", seq, subscription.topic, event, "undeliverable_event",
                              f"{subscription.name}: {type(exc).__name__}: {exc}")
        self.producer.produce(dlq_topic("events"), key=record["original_key"],
                              value=encode(self.rejected_schema, record), on_delivery=acks)

    def recover(self, subscription: Subscription) -> int:
        stored = stored_offsets(self.conn, group(subscription))
        self.conn.commit()
        sealed, ends = headers_after(self.settings, [subscription.topic], stored, SEQ_HEADER)
        seqs = [seq for seq in (unseal(self.sealer, s) for s in sealed) if seq is not None]
        if len(seqs) < len(sealed):   # never a crash loop over a header: at worst an event is delivered again
            log.error("%s: %d seq headers after the last mark cannot be read; their events may be delivered again",
                      subscription.name, len(sealed) - len(seqs))
        newest = max(seqs, default=0)
        with self.conn.transaction():
            moved = self.conn.execute(
                "UPDATE subscription SET last_seq = %s, delivered = delivered + %s, updated_at = now()"
                " WHERE subscriber = %s AND last_seq < %s", (newest, len(seqs), subscription.name, newest)).rowcount
            store_offsets(self.conn, group(subscription), ends)
        if moved:
            log.warning("%s: %d events delivered before a crash found on its topic; not sent again",
                        subscription.name, len(seqs))
        return len(seqs) if moved else 0

    def deliver(self, limit: int = 5000) -> dict[str, int]:
        """Deliver every subscriber's pending events; returns how many each received."""
        return {name: self._deliver(subscription, limit) for name, subscription in self.subscriptions.items()}

    def _deliver(self, subscription: Subscription, limit: int) -> int:
        schema = self.schemas[subscription.name]
        delivered = 0
        while True:
            acks = Acks()
            with self.conn.transaction():
                cursor = self.conn.execute("SELECT start_seq, backfill_from, last_seq FROM subscription"
                                           " WHERE subscriber = %s FOR UPDATE", (subscription.name,)).fetchone()
                if cursor is None:
                    raise DeliveryError(f"{subscription.name}: no cursor; run prepare() first")
                start_seq, backfill_from, last_seq = cursor
                rows = self.conn.execute("SELECT seq, event FROM life_event WHERE seq > %s ORDER BY seq LIMIT %s",
                                         (last_seq, limit)).fetchall()
                if not rows:
                    return delivered
                sent = 0
                for seq, event in rows:
                    try:
                        if not (subscription.wants(event) and (seq > start_seq or _since(event, backfill_from))):
                            continue
                        record = subscription.project({**event, "occurred_on": date.fromisoformat(event["occurred_on"])},
                                                      self.keys[subscription.name])
                        key, value = record["subject_ref"].encode(), encode(schema, record)
                    except Exception as exc:  # noqa: BLE001 - one event the subscriber cannot get must not stop the others
                        self._undeliverable(subscription, seq, event, exc, acks)
                        continue
                    self.producer.produce(subscription.topic, key=key, value=value, on_delivery=acks,
                                          headers=[(SEQ_HEADER, self.sealer.encrypt(str(seq).encode()))])
                    sent += 1
                if not acknowledged(self.producer, acks):
                    raise DeliveryError(f"{subscription.name}: {sent} events not acknowledged"
                                        f" ({acks.failed[:1]}); they are delivered again")
                self.conn.execute("UPDATE subscription SET last_seq = %s, delivered = delivered + %s,"
                                  " updated_at = now() WHERE subscriber = %s", (rows[-1][0], sent, subscription.name))
                store_offsets(self.conn, group(subscription), acks.ends)
            delivered += sent
            if len(rows) < limit:
                return delivered


def _since(event: dict[str, Any], backfill_from: date | None) -> bool:
    return backfill_from is not None and date.fromisoformat(event["occurred_on"]) >= backfill_from


def progress(conn: psycopg.Connection[Any]) -> tuple[dict[str, tuple[int, int]], int]:
    """Each subscriber's cursor (last seq looked at, events delivered) and the newest event's seq."""
    cursors = {name: (last, delivered) for name, last, delivered in conn.execute(
        "SELECT subscriber, last_seq, delivered FROM subscription")}
    newest = conn.execute("SELECT coalesce(max(seq), 0) FROM life_event").fetchone()
    return cursors, int(newest[0]) if newest else 0
