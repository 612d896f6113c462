"""Subscriptions (``subscriptions.yaml``): who receives which life events, and which of their fields. Pure.

Data minimisation is structural: a subscriber's topic ``sub.<name>.life`` has its
own Avro schema holding only the fields it may see (``subscriber_schema``), and
``project`` builds each record from the allowance, never by removing fields from
the full event: a field that is not allowed cannot be there.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from kintsmesh.errors import TerminalError
from kintsmesh.topics import subscriber_topic
from streams.events.rules import rules

SUBSCRIPTIONS_FILE = Path(__file__).resolve().parent / "subscriptions.yaml"
ALWAYS = ("event_id", "event_type", "occurred_on")   # what every subscriber needs to use and deduplicate an event
# every subscriber's record also names its subject by a pseudonym of its own: the same person always has the same
# ref for one subscriber, two subscribers' refs cannot be linked, and neither reveals the RIC or canonical id
SUBJECT_REF = {"name": "subject_ref", "type": "string", "default": "",
               "doc": "the subject, pseudonymised for this subscriber (HMAC-SHA256 under its own key)"}


def pseudonym(key: bytes, subject: str) -> str:
    return hmac.new(key, b"subject:" + subject.encode(), hashlib.sha256).hexdigest()[:32]


def subscriber_event_id(key: bytes, event_id: str) -> str:
    """The event's id for one subscriber: stable (it deduplicates), and not reversible to the library's id,
    which is derived from the subject's RIC."""
    return str(uuid.UUID(bytes=hmac.new(key, b"event:" + event_id.encode(), hashlib.sha256).digest()[:16]))


class SubscriptionError(TerminalError):
    """A subscriptions.yaml entry that cannot work (unknown event type or field)."""


@dataclass(frozen=True)
class Subscription:
    name: str
    description: str
    events: tuple[str, ...]
    fields: tuple[str, ...]                      # allowed top-level fields, in schema order
    attributes: tuple[str, ...]                  # allowed attribute keys
    filters: dict[str, tuple[str, ...]] = field(default_factory=dict)
    backfill_from: date | None = None

    @property
    def topic(self) -> str:
        return subscriber_topic(self.name)

    def wants(self, event: dict[str, Any]) -> bool:
        if event["event_type"] not in self.events:
            return False
        attributes = event.get("attributes") or {}
        return all(attributes.get(key) in allowed for key, allowed in self.filters.items())

    def project(self, event: dict[str, Any], key: bytes) -> dict[str, Any]:
        """The subscriber's record: built from the allowance, field by field, its ids this subscriber's own
        (``key``: its secret)."""
        record = {name: event.get(name) for name in self.fields if name != "attributes"}
        record["event_id"] = subscriber_event_id(key, str(event["event_id"]))
        record["subject_ref"] = pseudonym(key, str(event["subject_id"]))
        if "attributes" in self.fields:
            given = event.get("attributes") or {}
            record["attributes"] = {key: given[key] for key in self.attributes if given.get(key) is not None}
        return record


def life_event_fields(life_event_schema: dict[str, Any]) -> list[str]:
    return [f["name"] for f in life_event_schema["fields"]]


def parse_subscriptions(raw: dict[str, Any], life_event_schema: dict[str, Any]) -> dict[str, Subscription]:
    known_fields = life_event_fields(life_event_schema)
    found: dict[str, Subscription] = {}
    for name, spec in (raw or {}).items():
        if not isinstance(spec, dict) or not str(name).replace("_", "").isalnum():
            raise SubscriptionError(f"subscriber {name!r}: expected a name of letters, digits and _ with a mapping")
        unknown_events = set(spec.get("events") or ()) - set(rules())
        if not spec.get("events") or unknown_events:
            raise SubscriptionError(f"subscriber {name}: unknown or no event types {sorted(unknown_events)};"
                                    f" known: {sorted(rules())}")
        top, attributes = set(ALWAYS), []
        for item in spec.get("fields") or ():
            if str(item).startswith("attributes."):
                top.add("attributes")
                attributes.append(str(item).split(".", 1)[1])
            elif item in known_fields:
                top.add(item)
            else:
                raise SubscriptionError(f"subscriber {name}: unknown field {item!r}; LifeEvent fields: {known_fields}"
                                        " (attributes.<key> for one attribute)")
        backfill = spec.get("backfill_from")
        found[name] = Subscription(
            name=name, description=str(spec.get("description", "")), events=tuple(spec["events"]),
            fields=tuple(f for f in known_fields if f in top), attributes=tuple(attributes),
            filters={k: tuple(str(v) for v in (vs if isinstance(vs, list) else [vs]))
                     for k, vs in (spec.get("filters") or {}).items()},
            backfill_from=backfill if isinstance(backfill, date) else (date.fromisoformat(backfill) if backfill else None))
    return found


@cache
def subscriptions(path: Path = SUBSCRIPTIONS_FILE) -> dict[str, Subscription]:
    from streams.normalize import gldm

    return parse_subscriptions(yaml.safe_load(path.read_text(encoding="utf-8")), gldm.schema("gov.gldm.LifeEvent"))


def subscriber_schema(subscription: Subscription, life_event_schema: dict[str, Any]) -> dict[str, Any]:
    """The LifeEvent schema cut down to what the subscriber may see, in its own namespace, with its subject ref."""
    fields = [f for f in life_event_schema["fields"] if f["name"] in subscription.fields]
    fields.insert(1, SUBJECT_REF)
    return {"type": "record", "name": "LifeEvent", "namespace": f"gov.gldm.sub.{subscription.name}",
            "doc": f"Life events for {subscription.name}: only the fields it may see.", "fields": fields}
