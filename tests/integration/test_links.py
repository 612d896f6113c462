"""A reference linked to a person after its record merged is a new golden version, and a birth waits for it;
a newborn waiting in the review queue is decided when the police register it, and its certificate names it.

The health department's birth row yields the newborn's person record and the certificate; they travel on
different topics and can merge in different batches. Here the certificates merge first, on the resource
library's real schema (a scratch database on the stack's PostgreSQL), then the newborns.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import replace
from datetime import date

import psycopg
import pytest
from stdnum.cn import ric as ric_std

from kintsmesh.bench.resolve import incoming, scratch_library
from kintsmesh.simulate.city import build_city
from kintsmesh.simulate.departments import DepartmentViews, initial_rows
from sinks.events import LifeEvents
from sinks.library import Incoming, Merger, lock_library, lock_resolve, lock_settle
from sinks.library.links import NamedPerson, named_persons
from sinks.library.review import decide, explain
from streams.events.rules import HOLD, change_from_message, evaluate_change, rules

pytestmark = pytest.mark.integration


def changes_of(conn: psycopg.Connection, entity: str) -> dict[str, list[dict]]:
    """The outbox's golden changes of ``entity`` by canonical id, oldest version first."""
    found: dict[str, list[dict]] = {}
    for (value,) in conn.execute("SELECT value FROM outbox WHERE value->>'entity' = %s"
                                 " ORDER BY (value->>'version')::int", (entity,)):
        found.setdefault(value["canonical_id"], []).append(value)
    return found


def test_a_newborn_merged_after_its_certificate_makes_a_linking_version_and_names_the_birth(settings):
    today = date(2026, 11, 27)
    city = build_city(4242, 400, today)
    rows = [r for r in initial_rows(city, DepartmentViews(city, random.Random(4243), 0.0))
            if (r.database, r.table) == ("health", "cszm")]
    now_ms = int(time.time() * 1000)
    items, rejected = incoming(rows, now_ms)
    assert rows and not rejected
    certificates = [i for i in items if i.entity == "certificate"]
    newborns = [i for i in items if i.entity == "person"]
    # the city's births are older than the rule's recent_days: the rule without it
    birth = {"BIRTH_REGISTERED": replace(rules()["BIRTH_REGISTERED"], recent_days=None)}
    dsn = scratch_library(settings, "kintsmesh_test_links")
    with psycopg.connect(dsn) as conn:
        merger = Merger(conn)
        store = LifeEvents(settings, conn)
        with conn.transaction():
            lock_library(conn)
            merger.merge(certificates)
        created = changes_of(conn, "certificate")
        # the births, held; their hold over while the newborns are still on their way: they wait on,
        # but one whose wait is over (give_up_at) is recorded naming its certificate
        with conn.transaction():
            store.record([e for v in created.values() for e in evaluate_change(change_from_message(v[0]), now_ms, birth)])
        given_up = conn.execute("UPDATE held_event SET release_at = now(), give_up_at = now()"
                                " WHERE event_id = (SELECT event_id FROM held_event ORDER BY event_id LIMIT 1) RETURNING event_id::text"
                                ).fetchone()[0]
        conn.execute("UPDATE held_event SET release_at = now() WHERE give_up_at > now()")
        assert store.release_held() == 1
        assert conn.execute("SELECT count(*) FROM held_event WHERE release_at > now()").fetchone()[0] == len(created) - 1
        with conn.transaction():
            lock_library(conn)
            report = merger.merge(newborns)
        # the newborns merged, their hold over before the linking versions reach the worker: they name them
        conn.execute("UPDATE held_event SET release_at = now()")
        assert store.release_held() == len(created) - 1
        recorded = dict(conn.execute("SELECT event_id::text, subject_id FROM life_event").fetchall())
        linked = changes_of(conn, "certificate")
        holders = dict(conn.execute("SELECT certificate_id, holder_person_id FROM certificate").fetchall())
        history = {(cid, version): data for cid, version, data in conn.execute(
            "SELECT canonical_id, version, data FROM golden_history WHERE entity = 'certificate'")}
        explained = {cid: explain(conn, cid)["history"] for cid in linked}
    assert len(created) == len(certificates) and all(len(v) == 1 for v in created.values())
    assert all(holders.values()), "every certificate holds its newborn"
    assert report.golden_updates >= len(newborns) + len(certificates)
    for cid, versions in linked.items():
        assert [v["version"] for v in versions] == [1, 2], versions
        link = versions[1]
        assert link["op"] == "UPDATE" and link["changed_fields"] == ["holder_person_id"], link
        assert json.loads(link["after"])["holder_person_id"] == holders[cid]
        assert json.loads(link["before"])["holder_person_id"] is None
        assert history[(cid, 2)] == history[(cid, 1)]   # the facts did not change; what the library knows did
        assert link["cause"]["table"] == "cszm" and link["cause"]["role"] == "child"   # the newborn's change
        # explain tells the linking version from the certificate's own, and names what it linked and why
        assert [(v["version"], v["kind"], v.get("linked")) for v in explained[cid]] == [
            (1, "sources", None), (2, "link", ["holder_person_id"])], explained[cid]
        assert explained[cid][1]["cause"].endswith("/child") and explained[cid][0]["cause"].endswith("/certificate")
        # the birth: held back while the certificate names no one, then the same event names the newborn
        held = evaluate_change(change_from_message(versions[0]), now_ms, birth)
        final = evaluate_change(change_from_message(link), now_ms, birth)
        assert [e["subject_id"] for e in held] == [f"certificate:{cid}"] and HOLD in held[0]
        assert [e["subject_id"] for e in final] == [holders[cid]] and HOLD not in final[0]
        assert final[0]["event_id"] == held[0]["event_id"]
        assert recorded[final[0]["event_id"]] == (held[0]["subject_id"] if final[0]["event_id"] == given_up
                                                  else holders[cid])


def _person(record: dict, key: str, ric: str | None, parents: bool) -> Incoming:
    """A police registry record of a person described like ``record`` (its name, birth date, gender,
    address), with its own RIC, naming the parents or not."""
    provenance = {**record["provenance"], "department": "police", "table": "rk_jbxx", "primary_key": key,
                  "role": "person"}
    return Incoming("person", {**record, "ric": ric, "findings": [], "provenance": provenance,
                               **({} if parents else {"mother_ric": None, "father_ric": None})})


def _truth_ric(city, child: Incoming) -> str:
    """The RIC the city gave the baby of a birth certificate's child record."""
    return next(ric for ric, p in city.people.items() if p.keys.get("cszmbh") == child.source.primary_key)


def _ric_like(ric: str, seq: int) -> str:
    body = f"{ric[:14]}{seq:03d}"
    return body + ric_std.calc_check_digit(body + "0")


def test_a_newborn_waiting_for_review_is_decided_by_new_evidence_and_its_certificate_names_it(settings):
    today = date(2026, 11, 27)
    city = build_city(4343, 400, today)
    rows = [r for r in initial_rows(city, DepartmentViews(city, random.Random(4344), 0.0))
            if (r.database, r.table) == ("health", "cszm")]
    items, _ = incoming(rows, int(time.time() * 1000))
    births = {i.source.primary_key: i for i in items if i.entity == "certificate"}
    children = [i for i in items if i.entity == "person" and i.record.get("mother_ric") and i.record.get("father_ric")
                and i.source.primary_key in births][:2]
    assert len(children) == 2
    dsn = scratch_library(settings, "kintsmesh_test_rescore")
    with psycopg.connect(dsn) as conn:
        merger = Merger(conn)

        def merge(batch: list[Incoming]) -> None:
            with conn.transaction():
                lock_library(conn)
                merger.merge(batch)

        for n, child in enumerate(children):
            # two registered babies of the child's name and birthday, of no family on record: the child's
            # certificate scores the same for both, and waits in the review queue
            ric = _truth_ric(city, child)
            twin_like = [_person(child.record, f"decoy-{n}-{k}", _ric_like(ric, 900 + 2 * k + n), parents=False)
                         for k in range(2)]
            merge(twin_like)
            merge([child, births[child.source.primary_key]])
        reviews = conn.execute("SELECT review_id, primary_key FROM review_queue WHERE status = 'open'").fetchall()
        assert sorted(pk for _, pk in reviews) == sorted(c.source.primary_key for c in children), reviews
        holders = lambda: dict(conn.execute("SELECT certificate_no, holder_person_id FROM certificate"))  # noqa: E731
        assert all(holders()[c.source.primary_key] is None for c in children)
        stand_ins = [f"certificate:BIRTH_MEDICAL_CERTIFICATE:{c.source.primary_key}" for c in children]
        named = lambda: [named_persons(conn, stand_ins)[s] for s in stand_ins]  # noqa: E731
        # a held birth waits on while its newborn is in review: new evidence may decide it
        assert named() == [NamedPerson(None, None, False)] * 2

        # the first child: the police register it with its RIC and parents; that decides the review
        first, second = children
        ric = _truth_ric(city, first)
        merge([_person(first.record, "newborn-0", ric, parents=True)])
        status, decided = conn.execute("SELECT status, decided_id FROM review_queue WHERE primary_key = %s",
                                       (first.source.primary_key,)).fetchone()
        assert (status, decided) == ("resolved", ric)
        method, linked_to = conn.execute(
            "SELECT method, canonical_id FROM contribution WHERE primary_key = %s AND role = %s",
            (first.source.primary_key, first.source.role)).fetchone()
        assert (method, linked_to) == ("review_rescored", ric)
        assert holders()[first.source.primary_key] == ric   # the birth certificate names the newborn now
        assert named() == [NamedPerson(ric, None, True), NamedPerson(None, None, False)]
        versions = explain(conn, f"BIRTH_MEDICAL_CERTIFICATE:{first.source.primary_key}")["history"]
        assert [v["kind"] for v in versions] == ["sources", "link"], versions

        # the second: an operator accepts its top candidate; the certificate names that person too
        review_id = next(rid for rid, pk in reviews if pk == second.source.primary_key)
        target = decide(conn, review_id, accept=True)
        assert holders()[second.source.primary_key] == target


def test_a_nameless_twin_certificate_never_joins_its_sibling(settings):
    """Twins share their birthday, parents, household and address; a certificate missing the name can only
    be told from the sibling's by being another certificate: a person holds one birth."""
    city = build_city(4545, 400, date(2026, 11, 27))
    rows = [r for r in initial_rows(city, DepartmentViews(city, random.Random(4546), 0.0))
            if (r.database, r.table) == ("health", "cszm")]
    items, _ = incoming(rows, int(time.time() * 1000))
    children = [i for i in items if i.entity == "person" and i.record.get("name") and i.record.get("mother_ric")][:2]
    dsn = scratch_library(settings, "kintsmesh_test_twins")
    with psycopg.connect(dsn) as conn:
        merger = Merger(conn)
        twins = []
        for n, child in enumerate(children):
            nameless = Incoming("person", {**child.record, "name": None, "provenance": {
                **child.record["provenance"], "primary_key": f"{child.source.primary_key}-twin"}})
            twins.append((child, nameless))
            # the first pair in one batch, the second in two
            for batch in ([child, nameless],) if n == 0 else ([child], [nameless]):
                with conn.transaction():
                    lock_library(conn)
                    merger.merge(list(batch))
        for child, nameless in twins:
            ids = dict(conn.execute(
                "SELECT primary_key, canonical_id FROM contribution WHERE entity = 'person' AND primary_key = ANY(%s)",
                ([child.source.primary_key, nameless.source.primary_key],)).fetchall())
            assert ids[child.source.primary_key] and ids[nameless.source.primary_key]
            assert ids[child.source.primary_key] != ids[nameless.source.primary_key], ids


def test_resolve_matches_persons_queued_for_the_merge_stage_and_not_merged_yet(settings):
    """The repartition by canonical id: the resolve stage queues what it touched (``settle_queue``) and the
    merge stage makes the golden records later. Until it does, the golden table does not show those
    persons, so resolve matches against their contributions: a birth certificate whose newborn the police
    registered a moment before must join that newborn, not make a second person."""
    today = date(2026, 11, 27)
    city = build_city(4545, 400, today)
    rows = [r for r in initial_rows(city, DepartmentViews(city, random.Random(4546), 0.0))
            if (r.database, r.table) == ("health", "cszm")]
    items, _ = incoming(rows, int(time.time() * 1000))
    children = [i for i in items if i.entity == "person" and i.record.get("name") and i.record.get("birth_date")][:12]
    assert len(children) == 12
    police = [_person(child.record, f"newborn-{n}", _truth_ric(city, child), parents=True)
              for n, child in enumerate(children)]
    dsn = scratch_library(settings, "kintsmesh_test_unsettled")
    with psycopg.connect(dsn) as conn:
        merger = Merger(conn)

        def resolve(batch: list[Incoming]) -> None:   # what the resolve stage does, and no more
            with conn.transaction():
                lock_resolve(conn)
                merger.queue(merger.resolve(batch)[1])

        resolve(police)
        assert conn.execute("SELECT count(*) FROM person").fetchone()[0] == 0   # nothing merged yet
        # persons are found by their source rows' keys, golden or not
        indexed = {pid for (pid,) in conn.execute("SELECT DISTINCT person_id FROM person_key")}
        assert indexed == {p.record["ric"] for p in police}
        resolve([i for i in items if i.entity == "certificate"])
        resolve(children)
        linked = dict(conn.execute("SELECT primary_key, canonical_id FROM contribution WHERE department = 'health'"
                                   " AND role = 'child'").fetchall())
        queued = conn.execute("SELECT seq, entity, canonical_id FROM settle_queue ORDER BY seq").fetchall()
        with conn.transaction():   # what the merge stage does with the queue
            lock_settle(conn)
            report, _ = merger.settle_queued(queued)
        persons = dict(conn.execute("SELECT person_id, name FROM person").fetchall())
        left = conn.execute("SELECT count(*) FROM settle_queue").fetchone()[0]
    assert linked == {c.source.primary_key: _truth_ric(city, c) for c in children}, linked
    assert set(persons) == {_truth_ric(city, c) for c in children} and left == 0
    assert report.outbox["person"] == len(children)   # one new golden person each
