"""One schema's Avro binary reader, generated as Python source: the fast path of ``codec.decode``.

fastavro reads a record by walking its schema for every record (15–26 µs for a GLDM candidate of
120–380 bytes, the merge stage's biggest single cost after its SQL). The GLDM's schemas use few
shapes — records, ``["null", T]`` unions, strings, bytes, ints and longs (``date`` and
``timestamp-millis`` read as fastavro reads them), booleans, enums, arrays and maps — and
``compile_reader`` writes one function per schema that reads exactly those.

It is strict where fastavro is lenient or where only fastavro knows the answer: a union index other
than the two branches, a boolean byte other than 0 or 1, a negative length or block count (another
writer's sized blocks), a long of more than ten bytes or beyond 64 bits, an int out of range, an enum
index out of range, a body shorter than its lengths say. On any of those, and on any error (bad UTF-8,
a date out of range), it gives up and ``codec.decode`` reads the message with fastavro, so a result or an
error that is not this reader's is fastavro's own (tests/unit/kintsmesh/registry/test_reader.py holds
them equal on every GLDM schema, and on corrupted messages). Trailing bytes are ignored, as fastavro
ignores them.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any

from kintsmesh.registry.generated import EPOCH_ORDINAL, NotMine, Source

Reader = Callable[[bytes, int], dict[str, Any]]   # (message, where its body starts) -> record
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def long_at(b: bytes, p: int) -> tuple[int, int]:
    """The zig-zag varint at ``p``: (value, position after it). The generated code reads one-byte
    varints itself and calls this for longer ones."""
    c = b[p]
    p += 1
    n = c & 0x7F
    shift = 7
    while c & 0x80:
        if shift > 63:
            raise NotMine("a long of more than ten bytes")
        c = b[p]
        p += 1
        n |= (c & 0x7F) << shift
        shift += 7
    if n >> 64:
        raise NotMine("a long beyond 64 bits")   # fastavro keeps its low 64 bits
    return (n >> 1) ^ -(n & 1), p


def _long(var: str, emit: Callable[[str], None]) -> None:
    """Lines reading a long at ``p`` into ``var``: one byte inline, longer ones through ``long_at``."""
    emit("c = b[p]")
    emit(f"if c < 128: {var} = (c >> 1) ^ -(c & 1); p += 1")
    emit(f"else: {var}, p = long_at(b, p)")


def _value(src: Source, schema: Any, var: str, indent: int, lines: list[str]) -> None:
    """Lines reading a value of ``schema`` at ``p`` into ``var`` (``b`` the message, ``L`` its length)."""
    pad = "    " * indent

    def emit(line: str) -> None:
        lines.append(pad + line)

    kind, schema, logical = src.shape(schema)
    if kind == "nullable":
        emit("c = b[p]; p += 1")
        emit(f"if c == 0: {var} = None")
        emit("elif c != 2: raise NotMine")
        emit("else:")
        _value(src, schema, var, indent + 1, lines)
        return
    if kind == "null":
        emit(f"{var} = None")
    elif kind in ("string", "bytes") and logical is None:
        _long("n", emit)
        emit("e = p + n")
        emit("if n < 0 or e > L: raise NotMine")
        emit(f"{var} = b[p:e]{'.decode()' if kind == 'string' else ''}; p = e")
    elif kind in ("int", "long") and logical in (None, "date", "timestamp-millis"):
        _long(var, emit)
        if kind == "int":
            emit(f"if not -2147483648 <= {var} < 2147483648: raise NotMine")
        if logical == "date":
            emit(f"{var} = date.fromordinal({var} + {EPOCH_ORDINAL})")
        elif logical == "timestamp-millis":
            emit(f"{var} = EPOCH + timedelta(microseconds={var} * 1000)")
    elif kind == "boolean":
        emit("c = b[p]; p += 1")
        emit("if c > 1: raise NotMine")
        emit(f"{var} = c == 1")
    elif kind == "enum":
        symbols = src.constant(tuple(schema["symbols"]))
        _long("n", emit)
        emit(f"if not 0 <= n < {len(schema['symbols'])}: raise NotMine")
        emit(f"{var} = {symbols}[n]")
    elif kind in ("array", "map"):
        count, item = src.fresh("n"), src.fresh("x")
        emit(f"{var} = {{}}" if kind == "map" else f"{var} = []")
        emit("while True:")
        _long(count, lambda line: emit("    " + line))
        emit(f"    if {count} == 0: break")
        emit(f"    if {count} < 0: raise NotMine")   # sized blocks: fastavro's
        emit(f"    for _ in range({count}):")
        if kind == "map":
            key = src.fresh("k")
            _value(src, "string", key, indent + 2, lines)
            _value(src, schema["values"], item, indent + 2, lines)
            emit(f"        {var}[{key}] = {item}")
        else:
            _value(src, schema["items"], item, indent + 2, lines)
            emit(f"        {var}.append({item})")
    elif kind in ("record", "error"):
        emit(f"{var}, p = {_record(src, schema)}(b, p, L)")
    else:
        raise NotMine(f"{kind} / {logical}")


def _record(src: Source, schema: dict[str, Any]) -> str:
    """The name of the function reading one record of this schema: (record, position after it)."""
    def write(function: str) -> list[str]:
        lines, fields = [f"def {function}(b, p, L):"], []
        for field in schema["fields"]:
            var = src.fresh("f")
            fields.append(f"{field['name']!r}: {var}")
            _value(src, field["type"], var, 1, lines)
        return [*lines, f"    return {{{', '.join(fields)}}}, p"]
    return src.record(schema, write)


def compile_reader(parsed: Any) -> Reader | None:
    """A function reading a record of this (fastavro-parsed) schema from a message body, or None for a
    schema it cannot read."""
    if not isinstance(parsed, dict) or parsed.get("type") not in ("record", "error"):
        return None
    src = Source(parsed, {"long_at": long_at, "date": date, "EPOCH": EPOCH, "timedelta": timedelta})
    try:
        top = _record(src, parsed)
    except NotMine:
        return None
    src.lines += ["def read(b, p):", f"    return {top}(b, p, len(b))[0]"]
    reader: Reader = src.compile("read", f"<avro reader {parsed['name']}>")
    return reader
