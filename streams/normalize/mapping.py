"""Declarative source mappings: a department table's row -> GLDM records. Pure, no I/O.

One YAML file per source table in ``mappings/`` (``<department>.<table>.yaml``)
says which GLDM records a row yields and where each field comes from, through
which standardizer; ``codes.yaml`` holds the code dictionaries. Adding a
department source is a new mapping file, no code change.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import yaml

from kintsmesh.errors import TerminalError
from streams.normalize import standardize as std
from streams.normalize.mapping_file import FieldSpec, parse

HERE = Path(__file__).resolve().parent
MAPPINGS_DIR = HERE / "mappings"


class MappingError(TerminalError, ValueError):
    """A mapping file that does not say something the engine can do (found at load time)."""


@dataclass(frozen=True)
class FieldRule:
    target: str
    source: str | None = None
    standardizer: str = "text"
    codes: str | None = None
    required: bool = False
    const: Any = None
    when: tuple[tuple[str, str], ...] = ()
    details: tuple[tuple[str, str], ...] = ()   # for `map:` fields: detail key -> source column
    max_length: int = 256
    minimum: Any = None
    maximum: Any = None
    reject_invisible: bool = False
    resolves: str | None = None   # an identifier a person source row ``identifies`` (see ``required_references``)

    @cached_property
    def columns(self) -> set[str]:
        used = {self.source} if self.source else set()
        return used | {c for c, _ in self.when} | {c for _, c in self.details}


@dataclass(frozen=True)
class Output:
    entity: str
    fields: tuple[FieldRule, ...]
    key: str | None = None         # the output field holding the natural identifier
    when: str | None = None        # a source column that must hold a value for this output to exist
    role: str = ""                 # who/what this output is in the row (husband, wife, child ...); default: the entity
    # a person has at most one source row of this output's kind (a birth certificate's newborn: twins have two)
    one_per_person: bool = False
    # a person output whose source row key is this identifier, as other records name the person by it
    # (an insured person's row key is the insured number each contribution carries)
    identifies: str | None = None
    identifiers: tuple[Identifier, ...] = ()   # declared person identifiers (``mapping_file.IdentifierSpec``)


@dataclass(frozen=True)
class Identifier:
    source: str
    type: str
    issuer: str
    unique: bool


@dataclass(frozen=True)
class SourceMapping:
    department: str
    table: str
    key: tuple[str, ...]
    outputs: tuple[Output, ...]

    @cached_property
    def columns(self) -> frozenset[str]:
        used: set[str] = set(self.key)
        for output in self.outputs:
            if output.when:
                used.add(output.when)
            for rule in output.fields:
                used |= rule.columns
            used.update(i.source for i in output.identifiers)
        return frozenset(used)

    def primary_key(self, row: MappingABC[str, Any]) -> str:
        return "|".join(str(row.get(column)) for column in self.key)


@dataclass(frozen=True)
class Candidate:
    entity: str
    key: str
    record: dict[str, Any]

    @property
    def role(self) -> str:
        return str(self.record["provenance"]["role"])


@dataclass
class Applied:
    candidates: list[Candidate] = field(default_factory=list)
    unknown_columns: frozenset[str] = frozenset()


class FieldRejected(std.Rejected):
    """A rejection that names the source column it came from."""

    def __init__(self, reason: str, column: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.column = column


# --------------------------------------------------------------------------- loading


@cache
def codes() -> dict[str, dict[str, str]]:
    raw = yaml.safe_load((HERE / "codes.yaml").read_text())
    return {name: {str(k).upper(): str(v) for k, v in table.items()} for name, table in raw.items()}


def _rule(target: str, spec: FieldSpec) -> FieldRule:
    if "const" in spec.model_fields_set:
        return FieldRule(target, const=spec.const)
    if spec.map is not None:
        return FieldRule(target, standardizer="map", details=tuple(spec.map.items()))
    standardizer = spec.standardizer or "text"
    if standardizer not in STANDARDIZERS and standardizer != CODE:
        raise MappingError(f"field {target}: unknown standardizer {standardizer!r}; known: {sorted([*STANDARDIZERS, CODE])}")
    if standardizer == CODE and spec.codes not in codes():
        raise MappingError(f"field {target}: codes {spec.codes!r} is not a dictionary in codes.yaml")
    length, low, high = DEFAULT_LIMITS.get(standardizer, (256, None, None))
    return FieldRule(target, source=spec.source, standardizer=standardizer, codes=spec.codes, required=spec.required,
                     when=tuple((spec.when or {}).items()), max_length=spec.max_length or length,
                     minimum=_bound(spec.minimum, low), maximum=_bound(spec.maximum, high),
                     reject_invisible=spec.invisible == "reject", resolves=spec.resolves)


def _bound(given: Any, default: Any) -> Any:
    """A range bound as the standardized values are: dates stay dates, numbers become Decimals."""
    if given is None:
        return default
    return given if isinstance(given, date) else Decimal(str(given))


def load_mapping(path: Path) -> SourceMapping:
    """A mapping file, checked (``mapping_file``: its keys and types; here: what they name); ``MappingError``
    names the file and what is wrong."""
    try:
        spec = parse(path, yaml.safe_load(path.read_text()))
    except (yaml.YAMLError, ValueError) as exc:
        raise MappingError(str(exc) if isinstance(exc, ValueError) else f"{path.name}: not YAML: {exc}") from None
    outputs = []
    for out in spec.outputs:
        try:
            rules = tuple(_rule(target, field_spec) for target, field_spec in out.fields.items())
        except MappingError as exc:
            raise MappingError(f"{path.name}: {exc}") from None
        if out.key and out.key not in {r.target for r in rules}:
            raise MappingError(f"{path.name}: key {out.key!r} is not one of the output's fields")
        if (out.one_per_person or out.identifies or out.identifiers) and out.entity != "person":
            raise MappingError(f"{path.name}: one_per_person / identifies / identifiers apply to person outputs only")
        if len({(i.type, i.issuer) for i in out.identifiers}) != len(out.identifiers):
            raise MappingError(f"{path.name}: an identifier type and issuer declared twice")
        outputs.append(Output(out.entity, rules, out.key, out.when, out.role or out.entity, out.one_per_person,
                              out.identifies, tuple(Identifier(i.source, i.type, i.issuer, i.unique)
                                                    for i in out.identifiers)))
    roles = [(o.entity, o.role) for o in outputs]
    if len(set(roles)) != len(roles):
        raise MappingError(f"{path.name}: two outputs of one entity need distinct roles (role: husband / wife ...)")
    return SourceMapping(spec.source.department, spec.source.table, tuple(spec.source.key), tuple(outputs))


@cache
def mappings() -> dict[tuple[str, str], SourceMapping]:
    loaded = [load_mapping(path) for path in sorted(MAPPINGS_DIR.glob("*.yaml"))]
    return {(m.department, m.table): m for m in loaded}


@cache
def one_per_person_kinds() -> frozenset[tuple[str, str, str]]:
    """(department, table, role) of the person source rows a person holds at most one of."""
    return frozenset((m.department, m.table, o.role) for m in mappings().values() for o in m.outputs if o.one_per_person)


@cache
def identifying_kinds(identifier: str) -> tuple[tuple[str, str, str], ...]:
    """(department, table, role) of the person source rows whose key is ``identifier`` (say ``insured_no``)."""
    return tuple(sorted((m.department, m.table, o.role) for m in mappings().values() for o in m.outputs
                        if o.identifies == identifier))


@cache
def required_references() -> dict[tuple[str, str, str], tuple[tuple[str, str], ...]]:
    """(department, table, role) of a source row's output -> its (field, identifier) pairs that must resolve
    (``resolves:``). An identifier no person source row ``identifies`` is a mapping error."""
    found: dict[tuple[str, str, str], tuple[tuple[str, str], ...]] = {}
    for m in mappings().values():
        for o in m.outputs:
            pairs = tuple((r.target, r.resolves) for r in o.fields if r.resolves)
            for target, identifier in pairs:
                if not identifying_kinds(identifier):
                    raise MappingError(f"{m.department}.{m.table}.yaml: field {target} resolves {identifier!r},"
                                       " which no person output identifies (identifies: ...)")
            if pairs:
                found[(m.department, m.table, o.role)] = pairs
    return found


# --------------------------------------------------------------------------- applying


def _text(raw: Any) -> std.Standardized[str]:
    if std.is_null(raw):
        return std.Standardized(None, ("missing",))
    return std.Standardized(std.clean_text(str(raw)))


def _timestamp_date(raw: Any) -> std.Standardized[date]:
    """The local (China Standard Time) date of a timestamp: Debezium sends TIMESTAMPTZ in UTC,
    and a child born at 05:00 in Shenzhen was born on the previous day in UTC."""
    result = std.timestamp(raw)
    if result.value is not None and result.value.year >= std.OPEN_ENDED_YEAR:
        return std.Standardized(None, ("open_ended",))   # 9999-12-31: "no end" in many department systems
    try:
        local = result.value.astimezone(std.CITY_TZ).date() if result.value else None
    except OverflowError:
        raise std.Rejected("invalid_timestamp", f"{result.value} has no local date") from None
    return std.Standardized(local, result.findings)


def _address(raw: Any) -> std.Standardized[dict[str, Any]]:
    result = std.address(raw)
    value = result.value
    return std.Standardized(
        None if value is None else {"district": value.district, "street": value.street,
                                    "community": value.community, "detail": value.detail, "full": value.full},
        result.findings,
    )


STANDARDIZERS: dict[str, Callable[[Any], std.Standardized[Any]]] = {
    "text": _text,
    "resident_id": std.resident_id,
    "uscc": std.social_credit_code,
    "person_name": std.person_name,
    "date": std.calendar_date,
    # an expiry date: years in the future are normal
    "validity_date": lambda raw: std.calendar_date(raw, latest=date(2200, 1, 1)),
    "timestamp_date": _timestamp_date,
    "address": _address,
    "month": std.month,
    "amount": std.decimal_number,
    "area": std.decimal_number,
}
CODE = "code"  # a dictionary lookup (the rule names the dictionary), handled in _value

# per standardizer: the longest raw value (characters, checked before any normalization: NFKC and the
# parsers never see a megabyte) and the range of the standardized value; a field may narrow them
DEFAULT_LIMITS: dict[str, tuple[int, Any, Any]] = {
    "resident_id": (32, None, None), "uscc": (32, None, None), "person_name": (64, None, None),
    CODE: (32, None, None), "month": (16, None, None), "text": (256, None, None), "address": (256, None, None),
    "date": (40, None, None), "validity_date": (40, None, None),
    "timestamp_date": (48, date(1900, 1, 1), date(2200, 1, 1)),
    "amount": (32, Decimal(0), Decimal(100_000_000)), "area": (32, Decimal("0.01"), Decimal(100_000)),
}


IDENTIFIER_RULE = FieldRule("identifiers", max_length=64)   # the raw checks of a declared identifier's value


def _checked_raw(rule: FieldRule, column: str, raw: Any, findings: list[str]) -> Any:
    """The raw value's shape, before any standardizer sees it: a scalar, not too long, no invisible characters
    (stripped with a finding, or refused where the field says so)."""
    if isinstance(raw, (list, dict)):
        raise FieldRejected("wrong_type", column, f"{rule.target} takes one value, not a {type(raw).__name__}")
    if not isinstance(raw, str):
        return raw
    if len(raw) > rule.max_length:
        raise FieldRejected("value_too_long", column, f"{len(raw):,} characters; {rule.target} takes at most"
                                                      f" {rule.max_length}")
    text = std.strip_invisible(raw)
    if text is not raw:
        if rule.reject_invisible:
            raise FieldRejected("invisible_character", column, f"{rule.target} holds control or format characters")
        findings.append(f"{rule.target}:invisible_stripped")
    return text


def _in_range(rule: FieldRule, column: str, value: Any) -> Any:
    if value is None or (rule.minimum is None and rule.maximum is None):
        return value
    comparable = Decimal(value) if isinstance(value, str) else value
    if (rule.minimum is not None and comparable < rule.minimum) or (rule.maximum is not None and comparable > rule.maximum):
        raise FieldRejected("out_of_range", column, f"{rule.target} {value} is outside {rule.minimum}..{rule.maximum}")
    return value


RESULTS_MAX = 50_000   # standardized values kept (~15 MB at most); the cache starts over when full
_results: dict[tuple[str, str | None, type, Any], std.Standardized[Any]] = {}
_results_day = date.today()


def _standardized(rule: FieldRule, raw: Any) -> std.Standardized[Any]:
    """The standardizer's result for this raw value, kept per process: a row's values recur across its outputs
    and across rows (codes, dates, a person's RIC and name in several departments' rows). The type is part of
    the key (``True``, ``1`` and ``1.0`` are equal keys otherwise); a refused value is not kept (it raises);
    a result holding a dict (an address) is not kept, so no record shares a mutable value with another."""
    key = (rule.standardizer, rule.codes, type(raw), raw)
    result = _results.get(key)
    if result is None:
        if rule.standardizer == CODE:
            result = std.coded(raw, codes()[rule.codes or ""], rule.codes or "code")
        else:
            result = STANDARDIZERS[rule.standardizer](raw)
        if not isinstance(result.value, dict):
            if len(_results) >= RESULTS_MAX:
                _results.clear()
            _results[key] = result
    return result


def forget_standardized_on_a_new_day() -> None:
    """Dates are judged against today (``calendar_date``: not more than a year ahead): a new day starts the
    kept results over."""
    global _results_day
    today = date.today()
    if today != _results_day:
        _results.clear()
        _results_day = today


def _value(rule: FieldRule, row: MappingABC[str, Any], findings: list[str]) -> Any:
    if rule.const is not None:
        return rule.const
    if rule.standardizer == "map":
        return {key: std.clean_text(str(_checked_raw(rule, col, row[col], findings))) for key, col in rule.details
                if not std.is_null(row.get(col))}
    if any(std.clean_text(str(row.get(col, ""))) != value for col, value in rule.when):
        return None
    assert rule.source is not None
    if rule.source not in row:
        if rule.required:
            raise std.Rejected("missing_required_column", f"column {rule.source} is not in the source row")
        findings.append(f"{rule.target}:column_absent")
        return None
    raw = _checked_raw(rule, rule.source, row[rule.source], findings)
    try:
        result = _standardized(rule, raw)
    except std.Rejected as exc:
        raise FieldRejected(exc.reason, rule.source, exc.detail) from exc
    findings.extend(f"{rule.target}:{f}" for f in result.findings if f != "missing")
    if result.value is None and rule.required:
        raise FieldRejected("missing_required_field", rule.source, f"{rule.target} has no value in {rule.source}")
    return _in_range(rule, rule.source, result.value)


def _identifiers(declared: tuple[Identifier, ...], row: MappingABC[str, Any], findings: list[str]) -> list[dict[str, Any]]:
    """The declared identifiers the row holds, cleaned as text (full-width folded, spaces and case kept out)."""
    found = []
    for ident in declared:
        value = _checked_raw(IDENTIFIER_RULE, ident.source, row.get(ident.source), findings)
        text = std.clean_text(str(value)).replace(" ", "").upper() if not std.is_null(value) else ""
        if text:
            found.append({"type": ident.type, "issuer": ident.issuer, "value": text, "unique": ident.unique})
    return found


def interpret(mapping: SourceMapping, row: MappingABC[str, Any], provenance: dict[str, Any], retracted: bool) -> Applied:
    """The GLDM candidates one source row yields, or FieldRejected/Rejected for the DLQ: the rules walked for
    every row. This is the mappings' reference semantics; what runs is ``compiled.apply``, the same rules
    compiled once per mapping, and the tests hold the two equal."""
    forget_standardized_on_a_new_day()
    pk = mapping.primary_key(row)
    applied = Applied(unknown_columns=frozenset(row) - mapping.columns)
    for index, output in enumerate(mapping.outputs):
        if output.when and std.is_null(row.get(output.when)):
            continue
        findings: list[str] = []
        record: dict[str, Any] = {rule.target: _value(rule, row, findings) for rule in output.fields}
        if output.identifiers:
            record["identifiers"] = _identifiers(output.identifiers, row, findings)
        record.update(findings=findings, retracted=retracted, provenance={**provenance, "role": output.role})
        natural = record.get(output.key) if output.key else None
        key = natural if natural and f"{output.key}:bad_check_character" not in findings \
            else f"{mapping.department}/{mapping.table}/{pk}/{index}"
        applied.candidates.append(Candidate(output.entity, str(key), record))
    return applied
