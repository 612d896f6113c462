"""Decision support on the resource library: the population cells kept current from golden person
changes (``apply_changes``, in the life-event stage's batch transaction) and birthdays (``birthday_pass``,
with the daily pass), a full ``recount`` from the golden persons, and what leaves the library — the
population by area, the needs per district, a Parquet export and a chart per district — with small cells
suppressed (``streams.events.population.suppressed``).
"""

from __future__ import annotations

import calendar
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import psycopg

from streams.events.population import LEVELS, Cell, birthday_moves, facilities, moves, needs, rolled_up, suppressed

RECOUNT_SQL = """
INSERT INTO population_cell (district, street, community, age_band, sex, residents, updated_at)
SELECT district, street, community,
       CASE WHEN age >= 85 THEN '85+' ELSE (age / 5 * 5)::text || '-' || (age / 5 * 5 + 4)::text END,
       sex, count(*), now()
FROM (SELECT coalesce(address->>'district', '') AS district, coalesce(address->>'street', '') AS street,
             coalesce(address->>'community', '') AS community,
             CASE gender WHEN '1' THEN 'M' WHEN '2' THEN 'F' ELSE 'U' END AS sex,
             extract(year FROM age(%(today)s::date, birth_date))::int AS age
      FROM person WHERE death_date IS NULL AND birth_date IS NOT NULL AND birth_date <= %(today)s) p
GROUP BY 1, 2, 3, 4, 5
"""
APPLIED_KEPT = "1 hour"


def _add(conn: psycopg.Connection[Any], delta: Counter[Cell]) -> None:
    if not delta:
        return
    cells = sorted(delta)
    conn.execute(
        "INSERT INTO population_cell (district, street, community, age_band, sex, residents, updated_at)"
        " SELECT d, s, c, a, x, n, now() FROM unnest(%s::text[], %s::text[], %s::text[], %s::text[], %s::text[],"
        " %s::int[]) AS u(d, s, c, a, x, n)"
        " ON CONFLICT (district, street, community, age_band, sex)"
        " DO UPDATE SET residents = population_cell.residents + EXCLUDED.residents, updated_at = now()",
        ([c[0] for c in cells], [c[1] for c in cells], [c[2] for c in cells], [c[3] for c in cells],
         [c[4] for c in cells], [delta[c] for c in cells]))


def as_of(conn: psycopg.Connection[Any], today: date) -> date:
    """The day the cells' age bands are of: the last day whose birthdays moved (the first call: today)."""
    row = conn.execute("SELECT max(day) FROM population_pass").fetchone()
    if row and row[0]:
        return row[0]   # type: ignore[no-any-return]
    conn.execute("INSERT INTO population_pass (day, moved, finished_at) VALUES (%s, 0, now())", (today,))
    return today


def apply_changes(conn: psycopg.Connection[Any], changes: list[tuple[dict[str, Any] | None, dict[str, Any] | None,
                                                                   int | None]], today: date) -> int:
    """Move the residents a batch of golden person changes (before, after, source commit ms) moves, their
    ages as of the cells' day (``as_of``: a birthday not passed yet is moved by ``birthday_pass``); note
    when each was applied (freshness). Inside the caller's transaction. Returns the cells changed."""
    if not changes:
        return 0
    delta = moves(((before, after) for before, after, _ in changes), as_of(conn, today))
    _add(conn, delta)
    committed = [ms for _, _, ms in changes if ms is not None]
    if committed:
        conn.execute("INSERT INTO population_applied (applied_at, committed_ms) SELECT now(), unnest(%s::bigint[])",
                     (committed,))
        conn.execute(f"DELETE FROM population_applied WHERE applied_at < now() - interval '{APPLIED_KEPT}'")
    return len(delta)


def birthday_pass(conn: psycopg.Connection[Any], today: date) -> int:
    """Every day since the cells' day up to ``today``: the residents whose birthday enters a new age band
    leave the old band's cell for the new one's (someone born on 29 February has it on 1 March in a
    common year). Inside the caller's transaction; returns the residents moved."""
    moved = 0
    day = as_of(conn, today)
    while day < today:
        day += timedelta(days=1)
        leap_born = day.month == 3 and day.day == 1 and not calendar.isleap(day.year)
        delta: Counter[Cell] = Counter()
        that_day = 0
        for born, places in conn.execute(
                "SELECT birth_date, array_agg(ARRAY[coalesce(address->>'district', ''), coalesce(address->>'street',"
                " ''), coalesce(address->>'community', ''), CASE gender WHEN '1' THEN 'M' WHEN '2' THEN 'F' ELSE 'U'"
                " END]) FROM person WHERE ((extract(month FROM birth_date) = %s AND extract(day FROM birth_date) = %s)"
                " OR (%s AND extract(month FROM birth_date) = 2 AND extract(day FROM birth_date) = 29))"
                " AND birth_date < %s AND death_date IS NULL GROUP BY 1", (day.month, day.day, leap_born, day)):
            step = birthday_moves(born, [(p[0], p[1], p[2], p[3]) for p in places], day)
            that_day += sum(n for n in step.values() if n > 0)
            delta.update(step)
        _add(conn, Counter({cell: n for cell, n in delta.items() if n}))
        conn.execute("INSERT INTO population_pass (day, moved, finished_at) VALUES (%s, %s, now())", (day, that_day))
        moved += that_day
    return moved


def recount(conn: psycopg.Connection[Any], today: date) -> dict[str, Any]:
    """Count every cell again from the golden persons (an installation's first figures, or a check of the
    incremental ones: ``kintsmesh aggregates recount``). Commits."""
    started = time.perf_counter()
    with conn.transaction():
        conn.execute("LOCK TABLE population_cell IN EXCLUSIVE MODE")   # the stage's increments wait for it
        before = dict(((r[0], r[1], r[2], r[3], r[4]), r[5]) for r in conn.execute("SELECT * FROM population_cell"))
        conn.execute("DELETE FROM population_cell")
        conn.execute(RECOUNT_SQL, {"today": today})
        conn.execute("DELETE FROM population_cell WHERE residents = 0")
        after = dict(((r[0], r[1], r[2], r[3], r[4]), r[5]) for r in conn.execute("SELECT * FROM population_cell"))
        conn.execute("DELETE FROM population_pass WHERE day > %s", (today,))   # the cells are of today now
        conn.execute("INSERT INTO population_pass (day, moved, finished_at) VALUES (%s, 0, now())"
                     " ON CONFLICT (day) DO UPDATE SET finished_at = now()", (today,))
    differing = {c for c in before.keys() | after.keys() if before.get(c, 0) != after.get(c, 0)}
    return {"residents": sum(after.values()), "cells": len(after), "seconds": round(time.perf_counter() - started, 3),
            "cells_that_differed": len(differing)}


def cells(conn: psycopg.Connection[Any]) -> list[tuple[Cell, int]]:
    return [((d, s, c, a, x), n) for d, s, c, a, x, n in conn.execute(
        "SELECT district, street, community, age_band, sex, residents FROM population_cell WHERE residents <> 0")]


def population(conn: psycopg.Connection[Any], level: str = "district") -> list[dict[str, Any]]:
    """Residents per area of ``level`` by age band and sex, as they may leave the library: a cell under the
    threshold is null and flagged suppressed, and so is an area's total when it is."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {list(LEVELS)}, not {level!r}")
    rows = []
    for area, by_band in sorted(rolled_up(cells(conn), level).items()):
        named = dict(zip(LEVELS, area))
        total = sum(by_band.values())
        rows.append({**named, "residents": suppressed(total),
                     "cells": [{"age_band": band, "sex": sex, "residents": suppressed(n),
                                "suppressed": suppressed(n) is None}
                               for (band, sex), n in sorted(by_band.items(), key=lambda kv: (_band_order(kv[0][0]),
                                                                                              kv[0][1]))]})
    return rows


def _band_order(band: str) -> int:
    return int(band.split("-")[0].rstrip("+"))


def entering_school(conn: psycopg.Connection[Any], today: date) -> tuple[int, dict[str, int]]:
    """The September a cohort starts school (this year's until 31 August, else next year's) and the
    residents per district who complete the entry age by its 31 August and not a year earlier."""
    year = today.year if (today.month, today.day) <= (8, 31) else today.year + 1
    age = int(facilities()["school_entry_age"])
    first, last = date(year - age - 1, 9, 1), date(year - age, 8, 31)
    return year, {d: n for d, n in conn.execute(
        "SELECT coalesce(address->>'district', ''), count(*) FROM person WHERE birth_date BETWEEN %s AND %s"
        " AND death_date IS NULL GROUP BY 1", (first, last))}


def needs_report(conn: psycopg.Connection[Any], today: date) -> dict[str, Any]:
    """Health centres and school places per district from the actual residents (suppressed below the
    threshold like any count that leaves the library)."""
    district_residents: Counter[str] = Counter()
    for cell, n in cells(conn):
        district_residents[cell[0]] += n
    year, cohort = entering_school(conn, today)
    rows = needs(dict(district_residents), cohort)
    for row in rows:
        for key in ("residents", "school_places_next_september"):
            row[key] = suppressed(row[key])
    return {"on": today.isoformat(), "school_year": year, "standard": {
        "residents_per_health_centre": facilities()["residents_per_health_centre"]}, "districts": rows}


def export_parquet(conn: psycopg.Connection[Any], path: Path, level: str = "community") -> int:
    """The population of ``level`` as Parquet: one row per area, age band and sex (suppressed cells null,
    flagged). Returns the rows written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{**{k: area[k] for k in LEVELS if k in area}, "age_band": c["age_band"], "sex": c["sex"],
             "residents": c["residents"], "suppressed": c["suppressed"]}
            for area in population(conn, level) for c in area["cells"]]
    schema = pa.schema([(k, pa.string()) for k in LEVELS[:LEVELS.index(level) + 1]]
                       + [("age_band", pa.string()), ("sex", pa.string()), ("residents", pa.int32()),
                          ("suppressed", pa.bool_())])
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return len(rows)


def plot_districts(conn: psycopg.Connection[Any], folder: Path) -> list[Path]:
    """A population pyramid PNG per district (men left, women right; suppressed cells drawn as none)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pypinyin import lazy_pinyin

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for area in population(conn, "district"):
        district = area["district"] or "no-district"
        latin = " ".join(w.capitalize() for w in lazy_pinyin(district))   # (the stack's fonts have no CJK glyphs)
        bands = sorted({c["age_band"] for c in area["cells"]}, key=_band_order)
        count = {(c["age_band"], c["sex"]): c["residents"] or 0 for c in area["cells"]}
        fig, ax = plt.subplots(figsize=(6, 5))
        ax.barh(bands, [-count.get((b, "M"), 0) for b in bands], color="#4C72B0", label="men")
        ax.barh(bands, [count.get((b, "F"), 0) for b in bands], color="#DD8452", label="women")
        ax.set_title(f"{latin}: {area['residents'] if area['residents'] is not None else '<10'} residents")
        ax.set_xlabel("residents (cells under 10 not shown)")
        ax.legend(loc="lower right")
        fig.tight_layout()
        path = folder / f"population-{district}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    return written


def freshness_ms(conn: psycopg.Connection[Any], since_ms: int) -> list[float]:
    """Department commit -> cells updated, in ms, for every golden person change applied since ``since_ms``."""
    return [float(ms) for (ms,) in conn.execute(
        "SELECT extract(epoch FROM applied_at) * 1000 - committed_ms FROM population_applied"
        " WHERE applied_at >= to_timestamp(%s / 1000.0)", (since_ms,))]
