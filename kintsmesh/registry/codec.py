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
from kintsmesh.registry.catalog import SchemaVersion

MAGIC = 0
HEADER = struct.Struct(">bI")


class UndecodableMessage(RejectedRecord):
    """Bytes that are not a message in the Confluent wire format."""


class WriterSchemas(Protocol):
    def schema(self, schema_id: int) -> SchemaVersion: ...


def encode(version: SchemaVersion, record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    out.write(HEADER.pack(MAGIC, version.id))
    fastavro.schemaless_writer(out, version.parsed, record)
    return out.getvalue()


def decode(data: bytes, schemas: WriterSchemas, reader: SchemaVersion | None = None) -> dict[str, Any]:
    """Decode with the writer's schema (by the id in the header), resolved to ``reader`` when given."""
    if len(data) < HEADER.size or data[0] != MAGIC:
        raise UndecodableMessage(f"not a message in the Confluent wire format (starts {data[:5].hex() or 'empty'})")
    writer = schemas.schema(HEADER.unpack_from(data)[1])
    result = fastavro.schemaless_reader(
        io.BytesIO(data[HEADER.size:]), writer.parsed, reader.parsed if reader else None
    )
    return result  # type: ignore[return-value]
