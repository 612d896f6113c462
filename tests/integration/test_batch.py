"""T+1 loads on the real PostgreSQL: the set-based path leaves the library the row-by-row merge leaves."""

from __future__ import annotations

import csv
import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from kintsmesh.bench.batch import write_extract
from kintsmesh.bench.resolve import scratch_library
from kintsmesh.settings import RESOURCE_LIBRARY_DB
from kintsmesh.simulate.runner import run_simulation
from sinks.library import numeric_array, text_array
from streams.batch.load import extract, load_batch

pytestmark = pytest.mark.integration

# Everything but what the clock sets (merge and load times).
STATE = {
    "golden": "SELECT to_jsonb(s) - 'updated_at' FROM social_insurance s ORDER BY fact_id",
    "contribution": "SELECT to_jsonb(c) - 'merged_at' #- '{record,provenance,captured_at}' FROM contribution c"
                    " ORDER BY department, source_table, primary_key, role",
    "history": "SELECT to_jsonb(h) - 'recorded_at' #- '{cause,captured_at}' FROM golden_history h"
               " ORDER BY entity, canonical_id, version",
    "provenance": "SELECT to_jsonb(p) FROM field_provenance p ORDER BY entity, canonical_id",
    # before / after are JSON text: compared as JSON (key order and spacing are the writer's)
    "outbox": "SELECT topic, key, value - 'merged_at' - 'before' - 'after' - 'causes' #- '{cause,captured_at}',"
              " (SELECT jsonb_agg(c - 'captured_at') FROM jsonb_array_elements(value->'causes') c),"
              " (value->>'before')::jsonb, (value->>'after')::jsonb FROM outbox ORDER BY key, (value->>'version')::int",
}


def library_state(dsn: str) -> dict[str, list[Any]]:
    with psycopg.connect(dsn) as conn:
        return {name: conn.execute(query).fetchall() for name, query in STATE.items()}  # type: ignore[call-overload]


def load_insured(settings, persons: str | Path, database: str = RESOURCE_LIBRARY_DB) -> None:
    """The insured persons first: a month names its person by the insured number, and a month whose person
    is not in the library is held, not merged (sinks.library.held)."""
    report = load_batch(settings, "hrss", date(2026, 11, 25), Path(persons), progress=False, database=database)
    assert report["rows"] > 0 and report["candidates"]["held"] == 0


def edited_extracts(source: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Yesterday's extract (its first 1,500 lines) and today's: some of yesterday's rows changed, a row
    delivered twice in a row with a correction, an employer code missing."""
    with source.open(newline="") as handle:
        reader = csv.reader(handle)
        header, rows = next(reader), list(reader)
    base, employer, name = header.index("jfjs"), header.index("tyshxydm"), header.index("dwmc")
    today = [list(r) for r in rows]
    for r in today[:300]:
        r[base] = str(float(r[base]) + 100)            # a corrected contribution base: a new golden version
    corrected = list(today[2000])
    corrected[name] = corrected[name] + "（更正）"
    today.insert(2001, corrected)                      # the same source row twice in one chunk
    today[2500][employer] = ""                         # an empty value is no value
    paths = []
    for label, lines in (("yesterday", rows[:1500]), ("today", today)):
        path = tmp_path / f"hrss-sb_jfmx-{label}.csv"
        with path.open("w", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(header)
            writer.writerows(lines)
        paths.append(path)
    return paths[0], paths[1]


def test_the_set_based_load_leaves_the_library_the_row_by_row_merge_leaves(settings, tmp_path):
    source, written, persons = write_extract(settings, 4000, date(2026, 11, 27))
    assert written == 4000
    yesterday, today = edited_extracts(Path(source), tmp_path)
    day = date(2026, 11, 26)
    runs: dict[bool, tuple[list[dict[str, Any]], dict[str, list[Any]]]] = {}
    for bulk in (True, False):
        database = f"kintsmesh_test_batch_{'bulk' if bulk else 'rows'}"
        dsn = scratch_library(settings, database)
        load_insured(settings, persons, database)
        reports = [load_batch(settings, "hrss", d, path, progress=False, chunk=1000, database=database, bulk=bulk)
                   for d, path in ((day - timedelta(days=1), yesterday), (day, today), (day, today))]
        runs[bulk] = ([r["candidates"] for r in reports], library_state(dsn))
    (bulk_reports, bulk_state), (row_reports, row_state) = runs[True], runs[False]
    for name in STATE:
        assert len(bulk_state[name]) == len(row_state[name]) > 0, name
        # the first row that differs, not a diff of thousands (pytest's took a quarter of an hour)
        differs = next((i for i, (a, b) in enumerate(zip(bulk_state[name], row_state[name])) if a != b), None)
        assert differs is None, (name, differs, bulk_state[name][differs], row_state[name][differs])
    first, second, third = bulk_reports
    assert first["set_based"] == first["merged"] == 1500   # every row of yesterday opened a new record
    assert second["set_based"] == 2500 - 1                 # not yesterday's rows, nor the one delivered twice
    assert second["read"] == 4001 and second["new_golden"] == 2500 and second["golden_updates"] == 2500 + 300
    assert third["unchanged"] == third["read"] and third["golden_updates"] == 0
    assert all(r["set_based"] == 0 for r in row_reports)
    for b, r in zip(bulk_reports, row_reports):
        assert {**b, "set_based": 0} == r, (b, r)


def test_sessions_merging_side_by_side_leave_the_library_one_session_leaves(settings, tmp_path):
    # chunks of new records merge at once under the shared locks; a chunk with a row merged before, or a
    # row twice, merges alone; the same library (and the same outbox, published in another order) either way
    source, _, persons = write_extract(settings, 3000, date(2026, 11, 27))
    yesterday, today = edited_extracts(Path(source), tmp_path)
    states, reports = [], []
    for sessions in (1, 3):
        database = f"kintsmesh_test_batch_sessions_{sessions}"
        dsn = scratch_library(settings, database)
        load_insured(settings, persons, database)
        reports.append([load_batch(settings, "hrss", d, path, progress=False, chunk=200, database=database,
                                   sessions=sessions)["candidates"]
                        for d, path in ((date(2026, 11, 25), yesterday), (date(2026, 11, 26), today))])
        states.append(library_state(dsn))
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT count(*), count(DISTINCT key) FROM outbox WHERE value->>'entity' ="
                                " 'social_insurance'").fetchone() == (3000 + 300, 3000)
    assert reports[0] == reports[1]
    for name in STATE:
        assert states[0][name] == states[1][name], name


def test_a_parquet_extract_loads_the_library_its_csv_extract_loads(settings, tmp_path, fresh_seed):
    # a city's social-insurance rows (1,400-1,700 by seed) in the hrss database, exported both ways by `batch extract`
    sim = settings.model_copy(update={"stack_dir": tmp_path})
    run_simulation(sim, seed=fresh_seed, initial=300, rate=None, duration_s=0, dirty_rate=0.03, truth_path=None,
                   today=date(2026, 11, 27))
    as_csv, as_parquet = tmp_path / "sb_jfmx.csv", tmp_path / "sb_jfmx.parquet"
    rows = extract(settings, "hrss", None, str(as_csv), limit=1500)   # fewer when the city's seed made fewer
    assert rows > 1000 and extract(settings, "hrss", None, str(as_parquet), limit=1500) == rows
    persons = tmp_path / "sb_cbry.csv"
    extract(settings, "hrss", "sb_cbry", str(persons))
    day = date(2026, 11, 26)
    states, reports = [], []
    for name, path in (("csv", as_csv), ("parquet", as_parquet)):
        database = f"kintsmesh_test_batch_{name}"
        dsn = scratch_library(settings, database)
        load_insured(settings, persons, database)
        reports.append(load_batch(settings, "hrss", day, path, progress=False, chunk=1000, database=database))
        states.append(library_state(dsn))
    for name in STATE:   # typed Parquet values read as the CSV's text: the same facts, provenance, history
        assert len(states[0][name]) == len(states[1][name]) > 0, name
        assert states[0][name] == states[1][name], name
    assert reports[0]["candidates"] == reports[1]["candidates"] and reports[0]["rows"] == reports[1]["rows"] == rows
    # and one batch in either format is the same batch: loading the other one changes nothing
    again = load_batch(settings, "hrss", day, as_parquet, progress=False, database="kintsmesh_test_batch_csv")
    assert again["candidates"]["unchanged"] == again["candidates"]["read"] > 0


def test_array_literals_reach_postgresql_intact(settings):
    values = ['plain', 'a "quoted" one', 'back\\slash', 'comma, {braces}', '', None, 'NULL', '中文 名字', "it's"]
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        assert conn.execute("SELECT %s::text[]", (text_array(values),)).fetchone()[0] == values
        assert conn.execute("SELECT %s::text[]", (text_array([]),)).fetchone()[0] == []
        assert conn.execute("SELECT %s::numeric[]", (numeric_array((1, 20261126, 3758)),)).fetchone()[0] == [1, 20261126, 3758]


def extract_with_a_bad_line(settings, tmp_path: Path, people: int, persons_into: str | None = None
                            ) -> tuple[Path, int]:
    """A months extract with a line no CSV reader takes; ``persons_into``: a scratch library given its insured
    persons first (the live library is not: what T+1 loads there is not on the topics that test_merge replays,
    and its months stay held)."""
    source, written, persons = write_extract(settings, people, date(2026, 11, 27))
    if persons_into:
        load_insured(settings, persons, persons_into)
    with Path(source).open(newline="") as handle:
        reader = csv.reader(handle)
        header, rows = next(reader), list(reader)
    path = tmp_path / "hrss-with-a-bad-line.csv"
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows[:100])
        out.write("x" * 200_000 + "\n")                # line 101: a field no CSV reader takes
        writer.writerows(rows[100:])
    return path, written


def test_a_bad_line_is_rejected_with_its_line_number_and_the_load_goes_on(settings, tmp_path):
    database = "kintsmesh_test_batch_bad_line"
    scratch_library(settings, database)
    path, written = extract_with_a_bad_line(settings, tmp_path, 200, persons_into=database)
    report = load_batch(settings, "hrss", date(2026, 11, 27), path, progress=False, chunk=50, database=database)
    assert report["rows"] == written + 1 and report["rejected_by_reason"]["malformed_line"] == 1
    # every other line merged, or rejected for a value of its own (the simulator writes some dirty ones)
    assert report["candidates"]["merged"] == written - (report["rejected"] - 1)
    rejects = [json.loads(line) for line in Path(report["rejects_file"]).read_text().splitlines()]
    assert (101, "malformed_line") in [(r["line"], r["reason"]) for r in rejects]


def test_a_bad_line_loaded_into_the_resource_library_reaches_the_departments_dlq_with_file_and_line(settings, tmp_path):
    from sinks.dlq import show

    path, written = extract_with_a_bad_line(settings, tmp_path, 60)
    line = min(written, 100) + 1
    report = load_batch(settings, "hrss", date(2026, 11, 27), path, progress=False, chunk=50)
    found = [r for r in show(settings, "hrss", None, 1_000_000) if r["source_topic"] == f"extract:{path}"]
    assert report["rejected"] == len(found) >= 1
    bad = next(r for r in found if r["reason"] == "malformed_line")
    assert bad["source_offset"] == line and bad["table"] == report["table"] and bad["detail"].startswith(f"line {line}: ")
