"""What the generated Avro writer (``writer.py``) and reader (``reader.py``) share: the generated module's
source and the objects its code names, the schema's named types, the shapes both generate code for, and
compiling the source into a function whose ``__doc__`` is that source."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

PRIMITIVE = {"string", "bytes", "int", "long", "boolean", "null"}
EPOCH_ORDINAL = 719163   # date(1970, 1, 1).toordinal(): Avro's date is days since it


class NotMine(Exception):
    """A value, a message or a schema shape the generated code leaves to fastavro."""


def named_types(schema: Any, named: dict[str, Any]) -> None:
    """Every named record and enum of the schema by full name (fastavro's parsed schema names them fully)."""
    if isinstance(schema, list):
        for branch in schema:
            named_types(branch, named)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in ("record", "enum", "fixed", "error"):
            named[schema["name"]] = schema
        if kind in ("record", "error"):
            for f in schema["fields"]:
                named_types(f["type"], named)
        elif kind == "array":
            named_types(schema["items"], named)
        elif kind == "map":
            named_types(schema["values"], named)


class Source:
    """The generated module's lines and the objects its code names (helpers, enum tables, defaults)."""

    def __init__(self, parsed: dict[str, Any], names: dict[str, Any]) -> None:
        self.lines: list[str] = []
        self.names: dict[str, Any] = {"NotMine": NotMine, **names}
        self.records: dict[str, str] = {}   # record full name -> its function's name
        self.named: dict[str, Any] = {}
        named_types(parsed, self.named)
        self.counter = 0

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def constant(self, value: Any) -> str:
        name = self.fresh("K")
        self.names[name] = value
        return name

    def record(self, schema: dict[str, Any], write: Callable[[str], list[str]]) -> str:
        """The name of the function for records of this schema: ``write(name)`` gives its lines, once per
        record type (a record type used twice, or inside itself, is one function)."""
        name = schema["name"]
        if name not in self.records:
            function = self.records[name] = self.fresh("record")
            self.lines += [*write(function), ""]
        return self.records[name]

    def shape(self, schema: Any) -> tuple[str, Any, str | None]:
        """(kind, schema, logical type) of a value's schema, a named type looked up and a type given as a
        schema of its own unwrapped; kind ``nullable`` for a ``["null", T]`` union (schema: T). Any other
        union, and an unknown name, are NotMine."""
        while True:
            if isinstance(schema, str) and schema not in PRIMITIVE:
                schema = self.named.get(schema)
                if schema is None:
                    raise NotMine("an unknown named type")
            if isinstance(schema, list):
                if len(schema) != 2 or schema[0] != "null" or schema[1] == "null":
                    raise NotMine("a union other than [null, T]")
                return "nullable", schema[1], None
            kind = schema if isinstance(schema, str) else schema.get("type")
            if not isinstance(kind, (dict, list)):
                return kind, schema, schema.get("logicalType") if isinstance(schema, dict) else None
            schema = kind

    def compile(self, entry: str, filename: str) -> Any:
        """The module's function ``entry``, its source as its ``__doc__``."""
        source = "\n".join(self.lines) + "\n"
        exec(compile(source, filename, "exec"), self.names)   # noqa: S102 - generated from the schema
        function = self.names[entry]
        function.__doc__ = source
        return function
