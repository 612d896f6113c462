"""The Confluent wire format: a zero byte, the schema id (4 bytes, big-endian), the Avro binary body.

What every Confluent-compatible serializer writes and reads, so a stock ``AvroDeserializer``
reads Kintsmesh's topics with nothing but the registry's URL.
"""

from __future__ import annotations

import io
import struct
from typing import Any, Protocol

import fastavro

from kintsmesh.errors import RejectedRecord
from kintsmesh.memo import made_once
from kintsmesh.registry.catalog import SchemaVersion
from kintsmesh.registry.reader import Reader, compile_reader
from kintsmesh.registry.writer import Writer, compile_writer

MAGIC = 0
HEADER = struct.Struct(">bI")
_writers: dict[int, tuple[SchemaVersion, Writer | None]] = {}   # per schema version, by identity (``kintsmesh.memo``)
_readers: dict[int, tuple[SchemaVersion, Reader | None]] = {}


def _writer(version: SchemaVersion) -> Writer | None:
    return compile_writer(version.parsed, HEADER.pack(MAGIC, version.id))


def _reader(version: SchemaVersion) -> Reader | None:
    return compile_reader(version.parsed)


class UndecodableMessage(RejectedRecord):
    """Bytes that are not a message in the Confluent wire format, or whose Avro body its writer's schema
    cannot read (truncated, corrupt, another schema's)."""


class UnencodableRecord(RejectedRecord):
    """A record the schema cannot hold (a long beyond 64 bits, a string where a number goes ...)."""


class WriterSchemas(Protocol):
    def schema(self, schema_id: int) -> SchemaVersion: ...


def encode(version: SchemaVersion, record: dict[str, Any]) -> bytes:
    """The message for ``record``: the schema's generated writer where it takes the record as it is
    (``writer.py``), fastavro for anything else (the same bytes; fastavro's verdict on what no schema holds)."""
    writer = made_once(_writers, version, _writer)
    if writer is not None:
        try:
            return writer(record)
        except Exception:  # noqa: BLE001, S110 - NotMine, or a value the writer does not take: fastavro judges it
            pass
    out = io.BytesIO()
    out.write(HEADER.pack(MAGIC, version.id))
    try:
        fastavro.schemaless_writer(out, version.parsed, record)
    except Exception as exc:  # noqa: BLE001 - fastavro raises many kinds (ValueError, OverflowError, TypeError ...)
        raise UnencodableRecord(f"{version.subject}: {type(exc).__name__}: {exc}"[:500]) from exc
    return out.getvalue()


def decode(data: bytes, schemas: WriterSchemas, reader: SchemaVersion | None = None) -> dict[str, Any]:
    """Decode with the writer's schema (by the id in the header), resolved to ``reader`` when given: the
    schema's generated reader (``reader.py``) where it reads the message, fastavro for anything else."""
    if len(data) < HEADER.size or data[0] != MAGIC:
        raise UndecodableMessage(f"not a message in the Confluent wire format (starts {data[:5].hex() or 'empty'})")
    writer = schemas.schema(HEADER.unpack_from(data)[1])
    if reader is None or reader is writer:
        fast = made_once(_readers, writer, _reader)
        if fast is not None:
            try:
                return fast(data, HEADER.size)
            except Exception:  # noqa: BLE001, S110 - NotMine, or bytes it does not take: fastavro judges them
                pass
    try:
        result = fastavro.schemaless_reader(
            io.BytesIO(data[HEADER.size:]), writer.parsed, reader.parsed if reader else None
        )
    except Exception as exc:  # noqa: BLE001 - EOFError, IndexError, UnicodeDecodeError, OverflowError ...
        raise UndecodableMessage(f"corrupt Avro body for schema id {writer.id}: {type(exc).__name__}: {exc}"[:500]) from exc
    if not isinstance(result, dict):
        raise UndecodableMessage(f"schema id {writer.id} is not a record schema")
    return result
