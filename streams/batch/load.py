"""T+1 batches: a department's nightly extract through mapping → standardize → resolve → merge.

``kintsmesh batch load --dept hrss --date 2026-11-26 extract.csv`` reads the CSV
(header = the source table's columns) or Parquet file (``*.parquet``: typed columns,
each value read as the text PostgreSQL's CSV export gives it, so both formats load
the same library), maps every line with the department's source mapping exactly
as the live path does, and merges chunks through
``sinks.library.Merger``, each chunk one transaction. A line's source position is
(batch date, line), so loading the same extract twice changes nothing. Lines the
mapping rejects are written next to the report with their reason, never dropped.
"""

from __future__ import annotations

import csv
import json
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any

import psycopg
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from kintsmesh.errors import TerminalError
from kintsmesh.settings import CITY_TZ, RESOURCE_LIBRARY_DB, Settings
from sinks.dlq import DeadLetters, rejected_line
from sinks.library import MERGE_SESSION, BatchReport, Growth, Incoming, Merger, lock_library
from sinks.library.bulk import BulkChunk, stage_bulk
from streams.normalize.compiled import apply
from streams.normalize.mapping import FieldRejected, SourceMapping, mappings
from streams.normalize.standardize import Rejected

CHUNK = 10000
SESSIONS = 2   # library connections merging chunks at once (measured: docs/benchmarks.md, bench batch)
log = logging.getLogger("kintsmesh.batch")


class BatchError(TerminalError):
    """An extract that cannot be loaded at all (unknown department, no matching table, unreadable file)."""


def cutoff_ms(batch_date: date) -> int:
    """An extract for date D holds the department's state at the end of D (China Standard Time)."""
    return int(datetime.combine(batch_date, dtime(23, 59, 59, 999000), CITY_TZ).timestamp() * 1000)


def batch_provenance(mapping: SourceMapping, row: dict[str, Any], batch_id: str, line: int,
                     committed_ms: int, captured_ms: int) -> dict[str, Any]:
    return {"department": mapping.department, "table": mapping.table, "primary_key": mapping.primary_key(row),
            "op": "BATCH", "commit_lsn": None, "change_lsn": None, "committed_at": committed_ms,
            "batch_id": batch_id, "line": line, "captured_at": captured_ms}


def choose_mapping(department: str, header: list[str], table: str | None) -> SourceMapping:
    """The department mapping the extract is for: named, or the one whose key columns the header has."""
    own = {t: m for (d, t), m in mappings().items() if d == department}
    if not own:
        raise BatchError(f"no source mappings for department {department!r} (streams/normalize/mappings)")
    if table:
        if table not in own:
            raise BatchError(f"{department} has no mapping for table {table!r}; it has {sorted(own)}")
        return own[table]
    fitting = [m for m in own.values() if set(m.key) <= set(header)]
    if not fitting:
        raise BatchError(f"the header {header[:8]} has the key columns of none of {sorted(own)}; pass --table")
    return max(fitting, key=lambda m: (len(m.columns & set(header)), len(m.key)))


@dataclass(frozen=True)
class LineError:
    """A line of the extract that could not be read as a row (a NUL byte, an unterminated quote ...)."""
    detail: str


def read_extract(path: Path) -> tuple[list[str], int, Iterator[dict[str, str] | LineError]]:
    """The extract's header, its number of lines after the header (for the progress bar) and its lines,
    each a dict of column -> text ('' for NULL), from a CSV or a Parquet file; a CSV line the reader cannot
    parse is a ``LineError`` in its place, and the lines after it are read on."""
    if path.suffix.lower() == ".parquet":
        return _read_parquet(path)
    with path.open(newline="", encoding="utf-8-sig") as handle:
        header = next(csv.reader(handle), None)
        if not header:
            raise BatchError(f"{path}: empty file or no header line")
        total = sum(1 for _ in handle)

    def lines() -> Iterator[dict[str, str] | LineError]:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            while True:
                try:
                    yield next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    yield LineError(f"csv: {exc}")
    return header, total, lines()


def _read_parquet(path: Path) -> tuple[list[str], int, Iterator[dict[str, str] | LineError]]:
    import pyarrow.parquet as pq  # only T+1 Parquet loads need it

    try:
        extract = pq.ParquetFile(path)
    except Exception as exc:   # noqa: BLE001 - pyarrow raises several kinds for a file that is not Parquet
        raise BatchError(f"{path}: not a readable Parquet file ({exc})") from None
    header = extract.schema_arrow.names

    def lines() -> Iterator[dict[str, str] | LineError]:
        with extract:
            for batch in extract.iter_batches(batch_size=CHUNK):
                columns = [[pg_text(v) for v in column.to_pylist()] for column in batch.columns]
                for values in zip(*columns):
                    yield dict(zip(header, values))
    return header, extract.metadata.num_rows, lines()


def pg_text(value: Any) -> str:
    """A typed value as PostgreSQL's CSV export writes it ('' for NULL): what the mappings read from CSV."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        text = value.isoformat(sep=" ")
        return text[:-3] if value.tzinfo is not None and text.endswith(":00") else text   # +08:00 -> +08
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)   # text, integers, numerics at their scale, dates (ISO)


def release_held(conn: psycopg.Connection[Any], merger: Merger, report: BatchReport) -> int:
    """Merge the held records whose person this load brought (an insurance month loaded before its insured
    person's extract); returns how many. The live merge stage does the same every quarter second."""
    with conn.transaction():
        lock_library(conn)
        ready = merger.holds.ready(limit=1_000_000)
        if ready:
            report.add(merger.merge([h.item for h in ready]))
    return len(ready)


def load_batch(settings: Settings, department: str, batch_date: date, path: Path, *, table: str | None = None,
               progress: bool = True, chunk: int = CHUNK, database: str = RESOURCE_LIBRARY_DB,
               bulk: bool = True, sessions: int = SESSIONS) -> dict[str, Any]:
    """Load one extract; returns the reconciliation report (also stored in batch_run). ``bulk=False``
    merges every candidate one by one (``Merger.merge``), as the live path does: slower, same library.
    ``sessions``: library connections merging chunks at once (chunks of new coded records only run side by
    side, under the shared locks; any other chunk merges alone)."""
    if not path.is_file():
        raise BatchError(f"{path}: no such file")
    sessions = max(1, sessions)
    header, total, extract_rows = read_extract(path)
    mapping = choose_mapping(department, header, table)
    batch_id = f"{department}-{batch_date:%Y%m%d}"
    cutoff = cutoff_ms(batch_date)
    started = datetime.now(CITY_TZ)
    t0 = time.perf_counter()
    report = BatchReport()
    rejected: Counter[str] = Counter()
    rejects_path = settings.stack_dir / "batches" / f"{batch_id}.rejects.jsonl"
    rejects_path.parent.mkdir(parents=True, exist_ok=True)
    # the live library's rejects go to the department's DLQ too (kintsmesh verify counts them there)
    dlq = DeadLetters(settings, department) if database == RESOURCE_LIBRARY_DB else None
    opened: list[psycopg.Connection[Any]] = []
    growth = Growth()   # the sessions analyze the growing tables once per step, not once each
    local = threading.local()
    tally = threading.Lock()   # the report and the rejects, written by every session

    def session() -> tuple[psycopg.Connection[Any], Merger]:
        """The merging thread's own connection and merger."""
        if not hasattr(local, "merger"):
            own = psycopg.connect(settings.dsn(database), options=MERGE_SESSION)
            opened.append(own)
            local.merger = Merger(own, growth)
        return local.merger.conn, local.merger

    try:
        with psycopg.connect(settings.dsn(database), options=MERGE_SESSION) as conn, rejects_path.open("w") as rejects, \
                ThreadPoolExecutor(sessions, thread_name_prefix="merge") as merging, \
                Progress(TextColumn(f"{batch_id} {mapping.table}"), BarColumn(), MofNCompleteColumn(),
                         TextColumn("{task.fields[rate]} rows/s"), TimeRemainingColumn(),
                         disable=not progress, transient=False, console=None) as bar:
            task = bar.add_task("load", total=total, rate="-")
            pending: list[Incoming] = []
            in_flight: deque[Future[None]] = deque()
            lines = 0

            def add(part: BatchReport) -> None:
                with tally:
                    report.add(part)

            def merge_alone(item: Incoming) -> None:
                conn, merger = session()
                try:
                    with conn.transaction():
                        lock_library(conn)
                        add(merger.merge([item]))
                except Exception as exc:  # noqa: BLE001 - one candidate that cannot merge must not stop the load
                    if conn.closed or conn.broken:
                        raise
                    p = item.provenance
                    reject(int(p.get("line") or 0), "merge_failed", None, f"{type(exc).__name__}: {exc}",
                           item.record, str(p.get("primary_key")))

            def merge(chunk: list[Incoming] | BulkChunk, items: list[Incoming]) -> None:
                """A chunk in one transaction (new records only: under the shared locks, beside the other sessions';
                what they hand back in a second one); if it fails, each candidate alone (one that fails again is
                rejected)."""
                conn, merger = session()
                try:
                    if isinstance(chunk, BulkChunk) and chunk.all_staged:
                        with conn.transaction():
                            lock_library(conn, shared=True)
                            part, left = merger.merge_new(chunk)
                        add(part)
                        chunk = items = left   # what is left is all that may still fail
                    if chunk:
                        with conn.transaction():
                            lock_library(conn)
                            add(merger.merge_staged(chunk) if isinstance(chunk, BulkChunk) else merger.merge(chunk))
                except Exception as exc:  # noqa: BLE001
                    if conn.closed or conn.broken:   # the library went away: the load stops, a rerun resumes it
                        raise
                    log.warning("%s: a chunk of %d failed (%s: %s); merging it one by one", batch_id, len(items),
                                type(exc).__name__, exc)
                    for item in items:
                        merge_alone(item)

            def flush() -> None:
                """Stage the chunk and hand it to a merging session: chunks merge while the next is mapped."""
                nonlocal pending
                staged = stage_bulk(pending) if bulk else pending
                while len(in_flight) >= sessions:
                    in_flight.popleft().result()   # only a lost library stops the load here
                in_flight.append(merging.submit(merge, staged, pending))
                pending = []

            def reject(line: int, reason: str, field: str | None, detail: str, row: Any, key: str | None = None) -> None:
                if dlq is not None and key is None and isinstance(row, dict):
                    key = mapping.primary_key(row)
                with tally:
                    rejected[reason] += 1
                    rejects.write(json.dumps({"line": line, "reason": reason, "field": field, "detail": detail[:500],
                                              "row": row}, ensure_ascii=False, default=repr) + "\n")
                    if dlq is not None:
                        dlq.send(rejected_line(department, mapping.table, path, line, key, reason, field, detail, row))

            for line, row in enumerate(extract_rows, start=1):
                lines = line
                if isinstance(row, LineError):
                    reject(line, "malformed_line", None, row.detail, None)
                    continue
                now = int(time.time() * 1000)
                try:
                    applied = apply(mapping, row, batch_provenance(mapping, row, batch_id, line, cutoff, now), retracted=False)
                except (FieldRejected, Rejected) as exc:
                    reject(line, exc.reason, getattr(exc, "column", None), exc.detail, row)
                    continue
                except Exception as exc:  # noqa: BLE001 - one line nobody foresaw must not abort the night's load
                    reject(line, "internal_error", None, f"{type(exc).__name__}: {exc}", row)
                    continue
                pending.extend(Incoming.of(c.entity, c.record) for c in applied.candidates)
                if len(pending) >= chunk:
                    flush()
                    bar.update(task, completed=line, rate=f"{line / (time.perf_counter() - t0):,.0f}")
            if pending:
                flush()
            while in_flight:
                in_flight.popleft().result()
            released = release_held(conn, Merger(conn), report)
            bar.update(task, completed=lines, rate=f"{lines / max(time.perf_counter() - t0, 1e-9):,.0f}")
            elapsed = time.perf_counter() - t0
            result = {
                "department": department, "table": mapping.table, "batch_date": batch_date.isoformat(),
                "batch_id": batch_id, "file": str(path), "rows": lines, "rejected": sum(rejected.values()),
                "rejected_by_reason": dict(rejected), "rejects_file": str(rejects_path) if rejected else None,
                "candidates": report.as_dict(), "released": released, "seconds": round(elapsed, 3),
                "rows_per_s": round(lines / elapsed, 1) if elapsed else None,
            }
            conn.execute("INSERT INTO batch_run (department, batch_date, file, started_at, finished_at, report)"
                         " VALUES (%s, %s, %s, %s, now(), %s)", (department, batch_date, str(path), started, json.dumps(result)))
            conn.commit()
    finally:
        for own in opened:
            own.close()
    if dlq is not None:
        dlq.close()
    if not rejected:
        rejects_path.unlink(missing_ok=True)
    return result


def summary(report: dict[str, Any]) -> str:
    c = report["candidates"]
    lines = [
        f"batch {report['batch_id']} ({report['table']}, {report['file']})",
        f"  rows read        {report['rows']:>10,}",
        f"  rejected         {report['rejected']:>10,}  {report['rejected_by_reason'] or ''}",
        f"  candidates       {c['read']:>10,}",
        f"    merged         {c['merged']:>10,}  ({c['set_based']:,} of them new records written set-based)",
        f"    unchanged      {c['unchanged']:>10,}  (already merged from this or a newer position)",
        f"    sent to review {c['sent_to_review']:>10,}",
        f"  golden updates   {c['golden_updates']:>10,}  ({c['new_golden']:,} new)",
        f"  conflicts        {c['conflicts']:>10,}  (values that lost to a more authoritative or newer source)",
        f"  {report['rows_per_s'] or 0:,.0f} rows/s over {report['seconds']} s",
    ]
    if report["rejects_file"]:
        lines.append(f"  rejected lines with their reasons: {report['rejects_file']}")
    return "\n".join(lines)


# Tables the simulated departments deliver as nightly extracts (social insurance, as in the reference system).
EXTRACT_TABLES: dict[str, str] = {"hrss": "sb_jfmx"}


def extract(settings: Settings, department: str, table: str | None, path: str, limit: int | None = None) -> int:
    """Write a department table as its nightly extract (what the department's export job would deliver):
    CSV, or Parquet with the columns' types when ``path`` ends in ``.parquet``; ``limit``: the first rows
    by primary key only (a sample)."""
    table = table or EXTRACT_TABLES.get(department)
    if not table or (department, table) not in mappings():
        raise BatchError(f"extract: give --table, one of {sorted(t for d, t in mappings() if d == department)}")
    query = f"SELECT * FROM public.{table}"
    if limit is not None:
        query += f" ORDER BY {', '.join(mappings()[(department, table)].key)} LIMIT {int(limit)}"
    with psycopg.connect(settings.dsn(department)) as conn:
        if path.lower().endswith(".parquet"):
            return _write_parquet(conn, table, query, path)
        with open(path, "wb") as out, \
                conn.cursor().copy(f"COPY ({query}) TO STDOUT WITH (FORMAT csv, HEADER)") as copy:
            for chunk in copy:
                out.write(chunk)
        count = conn.execute(f"SELECT count(*) FROM ({query}) q").fetchone()
    return int(count[0]) if count else 0


def _write_parquet(conn: psycopg.Connection[Any], table: str, query: str, path: str) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(name, _arrow_type(kind, precision, scale)) for name, kind, precision, scale in conn.execute(
        "SELECT column_name, data_type, numeric_precision, numeric_scale FROM information_schema.columns"
        " WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position", (table,))])
    # a value kept as text (jsonb, uuid ...) is written as PostgreSQL's CSV export writes it
    as_text = [field.type == pa.string() for field in schema]
    written = 0
    with conn.cursor(name="extract") as cursor, pq.ParquetWriter(path, schema) as writer:
        cursor.execute(query)
        while rows := cursor.fetchmany(CHUNK * 5):
            columns = [[v if v is None or not text or isinstance(v, str) else pg_text(v) for v in column]
                       for column, text in zip(zip(*rows), as_text)]
            writer.write_table(pa.Table.from_arrays([pa.array(c, f.type) for c, f in zip(columns, schema)],
                                                    schema=schema))
            written += len(rows)
    return written


def _arrow_type(kind: str, precision: int | None, scale: int | None) -> Any:
    """The Parquet column type of a PostgreSQL column (text for what has no exact counterpart)."""
    import pyarrow as pa

    if kind == "numeric" and precision is not None:
        return pa.decimal128(precision, scale or 0)
    return {"smallint": pa.int16(), "integer": pa.int32(), "bigint": pa.int64(), "boolean": pa.bool_(),
            "date": pa.date32(), "timestamp without time zone": pa.timestamp("us"),
            "timestamp with time zone": pa.timestamp("us", tz="UTC"), "real": pa.float32(),
            "double precision": pa.float64()}.get(kind, pa.string())
