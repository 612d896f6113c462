"""A resident's profile as the services' conditions read it (``streams.events.services``), the
"services for me" answer (audited like a dossier), and the services each person currently qualifies
for, kept in ``service_eligibility`` so that the life-event stage publishes SERVICE_ELIGIBLE when one
is gained (``gained_services``).

One statement reads any number of profiles: the person, its insured months, its children (as their
mother or father), the enterprises in business it represents, its residence permits and rental filings
— each an index lookup (migration 010).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from typing import Any

import psycopg

from sinks.library.dossier import record_access
from streams.events.services import Profile, Verdict, assess, services

PROFILE_SQL = """
SELECT p.person_id, p.ric, p.gender, p.birth_date, p.death_date, p.household_no, p.marital_status,
       p.address->>'district',
       ARRAY(SELECT DISTINCT s.month FROM social_insurance s WHERE s.person_id = p.person_id AND s.month >= %(since)s),
       ARRAY(SELECT c.birth_date FROM person c WHERE p.ric IS NOT NULL AND c.mother_ric = p.ric
             UNION ALL SELECT c.birth_date FROM person c WHERE p.ric IS NOT NULL AND c.father_ric = p.ric),
       ARRAY(SELECT e.established_date FROM legal_entity e WHERE p.ric IS NOT NULL AND e.legal_representative_ric = p.ric
             AND e.deregistered_date IS NULL AND coalesce(e.status, '') NOT IN ('注销', '吊销')),
       ARRAY(SELECT f.valid_until FROM certificate f WHERE f.holder_person_id = p.person_id
             AND f.certificate_type = 'RESIDENCE_PERMIT'),
       ARRAY(SELECT f.valid_until FROM certificate f WHERE f.holder_person_id = p.person_id
             AND f.certificate_type = 'RENTAL_FILING')
FROM person p WHERE {where}
"""
INSURANCE_MONTHS = 600   # the longest window a condition may look back


def _since(today: date) -> str:
    index = today.year * 12 + today.month - 1 - (INSURANCE_MONTHS - 1)
    return f"{index // 12:04d}{index % 12 + 1:02d}"


def profiles(conn: psycopg.Connection[Any], *, ids: Iterable[str] | None = None, ric: str | None = None,
             today: date) -> list[Profile]:
    where, params = ("p.ric = %(ric)s", {"ric": ric}) if ric is not None else (
        "p.person_id = ANY(%(ids)s::text[])", {"ids": sorted(set(ids or ()))})
    return [Profile(pid, r, gender, born, died, household, marital, district, frozenset(months), tuple(children),
                    tuple(enterprises), tuple(permits), tuple(rentals))
            for pid, r, gender, born, died, household, marital, district, months, children, enterprises, permits, rentals
            in conn.execute(PROFILE_SQL.format(where=where), {**params, "since": _since(today)})]


def as_json(name: str, verdict: Verdict) -> dict[str, Any]:
    service = services()[name]
    return {"service": name, "title": service.title, "department": service.department, "status": verdict.status,
            "reasons": list(verdict.reasons), "missing_evidence": list(verdict.missing)}


def services_for(conn: psycopg.Connection[Any], ric: str, *, requester: str, purpose: str, channel: str = "cli",
                 status: int = 200, today: date | None = None) -> dict[str, Any]:
    """The services the resident qualifies for, each with its reasons and any missing evidence; written to
    the access audit in the same transaction. A RIC unknown to the library gets an empty list."""
    today, ric = today or date.today(), ric.strip().upper()
    with conn.transaction():
        found = profiles(conn, ric=ric, today=today)
        verdicts = assess(found[0], today) if found else {}
        listed = [as_json(name, verdict) for name, verdict in verdicts.items()]
        record_access(conn, subject=ric, requester=requester, purpose=purpose, channel=channel,
                      resource="services_for_me", fields=[s["service"] for s in listed],
                      outcome=f"{sum(s['status'] == 'eligible' for s in listed)} eligible", status=status)
    return {"ric": ric, "on": today.isoformat(), "services": listed, "rules": len(services())}


EVALUATED = "*"   # a service_eligibility row saying the person was evaluated (whatever it qualified for)


def gained_services(conn: psycopg.Connection[Any], person_ids: Iterable[str], today: date, rics: Iterable[str] = ()
                    ) -> list[tuple[Profile, str, Verdict]]:
    """Re-evaluate these persons (and those of these RICs; inside the caller's transaction): store what
    each now qualifies for (since when), and return the (profile, service, verdict) each became eligible
    for since its last evaluation. A person's first evaluation is its baseline and returns nothing: a
    library's first load (or the first run after an upgrade) is not news to anyone. A service lost and
    gained again is gained again."""
    found = set(person_ids)
    if wanted := sorted(set(rics)):
        found.update(pid for (pid,) in conn.execute("SELECT person_id FROM person WHERE ric = ANY(%s::text[])", (wanted,)))
    ids = sorted(found)
    if not ids:
        return []
    now = {p.person_id: (p, assess(p, today)) for p in profiles(conn, ids=ids, today=today)}
    before: dict[tuple[str, str], str] = {(pid, s): st for pid, s, st in conn.execute(
        "SELECT person_id, service, status FROM service_eligibility WHERE person_id = ANY(%s::text[])", (ids,))}
    current = {(pid, name): verdict.status for pid, (_, verdicts) in now.items() for name, verdict in verdicts.items()}
    current.update({(pid, EVALUATED): "evaluated" for pid in now})
    # only what changed is written: most re-evaluations change nothing
    gone = [key for key in before if key not in current]
    changed = [(*key, status) for key, status in current.items() if before.get(key) != status]
    if gone:
        conn.execute("DELETE FROM service_eligibility WHERE (person_id, service) IN"
                     " (SELECT * FROM unnest(%s::text[], %s::text[]))", ([k[0] for k in gone], [k[1] for k in gone]))
    if changed:
        conn.execute("INSERT INTO service_eligibility (person_id, service, status, since)"
                     " SELECT p, s, st, %s FROM unnest(%s::text[], %s::text[], %s::text[]) AS u(p, s, st)"
                     " ON CONFLICT (person_id, service) DO UPDATE SET status = EXCLUDED.status, since = EXCLUDED.since",
                     (today, [c[0] for c in changed], [c[1] for c in changed], [c[2] for c in changed]))
    return [(profile, name, verdict) for pid, (profile, verdicts) in now.items() if (pid, EVALUATED) in before
            for name, verdict in verdicts.items()
            if verdict.status == "eligible" and before.get((pid, name)) != "eligible"]
