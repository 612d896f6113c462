"""``kintsmesh simulate``: write the city into the department databases.

``--initial N`` bulk-loads a population with COPY (one transaction per department,
departments in parallel);
``--rate R --duration S`` then makes live changes, each a small transaction in
one department, the way department systems write. The city's state is kept in
``.stack/sim/city.pickle`` between runs; the ground truth of every row written
is appended to ``.stack/sim/ground_truth.jsonl``.
"""

from __future__ import annotations

import json
import pickle
import random
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import psycopg
from psycopg import sql

from kintsmesh.errors import KintsmeshError
from kintsmesh.settings import DEPARTMENTS, Settings
from kintsmesh.simulate.city import build_city
from kintsmesh.simulate.departments import PRIMARY_KEYS, DepartmentViews, Row, initial_rows
from kintsmesh.simulate.events import LiveCity, LiveStats


def sim_dir(settings: Settings) -> Path:
    return settings.stack_dir / "sim"


def truth_record(row: Row, op: str) -> str:
    return json.dumps(
        {"db": row.database, "table": row.table, "pk": row.key, "op": op, "links": row.truth},
        ensure_ascii=False,
    )


def _load_department(settings: Settings, database: str, tables: dict[tuple[str, str], list[Row]]) -> Counter[tuple[str, str]]:
    """COPY one department's tables in one transaction, parents before children."""
    counts: Counter[tuple[str, str]] = Counter()
    with psycopg.connect(settings.dsn(database)) as conn:
        for key in sorted(tables, key=list(PRIMARY_KEYS).index):
            batch = tables[key]
            columns = list(batch[0].values)
            statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
                sql.Identifier(key[1]), sql.SQL(", ").join(map(sql.Identifier, columns))
            )
            with conn.cursor() as cur, cur.copy(statement) as copy:
                for row in batch:
                    copy.write_row([row.values[c] for c in columns])
            counts[key] = len(batch)
        conn.commit()
    return counts


def bulk_load(settings: Settings, rows: Iterable[Row]) -> Counter[tuple[str, str]]:
    """Departments load in parallel (separate databases, separate servers in production)."""
    by_department: dict[str, dict[tuple[str, str], list[Row]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        by_department[row.database][(row.database, row.table)].append(row)
    counts: Counter[tuple[str, str]] = Counter()
    with ThreadPoolExecutor(max_workers=len(DEPARTMENTS)) as pool:
        for done in pool.map(lambda d: _load_department(settings, d, by_department[d]), list(by_department)):
            counts.update(done)
    return counts


CITY_FILE = "city.pickle"             # the city as its last live run (or the initial load) left it
UNFINISHED = "live-run.unfinished"   # a live run in progress: the events it has reserved (see run_simulation)


def redo_unfinished(settings: Settings, *, seed: int, dirty_rate: float) -> None:
    """Make again what a killed live run of the city wrote, and nothing more (a benchmark, before it measures)."""
    if (sim_dir(settings) / UNFINISHED).is_file():
        run_simulation(settings, seed=seed, initial=None, rate=1.0, duration_s=0, dirty_rate=dirty_rate,
                       truth_path=None)


def reserved_run(unfinished: Path, seed: int) -> tuple[int, int]:
    """The events an unfinished live run reserved, and its seed; (0, seed) when none is unfinished."""
    if not unfinished.is_file():
        return 0, seed
    words = unfinished.read_text().split()
    return int(words[0]), int(words[1]) if len(words) > 1 and words[1].isdigit() else seed


def _live_run(settings: Settings, folder: Path, truth: Path, seed: int, dirty_rate: float, rate: float,
              duration_s: float, redo: int) -> LiveStats:
    """One live run of the saved city: redo what a killed run reserved, draw and write, save the city."""
    state_file, unfinished = folder / CITY_FILE, folder / UNFINISHED
    with open(state_file, "rb") as fh:
        city = pickle.load(fh)
    live = LiveCity(city, seed, dirty_rate)
    with open(truth, "a") as truth_out:
        stats = live.run(settings, rate=rate, duration_s=duration_s, redo=redo,
                         on_row=lambda row, op: truth_out.write(truth_record(row, op) + "\n"),
                         reserve=lambda n: unfinished.write_text(f"{max(n, redo)} {seed} (events reserved, seed)\n"))
    with open(state_file, "wb") as out:
        pickle.dump(city, out)
    unfinished.unlink(missing_ok=True)
    return stats


def run_simulation(
    settings: Settings,
    *,
    seed: int,
    initial: int | None,
    rate: float | None,
    duration_s: float,
    dirty_rate: float,
    truth_path: str | None,
    today: date | None = None,
    keep_existing: bool = False,
) -> LiveStats | None:
    """Load a city and/or make live changes; returns the live run's statistics (None without --rate)."""
    folder = sim_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    state_file = folder / CITY_FILE
    truth = Path(truth_path) if truth_path else folder / "ground_truth.jsonl"
    if initial is not None and state_file.is_file():
        if not keep_existing:
            raise KintsmeshError(
                f"simulate: a city is already loaded ({state_file}); its rows are in the department databases. "
                "Continue it with --rate, or start afresh with `kintsmesh stack reset`"
            )
        print(f"a city is already loaded ({state_file}); keeping it", flush=True)
        initial = None
    if initial is not None:
        started = time.monotonic()
        city = build_city(seed, initial, today or date.today())
        rows = initial_rows(city, DepartmentViews(city, random.Random(seed + 1), dirty_rate))
        built = time.monotonic() - started
        print(f"city: {len(city.people):,} people, {len(city.households):,} households, {len(city.houses):,} houses, "
              f"{len(city.enterprises):,} enterprises ({built:.1f} s)", flush=True)
        counts = bulk_load(settings, rows)
        with open(truth, "w") as out:
            out.writelines(truth_record(row, "c") + "\n" for row in rows)
        with open(state_file, "wb") as out:
            pickle.dump(city, out)
        elapsed = time.monotonic() - started
        for (database, table), n in sorted(counts.items()):
            print(f"  {database + '.' + table:<24} {n:>9,} rows")
        print(f"initial load: {sum(counts.values()):,} rows in {elapsed:.1f} s "
              f"({sum(counts.values()) / elapsed:,.0f} rows/s); ground truth: {truth}", flush=True)
    if rate is None:
        return None
    if not state_file.is_file():
        raise KintsmeshError(f"simulate: no city yet ({state_file}); run kintsmesh simulate --initial N first")
    # The city is saved when a live run ends. A run killed before that (a Ctrl-C'd benchmark, a crash) left
    # rows the saved city does not know of, some with ids the city will hand out again. So a run first notes
    # how many events it is about to draw, and its seed (in steps, before drawing them); the next run redraws
    # that many from the same saved state and seed, the same changes, an insert overwriting the row of its key.
    unfinished = folder / UNFINISHED
    redo, redo_seed = reserved_run(unfinished, seed)
    if redo:
        print(f"the last live run of this city stopped before saving it: its first {redo:,} events are made again"
              " (inserts overwriting the rows it wrote) before this run starts", flush=True)
    if redo and redo_seed != seed:   # another seed's run (the demo's, another benchmark's): its own draws first
        _live_run(settings, folder, truth, redo_seed, dirty_rate, rate, 0, redo)
        redo = 0
    stats = _live_run(settings, folder, truth, seed, dirty_rate, rate, duration_s, redo)
    print(f"live: {stats.changes:,} changes in {stats.transactions:,} transactions over {stats.elapsed_s:.1f} s "
          f"({stats.changes / max(stats.elapsed_s, 1e-9):,.0f} changes/s)", flush=True)
    for kind, n in sorted(stats.by_event.items()):
        print(f"  {kind:<22} {n:>7,}")
    return stats
