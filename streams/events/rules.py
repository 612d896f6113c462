"""Life-event rules (``rules.yaml``): loading, validation, and turning occurrences into events. Pure.

A LifeEvent (``schemas/avro/gov.gldm.LifeEvent.avsc``) has a deterministic id: a
UUID v5 of (type, the occurrence's key), where the key names a stable subject (a
RIC, a USCC, a certificate) and the occurrence (a date, an enrolment year), so a
replayed change or a re-run daily pass yields the ids it yielded before.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import yaml

from kintsmesh.errors import TerminalError
from kintsmesh.topics import events_topic
from streams.events.predicates import CALENDAR_LOOKUPS, CALENDAR_PREDICATES, CHANGE_PREDICATES, Change, Occurrence
from streams.merge.survivorship import position as source_position

RULES_FILE = Path(__file__).resolve().parent / "rules.yaml"
EVENT_NAMESPACE = uuid.UUID("8f6b2c1e-5d3a-4e7b-9c0d-1a2b3c4d5e6f")   # Kintsmesh life events (UUID v5)
TRIGGERS = ("change", "calendar", "eligibility")
ELIGIBILITY_PREDICATES = ("services",)   # streams/events/services.py, over a resident's profile


class RuleError(TerminalError):
    """A rules.yaml entry that cannot work (unknown predicate or trigger, missing parameter)."""


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    trigger: str
    entity: str
    predicate: str
    params: dict[str, Any] = field(default_factory=dict)
    variants: tuple[dict[str, Any], ...] = ()
    recent_days: int | None = None
    hold_s: float = 0.0     # how long a provisional occurrence waits for a change that completes it
    hold_max_s: float = 0.0  # and, while its subject's own record is still on its way to the library, up to this

    @property
    def topic(self) -> str:
        return events_topic(self.name)




def parse_rules(raw: dict[str, Any]) -> dict[str, Rule]:
    rules: dict[str, Rule] = {}
    for name, spec in (raw or {}).items():
        if not isinstance(spec, dict):
            raise RuleError(f"rule {name}: expected a mapping, got {type(spec).__name__}")
        trigger, predicate = spec.get("trigger"), spec.get("predicate")
        if trigger not in TRIGGERS:
            raise RuleError(f"rule {name}: trigger must be one of {TRIGGERS}, not {trigger!r}")
        known = set(CHANGE_PREDICATES if trigger == "change" else CALENDAR_PREDICATES if trigger == "calendar"
                    else ELIGIBILITY_PREDICATES)
        if predicate not in known:
            raise RuleError(f"rule {name}: unknown {trigger} predicate {predicate!r}; known: {sorted(known)}")
        if not spec.get("entity"):
            raise RuleError(f"rule {name}: give the entity it is about")
        variants = tuple(spec.get("variants") or ([spec.get("params") or {}] if trigger == "calendar" else []))
        if trigger == "calendar" and any("age" not in v for v in variants):
            raise RuleError(f"rule {name}: every calendar variant needs an age")
        hold_s: Any = spec.get("hold_s", 0)
        hold_max_s: Any = spec.get("hold_max_s", hold_s)
        for key, value in (("hold_s", hold_s), ("hold_max_s", hold_max_s)):
            if not isinstance(value, (int, float)) or value < 0:
                raise RuleError(f"rule {name}: {key} must be a number of seconds, not {value!r}")
        if hold_max_s < hold_s:
            raise RuleError(f"rule {name}: hold_max_s ({hold_max_s}) is shorter than hold_s ({hold_s})")
        rules[name] = Rule(name, str(spec.get("description", "")).strip(), trigger, spec["entity"], str(predicate),
                           dict(spec.get("params") or {}), variants, spec.get("recent_days"), float(hold_s),
                           float(hold_max_s))
    return rules


@cache
def rules(path: Path = RULES_FILE) -> dict[str, Rule]:
    return parse_rules(yaml.safe_load(path.read_text(encoding="utf-8")))


def event_id(event_type: str, key: str) -> str:
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{event_type}/{key}"))


def evidence_of(provenance: dict[str, Any] | None, field_name: str | None = None) -> list[dict[str, Any]]:
    """A Provenance (or a field_provenance source) as the event's evidence."""
    if not provenance:
        return []
    position = provenance.get("position") or source_position(provenance)
    return [{"department": provenance["department"], "table": provenance["table"],
             "primary_key": str(provenance["primary_key"]), "role": provenance.get("role"),
             "position": [int(p) for p in position], "committed_at": _ms(provenance.get("committed_at")),
             "field": field_name}]


HOLD = "hold_s"   # in an event dict from evaluate_change: hold it back this long (not part of the LifeEvent)
HOLD_MAX = "hold_max_s"   # and up to this long while its subject's record is on its way (not part of it either)


def make_event(rule: Rule, occurrence: Occurrence, evidence: list[dict[str, Any]], detected_ms: int,
               committed_ms: int | None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": event_id(rule.name, occurrence.key), "event_type": rule.name,
        "trigger": rule.trigger.upper(), "subject_kind": occurrence.subject_kind,
        "subject_id": occurrence.subject_id, "subject_code": occurrence.subject_code,
        "occurred_on": occurrence.occurred_on, "occurrence": occurrence.key,
        "attributes": {k: v for k, v in occurrence.attributes.items() if v is not None},
        "evidence": evidence, "source_committed_at": committed_ms, "detected_at": detected_ms, "dossier": None,
    }
    if occurrence.provisional and rule.hold_s > 0:
        event[HOLD], event[HOLD_MAX] = rule.hold_s, rule.hold_max_s
    return event


def change_entities(all_rules: dict[str, Rule] | None = None) -> list[str]:
    """The golden entities whose changes some rule watches."""
    return sorted({r.entity for r in (all_rules or rules()).values() if r.trigger == "change"})


def evaluate_change(change: Change, detected_ms: int, all_rules: dict[str, Rule] | None = None) -> list[dict[str, Any]]:
    """The life events one golden change reveals. An occurrence dated more than the rule's
    ``recent_days`` before the change's commit is history (an initial load), not an event."""
    events = []
    committed = change.committed_on
    for rule in (all_rules or rules()).values():
        if rule.trigger != "change" or rule.entity != change.entity:
            continue
        for occurrence in CHANGE_PREDICATES[rule.predicate](change, rule.params):
            if (rule.recent_days is not None and committed is not None
                    and occurrence.occurred_on < committed - timedelta(days=rule.recent_days)):
                continue
            events.append(make_event(rule, occurrence, evidence_of(occurrence.cause or change.cause), detected_ms,
                                     change.committed_ms))
    return events


def calendar_birth_dates(day: date, all_rules: dict[str, Rule] | None = None) -> list[date]:
    """Every birth date a calendar rule needs looked up for ``day`` (the daily pass's index lookups)."""
    wanted: set[date] = set()
    for rule in (all_rules or rules()).values():
        if rule.trigger == "calendar":
            for variant in rule.variants:
                wanted.update(CALENDAR_LOOKUPS[rule.predicate](day, variant))
    return sorted(wanted)


def evaluate_person(person: dict[str, Any], day: date, evidence: list[dict[str, Any]], detected_ms: int,
                    all_rules: dict[str, Rule] | None = None) -> list[dict[str, Any]]:
    """The calendar events one golden person has on ``day``."""
    events = []
    for rule in (all_rules or rules()).values():
        if rule.trigger != "calendar" or rule.entity != "person":
            continue
        for variant in rule.variants:
            occurrence = CALENDAR_PREDICATES[rule.predicate](person, day, variant)
            if occurrence is not None:
                events.append(make_event(rule, occurrence, evidence, detected_ms, None))
    return events


def change_from_message(value: dict[str, Any]) -> Change:
    """A decoded GoldenChange (before / after are JSON text) as a predicate's input."""
    return Change(entity=value["entity"], canonical_id=value["canonical_id"], version=int(value["version"]),
                  op=str(value["op"]),
                  before=orjson.loads(value["before"]) if value.get("before") else None,
                  after=orjson.loads(value["after"]) if value.get("after") else None,
                  cause=value.get("cause"), committed_ms=_ms(value.get("source_committed_at")),
                  causes=tuple(value.get("causes") or ()))


def _ms(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value
    return int(value.timestamp() * 1000)

