"""Basic public services and who qualifies for them (``services.yaml``): loading, validation, and the
assessment of one resident's profile. Pure: the profile is read by ``sinks.library.residents``.

Each condition answers True, False or None (the library cannot tell: no birth date, no gender). A
service is ``eligible`` when every condition holds, ``missing_evidence`` when none fails but some cannot
be decided (what is missing is named), and is left out when one fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from kintsmesh.errors import TerminalError
from streams.events.predicates import anniversary

SERVICES_FILE = Path(__file__).with_name("services.yaml")
ELIGIBLE, MISSING_EVIDENCE = "eligible", "missing_evidence"


class ServiceError(TerminalError):
    """A services.yaml entry that cannot work (unknown condition, a value of the wrong kind)."""


@dataclass(frozen=True)
class Profile:
    """What the library says of one resident that some service's conditions read."""
    person_id: str
    ric: str | None
    gender: str | None = None
    birth_date: date | None = None
    death_date: date | None = None
    household_no: str | None = None
    marital_status: str | None = None
    district: str | None = None
    insured_months: frozenset[str] = frozenset()       # YYYYMM
    children: tuple[date | None, ...] = ()              # the birth dates of the children it is a parent of
    enterprises: tuple[date | None, ...] = ()           # establishment dates of the enterprises in business it represents
    residence_permits: tuple[date | None, ...] = ()     # valid-until dates (None: open-ended)
    rentals: tuple[date | None, ...] = ()               # rental filings' valid-until dates (None: open-ended)


@dataclass(frozen=True)
class Service:
    name: str
    title: str
    department: str
    when: dict[str, Any]
    present: tuple[str, ...] = ()


@dataclass(frozen=True)
class Verdict:
    status: str                       # eligible / missing_evidence
    reasons: tuple[str, ...] = ()
    missing: tuple[str, ...] = field(default_factory=tuple)


def age_on(born: date, day: date) -> int:
    years = day.year - born.year
    return years if anniversary(born, years) <= day else years - 1


def _month(day: date, back: int) -> str:
    index = day.year * 12 + day.month - 1 - back
    return f"{index // 12:04d}{index % 12 + 1:02d}"


def _insured(p: Profile, today: date, within: int) -> int:
    return sum(1 for back in range(within) if _month(today, back) in p.insured_months)


def _current(until: tuple[date | None, ...], today: date) -> bool:
    return any(u is None or u >= today for u in until)


def _bounds(spec: dict[str, Any], value: int) -> bool:
    return spec.get("min", value) <= value <= spec.get("max", value)


def _span(spec: dict[str, Any]) -> str:
    low, high = spec.get("min"), spec.get("max")
    return f"{low}-{high}" if low is not None and high is not None else (f">= {low}" if high is None else f"<= {high}")


# condition -> (check of its value, evaluation) ; an evaluation returns (holds or None, what it says)
Answer = tuple["bool | None", str]
CONDITIONS: dict[str, tuple[Callable[[Any], bool], Callable[[Profile, Any, date], Answer]]] = {
    "age": (lambda v: isinstance(v, dict) and bool(v) and set(v) <= {"min", "max"},
            lambda p, v, t: (None, "no birth date") if p.birth_date is None else
            (_bounds(v, age_on(p.birth_date, t)), f"aged {age_on(p.birth_date, t)} ({_span(v)})")),
    "gender": (lambda v: v in ("1", "2"),
               lambda p, v, t: (None, "no gender") if p.gender not in ("1", "2") else
               (p.gender == v, "a woman" if p.gender == "2" else "a man")),
    "household_registered": (lambda v: isinstance(v, bool),
                             lambda p, v, t: (bool(p.household_no) == v, "household registered in the city"
                                              if p.household_no else "no household registration in the city")),
    "resident": (lambda v: v is True,
                 lambda p, v, t: (bool(p.household_no) or _current(p.residence_permits, t) or _current(p.rentals, t),
                                  "resides in the city" if (p.household_no or _current(p.residence_permits, t)
                                                            or _current(p.rentals, t)) else "no residence in the city")),
    "residence_permit": (lambda v: isinstance(v, bool),
                         lambda p, v, t: (_current(p.residence_permits, t) == v, "a valid residence permit"
                                          if _current(p.residence_permits, t) else "no valid residence permit")),
    "renting": (lambda v: isinstance(v, bool),
                lambda p, v, t: (_current(p.rentals, t) == v, "a current rental filing" if _current(p.rentals, t)
                                 else "no current rental filing")),
    "insured_months": (lambda v: isinstance(v, dict) and set(v) == {"min", "within"} and 0 < v["min"] <= v["within"],
                       lambda p, v, t: (_insured(p, t, v["within"]) >= v["min"],
                                        f"insured {_insured(p, t, v['within'])} of the last {v['within']} months"
                                        f" ({v['min']} needed)")),
    "insured_recently": (lambda v: isinstance(v, bool),
                         lambda p, v, t: ((_insured(p, t, 3) > 0) == v, "insured in the last 3 months"
                                          if _insured(p, t, 3) else "not insured in the last 3 months")),
    "marital_status": (lambda v: isinstance(v, list) and bool(v) and all(isinstance(c, str) for c in v),
                       lambda p, v, t: (None, "no marital status") if not p.marital_status else
                       (p.marital_status in v, f"marital status {p.marital_status}")),
    "child_aged": (lambda v: isinstance(v, dict) and bool(v) and set(v) <= {"min", "max"},
                   lambda p, v, t: _child(p, v, t)),
    "enterprise": (lambda v: isinstance(v, dict) and set(v) <= {"established_within_days"},
                   lambda p, v, t: _enterprise(p, v, t)),
}


def _child(p: Profile, spec: dict[str, Any], today: date) -> Answer:
    ages = sorted(age_on(b, today) for b in p.children if b is not None and b <= today)
    fitting = [a for a in ages if _bounds(spec, a)]
    if fitting:
        return True, f"a child aged {fitting[0]} ({_span(spec)})"
    return False, f"no child aged {_span(spec)}"


def _enterprise(p: Profile, spec: dict[str, Any], today: date) -> Answer:
    days = spec.get("established_within_days")
    since = today - timedelta(days=days) if days else date.min
    recent = [d for d in p.enterprises if d is not None and d >= since] if days else list(p.enterprises)
    if recent:
        return True, "represents an enterprise in business" + (f" established within {days} days" if days else "")
    return False, "represents no enterprise in business" + (f" established within {days} days" if days else "")


def parse_services(raw: Any, origin: str = SERVICES_FILE.name) -> dict[str, Service]:
    if not isinstance(raw, dict) or not raw:
        raise ServiceError(f"{origin}: expected a mapping of services")
    services = {}
    for name, spec in raw.items():
        where = f"{origin}: service {name}"
        if not isinstance(spec, dict) or not isinstance(spec.get("when"), dict) or not spec["when"]:
            raise ServiceError(f"{where}: needs a title, a department and conditions under `when`")
        unknown = set(spec) - {"title", "department", "when", "present"}
        if unknown:
            raise ServiceError(f"{where}: unknown keys {sorted(unknown)}")
        for condition, value in spec["when"].items():
            if condition not in CONDITIONS:
                raise ServiceError(f"{where}: unknown condition {condition!r}; known: {sorted(CONDITIONS)}")
            if not CONDITIONS[condition][0](value):
                raise ServiceError(f"{where}: {condition}: {value!r} is not a value it takes (services.yaml's header)")
        present = spec.get("present") or []
        if not isinstance(present, list) or not all(isinstance(x, str) for x in present):
            raise ServiceError(f"{where}: present is a list of evidence to present")
        if not isinstance(spec.get("department"), str) or not isinstance(spec.get("title"), str):
            raise ServiceError(f"{where}: needs a title and the department that offers it")
        services[str(name)] = Service(str(name), spec["title"], spec["department"], dict(spec["when"]), tuple(present))
    return services


@cache
def services() -> dict[str, Service]:
    return parse_services(yaml.safe_load(SERVICES_FILE.read_text(encoding="utf-8")))


def judge(service: Service, profile: Profile, today: date) -> Verdict | None:
    """The service for this resident: eligible, missing evidence, or None (a condition fails; the dead
    qualify for nothing)."""
    if profile.death_date is not None and profile.death_date <= today:
        return None
    reasons: list[str] = []
    missing: list[str] = []
    for condition, value in service.when.items():
        holds, said = CONDITIONS[condition][1](profile, value, today)
        if holds is False:
            return None
        (reasons if holds else missing).append(said)
    return Verdict(MISSING_EVIDENCE if missing else ELIGIBLE, tuple(reasons), tuple(missing) + service.present)


def assess(profile: Profile, today: date, wanted: dict[str, Service] | None = None) -> dict[str, Verdict]:
    """Every service this resident qualifies for (or would, given the evidence named missing)."""
    found = {}
    for name, service in (wanted or services()).items():
        verdict = judge(service, profile, today)
        if verdict is not None:
            found[name] = verdict
    return found


# --------------------------------------------------------------------------- proactive: SERVICE_ELIGIBLE

ELIGIBLE_RULE = "SERVICE_ELIGIBLE"


def touched(entity: str, after: Any, before: Any, canonical_id: str) -> tuple[set[str], set[str]]:
    """Whom a golden change may make eligible for something: (person ids, RICs). A person's record (and
    its parents, whose children's ages count), insurance months, certificates held, the enterprises a
    person represents. (The life-event stage reads the changes of the entities its rules watch — persons,
    certificates, legal entities — not insurance months.) Total over any JSON: what is not text is no one."""
    ids: set[str] = set()
    rics: set[str] = set()

    def text(record: dict[str, Any], *names: str) -> set[str]:
        return {v for v in (record.get(n) for n in names) if isinstance(v, str) and v}

    for record in (after, before):
        if not isinstance(record, dict):
            continue
        if entity == "person":
            ids.add(canonical_id)
            rics |= text(record, "mother_ric", "father_ric")
        elif entity == "social_insurance":
            ids |= text(record, "person_id")
        elif entity == "certificate":
            ids |= text(record, "holder_person_id")
        elif entity == "legal_entity":
            rics |= text(record, "legal_representative_ric")
    return ids, rics


def eligible_event(profile: Profile, name: str, verdict: Verdict, today: date, evidence: list[dict[str, Any]],
                   detected_ms: int, committed_ms: int | None, trigger: str = "CHANGE") -> dict[str, Any]:
    """The SERVICE_ELIGIBLE event of a resident who became eligible for a service today (one id per
    person, service and day: a replayed change yields it again, not a new one); ``trigger``: what
    re-evaluated the resident, a golden change (CHANGE) or a birthday in the daily pass (CALENDAR)."""
    from streams.events.predicates import Occurrence
    from streams.events.rules import make_event, rules

    service = services()[name]
    occurrence = Occurrence("PERSON", profile.person_id, profile.ric, today,
                            f"{profile.person_id}/{name}/{today.isoformat()}",
                            {"service": name, "title": service.title, "department": service.department,
                             "district": profile.district, "reasons": "; ".join(verdict.reasons),
                             "missing_evidence": "; ".join(verdict.missing) or None})
    return {**make_event(rules()[ELIGIBLE_RULE], occurrence, evidence, detected_ms, committed_ms), "trigger": trigger}
