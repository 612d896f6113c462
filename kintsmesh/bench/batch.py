"""``kintsmesh bench batch``: a T+1 social-insurance extract of ``--rows`` lines through ``batch load``.

The extract is written the way hrss exports ``sb_jfmx`` (CSV, header = columns;
``--format parquet``: then converted to typed Parquet, untimed) from a synthetic
city's insured people and months, then loaded into a scratch
resource library on the stack's PostgreSQL through exactly the code of
``kintsmesh batch load`` (mapping → standardize → resolve → merge, chunked
transactions). Rows/s is rows read over the load's wall time.
"""

from __future__ import annotations

import csv
import random
import time
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from kintsmesh.bench import write_result
from kintsmesh.bench.resolve import scratch_library
from kintsmesh.runtime import tune_gc_for_batches
from kintsmesh.settings import Settings
from kintsmesh.simulate.city import build_city
from kintsmesh.simulate.departments import DepartmentViews, shift_month
from streams.batch.load import load_batch

COLUMNS = ("grbh", "jfny", "xzdm", "dwbh", "dwmc", "tyshxydm", "jfjs", "grjfe", "dwjfe", "dzbz")


def write_extract(settings: Settings, rows: int, today: date) -> tuple[str, int, str]:
    """The months extract, its row count, and the insured persons' extract (``sb_cbry``): a month names its
    person by the insured number and is held until that person's row is in the library."""
    city = build_city(31, max(2000, rows // 40), today)
    views = DepartmentViews(city, random.Random(32), 0.03)
    insured = [p for p in city.people.values() if p.insured_no and p.employer]
    path = settings.stack_dir / "bench" / f"hrss-sb_jfmx-{rows}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    persons = settings.stack_dir / "bench" / f"hrss-sb_cbry-{rows}.csv"
    with persons.open("w", newline="") as out:
        person_rows = [views.insured_person(p).values for p in insured]
        header = csv.DictWriter(out, fieldnames=list(person_rows[0]))
        header.writeheader()
        header.writerows(person_rows)
    written = 0
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        month_back = 1
        while written < rows:
            month = shift_month(f"{today:%Y%m}", -month_back)
            for person in insured:
                for row in views.contributions(person, month):
                    writer.writerow([row.values[c] for c in COLUMNS])
                    written += 1
                    if written >= rows:
                        break
                if written >= rows:
                    break
            month_back += 1
    return str(path), written, str(persons)


MONEY = ("jfjs", "grjfe", "dwjfe")   # numeric(12,2) in hrss.sb_jfmx; the other columns are text


def as_parquet(path: str) -> str:
    """The CSV extract as the Parquet file hrss's export would write: the money columns as decimals."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyarrow import csv as pa_csv

    types = {c: pa.decimal128(12, 2) if c in MONEY else pa.string() for c in COLUMNS}
    table = pa_csv.read_csv(path, convert_options=pa_csv.ConvertOptions(column_types=types))
    target = str(Path(path).with_suffix(".parquet"))
    pq.write_table(table, target)
    return target


def run_batch_bench(settings: Settings, rows: int, file_format: str = "csv") -> dict[str, Any]:
    today = date.today()
    print(f"bench batch: writing a {rows:,}-row hrss.sb_jfmx extract ({file_format}) ...", flush=True)
    path, written, persons = write_extract(settings, rows, today)
    if file_format == "parquet":
        path = as_parquet(path)
    scratch = "kintsmesh_bench_batch"
    scratch_library(settings, scratch)
    tune_gc_for_batches()   # as `kintsmesh batch load`
    print("bench batch: loading the insured persons first (untimed) ...", flush=True)
    load_batch(settings, "hrss", today, Path(persons), progress=False, database=scratch)
    started = time.perf_counter()
    report = load_batch(settings, "hrss", today, Path(path), progress=True, database=scratch)
    seconds = time.perf_counter() - started
    result = {"rows": written, "format": file_format, "rows_per_s": round(written / seconds, 1),
              "seconds": round(seconds, 2),
              "rejected": report["rejected"], "golden_updates": report["candidates"]["golden_updates"],
              "held": report["candidates"]["held"],
              "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    print(f"  {written:,} rows in {seconds:.1f} s: {result['rows_per_s']:,.0f} rows/s   (target >= 20,000)")
    write_result("batch" if file_format == "csv" else f"batch-{file_format}", result)
    return result
