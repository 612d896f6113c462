"""Avro single-object encoding (Avro spec, "Single object encoding"): C3 01 + 8-byte fingerprint + body."""

from __future__ import annotations

import io
from typing import Any

import fastavro

from kintsmesh.errors import KintsmeshError
from kintsmesh.registry.catalog import SchemaCatalog, SchemaVersion

MARKER = b"\xc3\x01"
HEADER_SIZE = len(MARKER) + 8


class UndecodableMessage(KintsmeshError):
    """Bytes that are not an Avro single-object message."""


def encode(version: SchemaVersion, record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    out.write(MARKER)
    out.write(version.fingerprint)
    fastavro.schemaless_writer(out, version.parsed, record)
    return out.getvalue()


def decode(data: bytes, catalog: SchemaCatalog, reader: SchemaVersion | None = None) -> dict[str, Any]:
    """Decode with the writer's schema from the catalog, resolved to ``reader`` when given."""
    if len(data) < HEADER_SIZE or not data.startswith(MARKER):
        raise UndecodableMessage(f"not an Avro single-object message (starts {data[:4].hex() or 'empty'})")
    writer = catalog.by_id(data[len(MARKER):HEADER_SIZE])
    result = fastavro.schemaless_reader(
        io.BytesIO(data[HEADER_SIZE:]), writer.parsed, reader.parsed if reader else None
    )
    return result  # type: ignore[return-value]
