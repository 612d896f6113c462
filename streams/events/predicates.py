"""The conditions life-event rules name in ``rules.yaml``: small pure functions, no I/O.

A change predicate sees one golden change (before / after) and returns the
occurrences it reveals; a calendar predicate sees one person on one day. An
occurrence's ``key`` (a stable subject and the occurrence itself) is what makes
the event id deterministic: the same fact always yields the same key.
"""

from __future__ import annotations

import calendar
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from typing import Any

from kintsmesh.settings import CITY_TZ


@dataclass(frozen=True)
class Change:
    """One golden-record change (gldm.<entity>.changes) as a predicate sees it."""
    entity: str
    canonical_id: str
    version: int
    op: str                              # CREATE / UPDATE / DELETE
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    cause: dict[str, Any] | None = None  # Provenance of the source change (the latest of ``causes``)
    committed_ms: int | None = None
    causes: tuple[dict[str, Any], ...] = ()   # every source change the version comes from, in order

    def __post_init__(self) -> None:
        if not self.causes and self.cause:   # a change written before ``causes`` existed: its one cause
            object.__setattr__(self, "causes", (self.cause,))

    @property
    def committed_on(self) -> date | None:
        if self.committed_ms is None:
            return None
        return datetime.fromtimestamp(self.committed_ms / 1000, CITY_TZ).date()


@dataclass(frozen=True)
class Occurrence:
    subject_kind: str            # PERSON / LEGAL_ENTITY
    subject_id: str              # the golden record's canonical id
    subject_code: str | None     # its RIC or USCC when known
    occurred_on: date
    key: str                     # stable subject + occurrence: the event id is derived from it
    attributes: dict[str, str | None] = field(default_factory=dict)
    provisional: bool = False    # its subject may still become known: held back for the rule's hold_s
    cause: dict[str, Any] | None = None   # the source change it comes from, when not the version's cause


ChangePredicate = Callable[[Change, dict[str, Any]], list[Occurrence]]
CalendarPredicate = Callable[[dict[str, Any], date, dict[str, Any]], "Occurrence | None"]


def as_date(value: Any) -> date | None:
    """A date, or the city's (Asia/Shanghai) date of a timestamp: ISO text or a datetime."""
    if isinstance(value, str) and len(value) > 10:
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if isinstance(value, datetime):
        return value.astimezone(CITY_TZ).date() if value.tzinfo else value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


def text(value: Any) -> str | None:
    return None if value is None else str(value)


def district(record: dict[str, Any] | None) -> str | None:
    address = (record or {}).get("address")
    return address.get("district") if isinstance(address, dict) else None


def _person(record: dict[str, Any], canonical_id: str, on: date, what: str, **attributes: Any) -> Occurrence:
    ric = record.get("ric")
    return Occurrence("PERSON", canonical_id, ric, on, f"{ric or canonical_id}/{what}",
                      {"name": text(record.get("name")), "district": district(record),
                       **{k: text(v) for k, v in attributes.items()}})


def _entity(record: dict[str, Any], canonical_id: str, on: date, what: str, **attributes: Any) -> Occurrence:
    uscc = record.get("uscc")
    return Occurrence("LEGAL_ENTITY", canonical_id, uscc, on, f"{uscc or canonical_id}/{what}",
                      {"name": text(record.get("name")), "district": district(record),
                       "registration_no": text(record.get("registration_no")),   # legacy enterprises have no USCC
                       **{k: text(v) for k, v in attributes.items()}})


# --------------------------------------------------------------------------- change predicates


def _newly(change: Change, name: str, wanted: Callable[[Any], bool]) -> Any:
    """The after-value of ``name`` when it satisfies ``wanted`` now and did not before; else None."""
    after, before = change.after or {}, change.before or {}
    value = after.get(name)
    if change.after is None or not wanted(value) or wanted(before.get(name)):
        return None
    return value


def birth_certificate_issued(change: Change, params: dict[str, Any]) -> list[Occurrence]:
    """A birth medical certificate seen for the first time, or once it names its newborn: the newborn,
    keyed by the certificate.

    The newborn's person record comes from the certificate's own source row. When it merges in a later
    batch than the certificate, the certificate's next version links it (``holder_person_id``); until
    then the occurrence names the certificate (``certificate:<id>``) and is provisional, so the worker
    holds it back (the rule's ``hold_s``) for the version naming the newborn, which has the same key.
    """
    kind = params.get("certificate_type", "BIRTH_MEDICAL_CERTIFICATE")
    after, before = change.after or {}, change.before or {}
    if change.after is None or after.get("certificate_type") != kind:
        return []
    child = after.get("holder_person_id")
    if before.get("certificate_type") == kind and (not child or before.get("holder_person_id")):
        return []   # seen before, and not newly naming its newborn
    details = after.get("details") or {}
    born = as_date(details.get("born_at")) or as_date(after.get("issued_date"))
    if born is None:
        return []
    return [Occurrence("PERSON", child or f"certificate:{change.canonical_id}", after.get("holder_ric"), born,
                       f"{after.get('certificate_no') or change.canonical_id}",
                       {"name": text(after.get("holder_name")), "district": None, "birth_date": born.isoformat(),
                        "certificate_no": text(after.get("certificate_no")),
                        "mother_ric": text(details.get("mother_ric")), "father_ric": text(details.get("father_ric"))},
                       provisional=not child)]


def registration_certificate_issued(change: Change, params: dict[str, Any]) -> list[Occurrence]:
    """A marriage / divorce certificate seen for the first time: one occurrence for each spouse."""
    if _newly(change, "certificate_type", lambda v: v == params["certificate_type"]) is None:
        return []
    after = change.after or {}
    on = as_date(after.get("issued_date"))
    if on is None:
        return []
    details = after.get("details") or {}
    spouses = [(after.get("holder_ric"), after.get("holder_name"), after.get("holder_person_id"),
                details.get("spouse_ric"), details.get("spouse_name")),
               (details.get("spouse_ric"), details.get("spouse_name"), None,
                after.get("holder_ric"), after.get("holder_name"))]
    found = []
    for role, (ric, name, person_id, other_ric, other_name) in zip(("holder", "spouse"), spouses):
        subject = person_id or ric or f"{role}@{change.canonical_id}"
        found.append(Occurrence("PERSON", subject, ric, on, f"{ric or subject}/{change.canonical_id}",
                                {"name": text(name), "district": None, "registered_on": on.isoformat(),
                                 "spouse_ric": text(other_ric), "spouse_name": text(other_name),
                                 "certificate_no": text(after.get("certificate_no")), "issuer": text(after.get("issuer"))}))
    return found


def field_became_set(change: Change, params: dict[str, Any]) -> list[Occurrence]:
    """A date field (death, establishment) set for the first time, or to another date."""
    name = params["field"]
    after, before = change.after or {}, change.before or {}
    on = as_date(after.get(name))
    if change.after is None or on is None or as_date(before.get(name)) == on:
        return []
    make = _entity if change.entity == "legal_entity" else _person
    return [make(after, change.canonical_id, on, f"{name}/{on.isoformat()}", **{name: on.isoformat()})]


def status_became(change: Change, params: dict[str, Any]) -> list[Occurrence]:
    """A status entering one of ``statuses`` (deregistered, revoked), dated by ``date_field`` or the commit."""
    statuses = set(params["statuses"])
    status = _newly(change, "status", lambda v: v in statuses)
    after = change.after or {}
    on = as_date(after.get(params.get("date_field", ""))) or change.committed_on
    if status is None or on is None:
        return []
    return [_entity(after, change.canonical_id, on, f"{status}/{on.isoformat()}", status=status)]


def _place(address: Any) -> tuple[Any, ...] | None:
    if not isinstance(address, dict):
        return None
    return tuple(address.get(k) for k in ("district", "street", "community", "detail"))


def residence_changed(change: Change, params: dict[str, Any]) -> list[Occurrence]:
    """A known person's address changed by an update of an authoritative source (a move, not a
    first address, not another department's version of the same one)."""
    if change.op != "UPDATE" or change.before is None or change.after is None:
        return []
    departments = set(params.get("departments", ()))
    # any of the changes the version comes from (a move merged with a marriage registration: both)
    moves = [c for c in change.causes if c.get("department") in departments and c.get("op") in ("UPDATE", "BATCH")]
    if not moves:
        return []
    old, new = _place(change.before.get("address")), _place(change.after.get("address"))
    on = change.committed_on
    if old is None or new is None or old == new or on is None:
        return []
    where = hashlib.sha1(repr(new).encode()).hexdigest()[:12]
    moved = _person(change.after, change.canonical_id, on, f"{on.isoformat()}/{where}",
                    previous_district=change.before["address"].get("district"),
                    household_no=change.after.get("household_no"))
    return [replace(moved, cause=moves[-1])]


# --------------------------------------------------------------------------- calendar predicates


def anniversary(born: date, years: int) -> date:
    """The day ``years`` are completed; someone born on 29 February completes them on 1 March
    in a common year."""
    try:
        return born.replace(year=born.year + years)
    except ValueError:
        return date(born.year + years, 3, 1)


def born_for(day: date, years: int) -> list[date]:
    """The birth dates whose ``years``-th anniversary is ``day`` (what the daily pass looks up)."""
    year = day.year - years
    dates = []
    try:
        dates.append(day.replace(year=year))
    except ValueError:   # 29 February of a leap year whose year - ``years`` is common: nobody
        pass
    if (day.month, day.day) == (3, 1) and not calendar.isleap(day.year) and calendar.isleap(year):
        dates.append(date(year, 2, 29))
    return dates


def alive_on(person: dict[str, Any], day: date) -> bool:
    died = as_date(person.get("death_date"))
    return died is None or died > day


def age_reached(person: dict[str, Any], day: date, params: dict[str, Any]) -> Occurrence | None:
    """The person completes ``age`` years on ``day`` and is alive that day. With ``by``
    (MM-DD, e.g. the school cut-off 08-31) the occurrence is the year by whose cut-off the
    age is reached: the birthday's year when it falls on or before the cut-off, else the next."""
    born = as_date(person.get("birth_date"))
    years = int(params["age"])
    if born is None or anniversary(born, years) != day or not alive_on(person, day):
        return None
    attributes: dict[str, Any] = {"birth_date": born.isoformat(), "age": years, "level": params.get("level"),
                                  "gender": person.get("gender"), "household_no": person.get("household_no")}
    what = f"{params.get('level') or years}"
    if params.get("by"):
        month, dom = (int(x) for x in str(params["by"]).split("-"))
        year = day.year if (day.month, day.day) <= (month, dom) else day.year + 1
        attributes["enrolment_year"] = year
        what += f"/{year}"
    return _person(person, person["person_id"], day, what, **attributes)


CHANGE_PREDICATES: dict[str, ChangePredicate] = {
    "birth_certificate_issued": birth_certificate_issued,
    "registration_certificate_issued": registration_certificate_issued,
    "field_became_set": field_became_set,
    "status_became": status_became,
    "residence_changed": residence_changed,
}
CALENDAR_PREDICATES: dict[str, CalendarPredicate] = {"age_reached": age_reached}
# what the daily pass looks up for a calendar predicate: birth dates from (day, variant params)
CALENDAR_LOOKUPS: dict[str, Callable[[date, dict[str, Any]], list[date]]] = {
    "age_reached": lambda day, params: born_for(day, int(params["age"])),
}
