"""The proactive school-enrolment dossier, assembled from the resource library, and its access audit.

One SQL statement gathers the child, its guardians (parents named on its record,
and parent / guardian relationships), each guardian's rental filings and months
of social insurance in the window, and the child's birth certificate — every
part an index lookup, so a dossier costs the same in a library of any size.
What is returned is minimised to what the verdict weighs (no adult's RIC, name,
address or certificate number), and only for a living child of the level's age:
anyone else gets the same NO_DATA answer as an unknown RIC. Every assembly is
written to ``access_audit`` (who asked, for which purpose, when, which fields
were returned) in the same transaction: a dossier that cannot be audited is not
returned.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from kintsmesh.errors import TerminalError
from streams.events.enrolment import NOT_ELIGIBLE, conditions, enrolment_year, verdict, window_start

DOSSIER_SQL = """
WITH child AS (
    SELECT person_id, ric, name, gender, birth_date, death_date, household_no, address, mother_ric, father_ric
    FROM person WHERE ric = %(ric)s
), guardian_ids AS (
    SELECT p.person_id, CASE WHEN p.ric = c.mother_ric THEN 'mother' ELSE 'father' END AS relation
    FROM child c JOIN person p ON p.ric = c.mother_ric OR p.ric = c.father_ric
    UNION
    SELECT r.subject_person_id, CASE r.type WHEN 'GUARDIAN_OF' THEN 'guardian' ELSE 'parent' END
    FROM child c JOIN relationship r ON r.object_person_id = c.person_id
    WHERE r.type IN ('PARENT_OF', 'GUARDIAN_OF') AND r.subject_person_id IS NOT NULL
), guardians AS (
    SELECT DISTINCT ON (p.person_id) p.person_id, p.ric, p.name, p.household_no, p.address, g.relation
    FROM guardian_ids g JOIN person p USING (person_id)
    ORDER BY p.person_id, array_position(ARRAY['mother', 'father', 'parent', 'guardian'], g.relation)
)
SELECT
    (SELECT to_jsonb(c) FROM child c),
    (SELECT coalesce(jsonb_agg(jsonb_build_object(
        'ric', g.ric, 'name', g.name, 'relation', g.relation, 'household_no', g.household_no,
        'address', g.address->>'full', 'district', g.address->>'district',
        'insured_months', (SELECT count(DISTINCT s.month) FROM social_insurance s
                           WHERE s.person_id = g.person_id AND s.month >= %(since)s),
        'latest_insured_month', (SELECT max(s.month) FROM social_insurance s WHERE s.person_id = g.person_id),
        'rental_filings', (SELECT coalesce(jsonb_agg(jsonb_build_object(
            'certificate_no', f.certificate_no, 'house_code', f.details->>'house_code', 'from', f.issued_date,
            'until', f.valid_until, 'status', f.status) ORDER BY f.issued_date DESC), '[]'::jsonb)
            FROM certificate f WHERE f.holder_person_id = g.person_id AND f.certificate_type = 'RENTAL_FILING'
              AND (f.valid_until IS NULL OR f.valid_until >= %(today)s))
        ) ORDER BY g.relation), '[]'::jsonb) FROM guardians g),
    (SELECT jsonb_build_object('certificate_no', b.certificate_no, 'issued_date', b.issued_date, 'issuer', b.issuer,
                               'born_at', b.details->>'born_at', 'mother_ric', b.details->>'mother_ric',
                               'father_ric', b.details->>'father_ric')
     FROM certificate b, child c WHERE b.holder_person_id = c.person_id
       AND b.certificate_type = 'BIRTH_MEDICAL_CERTIFICATE' ORDER BY b.issued_date LIMIT 1)
"""

DOSSIER_FIELDS = ("child", "guardians", "birth_certificate", "enrolment", "verdict")
NO_DATA = "NO_DATA"
DOSSIER_RESOURCE = "school_enrolment_dossier"


class DossierError(TerminalError):
    """A dossier request that cannot be served (no requester or purpose, unknown level)."""


def record_access(conn: psycopg.Connection[Any], *, subject: str, requester: str, purpose: str, channel: str,
                  resource: str, fields: list[str], outcome: str | None, status: int = 0) -> None:
    """One row of the append-only, hash-chained access audit (refused requests included)."""
    conn.execute(
        "INSERT INTO access_audit (subject_ric, requester, purpose, channel, resource, fields, outcome, status)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        (subject.strip().upper()[:64], requester[:200], purpose[:500], channel, resource, Jsonb(fields), outcome, status))


def school_enrolment(conn: psycopg.Connection[Any], ric: str, *, requester: str, purpose: str,
                     level: str = "primary", year: int | None = None, today: date | None = None,
                     channel: str = "cli", status: int = 200) -> dict[str, Any]:
    """The dossier with the rule's verdict, minimised to what the verdict needs; audit-logged, in one
    transaction, before it is returned. Only a living child who reaches the level's age in ``year`` has
    one: for anyone else (an adult, a RIC not in the library) the answer is the same ``NO_DATA``."""
    if not requester.strip() or not purpose.strip():
        raise DossierError("a dossier request must say who asks (requester) and why (purpose)")
    ages = conditions().ages
    if level not in ages:
        raise DossierError(f"level must be one of {sorted(ages)}, not {level!r}")
    today = today or date.today()
    year = year or enrolment_year(today)
    enrolment = {"level": level, "year": year, "age": ages[level], "insured_months_window": conditions().window_months}
    with conn.transaction():
        row = conn.execute(DOSSIER_SQL, {"ric": ric.strip().upper(), "since": window_start(today),
                                         "today": today}).fetchone()
        child, guardians, certificate = row if row else (None, [], None)
        full: dict[str, Any] = {"child": child, "guardians": guardians or [], "birth_certificate": certificate,
                                "enrolment": enrolment}
        full["verdict"] = verdict(full, level, year)
        dossier = minimised(full) if of_school_age(full) else no_data(enrolment)
        returned = [name for name in DOSSIER_FIELDS if dossier.get(name)]
        record_access(conn, subject=ric, requester=requester, purpose=purpose, channel=channel,
                      resource=DOSSIER_RESOURCE, fields=returned, outcome=dossier["verdict"]["verdict"], status=status)
    return dossier


def of_school_age(full: dict[str, Any]) -> bool:
    """Whether the dossier is of a living child of the level's age (the verdict: eligible or missing evidence)."""
    return bool(full["child"] and full["child"].get("birth_date")) and full["verdict"]["verdict"] != NOT_ELIGIBLE


def no_data(enrolment: dict[str, Any]) -> dict[str, Any]:
    """The answer for a RIC with no dossier: the same whether the person is unknown, an adult or dead."""
    return {"child": None, "guardians": [], "birth_certificate": None, "enrolment": enrolment,
            "verdict": {"verdict": NO_DATA, "reasons": ["no child of this age with this RIC in the resource library"]}}


def minimised(full: dict[str, Any]) -> dict[str, Any]:
    """What the school needs: the child, and of each guardian only the facts the verdict weighs (no RIC,
    name, household number, address or certificate numbers of the adults)."""
    child = full["child"]
    address = child.get("address") or {}
    return {
        "child": {"ric": child["ric"], "name": child["name"], "gender": child["gender"],
                  "birth_date": child["birth_date"], "household_no": child["household_no"],
                  "address": address.get("full"), "district": address.get("district")},
        "guardians": [{"relation": g["relation"], "district": g.get("district"),
                       "resides_in_city": bool(g.get("rental_filings") or g.get("household_no") or g.get("address")),
                       "household_registered": bool(g.get("household_no")),
                       "insured_months": g.get("insured_months") or 0,
                       "rental_filing_until": max((str(f.get("until") or "open") for f in g.get("rental_filings") or []),
                                                  default=None)}
                      for g in full["guardians"]],
        "birth_certificate": ({"issued_date": full["birth_certificate"].get("issued_date"),
                               "issuer": full["birth_certificate"].get("issuer")} if full["birth_certificate"] else None),
        "enrolment": full["enrolment"], "verdict": full["verdict"],
    }


def audit_history(conn: psycopg.Connection[Any], ric: str, limit: int = 100) -> list[dict[str, Any]]:
    """Who looked at a citizen's data, when, why, and what they received (newest first)."""
    rows = conn.execute(
        "SELECT requested_at, requester, purpose, channel, resource, fields, outcome FROM access_audit"
        " WHERE subject_ric = %s ORDER BY requested_at DESC, chain_seq DESC LIMIT %s", (ric.strip().upper(), limit)).fetchall()
    return [{"requested_at": r[0].isoformat(), "requester": r[1], "purpose": r[2], "channel": r[3],
             "resource": r[4], "fields": r[5], "outcome": r[6]} for r in rows]
