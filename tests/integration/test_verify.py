"""``kintsmesh verify`` on the stack every other test used (runs last: it reconciles what they all did)."""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest

from monitoring.verify import _table, refused_rows
from streams.normalize.mapping import mappings

pytestmark = pytest.mark.integration


def test_verify_finds_every_department_row_in_the_library_or_a_dlq_and_nothing_twice(settings):
    run = subprocess.run([sys.executable, "-m", "kintsmesh.cli", "verify", "--wait", "300"], capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "verified: nothing lost, nothing twice" in run.stdout
    assert "0 published twice" in run.stdout and "0 ids published twice" in run.stdout


def test_verify_names_a_row_the_library_does_not_hold(settings):
    mapping = mappings()[("police", "rk_jbxx")]
    with psycopg.connect(settings.dsn("police")) as conn:
        lost = conn.execute("SELECT rkbh::text FROM rk_jbxx ORDER BY rkbh LIMIT 1").fetchone()[0]
    refused, _ = refused_rows(settings, ["police"])
    # the library as it would be had this row's contribution been lost: every other row is there
    with psycopg.connect(settings.dsn("police")) as conn:
        every = {pk: True for (pk,) in conn.execute("SELECT rkbh::text FROM rk_jbxx")}
    every.pop(lost)
    result = _table(settings, mapping, every, set(), refused - {("police", "rk_jbxx", lost)}, grace_s=0)
    assert result.missing == [lost]
    assert result.rows == len(every) + 1
