"""The in-memory view of the schema store: subjects, versions, fingerprints. Pure, no I/O.

The Kafka-backed ``SchemaStore`` replays the compacted topic into a ``SchemaCatalog``
and asks it whether a new schema may be registered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from fastavro.schema import fingerprint, to_parsing_canonical_form

from kintsmesh.errors import KintsmeshError
from kintsmesh.registry.compatibility import backward_incompatibilities, parse

Compatibility = Literal["BACKWARD", "NONE"]


class IncompatibleSchema(KintsmeshError):
    """The store refused a schema: readers of the new version could not read old data."""

    def __init__(self, subject: str, version: int, problems: list[str]) -> None:
        super().__init__(f"schema for {subject} is not BACKWARD compatible with version {version}: " + "; ".join(problems))
        self.subject = subject
        self.problems = problems


class UnknownSchema(KintsmeshError):
    """A message names a schema fingerprint the store does not hold."""


@dataclass(frozen=True)
class SchemaVersion:
    subject: str
    version: int
    fingerprint: bytes          # CRC-64-AVRO of the parsing canonical form, little-endian (as on the wire)
    canonical: str              # parsing canonical form (JSON text)
    schema: dict[str, Any] | str | list[Any] = field(compare=False, hash=False)
    parsed: Any = field(compare=False, hash=False, repr=False)   # fastavro-parsed, for the codec

    def record(self) -> dict[str, Any]:
        """What is stored in the compacted topic for this version."""
        return {"subject": self.subject, "version": self.version, "fingerprint": self.fingerprint.hex(),
                "schema": self.schema}

    @property
    def key(self) -> str:
        return f"{self.subject}/{self.version}"


def describe(subject: str, version: int, schema: Any) -> SchemaVersion:
    parsed = parse(schema)
    canonical = to_parsing_canonical_form(parsed)
    return SchemaVersion(subject, version, bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")), canonical, schema, parsed)


@dataclass
class SchemaCatalog:
    subjects: dict[str, list[SchemaVersion]] = field(default_factory=dict)
    by_fingerprint: dict[bytes, SchemaVersion] = field(default_factory=dict)

    def apply(self, record: dict[str, Any]) -> None:
        """Replay one stored record; the first record for a (subject, version) wins."""
        version = describe(record["subject"], int(record["version"]), record["schema"])
        versions = self.subjects.setdefault(version.subject, [])
        if any(v.version == version.version for v in versions):
            return
        versions.append(version)
        versions.sort(key=lambda v: v.version)
        self.by_fingerprint.setdefault(version.fingerprint, version)

    def latest(self, subject: str) -> SchemaVersion | None:
        versions = self.subjects.get(subject)
        return versions[-1] if versions else None

    def lookup(self, subject: str, schema: Any) -> SchemaVersion | None:
        canonical = to_parsing_canonical_form(parse(schema))
        return next((v for v in self.subjects.get(subject, []) if v.canonical == canonical), None)

    def candidate(self, subject: str, schema: Any, compatibility: Compatibility = "BACKWARD") -> SchemaVersion:
        """The version ``schema`` would get under ``subject``, or IncompatibleSchema."""
        latest = self.latest(subject)
        if latest is not None and compatibility == "BACKWARD":
            problems = backward_incompatibilities(schema, latest.schema)
            if problems:
                raise IncompatibleSchema(subject, latest.version, problems)
        return describe(subject, (latest.version if latest else 0) + 1, schema)

    def by_id(self, fp: bytes) -> SchemaVersion:
        try:
            return self.by_fingerprint[fp]
        except KeyError:
            raise UnknownSchema(f"no schema with fingerprint {fp.hex()} in the store") from None


def dumps(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False, sort_keys=True).encode()
