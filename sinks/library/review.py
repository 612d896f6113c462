"""Operator tools on the resource library: the review queue, ``explain`` and history queries."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg

from kintsmesh.errors import KintsmeshError, TerminalError
from sinks.library import TABLES, Merger, SourceRef, lock_library
from sinks.library.identity import reindex
from streams.resolve.identity import new_person_id


class NotFound(TerminalError):
    pass


def open_reviews(conn: psycopg.Connection[Any], limit: int = 50) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT r.review_id, r.department, r.source_table, r.primary_key, r.role, r.entity, r.candidates,"
        " r.created_at, c.record FROM review_queue r LEFT JOIN contribution c USING (department, source_table,"
        " primary_key, role) WHERE r.status = 'open' ORDER BY r.review_id LIMIT %s", (limit,)).fetchall()
    return [{"review_id": rid, "source": f"{d}/{t}/{pk}/{role}", "entity": entity, "candidates": candidates,
             "created_at": created, "record": {k: v for k, v in (record or {}).items() if k != "provenance"}}
            for rid, d, t, pk, role, entity, candidates, created, record in rows]


def decide(conn: psycopg.Connection[Any], review_id: int, accept: bool, to: str | None = None) -> str:
    """Accept (link to the top candidate, or ``to``) or reject (a person of its own); returns the canonical id."""
    with conn.transaction():
        lock_library(conn)
        row = conn.execute(
            "SELECT department, source_table, primary_key, role, entity, candidates, status FROM review_queue"
            " WHERE review_id = %s FOR UPDATE", (review_id,)).fetchone()
        if row is None:
            raise NotFound(f"review {review_id}: no such review (kintsmesh review list)")
        d, t, pk, role, entity, candidates, status = row
        if status != "open":
            raise KintsmeshError(f"review {review_id} is already {status}")
        ref = SourceRef(d, t, pk, role)
        if accept:
            target = to or (candidates[0]["canonical_id"] if candidates else None)
            if not target:
                raise KintsmeshError(f"review {review_id} has no candidate; pass --to <canonical id>")
        else:
            target = new_person_id(ref)
        Merger(conn).relink(ref, entity, target, "accepted" if accept else "rejected")
        if entity == "person":
            reindex(conn, {target})   # findable by the way this row writes the person too
        conn.execute("UPDATE review_queue SET status = %s, decided_id = %s, decided_at = now() WHERE review_id = %s",
                     ("accepted" if accept else "rejected", target, review_id))
    return target


def sync_lags_ms(conn: psycopg.Connection[Any], since: datetime) -> list[tuple[float, float]]:
    """(department commit as epoch seconds, commit -> golden record visible in ms) for every live source
    row merged since ``since`` that caused a golden version; visible is the commit of the merge stage's
    transaction that wrote the version (track_commit_timestamp), the first after the row was resolved."""
    return [(float(at), float(ms)) for at, ms in conn.execute(
        "SELECT extract(epoch FROM c.committed_at), extract(epoch FROM v.visible - c.committed_at) * 1000"
        + _MERGED_SINCE, (since,))]


def lag_segments_ms(conn: psycopg.Connection[Any], since: datetime) -> list[tuple[bool, float, float, float]]:
    """``sync_lags_ms``'s rows in three parts: (through resolve — a person or legal entity —, commit -> its
    contribution written, that write's transaction, its commit -> the golden version visible). The first
    is capture, normalize and the writing stage's wait for its batch; the last, for a resolved record, the
    settle queue's relay and the merge stage (nothing for a coded record, merged where it is written)."""
    return [(bool(resolved), float(arrive), float(written), float(settled)) for resolved, arrive, written, settled
            in conn.execute(
                "SELECT c.entity IN ('person', 'legal_entity'),"
                " extract(epoch FROM c.merged_at - c.committed_at) * 1000,"
                " extract(epoch FROM pg_xact_commit_timestamp(c.xmin) - c.merged_at) * 1000,"
                " extract(epoch FROM v.visible - pg_xact_commit_timestamp(c.xmin)) * 1000" + _MERGED_SINCE, (since,))]


# every live source row merged since %s that caused a golden version, and when that version became visible
_MERGED_SINCE = (
    " FROM contribution c CROSS JOIN LATERAL (SELECT min(pg_xact_commit_timestamp(h.xmin)) AS visible"
    "  FROM golden_history h WHERE h.entity = c.entity AND h.canonical_id = c.canonical_id"
    "  AND h.recorded_at >= c.merged_at AND h.cause->>'department' = c.department"
    "  AND h.cause->>'table' = c.source_table AND h.cause->>'primary_key' = c.primary_key) v"
    " WHERE c.committed_at >= %s AND c.position[1] = 0 AND v.visible IS NOT NULL")


def explain(conn: psycopg.Connection[Any], canonical_id: str) -> dict[str, Any]:
    """The golden record, where each field came from, the source records linked to it and why."""
    for entity, (table, id_column, _) in TABLES.items():
        row = conn.execute(f"SELECT to_jsonb(t) FROM {table} t WHERE {id_column} = %s", (canonical_id,)).fetchone()
        if row:
            break
    else:
        raise NotFound(f"{canonical_id}: no golden record with this id")
    provenance = conn.execute("SELECT fields FROM field_provenance WHERE entity = %s AND canonical_id = %s",
                              (entity, canonical_id)).fetchone()
    links = [{"source": f"{d}/{t}/{pk}/{role}", "method": method, "score": score, "evidence": evidence,
              "retracted": retracted, "position": [int(x) for x in position], "committed_at": committed}
             for d, t, pk, role, method, score, evidence, retracted, position, committed in conn.execute(
                 "SELECT department, source_table, primary_key, role, method, score, evidence, retracted, position,"
                 " committed_at FROM contribution WHERE entity = %s AND canonical_id = %s ORDER BY committed_at",
                 (entity, canonical_id))]
    history = [{"version": version, "recorded_at": recorded, "valid_from": valid_from,
                # a version that only linked a person id (its sources said nothing new) names the columns
                "kind": "link" if cause and cause.get("linked") else "sources",
                **({"linked": cause["linked"]} if cause and cause.get("linked") else {}),
                "cause": "/".join(str(cause.get(k)) for k in ("department", "table", "primary_key", "role")
                                  if cause.get(k) is not None) if cause else None}
               for version, recorded, valid_from, cause in conn.execute(
                   "SELECT version, recorded_at, valid_from, cause FROM golden_history"
                   " WHERE entity = %s AND canonical_id = %s ORDER BY version", (entity, canonical_id))]
    return {"entity": entity, "canonical_id": canonical_id, "golden": row[0],
            "field_provenance": provenance[0] if provenance else {}, "links": links, "history": history}


def as_of(conn: psycopg.Connection[Any], canonical_id: str, valid_at: datetime | None = None,
          recorded_at: datetime | None = None) -> dict[str, Any] | None:
    """The golden record as it was true at ``valid_at`` (source time), as the library knew it at
    ``recorded_at`` (library time); either may be omitted (= now)."""
    row = conn.execute(
        "SELECT entity, version, data, valid_from, recorded_at FROM golden_history WHERE canonical_id = %s"
        " AND (%s::timestamptz IS NULL OR valid_from IS NULL OR valid_from <= %s)"
        " AND (%s::timestamptz IS NULL OR recorded_at <= %s)"
        " ORDER BY valid_from DESC NULLS LAST, version DESC LIMIT 1",
        (canonical_id, valid_at, valid_at, recorded_at, recorded_at)).fetchone()
    if row is None:
        return None
    entity, version, data, valid_from, recorded = row
    return {"entity": entity, "canonical_id": canonical_id, "version": version, "data": data,
            "valid_from": valid_from, "recorded_at": recorded}
