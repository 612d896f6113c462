"""One schema's Avro binary writer, generated as Python source: the fast path of ``codec.encode``.

fastavro writes a record by walking its schema for every record it writes, and for every union it
tries the branches one by one (~17 µs for a relationship candidate of 11 fields and its provenance).
The GLDM's schemas use few shapes: records, ``["null", T]`` unions, strings, ints and longs (dates and
timestamps as the numbers they are), booleans, enums, arrays and maps. ``compile_writer`` writes one
function per schema that encodes exactly those, with a type check per value. A value it does not take
as it is (a ``datetime`` for a timestamp, a tuple for an array, a number out of range, a string with a
lone surrogate) and a schema shape it does not know are fastavro's: ``codec.encode`` hands the whole
record over, so the bytes and the errors are fastavro's own wherever this writer does not write them
(tests/unit/kintsmesh/registry/test_writer.py holds the bytes equal on every GLDM schema).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from kintsmesh.registry.generated import EPOCH_ORDINAL, NotMine, Source

Writer = Callable[[dict[str, Any]], bytes]


def varint(n: int) -> bytes:
    """The zig-zag varint of a long (callers check the range)."""
    n = (n << 1) ^ (n >> 63)
    if n < 0x80:
        return SMALL[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


SMALL = [bytes([n]) for n in range(0x80)]


def _value(src: Source, schema: Any, var: str, indent: int, lines: list[str]) -> None:
    """Lines appending ``var``'s encoding under ``schema`` to ``out`` (a bytearray), or raising NotMine."""
    pad = "    " * indent

    def emit(line: str) -> None:
        lines.append(pad + line)

    kind, schema, logical = src.shape(schema)
    if kind == "nullable":
        emit(f"if {var} is None:")
        emit("    out += b'\\x00'")
        emit("else:")
        emit("    out += b'\\x02'")
        _value(src, schema, var, indent + 1, lines)
        return
    if kind == "null":
        emit(f"if {var} is not None: raise NotMine")
    elif kind == "string":
        emit(f"if {var}.__class__ is not str: raise NotMine")
        emit(f"b = {var}.encode()")
        emit("out += varint(len(b)); out += b")
    elif kind == "bytes" and logical is None:
        emit(f"if {var}.__class__ is not bytes: raise NotMine")
        emit(f"out += varint(len({var})); out += {var}")
    elif kind in ("int", "long") and logical in (None, "date", "timestamp-millis"):
        bound = 2**31 if kind == "int" else 2**63
        if logical == "date":   # fastavro takes a date (its days since 1970) or the number
            emit(f"if {var}.__class__ is date: {var} = {var}.toordinal() - {EPOCH_ORDINAL}")
        emit(f"if {var}.__class__ is not int or not -{bound} <= {var} < {bound}: raise NotMine")
        emit(f"out += varint({var})")
    elif kind == "boolean":
        emit(f"if {var}.__class__ is not bool: raise NotMine")
        emit(f"out += b'\\x01' if {var} else b'\\x00'")
    elif kind == "enum":
        index = src.constant({symbol: varint(i) for i, symbol in enumerate(schema["symbols"])})
        emit(f"out += {index}[{var}]")   # KeyError for a symbol not in the enum: fastavro's to judge
    elif kind == "array":
        item = src.fresh("i")
        emit(f"if {var}.__class__ is not list: raise NotMine")
        emit(f"if {var}:")
        emit(f"    out += varint(len({var}))")
        emit(f"    for {item} in {var}:")
        _value(src, schema["items"], item, indent + 2, lines)
        emit("out += b'\\x00'")
    elif kind == "map":
        key, item = src.fresh("k"), src.fresh("v")
        emit(f"if {var}.__class__ is not dict: raise NotMine")
        emit(f"if {var}:")
        emit(f"    out += varint(len({var}))")
        emit(f"    for {key}, {item} in {var}.items():")
        emit(f"        if {key}.__class__ is not str: raise NotMine")
        emit(f"        b = {key}.encode(); out += varint(len(b)); out += b")
        _value(src, schema["values"], item, indent + 2, lines)
        emit("out += b'\\x00'")
    elif kind in ("record", "error"):
        emit(f"{_record(src, schema)}({var}, out)")
    else:
        raise NotMine(f"{kind} / {logical}")


def _record(src: Source, schema: dict[str, Any]) -> str:
    """The name of the function writing one record of this schema."""
    def write(function: str) -> list[str]:
        lines = [f"def {function}(r, out):", "    if r.__class__ is not dict: raise NotMine"]
        for field in schema["fields"]:
            var = src.fresh("f")
            # a field the record lacks takes its default, as fastavro does (a field without one: None)
            default = src.constant(field["default"]) if "default" in field else "None"
            lines.append(f"    {var} = r.get({field['name']!r}, {default})")
            _value(src, field["type"], var, 1, lines)
        return lines
    return src.record(schema, write)


def compile_writer(parsed: Any, header: bytes) -> Writer | None:
    """A function writing ``header`` + the record's Avro binary body, or None for a schema it cannot write."""
    if not isinstance(parsed, dict) or parsed.get("type") not in ("record", "error"):
        return None
    src = Source(parsed, {"varint": varint, "date": date})
    try:
        top = _record(src, parsed)
    except NotMine:
        return None
    src.names["HEADER"] = header
    src.lines += ["def write(r):", "    out = bytearray(HEADER)", f"    {top}(r, out)", "    return bytes(out)"]
    writer: Writer = src.compile("write", f"<avro writer {parsed['name']}>")
    return writer
