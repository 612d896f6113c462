"""The registry's state: subjects, versions, schema ids and compatibility levels. Pure, no I/O.

The registry server (``kintsmesh.registry.server``) replays its log (``kintsmesh.registry.log``)
into a ``SchemaCatalog`` and asks it what a registration would become; the catalog decides
ids, versions and refusals the way a Confluent-compatible registry does:

- one schema (the same Avro text, modulo whitespace and key order) has one id in every subject;
- registering a schema a subject already holds returns that version (idempotent);
- a new version is checked against the subject's latest (or every, for ``*_TRANSITIVE``)
  version at the subject's compatibility level, else the global level (default BACKWARD).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import fastavro

from kintsmesh.errors import RejectedRecord, TerminalError
from kintsmesh.registry.compatibility import backward_incompatibilities, parse

LEVELS = ("BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL", "FULL_TRANSITIVE", "NONE")
DEFAULT_LEVEL = "BACKWARD"


class IncompatibleSchema(TerminalError):
    """A schema refused: readers or writers of the subject's versions could not use it."""

    def __init__(self, subject: str, level: str, problems: list[str]) -> None:
        super().__init__(f"schema for {subject} is not {level} compatible: " + "; ".join(problems))
        self.subject = subject
        self.problems = problems


class InvalidSchema(TerminalError):
    """Text that is not an Avro schema."""


class UnknownSchema(RejectedRecord):
    """A message names a schema id the registry does not hold."""


def identity(schema: Any) -> str:
    """What makes two registrations the same schema: its JSON, key order and whitespace aside."""
    return json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


MAX_SCHEMA_CHARS = 1_000_000
MAX_DEPTH = 64           # nesting of types in one schema: deeper is refused before anything recurses over it
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def load(schema_str: str) -> Any:
    """Schema text -> JSON value, checked to be valid Avro; InvalidSchema otherwise."""
    if len(schema_str) > MAX_SCHEMA_CHARS:
        raise InvalidSchema(f"a schema of {len(schema_str):,} characters; at most {MAX_SCHEMA_CHARS:,}")
    try:
        schema = json.loads(schema_str)
    except RecursionError:
        raise InvalidSchema("not a valid Avro schema: JSON nested too deep") from None
    except ValueError:
        schema = schema_str   # a bare primitive name, as Avro allows ("string")
    validate_names(schema)
    try:
        parse(schema)
    except Exception as exc:  # fastavro raises several types for a bad schema
        raise InvalidSchema(f"not a valid Avro schema: {exc}") from None
    return schema


def validate_names(schema: Any, depth: int = 0) -> None:
    """What fastavro lets through and the Avro specification does not: names and namespaces that are
    not ``[A-Za-z_][A-Za-z0-9_]*`` per dotted part, duplicate field names or enum symbols; and nesting
    deeper than ``MAX_DEPTH``."""
    if depth > MAX_DEPTH:
        raise InvalidSchema(f"not a valid Avro schema here: types nested deeper than {MAX_DEPTH}")
    if isinstance(schema, list):
        for branch in schema:
            validate_names(branch, depth + 1)
        return
    if not isinstance(schema, dict):
        return
    kind = schema.get("type")
    if kind in ("record", "error", "enum", "fixed"):
        name, namespace = schema.get("name"), schema.get("namespace")
        if not isinstance(name, str) or not all(_NAME.fullmatch(part) for part in name.split(".")):
            raise InvalidSchema(f"not a valid Avro schema: invalid name {name!r}")
        if namespace not in (None, "") and (not isinstance(namespace, str)
                                            or not all(_NAME.fullmatch(part) for part in namespace.split("."))):
            raise InvalidSchema(f"not a valid Avro schema: invalid namespace {namespace!r} of {name}")
    if kind in ("record", "error"):
        fields = schema.get("fields")
        names = [f.get("name") for f in fields if isinstance(f, dict)] if isinstance(fields, list) else []
        for field_name in names:
            if not isinstance(field_name, str) or not _NAME.fullmatch(field_name):
                raise InvalidSchema(f"not a valid Avro schema: invalid field name {field_name!r} in {schema.get('name')}")
        if len(set(names)) != len(names):
            twice = sorted({str(n) for n in names if names.count(n) > 1})
            raise InvalidSchema(f"not a valid Avro schema: {schema.get('name')} has the field(s) {twice} twice")
        for f in fields if isinstance(fields, list) else []:
            if isinstance(f, dict):
                validate_names(f.get("type"), depth + 1)
    elif kind == "enum":
        symbols = schema.get("symbols")
        if isinstance(symbols, list):
            if not all(isinstance(s, str) and _NAME.fullmatch(s) for s in symbols):
                raise InvalidSchema(f"not a valid Avro schema: enum {schema.get('name')} has an invalid symbol")
            if len(set(symbols)) != len(symbols):
                raise InvalidSchema(f"not a valid Avro schema: enum {schema.get('name')} repeats a symbol")
    elif kind == "array":
        validate_names(schema.get("items"), depth + 1)
    elif kind == "map":
        validate_names(schema.get("values"), depth + 1)
    elif isinstance(kind, (dict, list)):
        validate_names(kind, depth + 1)


@dataclass(frozen=True)
class SchemaVersion:
    subject: str
    version: int
    id: int
    schema: Any = field(compare=False, hash=False)          # the JSON value
    # fastavro-parsed with its "already parsed" hint: without it, fastavro parses the schema again on
    # every record it writes or reads (a third of the normalize worker's time went there)
    parsed: Any = field(compare=False, hash=False, repr=False)
    text: str = field(compare=False, hash=False, repr=False)     # identity(schema), computed once

    def record(self) -> dict[str, Any]:
        """What the registry's log holds for this version."""
        return {"kind": "schema", "subject": self.subject, "version": self.version, "id": self.id,
                "schema": self.text}

    @property
    def key(self) -> str:
        return f"schema/{self.subject}/{self.version}"


def describe(subject: str, version: int, schema_id: int, schema: Any) -> SchemaVersion:
    return SchemaVersion(subject, version, schema_id, schema, fastavro.parse_schema(schema), identity(schema))


def config_record(subject: str | None, level: str | None) -> tuple[str, dict[str, Any]]:
    """(log key, value) setting the compatibility level of a subject, or the global one (None:
    back to the default)."""
    if level is not None and level not in LEVELS:
        raise InvalidSchema(f"unknown compatibility level {level!r}; one of {', '.join(LEVELS)}")
    return f"config/{subject or ''}", {"kind": "config", "subject": subject, "compatibility": level}


def problems_at(level: str, new: Any, versions: list[SchemaVersion]) -> list[str]:
    """Why ``new`` may not follow ``versions`` at ``level`` (empty: it may)."""
    if level not in LEVELS:
        raise InvalidSchema(f"unknown compatibility level {level!r}")
    if level == "NONE" or not versions:
        return []
    against = versions if level.endswith("_TRANSITIVE") else versions[-1:]
    found: list[str] = []
    for old in against:
        if level.startswith(("BACKWARD", "FULL")):   # new readers read old data
            found += [f"version {old.version}: {p}" for p in backward_incompatibilities(new, old.schema)]
        if level.startswith(("FORWARD", "FULL")):    # old readers read new data
            found += [f"version {old.version} reading new data: {p}" for p in backward_incompatibilities(old.schema, new)]
    return found


@dataclass
class SchemaCatalog:
    subjects: dict[str, list[SchemaVersion]] = field(default_factory=dict)
    by_id: dict[int, SchemaVersion] = field(default_factory=dict)     # an id -> its first version
    ids: dict[str, int] = field(default_factory=dict)                 # schema identity -> id
    levels: dict[str | None, str] = field(default_factory=dict)       # subject (None: global) -> level

    def apply(self, record: dict[str, Any]) -> None:
        """Replay one record of the log; the first record for a (subject, version) wins."""
        if record.get("kind") == "config":
            if record["compatibility"] is not None and record["compatibility"] not in LEVELS:
                # an unknown level must never read as "no checks"
                raise InvalidSchema(f"unknown compatibility level {record['compatibility']!r}")
            if record["compatibility"] is None:
                self.levels.pop(record.get("subject"), None)
            else:
                self.levels[record.get("subject")] = record["compatibility"]
            return
        schema = load(record["schema"])
        version = describe(record["subject"], int(record["version"]), int(record["id"]), schema)
        versions = self.subjects.setdefault(version.subject, [])
        if any(v.version == version.version for v in versions):
            return
        versions.append(version)
        versions.sort(key=lambda v: v.version)
        self.by_id.setdefault(version.id, version)
        self.ids.setdefault(version.text, version.id)

    def level(self, subject: str | None) -> str:
        return self.levels.get(subject) or self.levels.get(None) or DEFAULT_LEVEL

    def latest(self, subject: str) -> SchemaVersion | None:
        versions = self.subjects.get(subject)
        return versions[-1] if versions else None

    def version(self, subject: str, version: int | str) -> SchemaVersion | None:
        if version in ("latest", -1, "-1"):
            return self.latest(subject)
        return next((v for v in self.subjects.get(subject, []) if v.version == int(version)), None)

    def lookup(self, subject: str, schema: Any) -> SchemaVersion | None:
        text = identity(schema)
        return next((v for v in self.subjects.get(subject, []) if v.text == text), None)

    def check(self, subject: str, schema: Any, against: list[SchemaVersion] | None = None) -> list[str]:
        """Compatibility problems of ``schema`` under ``subject`` at its level (empty: compatible)."""
        level = self.level(subject)
        versions = self.subjects.get(subject, []) if against is None else against
        return problems_at(level, schema, versions)

    def candidate(self, subject: str, schema: Any) -> SchemaVersion:
        """The version ``schema`` would get under ``subject`` (existing when already there), or
        IncompatibleSchema."""
        existing = self.lookup(subject, schema)
        if existing is not None:
            return existing
        problems = self.check(subject, schema)
        if problems:
            raise IncompatibleSchema(subject, self.level(subject), problems)
        latest = self.latest(subject)
        schema_id = self.ids.get(identity(schema)) or max(self.by_id, default=0) + 1
        return describe(subject, (latest.version if latest else 0) + 1, schema_id, schema)

    def schema(self, schema_id: int) -> SchemaVersion:
        try:
            return self.by_id[schema_id]
        except KeyError:
            raise UnknownSchema(f"no schema with id {schema_id} in the registry") from None


def dumps(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, sort_keys=True).encode()
