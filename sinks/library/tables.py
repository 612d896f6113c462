"""The resource library's tables as the merge code sees them, and the locks and session settings of the
transactions that write them."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import orjson
import psycopg
from psycopg.types.json import set_json_dumps, set_json_loads

from streams.resolve.resolver import CODED_ENTITIES

# Golden tables: entity -> (table, id column, data columns). Data columns are candidate fields.
TABLES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "person": ("person", "person_id", ("ric", "name", "gender", "ethnicity", "birth_date", "marital_status",
                                       "death_date", "household_no", "address", "mother_ric", "father_ric")),
    "legal_entity": ("legal_entity", "entity_id", (
        "uscc", "registration_no", "name", "kind", "legal_representative_name", "legal_representative_ric",
        "registered_capital", "established_date", "status", "deregistered_date", "address")),
    "house": ("house", "house_id", ("building_code", "address", "floor_area", "use")),
    "certificate": ("certificate", "certificate_id", (
        "certificate_type", "certificate_no", "holder_ric", "holder_name", "issued_date", "valid_until", "issuer",
        "status", "details")),
    "relationship": ("relationship", "relationship_id", (
        "type", "subject_ric", "subject_name", "object_kind", "object_id", "object_name", "valid_from", "valid_to")),
    "social_insurance": ("social_insurance", "fact_id", (
        "person_ric", "insured_no", "month", "insurance_type", "employer_uscc", "employer_name",
        "contribution_base", "personal_amount", "employer_amount")),
}
# Entities whose canonical id is their own code (no look-up, no matching): new ones can merge set-based.
CODED = tuple(sorted(CODED_ENTITIES, key=list(TABLES).index))
# Identifier fields: a value flagged by a finding (bad check character ...) never becomes the golden identifier.
IDENTIFIERS: dict[str, tuple[str, ...]] = {"person": ("ric",), "legal_entity": ("uscc",)}
JSON_COLUMNS = frozenset({"address", "details"})
# Entities that point at people, and the reference columns they resolve.
PERSON_REFS: dict[str, tuple[tuple[str, str, str], ...]] = {
    # entity -> (person id column, RIC column, name column)
    "certificate": (("holder_person_id", "holder_ric", "holder_name"),),
    "relationship": (("subject_person_id", "subject_ric", "subject_name"), ("object_person_id", "object_id", "object_name")),
    "social_insurance": (("person_id", "person_ric", ""),),
}
# entity -> its person id columns, as golden changes carry them
PERSON_ID_COLUMNS: dict[str, tuple[str, ...]] = {e: tuple(ref[0] for ref in refs) for e, refs in PERSON_REFS.items()}


# Golden-row columns that describe the library's bookkeeping, not the subject: never part of a change.
BOOKKEEPING = frozenset({"version", "updated_at", "source_committed_at", "name_key"})

# Two advisory locks, taken first in a transaction and held to its end. RESOLVE_LOCK: one identity
# decision at a time (resolve reads the persons to match against, then writes contributions).
# SETTLE_LOCK: the golden records as a whole. The resolve stage takes the first; T+1 loads and review
# decisions, which resolve and settle in one transaction, take both in this order, so no two transactions
# wait for each other. The live merge takes SETTLE_LOCK shared with its partitions' fences
# (``lock_merge``): merge processes commit side by side, each on the canonical ids of its partitions, and
# what two of them may both touch is locked where it is touched (``lock_keys``, golden rows FOR UPDATE;
# docs/resource-library.md, "Merge processes side by side"). A T+1 chunk of new coded records takes both
# shared (``lock_library(shared=True)``): its sessions and the live merges write at once.
RESOLVE_LOCK = 0x4B4D5247
SETTLE_LOCK = 0x4B4D5248
OUTBOX_LOCK = 0x4B4D5249   # one publisher of the outbox at a time, whatever the number of merge processes


class Contended(Exception):
    """What this transaction read was changed by another committing beside it: roll back and do it again
    (the merge stage does, as for PostgreSQL's deadlock and serialization failures)."""


def lock_resolve(conn: psycopg.Connection[Any]) -> float:
    """RESOLVE_LOCK for the transaction; returns the seconds it took (the wait, and a round trip)."""
    return _locked(conn, RESOLVE_LOCK)


def lock_settle(conn: psycopg.Connection[Any]) -> float:
    """SETTLE_LOCK alone, for a transaction that must see no live merge beside it (the merge stage's
    release of held records, which takes them from every partition); returns the seconds it took."""
    return _locked(conn, SETTLE_LOCK)


def lock_merge(conn: psycopg.Connection[Any], partitions: Iterable[tuple[str, int]]) -> float:
    """A live merge batch: SETTLE_LOCK shared, then a fence per consumed (topic, partition) in one order, so
    that after a rebalance the partition's new owner waits for its old owner's last transaction; returns
    the seconds it took. Two merge processes with other partitions do not wait for each other here."""
    started = time.perf_counter()
    owned = sorted(set(partitions))
    with conn.pipeline():
        conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (SETTLE_LOCK,))
        if owned:
            conn.execute("SELECT count(pg_advisory_xact_lock(k, p)) FROM (SELECT hashtext(t) AS k, p FROM"
                         " unnest(%s::text[], %s::int[]) AS u(t, p) ORDER BY 1, 2 OFFSET 0) s",
                         ([t for t, _ in owned], [p for _, p in owned]))
    return time.perf_counter() - started


def lock_keys(conn: psycopg.Connection[Any], keys: str, params: Any = None) -> None:
    """Advisory locks on what a transaction is about to look for or make visible, in one order: ``keys`` is
    a query of rows (key text, exclusive boolean); a key asked both ways is taken exclusive. Keys are
    named by kind: ``ric:<RIC>`` (a person with that RIC: exclusive for the person's writer, shared for
    records linking to it by RIC), ``person:<id>`` (a person matched into another: exclusive for the
    merge that points its references at the other, shared for one that linked a reference to it)."""
    conn.execute("SELECT count(CASE WHEN x THEN pg_advisory_xact_lock(h) ELSE pg_advisory_xact_lock_shared(h) END)"
                 f" FROM (SELECT hashtextextended(k, 0) AS h, bool_or(x) AS x FROM ({keys}) AS wanted(k, x)"
                 " WHERE k IS NOT NULL GROUP BY 1 ORDER BY 1 OFFSET 0) s", params)


def _locked(conn: psycopg.Connection[Any], lock: int) -> float:
    started = time.perf_counter()
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
    return time.perf_counter() - started


def lock_library(conn: psycopg.Connection[Any], shared: bool = False) -> None:
    """For a transaction that resolves and settles (``Merger.merge``, ``relink``): both locks, in order.
    ``shared``: for a transaction that only opens new coded records set-based (``Merger.merge_new``): it
    decides no identity and touches no existing record, so several may run at once (a T+1 load's
    sessions, live merges), while the transactions that take both exclusively wait for them and they
    for those."""
    take = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
    conn.execute(f"SELECT {take}(%s), {take}(%s)", (RESOLVE_LOCK, SETTLE_LOCK))


# Session settings of a merging connection (psycopg.connect(..., options=MERGE_SESSION)): staging tables
# hold a whole chunk (8 MB of temp buffers by default spilled them to disk), and JIT compiling a
# statement over an unanalyzed staging table cost more than running it.
MERGE_SESSION = "-c jit=off -c temp_buffers=256MB"

set_json_dumps(orjson.dumps)   # jsonb in and out of the library: most of a merge's bytes
set_json_loads(orjson.loads)

CONTRIBUTION_KEY = ("department", "source_table", "primary_key", "role")
CONTRIBUTION_COLUMNS = (*CONTRIBUTION_KEY, "entity", "canonical_id", "position", "retracted", "record", "committed_at",
                        "merged_at", "method", "score", "evidence")
HISTORY_COLUMNS = ("entity", "canonical_id", "version", "data", "valid_from", "cause", "recorded_at")
