"""Merge processes commit side by side (``lock_merge``): other partitions do not wait, the same partition
does, and what two transactions may both touch is locked where it is touched. A person and a
certificate naming the person's RIC, merged by two transactions open at the same time on the resource
library's real schema (a scratch database on the stack's PostgreSQL), are linked whichever commits first:
without the RIC keys, each would look for the other before it committed and neither would link."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from datetime import date

import psycopg
import pytest

from kintsmesh.bench.resolve import incoming, scratch_library
from kintsmesh.simulate.city import build_city
from kintsmesh.simulate.departments import DepartmentViews, initial_rows
from sinks.library import Contended, Incoming, Merger, lock_library, lock_merge, lock_settle
from sinks.library.links import checked_persons
from streams.resolve.identity import coded_id

pytestmark = pytest.mark.integration


def _persons_and_certificates() -> tuple[list[Incoming], list[Incoming]]:
    """The police's person rows of a simulated city, and the marriage certificates naming one of them by RIC."""
    city = build_city(5151, 300, date(2026, 11, 27))
    rows = [r for r in initial_rows(city, DepartmentViews(city, random.Random(5152), 0.0))
            if (r.database, r.table) in {("police", "rk_jbxx"), ("civil_affairs", "hy_djxx")}]
    items, _ = incoming(rows, int(time.time() * 1000))
    persons = [i for i in items if i.entity == "person" and i.source.table == "rk_jbxx"]
    rics = {p.record.get("ric") for p in persons}
    certificates = [i for i in items if i.entity == "certificate" and i.record.get("holder_ric") in rics]
    assert persons and certificates
    return persons, certificates


def _waiting_on_a_lock(conn: psycopg.Connection, pid: int) -> bool:
    return conn.execute("SELECT EXISTS (SELECT FROM pg_locks WHERE pid = %s AND NOT granted)", (pid,)).fetchone()[0]


def _race(dsn: str, first: Callable[[Merger], object], second: Callable[[Merger], object]) -> None:
    """``first`` in an open transaction; ``second`` in another, on another thread, which must wait for the
    first's locks; then the first commits, and the second after it."""
    with psycopg.connect(dsn) as one, psycopg.connect(dsn) as other, psycopg.connect(dsn, autocommit=True) as look:
        with one.transaction():
            lock_merge(one, [("gldm.person.resolved", 0)])
            first(Merger(one, side_by_side=True))
            failed: list[BaseException] = []

            def run() -> None:
                try:
                    with other.transaction():
                        lock_merge(other, [("gldm.certificate.candidates", 1)])
                        second(Merger(other, side_by_side=True))
                except BaseException as exc:  # noqa: BLE001 - reported by the test
                    failed.append(exc)

            thread = threading.Thread(target=run)
            thread.start()
            deadline = time.monotonic() + 20
            while not _waiting_on_a_lock(look, other.info.backend_pid):
                assert thread.is_alive() and not failed, f"the second transaction did not wait: {failed}"
                assert time.monotonic() < deadline, "the second transaction is not waiting for a lock"
                time.sleep(0.05)
        thread.join(30)
        assert not thread.is_alive() and not failed, failed


def _holders(dsn: str) -> tuple[dict[str, str | None], dict[str, str]]:
    with psycopg.connect(dsn) as conn:
        holders = dict(conn.execute("SELECT certificate_id, holder_person_id FROM certificate").fetchall())
        by_ric = dict(conn.execute("SELECT ric, person_id FROM person WHERE ric IS NOT NULL").fetchall())
        rics = dict(conn.execute("SELECT certificate_id, holder_ric FROM certificate").fetchall())
    return holders, {cid: by_ric[ric] for cid, ric in rics.items() if ric in by_ric}


def test_a_person_and_a_certificate_naming_it_merged_side_by_side_are_linked_whichever_goes_first(settings):
    persons, certificates = _persons_and_certificates()
    for name, first, second in (
            ("person_first", lambda m: m.merge(persons), lambda m: m.merge_coded(certificates)),
            ("certificate_first", lambda m: m.merge_coded(certificates), lambda m: m.merge(persons))):
        dsn = scratch_library(settings, f"kintsmesh_test_side_{name}")
        _race(dsn, first, second)
        holders, expected = _holders(dsn)
        assert len(holders) == len({coded_id(c) for c in certificates}) and expected, name
        assert {cid: holders[cid] for cid in expected} == expected, name
        with psycopg.connect(dsn) as conn:
            # every record's versions 1..n, its changes queued in version order (the outbox's id order)
            gaps = conn.execute("SELECT count(*) FROM (SELECT entity, canonical_id FROM golden_history GROUP BY 1, 2"
                                " HAVING max(version) <> count(*)) g").fetchone()[0]
            disorder = conn.execute(
                "SELECT count(*) FROM (SELECT key, (value->>'version')::int AS v, lag((value->>'version')::int)"
                " OVER (PARTITION BY key ORDER BY outbox_id) AS before FROM outbox) o WHERE v <> before + 1").fetchone()[0]
            versions = conn.execute("SELECT max(version) FROM certificate").fetchone()[0]
        assert gaps == 0 and disorder == 0, (name, gaps, disorder)
        # linked at insert (the person first), or by a linking version (the certificate first)
        assert versions == (1 if name == "person_first" else 2), (name, versions)


def test_merge_transactions_wait_only_for_their_own_partitions_and_for_the_whole_library_lock(settings):
    dsn = scratch_library(settings, "kintsmesh_test_side_locks")
    with psycopg.connect(dsn) as a, psycopg.connect(dsn) as b, psycopg.connect(dsn) as c:
        for conn in (b, c):
            conn.execute("SET lock_timeout = '500ms'")
            conn.commit()
        with a.transaction():
            lock_merge(a, [("gldm.house.candidates", 0), ("gldm.person.resolved", 2)])
            with b.transaction():   # other partitions, and a T+1 chunk of new records: beside it
                lock_merge(b, [("gldm.house.candidates", 1), ("gldm.person.resolved", 3)])
                lock_library(b, shared=True)
            for taking in (lambda: lock_merge(c, [("gldm.person.resolved", 2)]),   # its partition's next owner
                           lambda: lock_settle(c),                                 # held records' release
                           lambda: lock_library(c)):                               # a review decision, T+1 merge
                with pytest.raises(psycopg.errors.LockNotAvailable):
                    with c.transaction():
                        taking()
        with c.transaction():   # once it committed
            lock_merge(c, [("gldm.person.resolved", 2)])


def test_a_person_matched_into_another_meanwhile_makes_a_same_row_link_contended(settings):
    """A link made by a source row's person is checked: a person id no contribution names any more (the
    resolve stage matched it into another after this transaction's statement read it) is contended."""
    dsn = scratch_library(settings, "kintsmesh_test_side_absorbed")
    persons, _ = _persons_and_certificates()
    with psycopg.connect(dsn) as conn:
        with conn.transaction():
            lock_library(conn)
            Merger(conn).merge(persons[:5])
        present = {r[0] for r in conn.execute("SELECT person_id FROM person").fetchall()}
        with conn.transaction():
            checked_persons(conn, present)   # all there: nothing raised
        with pytest.raises(Contended, match="matched into another meanwhile"):
            with conn.transaction():
                checked_persons(conn, present | {"P-matched-away"})
