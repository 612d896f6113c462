"""Evidence sharing for business items: what the resource library already holds of the evidence an
application needs, and what the applicant still has to present.

The items and their evidence are data (``items.yaml``): each evidence is presented in person, or
satisfied by one department's data — a field of the applicant's golden person, or a certificate linked
to the applicant as its holder, a spouse or a parent. The library's value counts only when that
department supplied it (``field_provenance`` says who did). Two index reads gather everything an
item can use (the person with its provenance; the certificates naming the applicant); ``assess`` is
pure. Every answer is written to the access audit in the same transaction, as a dossier is
(``sinks.library.dossier.record_access``): an answer that cannot be audited is not returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import psycopg
import yaml

from kintsmesh.errors import TerminalError
from kintsmesh.settings import CITY_TZ
from sinks.library.dossier import record_access

ITEMS_FILE = Path(__file__).with_name("items.yaml")
Role = Literal["holder", "spouse", "parent"]
ROLES: tuple[Role, ...] = ("holder", "spouse", "parent")

PERSON_SQL = """
SELECT to_jsonb(p) - 'name_key', f.fields FROM person p
LEFT JOIN field_provenance f ON f.entity = 'person' AND f.canonical_id = p.person_id
WHERE p.ric = %(ric)s
"""
# each branch an index read (certificate_holder_ric and the details indexes of migration 009)
CERTIFICATES_SQL = """
SELECT to_jsonb(c), f.fields FROM certificate c
LEFT JOIN field_provenance f ON f.entity = 'certificate' AND f.canonical_id = c.certificate_id
WHERE c.certificate_type = ANY(%(types)s::text[])
  AND (c.holder_ric = %(ric)s OR c.holder_person_id = %(person)s OR c.details->>'spouse_ric' = %(ric)s
       OR c.details->>'mother_ric' = %(ric)s OR c.details->>'father_ric' = %(ric)s)
"""


class ItemError(TerminalError):
    """An items file that cannot be read as items, or a request for an item it does not declare."""


@dataclass(frozen=True)
class Source:
    """One way the library satisfies an evidence: a department's person field or certificate."""
    department: str
    person_field: str | None = None
    certificate: str | None = None
    role: Role = "holder"
    within_days: int | None = None
    unless_later: str | None = None


@dataclass(frozen=True)
class Evidence:
    name: str
    title: str
    sources: tuple[Source, ...] = ()   # none: presented in person


@dataclass(frozen=True)
class Item:
    name: str
    title: str
    applicant: str
    presentations_before: int
    evidence: tuple[Evidence, ...]

    @property
    def certificate_types(self) -> list[str]:
        return sorted({t for e in self.evidence for s in e.sources for t in (s.certificate, s.unless_later) if t})


def _source(spec: Any, where: str) -> Source:
    if not isinstance(spec, dict):
        raise ItemError(f"{where}: a source is a mapping, not {spec!r}")
    unknown = set(spec) - {"department", "person_field", "certificate", "as", "within_days", "unless_later"}
    if unknown:
        raise ItemError(f"{where}: unknown keys {sorted(unknown)}")
    department = spec.get("department")
    if not isinstance(department, str) or not department:
        raise ItemError(f"{where}: name the department whose data satisfies it")
    field, certificate = spec.get("person_field"), spec.get("certificate")
    if (field is None) == (certificate is None):
        raise ItemError(f"{where}: give exactly one of person_field and certificate")
    role = spec.get("as", "holder")
    if role not in ROLES:
        raise ItemError(f"{where}: as must be one of {list(ROLES)}, not {role!r}")
    within = spec.get("within_days")
    if within is not None and (not isinstance(within, int) or isinstance(within, bool) or within <= 0):
        raise ItemError(f"{where}: within_days must be a positive whole number, not {within!r}")
    later = spec.get("unless_later")
    if certificate is None and (within is not None or later is not None or "as" in spec):
        raise ItemError(f"{where}: as, within_days and unless_later apply to certificates only")
    return Source(department, field, certificate, role, within, later)


def _evidence(spec: Any, where: str) -> Evidence:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not isinstance(spec.get("title"), str):
        raise ItemError(f"{where}: an evidence needs a name and a title")
    where = f"{where} {spec['name']}"
    rest = {k: v for k, v in spec.items() if k not in ("name", "title")}
    if rest.get("present") == "in_person":
        if len(rest) > 1:
            raise ItemError(f"{where}: evidence presented in person has no source")
        return Evidence(spec["name"], spec["title"])
    if "present" in rest:
        raise ItemError(f"{where}: present must be in_person, not {rest['present']!r}")
    if "any_of" in rest:
        if len(rest) > 1 or not isinstance(rest["any_of"], list) or not rest["any_of"]:
            raise ItemError(f"{where}: any_of is a non-empty list of sources, alone")
        return Evidence(spec["name"], spec["title"], tuple(_source(s, where) for s in rest["any_of"]))
    return Evidence(spec["name"], spec["title"], (_source(rest, where),))


def parse_items(raw: Any, origin: str = ITEMS_FILE.name) -> dict[str, Item]:
    if not isinstance(raw, dict) or not raw:
        raise ItemError(f"{origin}: expected a mapping of items")
    parsed = {}
    for name, spec in raw.items():
        where = f"{origin}: item {name}"
        if not isinstance(spec, dict) or not isinstance(spec.get("evidence"), list) or not spec["evidence"]:
            raise ItemError(f"{where}: needs a title, an applicant and a list of evidence")
        before = spec.get("presentations_before", 0)
        if not isinstance(before, int) or isinstance(before, bool) or before < 0:
            raise ItemError(f"{where}: presentations_before must be a whole number")
        evidence = tuple(_evidence(e, where) for e in spec["evidence"])
        if len({e.name for e in evidence}) != len(evidence):
            raise ItemError(f"{where}: two evidence of one name")
        parsed[str(name)] = Item(str(name), str(spec.get("title", name)), str(spec.get("applicant", "")), before,
                                 evidence)
    return parsed


@lru_cache(maxsize=1)
def items() -> dict[str, Item]:
    return parse_items(yaml.safe_load(ITEMS_FILE.read_text(encoding="utf-8")))


def item(name: str) -> Item:
    known = items()
    if name not in known:
        raise ItemError(f"no business item {name!r}; the items are {sorted(known)}")
    return known[name]


# --------------------------------------------------------------------------- pure


def _supplier(fields: dict[str, Any] | None, field: str) -> dict[str, Any] | None:
    """The source row that supplied a golden record's field (``field_provenance``), if any."""
    if not fields:
        return None
    index = (fields.get("fields") or {}).get(field, {}).get("source")
    sources = fields.get("sources") or []
    return sources[index] if isinstance(index, int) and 0 <= index < len(sources) else None


def _day(committed: Any) -> Any:
    """A source row's commit time (epoch ms in provenance) as the city's date, ISO."""
    if isinstance(committed, int) and not isinstance(committed, bool):
        return datetime.fromtimestamp(committed / 1000, CITY_TZ).date().isoformat()
    return committed


def _linked(certificate: dict[str, Any], role: Role, ric: str, person_id: str | None) -> bool:
    holder = certificate.get("holder_ric") == ric or (person_id is not None and certificate.get("holder_person_id") == person_id)
    details = certificate.get("details") or {}
    if role == "holder":
        return holder
    if role == "spouse":
        return holder or details.get("spouse_ric") == ric
    return ric in (details.get("mother_ric"), details.get("father_ric"))


def _held(source: Source, ric: str, person: dict[str, Any] | None, person_fields: dict[str, Any] | None,
          certificates: list[tuple[dict[str, Any], dict[str, Any] | None]], today: date) -> dict[str, Any] | None:
    if source.person_field:
        if person is None or person.get(source.person_field) in (None, ""):
            return None
        supplier = _supplier(person_fields, source.person_field)
        if not supplier or supplier.get("department") != source.department:
            return None
        return {"department": source.department, "value": person[source.person_field],
                "record": {"entity": "person", "id": person["person_id"], "table": supplier.get("table"),
                           "primary_key": supplier.get("primary_key")},
                "date": _day(supplier.get("committed_at"))}
    person_id = person["person_id"] if person else None
    mine = [(c, f) for c, f in certificates if _linked(c, source.role, ric, person_id)]
    since = (today - timedelta(days=source.within_days)).isoformat() if source.within_days else ""
    later = max((str(c.get("issued_date") or "") for c, _ in mine if c["certificate_type"] == source.unless_later),
                default="")
    found = [(c, f) for c, f in mine if c["certificate_type"] == source.certificate
             and str(c.get("issued_date") or "") >= since and (not later or str(c.get("issued_date") or "") > later)
             and (_supplier(f, "certificate_type") or {}).get("department") == source.department]
    if not found:
        return None
    certificate, fields = max(found, key=lambda cf: (str(cf[0].get("issued_date") or ""), cf[0]["certificate_id"]))
    supplier = _supplier(fields, "certificate_type") or {}
    return {"department": source.department,
            "value": {"certificate_no": certificate.get("certificate_no"), "issued_date": certificate.get("issued_date"),
                      "issuer": certificate.get("issuer")},
            "record": {"entity": "certificate", "id": certificate["certificate_id"], "table": supplier.get("table"),
                       "primary_key": supplier.get("primary_key")},
            "date": certificate.get("issued_date")}


def assess(wanted: Item, ric: str, person: dict[str, Any] | None, person_fields: dict[str, Any] | None,
           certificates: list[tuple[dict[str, Any], dict[str, Any] | None]], today: date) -> dict[str, Any]:
    """What of the item's evidence the library holds for the applicant, and what is still to present."""
    held, to_present = [], []
    for evidence in wanted.evidence:
        found = next((h for s in evidence.sources if (h := _held(s, ric, person, person_fields, certificates, today))),
                     None)
        if found:
            held.append({"evidence": evidence.name, "title": evidence.title, **found})
        else:
            reason = ("presented in person" if not evidence.sources else "not in the resource library from "
                      + " or ".join(sorted({s.department for s in evidence.sources})))
            to_present.append({"evidence": evidence.name, "title": evidence.title, "reason": reason})
    return {"item": wanted.name, "title": wanted.title, "ric": ric, "held": held, "to_present": to_present,
            "presentations": len(to_present), "presentations_before": wanted.presentations_before}


# --------------------------------------------------------------------------- the library


def read_applicant(conn: psycopg.Connection[Any], wanted: Item, ric: str) -> tuple[
        dict[str, Any] | None, dict[str, Any] | None, list[tuple[dict[str, Any], dict[str, Any] | None]]]:
    row = conn.execute(PERSON_SQL, {"ric": ric}).fetchone()
    person, fields = (row[0], row[1]) if row else (None, None)
    types = wanted.certificate_types
    certificates = [(c, f) for c, f in conn.execute(CERTIFICATES_SQL, {
        "types": types, "ric": ric, "person": person["person_id"] if person else None})] if types else []
    return person, fields, certificates


def evidence_for(conn: psycopg.Connection[Any], item_name: str, ric: str, *, requester: str, purpose: str,
                 channel: str = "cli", status: int = 200, today: date | None = None) -> dict[str, Any]:
    """The item's evidence for the applicant (``assess``), audit-logged in one transaction before it is
    returned: the evidence returned are the fields of the audit row."""
    if not requester.strip() or not purpose.strip():
        raise ItemError("an evidence request must say who asks (requester) and why (purpose)")
    wanted, ric = item(item_name), ric.strip().upper()
    with conn.transaction():
        person, fields, certificates = read_applicant(conn, wanted, ric)
        result = assess(wanted, ric, person, fields, certificates, today or date.today())
        record_access(conn, subject=ric, requester=requester, purpose=purpose, channel=channel,
                      resource=f"evidence:{wanted.name}", fields=[h["evidence"] for h in result["held"]],
                      outcome=f"{result['presentations']} to present", status=status)
    return result


def newborn_presentations(conn: psycopg.Connection[Any], today: date | None = None,
                          item_name: str = "newborn_household_registration") -> dict[str, Any]:
    """For every parent named on a birth certificate of the last year, how many presentations the
    newborn's registration still needs (counts only: nothing personal leaves). A family whose
    departments' data is complete needs at most the in-person ones."""
    today = today or date.today()
    wanted = item(item_name)
    in_person = sum(1 for e in wanted.evidence if not e.sources)
    parents = [ric for (ric,) in conn.execute(
        "SELECT DISTINCT r FROM certificate c, LATERAL (VALUES (c.details->>'mother_ric'), (c.details->>'father_ric')) v(r)"
        " WHERE c.certificate_type = 'BIRTH_MEDICAL_CERTIFICATE' AND c.issued_date >= %s AND r IS NOT NULL ORDER BY r",
        (today - timedelta(days=366),))]
    counts: dict[int, int] = {}
    missing: dict[str, int] = {}
    for ric in parents:
        result = assess(wanted, ric, *read_applicant(conn, wanted, ric), today)
        counts[result["presentations"]] = counts.get(result["presentations"], 0) + 1
        for evidence in result["to_present"]:
            missing[evidence["evidence"]] = missing.get(evidence["evidence"], 0) + 1
    return {"item": wanted.name, "parents": len(parents), "presentations_before": wanted.presentations_before,
            "in_person": in_person, "by_presentations": dict(sorted(counts.items())),
            "complete": counts.get(in_person, 0),   # every evidence the departments can share was in the library
            "at_most_2": sum(n for p, n in counts.items() if p <= 2), "still_to_present": missing}
