"""The compiled mappings (``streams.normalize.compiled``) do exactly what the interpreter
(``mapping.interpret``, the reference semantics) does: the same candidates, keys, records and findings in the
same order, the same unknown columns, or the same rejection (type, reason, column, text). Held on every
mapping of ours and of the hard set, over the simulator's department rows, the hard set's generator's rows
(written apart from the simulator), and hostile rows drawn field by field."""

from __future__ import annotations

import random
from datetime import date
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kintsmesh.bench.hardset import generate
from kintsmesh.bench.resolve_hard import hard_mappings
from kintsmesh.simulate.city import build_city
from kintsmesh.simulate.departments import DepartmentViews, initial_rows
from streams.normalize import compiled
from streams.normalize import mapping as m
from streams.normalize import standardize as std

PROVENANCE = {"department": "d", "table": "t", "primary_key": "k", "op": "CREATE", "commit_lsn": 1, "change_lsn": 2,
              "committed_at": 1_700_000_000_000, "batch_id": None, "line": None, "captured_at": 1_700_000_000_100}
OURS = m.mappings()
HARD = {(mp.department, mp.table): mp for mp in hard_mappings().values()}


def outcome(run: Any, mapping: m.SourceMapping, row: dict[str, Any], retracted: bool = False) -> Any:
    try:
        applied = run(mapping, row, PROVENANCE, retracted)
    except std.Rejected as exc:
        return ("rejected", type(exc), exc.reason, getattr(exc, "column", None), exc.detail)
    return ("applied", applied.unknown_columns, [(c.entity, c.key, c.record) for c in applied.candidates])


def assert_same(mapping: m.SourceMapping, row: dict[str, Any], retracted: bool = False) -> Any:
    # each run with the standardized-value cache empty and then full: a kept result must change nothing either
    m._results.clear()
    expected = outcome(m.interpret, mapping, row, retracted)
    for _ in range(2):
        assert outcome(compiled.apply, mapping, row, retracted) == expected, (mapping.table, row)
    m._results.clear()
    assert outcome(compiled.apply, mapping, row, retracted) == expected
    assert outcome(m.interpret, mapping, row, retracted) == expected
    return expected


def test_every_simulated_department_row_gives_what_the_interpreter_gives() -> None:
    city = build_city(11, 300, date(2026, 6, 1))
    rows = initial_rows(city, DepartmentViews(city, random.Random(12), 0.2))   # a fifth of the values dirty
    kinds = set()
    for row in rows:
        kinds.add(assert_same(OURS[(row.database, row.table)], row.values)[0])
    assert {(r.database, r.table) for r in rows} >= set(OURS) - {("education", "xs_xj")} and kinds == {"applied", "rejected"}


def test_the_hard_sets_rows_give_what_the_interpreter_gives() -> None:
    rows, _ = generate(400, 5, date(2026, 6, 1))
    for raw in rows:
        assert_same(hard_mappings()[raw.source], raw.row)


# --------------------------------------------------------------------------- hostile rows

text = st.text(st.characters(codec="utf-8"), max_size=40)
plausible = st.sampled_from(["", " ", "NULL", "无", "-", "110101199003074514", "11010119900307451X", "９１１０１０１１",
                             "张三", "2024-02-29", "2024-13-01", "20240229", "202402", "1.50", "-3", "1e400",
                             "9999-12-31", "2026-06-01T05:00:00Z", "1", "M", "男", "x" * 300, "a\u200bb", "a\x00b",
                             "广东省深圳市福田区华富街道莲花一村1栋101", "91440300MA5DXXXX0A"])
values = (st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | text | plausible
          | st.lists(st.integers(), max_size=2) | st.dictionaries(text, st.integers(), max_size=2))
SOURCES = [*((OURS, key) for key in sorted(OURS)), *((HARD, key) for key in sorted(HARD))]


@st.composite
def rows(draw: st.DrawFn) -> tuple[m.SourceMapping, dict[str, Any], bool]:
    catalog, key = draw(st.sampled_from(SOURCES))
    mapping = catalog[key]
    columns = sorted(mapping.columns)
    row = {c: draw(values) for c in draw(st.lists(st.sampled_from(columns), max_size=len(columns)))}
    if draw(st.booleans()):
        row["not_in_the_mapping"] = draw(values)
    return mapping, row, draw(st.booleans())


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(rows())
def test_hostile_rows_give_what_the_interpreter_gives(drawn: tuple[m.SourceMapping, dict[str, Any], bool]) -> None:
    assert_same(*drawn)


def test_a_mapping_is_compiled_once_and_shows_its_source(monkeypatch: pytest.MonkeyPatch) -> None:
    mapping = m.load_mapping(m.MAPPINGS_DIR / "hrss.sb_jfmx.yaml")   # a mapping nothing has compiled yet
    compiles = []
    monkeypatch.setattr(compiled, "compile_mapping", lambda mp: _counted(compiles, mp))
    for _ in range(3):
        with pytest.raises(std.Rejected) as raised:   # no required column: rejected, the generated line in the traceback
            compiled.apply(mapping, {}, PROVENANCE, False)
        assert any(str(entry.path) == "<mapping hrss.sb_jfmx>" for entry in raised.traceback)
    assert compiles == [mapping]
    source = compiled._compiled[id(mapping)][1].__doc__
    assert source and "def apply_row(row, provenance, retracted):" in source


_compile = compiled.compile_mapping


def _counted(calls: list[m.SourceMapping], mapping: m.SourceMapping) -> compiled.Compiled:
    calls.append(mapping)
    return _compile(mapping)
