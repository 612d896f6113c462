"""A contribution whose person was refused is held, not merged alone: merged once its person's row is
accepted, sent to dlq.merge (unresolved_reference) when its hold runs out (mapping: ``resolves: insured_no``)."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import psycopg
import pytest

from kintsmesh.settings import RESOURCE_LIBRARY_DB
from monitoring.verify import refused_rows
from sinks.dlq import show
from sinks.library.held import Holds
from tests.integration.test_monitoring import wait_for

pytestmark = pytest.mark.integration

MONTH, INSURANCE = "202611", "110"


def insured_with_a_refused_name(settings) -> tuple[str, str]:
    """An insured person whose row normalize refuses (an empty name) and one month of theirs, committed
    together; returns (insured number, the month's primary key)."""
    grbh = ("H" + uuid.uuid4().hex.upper())[:16]
    with psycopg.connect(settings.dsn("hrss")) as conn:
        conn.execute("INSERT INTO sb_cbry (grbh, xm, xb) VALUES (%s, '', 'M')", (grbh,))
        conn.execute("INSERT INTO sb_jfmx (grbh, jfny, xzdm, jfjs, grjfe, dwjfe) VALUES (%s, %s, %s, 8000, 640, 1280)",
                     (grbh, MONTH, INSURANCE))
    return grbh, f"{grbh}|{MONTH}|{INSURANCE}"


def wait(what: str, check):  # type: ignore[no-untyped-def]
    return wait_for(check, 90, what)


def held(library: psycopg.Connection, pk: str) -> tuple | None:
    return library.execute("SELECT field, identifier, value FROM held_reference WHERE department = 'hrss'"
                           " AND source_table = 'sb_jfmx' AND primary_key = %s", (pk,)).fetchone()


def merged(library: psycopg.Connection, pk: str) -> tuple | None:
    return library.execute(
        "SELECT s.fact_id, s.person_id FROM contribution c JOIN social_insurance s ON s.fact_id = c.canonical_id"
        " WHERE c.department = 'hrss' AND c.source_table = 'sb_jfmx' AND c.primary_key = %s", (pk,)).fetchone()


def test_a_month_of_a_refused_person_is_held_and_merged_with_its_person_once_the_row_is_corrected(settings):
    grbh, pk = insured_with_a_refused_name(settings)
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB), autocommit=True) as library:
        assert wait("the month held", lambda: held(library, pk)) == ("insured_no", "insured_no", grbh)
        assert merged(library, pk) is None   # not merged alone
        holds = Holds(library)   # the merge stage's look: not due while its person is missing, due once expired
        assert not holds.due(3600) and holds.due(0)
        # while it waits, the merge stage does not sit in an open transaction holding the library's lock
        # (each look for released holds is a transaction of its own, not a savepoint in the look's own)
        stuck = []
        for _ in range(40):
            stuck += library.execute(
                "SELECT a.pid, now() - a.xact_start FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid"
                " WHERE a.usename = 'kintsmesh_merge' AND l.locktype = 'advisory' AND l.granted"
                " AND now() - a.xact_start > interval '1 second'").fetchall()
            time.sleep(0.1)
        assert not stuck, f"the merge stage held the library's lock in a transaction open for over a second: {stuck}"
        listed = subprocess.run([sys.executable, "-m", "kintsmesh.cli", "held"], capture_output=True, text=True,
                                timeout=60)
        assert listed.returncode == 0 and "hrss.sb_jfmx" in listed.stdout, listed.stdout + listed.stderr
        # the department corrects the person's row: accepted now, and the month follows it into the library
        with psycopg.connect(settings.dsn("hrss")) as conn:
            conn.execute("UPDATE sb_cbry SET xm = '赵敏' WHERE grbh = %s", (grbh,))
        fact_id, person_id = wait("the month merged", lambda: merged(library, pk))
        assert held(library, pk) is None
        wait("the month linked to its person", lambda: merged(library, pk)[1])
        person = library.execute("SELECT canonical_id FROM contribution WHERE department = 'hrss'"
                                 " AND source_table = 'sb_cbry' AND primary_key = %s", (grbh,)).fetchone()
        assert person is not None and merged(library, pk)[1] == person[0]


def test_a_month_whose_person_never_arrives_goes_to_dlq_merge_when_its_hold_runs_out(settings):
    grbh, pk = insured_with_a_refused_name(settings)
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB), autocommit=True) as library:
        wait("the month held", lambda: held(library, pk))
        # the operator's command does what the merge stage does after reference_hold_s (default an hour)
        run = subprocess.run([sys.executable, "-m", "kintsmesh.cli", "held", "reject", "--older-than", "0"],
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stdout + run.stderr
        assert held(library, pk) is None and merged(library, pk) is None
    found = wait("the DLQ record", lambda: [r for r in show(settings, "merge", "unresolved_reference", 1_000_000)
                                            if r["primary_key"] == pk])
    record = found[0]
    assert record["field"] == "insured_no" and record["table"] == "sb_jfmx" and grbh in record["detail"]
    assert record["source_topic"] == "gldm.social_insurance.candidates"   # the message's own bytes: replayable
    # kintsmesh verify accounts for the month in a DLQ, and for the person's row in the department's
    refused, _ = refused_rows(settings, ["hrss"])
    assert ("hrss", "sb_jfmx", pk) in refused and ("hrss", "sb_cbry", grbh) in refused
