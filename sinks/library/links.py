"""References to people in other golden records (certificate holders, relationship ends, insured persons)
linked to person ids, in both directions of arrival: a record merged after its person, and a person merged
after the records that name it. Each link made is reported to ``note`` (entity, person column, rows of
(record id, person id before, person id after)), so the merge can version the records it changed."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import psycopg

from sinks.library.sql import text_array
from sinks.library.tables import PERSON_REFS, TABLES, Contended, lock_keys
from streams.normalize.mapping import identifying_kinds

Note = Callable[[str, str, Iterable[tuple[Any, ...]]], None]


def link_people(conn: psycopg.Connection[Any], affected: dict[str, set[str]], person_rows: list[tuple[str, str, str]],
                note: Note, inserted_linked: bool = False, side_by_side: bool = False) -> None:
    """Fill person ids in certificates, relationships and insurance facts that refer to people —
    those merged now, and earlier ones that were waiting for a person merged now — noting each link
    made (``_version_links``). Each direction is its own statement so that every one runs on an
    index, whatever the library's size; the previous value is read through a self-join (``o``),
    which sees the row as it was before the update. The statements go in one pipeline (one round trip,
    not one each: most find nothing), run in order, and their links are noted in that order after it.
    ``inserted_linked``: the ``affected`` records were just inserted with ``linked_at_insert``'s person
    ids (by RIC and insured number), so only the same-row name direction is left to look for them.
    ``side_by_side``: other merge processes commit meanwhile (``checked_persons``); the caller has taken
    ``lock_rics``."""
    sent: list[tuple[str, str, bool, psycopg.Cursor[Any]]] = []
    with conn.pipeline():
        _send_links(conn, affected, person_rows, inserted_linked, sent)
    by_row: set[str] = set()
    for entity, column, same_row, cursor in sent:
        rows = cursor.fetchall()
        note(entity, column, rows)
        if same_row:
            by_row.update(person for _, _, person in rows)
    if side_by_side and by_row:
        checked_persons(conn, by_row)


def checked_persons(conn: psycopg.Connection[Any], persons: set[str]) -> None:
    """Raise ``Contended`` if a person a reference was just linked to by its source row has been matched
    into another since this transaction's statement read the contributions (a late match the resolve
    stage committed meanwhile, whose merge repoints the person's references: ``repoint_absorbed``, under
    ``person:<id>`` exclusive). Taken shared here, the key makes that merge wait for this transaction, whose
    link it will then see; or, if that merge went first, this check sees the person gone and the
    transaction is done again, on contributions that name the other person."""
    lock_keys(conn, "SELECT 'person:' || p, false FROM unnest(%s::text[]) AS p", (text_array(persons),))
    gone = conn.execute("SELECT p FROM unnest(%s::text[]) AS p WHERE NOT EXISTS (SELECT FROM contribution c"
                        " WHERE c.entity = 'person' AND c.canonical_id = p)", (text_array(persons),)).fetchall()
    if gone:
        raise Contended(f"{len(gone)} person(s) linked by their source row were matched into another meanwhile,"
                        f" e.g. {gone[0][0]}")


def lock_rics(conn: psycopg.Connection[Any], affected: dict[str, set[str]]) -> None:
    """Before ``link_people`` looks for people by RIC beside other merge processes: ``ric:<RIC>`` of every
    person of the batch exclusive, of every RIC its other records name shared. Whichever of a person's
    merge and a reference's merge takes the key second sees the other committed (the person's merge links
    the reference, or the reference finds the person), where both would otherwise look before the other
    commits and neither link."""
    parts: list[str] = []
    params: list[str] = []
    if affected.get("person"):
        parts.append("SELECT 'ric:' || ric, true FROM person WHERE person_id = ANY(%s::text[])")
        params.append(text_array(affected["person"]))
    for entity, refs in PERSON_REFS.items():
        if affected.get(entity):
            table, id_column, _ = TABLES[entity]
            parts.extend(f"SELECT 'ric:' || {ric}, false FROM {table} WHERE {id_column} = ANY(%s::text[])"
                         for _, ric, _ in refs)
            params.extend(text_array(affected[entity]) for _ in refs)
    if parts:
        lock_keys(conn, " UNION ALL ".join(parts), params)


def _send_links(conn: psycopg.Connection[Any], affected: dict[str, set[str]], person_rows: list[tuple[str, str, str]],
                inserted_linked: bool, sent: list[tuple[str, str, bool, psycopg.Cursor[Any]]]) -> None:
    persons = list(affected.get("person", set()))
    rows = ([r[0] for r in person_rows], [r[1] for r in person_rows], [r[2] for r in person_rows])
    insured_kinds = identifying_kinds("insured_no")
    insured = [pk for d, t, pk in person_rows if any((d, t) == kind[:2] for kind in insured_kinds)]

    def run(entity: str, column: str, sql: str, params: tuple[Any, ...], same_row: bool = False) -> None:
        sent.append((entity, column, same_row, conn.execute(sql, params)))

    for entity, refs in PERSON_REFS.items():
        table, id_column, _ = TABLES[entity]
        ids = list(affected.get(entity, set()))
        for person_column, ric_column, name_column in refs:
            kind = "AND g.object_kind = 'PERSON'" if person_column == "object_person_id" else ""
            by_ric = (f"UPDATE {table} g SET {person_column} = p.person_id FROM person p, {table} o"
                      f" WHERE o.{id_column} = g.{id_column} AND p.ric = g.{ric_column} {kind}"
                      f" AND g.{person_column} IS DISTINCT FROM p.person_id")
            returning = f" RETURNING g.{id_column}, o.{person_column}, p.person_id"
            if ids and not inserted_linked:
                run(entity, person_column, by_ric + f" AND g.{id_column} = ANY(%s::text[])" + returning,
                    (text_array(ids),))
            if persons:
                run(entity, person_column, by_ric + " AND p.person_id = ANY(%s::text[])" + returning,
                    (text_array(persons),))
            if not name_column:
                continue
            # no usable RIC: the person of the same source row with the same name (a newborn, a spouse)
            same_row = (f"UPDATE {table} g SET {person_column} = pc.canonical_id"
                        f" FROM contribution gc JOIN contribution pc ON pc.department = gc.department"
                        f"  AND pc.source_table = gc.source_table AND pc.primary_key = gc.primary_key"
                        f"  AND pc.entity = 'person' AND pc.canonical_id IS NOT NULL"
                        f" WHERE gc.entity = %s AND gc.canonical_id = g.{id_column} AND NOT gc.retracted"
                        f"  AND g.{person_column} IS NULL {kind} AND pc.record->>'name' = g.{name_column}")
            returning = f" RETURNING g.{id_column}, NULL, pc.canonical_id"
            if ids:
                run(entity, person_column, same_row + f" AND g.{id_column} = ANY(%s::text[])" + returning,
                    (entity, text_array(ids)), same_row=True)
            if person_rows:
                run(entity, person_column, same_row + " AND (pc.department, pc.source_table, pc.primary_key)"
                    " IN (SELECT * FROM unnest(%s::text[], %s::text[], %s::text[]))" + returning,
                    (entity, *(text_array(column) for column in rows)), same_row=True)
    # insured persons: an insurance fact names its person through the insured number, the key of the
    # person source rows a mapping declares ``identifies: insured_no``
    by_insured = ("UPDATE social_insurance s SET person_id = c.canonical_id FROM contribution c, social_insurance o"
                  " WHERE o.fact_id = s.fact_id AND c.department = %s AND c.source_table = %s"
                  " AND c.role = %s AND c.primary_key = s.insured_no AND c.canonical_id IS NOT NULL"
                  " AND s.person_id IS DISTINCT FROM c.canonical_id")
    returning = " RETURNING s.fact_id, o.person_id, c.canonical_id"
    facts = list(affected.get("social_insurance", set()))
    for insured_kind in insured_kinds:
        if facts and not inserted_linked:
            run("social_insurance", "person_id", by_insured + " AND s.fact_id = ANY(%s::text[])" + returning,
                (*insured_kind, text_array(facts)))
        if insured:
            run("social_insurance", "person_id", by_insured + " AND c.primary_key = ANY(%s::text[])" + returning,
                (*insured_kind, text_array(insured)))


def linked_at_insert(entity: str, row: str) -> dict[str, str]:
    """For a new record of ``entity`` whose fields are ``row``'s columns: each person id column as an SQL
    expression giving the person ``link_people`` would link it to by RIC or insured number (one index probe
    each), so a set-based insert writes it at once rather than updating every new row after (a second
    tuple and index entries per record). The same-row name direction is left to ``link_people``."""
    exprs: dict[str, str] = {}
    for person_column, ric_column, _ in PERSON_REFS.get(entity, ()):
        by_ric = f"(SELECT p.person_id FROM person p WHERE p.ric = {row}.{ric_column})"
        if person_column == "object_person_id":
            by_ric = f"CASE WHEN {row}.object_kind = 'PERSON' THEN {by_ric} END"
        exprs[person_column] = by_ric
    if entity == "social_insurance":   # the insured number wins over the RIC, the later kind over the earlier
        by_insured = [f"(SELECT c.canonical_id FROM contribution c WHERE c.department = '{d}' AND c.source_table"
                      f" = '{t}' AND c.role = '{r}' AND c.primary_key = {row}.insured_no)"
                      for d, t, r in reversed(identifying_kinds("insured_no"))]
        exprs["person_id"] = f"COALESCE({', '.join([*by_insured, exprs['person_id']])})"
    return exprs


def repoint_absorbed(conn: psycopg.Connection[Any], absorbed: dict[str, str], note: Note) -> None:
    """What pointed at a person matched late into another (orphan -> person) now points at the other."""
    for orphan, person in absorbed.items():
        for entity, refs in PERSON_REFS.items():
            table, id_column, _ = TABLES[entity]
            for person_column, _, _ in refs:
                note(entity, person_column, conn.execute(
                    f"UPDATE {table} SET {person_column} = %(person)s WHERE {person_column} = %(orphan)s"
                    f" RETURNING {id_column}, %(orphan)s, %(person)s", {"person": person, "orphan": orphan}))


@dataclass(frozen=True)
class NamedPerson:
    """What the library knows by now of the person a record stands in for (``<entity>:<id>``)."""
    person_id: str | None   # the person it names (its first person column), if linked
    code: str | None        # its RIC column, as the record's golden change carries it
    settled: bool           # the person record of its own source row is linked to a golden person


def named_persons(conn: psycopg.Connection[Any], stand_ins: Iterable[str]) -> dict[str, NamedPerson]:
    """For each ``<entity>:<id>`` standing in for a person (a held birth names its certificate while the
    newborn's record is on its way), the person the record names now and whether the person record from
    the record's own source row is linked yet (not still in resolve or merge, nor waiting in the review
    queue, where new evidence such as the police registering the newborn decides it). Unknown entities
    and records are left out."""
    wanted: dict[str, list[str]] = {}
    for stand_in in stand_ins:
        entity, _, record_id = stand_in.partition(":")
        if record_id and entity in PERSON_REFS:
            wanted.setdefault(entity, []).append(record_id)
    found: dict[str, NamedPerson] = {}
    for entity, ids in wanted.items():
        table, id_column, _ = TABLES[entity]
        person_column, ric_column, _ = PERSON_REFS[entity][0]
        for record_id, person_id, code, settled in conn.execute(
                f"SELECT g.{id_column}, g.{person_column}, g.{ric_column}, EXISTS (SELECT FROM contribution gc"
                f" JOIN contribution pc USING (department, source_table, primary_key) WHERE gc.entity = %s"
                f" AND gc.canonical_id = g.{id_column} AND pc.entity = 'person' AND pc.canonical_id IS NOT NULL)"
                f" FROM {table} g WHERE g.{id_column} = ANY(%s::text[])", (entity, text_array(ids))):
            found[f"{entity}:{record_id}"] = NamedPerson(person_id, code, settled)
    return found
