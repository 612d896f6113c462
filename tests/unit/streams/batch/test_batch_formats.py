"""Parquet extracts are read as the text PostgreSQL's CSV export gives the same values."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq

from streams.batch.load import pg_text, read_extract


def test_typed_values_read_as_postgresqls_csv_text():
    assert pg_text(None) == ""
    assert pg_text(True) == "t" and pg_text(False) == "f"
    assert pg_text(Decimal("8000.50")) == "8000.50"   # the column's scale, as numeric(12,2) prints it
    assert pg_text(42) == "42" and pg_text("文本") == "文本"
    assert pg_text(date(2016, 2, 29)) == "2016-02-29"
    assert pg_text(datetime(2026, 11, 23, 10, 22)) == "2026-11-23 10:22:00"
    assert pg_text(datetime(2026, 11, 23, 10, 22, tzinfo=timezone(timedelta(hours=8)))) == "2026-11-23 10:22:00+08"
    assert pg_text(datetime(2026, 11, 23, 10, 22, tzinfo=timezone(timedelta(hours=5, minutes=30)))) \
        == "2026-11-23 10:22:00+05:30"
    assert pg_text({"born_at": "2026-11-23"}) == '{"born_at": "2026-11-23"}'


def test_a_parquet_extract_reads_like_its_csv(tmp_path):
    schema = pa.schema([("grbh", pa.string()), ("jfjs", pa.decimal128(12, 2)), ("jfrq", pa.date32())])
    table = pa.table({"grbh": ["G1", "G2"], "jfjs": [Decimal("8000.50"), None], "jfrq": [date(2026, 10, 1), None]},
                     schema=schema)
    parquet = tmp_path / "x.parquet"
    pq.write_table(table, parquet, row_group_size=1)
    csv = tmp_path / "x.csv"
    csv.write_text("grbh,jfjs,jfrq\nG1,8000.50,2026-10-01\nG2,,\n")
    header, total, rows = read_extract(parquet)
    assert (header, total) == (["grbh", "jfjs", "jfrq"], 2)
    assert list(rows) == list(read_extract(csv)[2])


def test_a_csv_line_the_reader_cannot_parse_is_a_line_error_and_the_lines_after_it_are_read(tmp_path):
    from streams.batch.load import LineError

    extract = tmp_path / "hrss.csv"
    extract.write_text("grbh,xm\n1,a\n2," + "x" * 200_000 + "\n3,c\n")   # a field beyond the csv module's limit
    header, total, rows = read_extract(extract)
    read = list(rows)
    assert header == ["grbh", "xm"] and total == 3 and len(read) == 3
    assert read[0] == {"grbh": "1", "xm": "a"} and read[2] == {"grbh": "3", "xm": "c"}
    assert isinstance(read[1], LineError) and "field larger than field limit" in read[1].detail
