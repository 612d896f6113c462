"""A source mapping compiled to one Python function: what normalize and the T+1 loader run per row.

``mapping.interpret`` walks a mapping's rules for every row, asking of each field what kind it is
(a constant? a map? conditional? bounded? required?). The answers never change, so ``apply`` asks
them once per source table: ``compile_mapping`` writes the mapping out as the source of one function
(every field's checks inlined, only the checks the field has, the standardized-value cache read in
place) and ``exec``s it. Rare field kinds (``map:``, ``when:``) and every error path call the
interpreter's own helpers, so a rejection carries the same reason, column and text. The two give the
same candidates, findings and rejections for every row (tests/unit/streams/normalize/test_compiled.py
holds them equal on every mapping, on generated and on recorded rows). ``compile_mapping(m).__doc__`` is
the generated source; tracebacks and profiles show its lines (``<mapping dept.table>``).
"""

from __future__ import annotations

import linecache
from collections.abc import Callable
from collections.abc import Mapping as MappingABC
from typing import Any

from kintsmesh.memo import made_once
from streams.normalize import mapping as m
from streams.normalize import standardize as std

Compiled = Callable[[MappingABC[str, Any], dict[str, Any], bool], m.Applied]
_ABSENT = object()


def apply(mapping: m.SourceMapping, row: MappingABC[str, Any], provenance: dict[str, Any], retracted: bool) -> m.Applied:
    """The GLDM candidates one source row yields, or FieldRejected/Rejected for the DLQ (``mapping.interpret``'s
    semantics, compiled once per mapping)."""
    return made_once(_compiled, mapping, compile_mapping)(row, provenance, retracted)


_compiled: dict[int, tuple[m.SourceMapping, Compiled]] = {}   # by the mapping's identity (``kintsmesh.memo``)


def compile_mapping(mapping: m.SourceMapping) -> Compiled:
    source, namespace = _source(mapping)
    filename = f"<mapping {mapping.department}.{mapping.table}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), namespace)   # noqa: S102 - our own generated source, from checked rules
    function: Compiled = namespace["apply_row"]
    function.__doc__ = source
    return function


class _Writer:
    """Source lines and the objects they name (rules, constants): every value reaches the code by name."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {
            "_ABSENT": _ABSENT, "Applied": m.Applied, "Candidate": m.Candidate, "FieldRejected": m.FieldRejected,
            "Rejected": std.Rejected, "is_null": std.is_null, "_checked_raw": m._checked_raw, "_value": m._value,
            "_standardized": m._standardized, "_in_range": m._in_range, "_identifiers": m._identifiers,
            "_results": m._results, "forget": m.forget_standardized_on_a_new_day,
        }

    def name(self, prefix: str, value: Any) -> str:
        key = f"{prefix}{len(self.names)}"
        self.names[key] = value
        return key

    def __call__(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)


def _field(w: _Writer, rule: m.FieldRule, var: str) -> None:
    """The lines that set ``var`` to the field's value (or raise), as ``mapping._value`` would."""
    r = w.name("RULE", rule)
    if rule.const is not None:
        w(1, f"{var} = {w.name('CONST', rule.const)}")
        return
    if rule.standardizer == "map" or rule.when:
        w(1, f"{var} = _value({r}, row, findings)")
        return
    assert rule.source is not None
    col, target = repr(rule.source), rule.target
    w(1, f"raw = row.get({col}, _ABSENT)")
    w(1, "if raw is _ABSENT:")
    if rule.required:
        w(2, f"raise Rejected('missing_required_column', {'column ' + rule.source + ' is not in the source row'!r})")
    else:
        w(2, f"findings.append({target + ':column_absent'!r})")
        w(2, f"{var} = None")
    w(1, "else:")
    # the clean cases inline (None, an int, a str not too long with nothing invisible); the rest as _checked_raw does
    w(2, "if raw.__class__ is str:")
    w(3, f"if not (len(raw) <= {rule.max_length} and raw.isprintable()):")
    w(4, f"raw = _checked_raw({r}, {col}, raw, findings)")
    w(2, "elif raw is not None and raw.__class__ is not int:")
    w(3, f"raw = _checked_raw({r}, {col}, raw, findings)")
    w(2, f"result = _results.get(({rule.standardizer!r}, {rule.codes!r}, raw.__class__, raw))")
    w(2, "if result is None:")
    w(3, "try:")
    w(4, f"result = _standardized({r}, raw)")
    w(3, "except Rejected as exc:")
    w(4, f"raise FieldRejected(exc.reason, {col}, exc.detail) from exc")
    w(2, "if result.findings:")
    w(3, f"findings.extend([{target + ':'!r} + f for f in result.findings if f != 'missing'])")
    w(2, f"{var} = result.value")
    if rule.required:
        detail = f"{target} has no value in {rule.source}"
        w(2, f"if {var} is None:")
        w(3, f"raise FieldRejected('missing_required_field', {col}, {detail!r})")
    if rule.minimum is not None or rule.maximum is not None:
        w(2, f"if {var} is not None:")
        w(3, f"{var} = _in_range({r}, {col}, {var})")


def _output(w: _Writer, mapping: m.SourceMapping, index: int, output: m.Output) -> None:
    """``out<index>(row, provenance, retracted, pk, candidates)``: the output's candidate, appended."""
    w(0, f"def out{index}(row, provenance, retracted, pk, candidates):")
    w(1, "findings = []")
    values = [f"v{i}" for i in range(len(output.fields))]
    for rule, var in zip(output.fields, values):
        _field(w, rule, var)
    items = [f"{rule.target!r}: {var}" for rule, var in zip(output.fields, values)]
    if output.identifiers:
        w(1, f"identifiers = _identifiers({w.name('IDENTIFIERS', output.identifiers)}, row, findings)")
        items.append("'identifiers': identifiers")
    # a literal with update()'s semantics: a repeated key keeps its first place and takes the last value
    items += ["'findings': findings", "'retracted': retracted", f"'provenance': {{**provenance, 'role': {output.role!r}}}"]
    w(1, f"record = {{{', '.join(items)}}}")
    fallback = f"{mapping.department}/{mapping.table}/"
    if output.key:
        w(1, f"natural = record.get({output.key!r})")
        w(1, f"key = natural if natural and {output.key + ':bad_check_character'!r} not in findings"
             f" else {fallback!r} + pk + {f'/{index}'!r}")
    else:
        w(1, f"key = {fallback!r} + pk + {f'/{index}'!r}")
    w(1, f"candidates.append(Candidate({output.entity!r}, str(key), record))")
    w(0, "")


def _source(mapping: m.SourceMapping) -> tuple[str, dict[str, Any]]:
    w = _Writer()
    for index, output in enumerate(mapping.outputs):
        _output(w, mapping, index, output)
    w(0, "def apply_row(row, provenance, retracted):")
    w(1, "forget()")
    w(1, "pk = " + " + '|' + ".join(f"str(row.get({column!r}))" for column in mapping.key))
    w(1, f"applied = Applied(unknown_columns=frozenset(row) - {w.name('COLUMNS', mapping.columns)})")
    w(1, "candidates = applied.candidates")
    for index, output in enumerate(mapping.outputs):
        if output.when:
            w(1, f"if not is_null(row.get({output.when!r})):")
            w(2, f"out{index}(row, provenance, retracted, pk, candidates)")
        else:
            w(1, f"out{index}(row, provenance, retracted, pk, candidates)")
    w(1, "return applied")
    return "\n".join(w.lines) + "\n", w.names
