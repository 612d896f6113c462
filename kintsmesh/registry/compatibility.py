"""Avro schema compatibility, by the Avro specification's schema-resolution rules.

``backward_incompatibilities(new, old)`` lists why data written with ``old`` cannot
be read with ``new`` (empty: BACKWARD compatible, the rule the schema store enforces,
the same guarantee a Confluent-compatible registry gives at level BACKWARD).
Pure functions over parsed schemas; no I/O.
"""

from __future__ import annotations

from typing import Any

import fastavro

Schema = Any  # a fastavro-parsed schema: str, list (union) or dict

PROMOTIONS: dict[str, set[str]] = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}
NAMED = ("record", "enum", "fixed")


def parse(schema: Schema) -> Schema:
    return fastavro.parse_schema(schema, _write_hint=False)


def unqualified(name: str) -> str:
    """The spec matches named types by their unqualified names: a namespace-only change resolves."""
    return name.rsplit(".", 1)[-1]


def _same_name(reader: dict[str, Any], writer: dict[str, Any]) -> bool:
    return unqualified(writer["name"]) in {unqualified(n) for n in [reader["name"], *reader.get("aliases", [])]}


def _collect(schema: Schema, names: dict[str, dict[str, Any]]) -> None:
    if isinstance(schema, list):
        for branch in schema:
            _collect(branch, names)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in NAMED and "name" in schema:
            names[schema["name"]] = schema
        if kind == "record":
            for f in schema.get("fields", []):
                _collect(f["type"], names)
        elif kind == "array":
            _collect(schema["items"], names)
        elif kind == "map":
            _collect(schema["values"], names)
        elif isinstance(kind, (dict, list)):
            _collect(kind, names)


class _Resolver:
    def __init__(self, reader: Schema, writer: Schema) -> None:
        self.reader_names: dict[str, dict[str, Any]] = {}
        self.writer_names: dict[str, dict[str, Any]] = {}
        _collect(reader, self.reader_names)
        _collect(writer, self.writer_names)
        self.seen: set[tuple[str, str]] = set()
        self.problems: list[str] = []

    def _deref(self, schema: Schema, names: dict[str, dict[str, Any]]) -> Schema:
        if isinstance(schema, str) and schema in names:
            return names[schema]
        if isinstance(schema, dict) and isinstance(schema.get("type"), (dict, list)):
            return self._deref(schema["type"], names)
        if isinstance(schema, dict) and schema.get("type") not in (*NAMED, "array", "map") and "type" in schema:
            return schema["type"]  # an annotated primitive such as {"type": "int", "logicalType": "date"}
        return schema

    @staticmethod
    def _kind(schema: Schema) -> str:
        if isinstance(schema, list):
            return "union"
        if isinstance(schema, dict):
            return str(schema["type"])
        return str(schema)

    def readable(self, reader: Schema, writer: Schema) -> bool:
        """Would resolution succeed? (no problems recorded)"""
        saved = self.problems
        self.problems = []
        self.check(reader, writer, "")
        ok = not self.problems
        self.problems = saved
        return ok

    def check(self, reader: Schema, writer: Schema, path: str) -> None:
        reader = self._deref(reader, self.reader_names)
        writer = self._deref(writer, self.writer_names)
        r_kind, w_kind = self._kind(reader), self._kind(writer)
        where = path or "<root>"
        if w_kind == "union":
            for branch in writer:
                if not self.readable(reader, branch):
                    self.problems.append(f"{where}: values of type {self._kind(self._deref(branch, self.writer_names))} "
                                         f"written before can no longer be read")
            return
        if r_kind == "union":
            if not any(self.readable(branch, writer) for branch in reader):
                self.problems.append(f"{where}: the new union has no branch for the old type {w_kind}")
            return
        if r_kind != w_kind:
            if w_kind in PROMOTIONS and r_kind in PROMOTIONS[w_kind]:
                return
            self.problems.append(f"{where}: type changed from {w_kind} to {r_kind}")
            return
        if r_kind == "record":
            self._record(reader, writer, path)
        elif r_kind == "enum":
            if not _same_name(reader, writer):
                self.problems.append(f"{where}: enum renamed from {writer['name']} to {reader['name']}")
            symbols = set(reader["symbols"])   # a set: 20,000 symbols checked in milliseconds, not seconds
            missing = [s for s in writer["symbols"] if s not in symbols]
            if missing and "default" not in reader:
                self.problems.append(f"{where}: enum symbols removed without a default: {missing[:20]}")
        elif r_kind == "fixed":
            if not _same_name(reader, writer):   # fastavro cannot read a renamed fixed either
                self.problems.append(f"{where}: fixed renamed from {writer['name']} to {reader['name']}")
            if reader["size"] != writer["size"]:
                self.problems.append(f"{where}: fixed size changed from {writer['size']} to {reader['size']}")
        elif r_kind == "array":
            self.check(reader["items"], writer["items"], f"{path}[]")
        elif r_kind == "map":
            self.check(reader["values"], writer["values"], f"{path}{{}}")

    def _record(self, reader: dict[str, Any], writer: dict[str, Any], path: str) -> None:
        if not _same_name(reader, writer):
            self.problems.append(f"{path or '<root>'}: record renamed from {writer['name']} to {reader['name']}")
            return
        pair = (reader["name"], writer["name"])
        if pair in self.seen:  # recursive types: already being checked
            return
        self.seen.add(pair)
        written = {f["name"]: f for f in writer["fields"]}
        for field in reader["fields"]:
            names = [field["name"], *field.get("aliases", [])]
            old = next((written[n] for n in names if n in written), None)
            field_path = f"{path}.{field['name']}" if path else f"{reader['name']}.{field['name']}"
            if old is None:
                if "default" not in field:
                    self.problems.append(f"{field_path}: new field without a default")
                continue
            self.check(field["type"], old["type"], field_path)


def backward_incompatibilities(new: Schema, old: Schema) -> list[str]:
    """Why readers using ``new`` cannot read data written with ``old`` (empty list: compatible)."""
    reader, writer = parse(new), parse(old)
    resolver = _Resolver(reader, writer)
    resolver.check(reader, writer, "")
    return resolver.problems
