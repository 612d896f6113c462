"""What Kintsmesh's workers use of the schema registry, through Confluent's stock client.

``register`` once at start (idempotent: the same schema gets the same id and version),
``schema(id)`` to find a writer's schema when decoding (cached: one request per id per process).
Works against any Confluent-compatible registry: the stack's (``kintsmesh registry serve``),
Confluent's, Karapace, Apicurio's ccompat API (``KINTSMESH_REGISTRY_URL``).
"""

from __future__ import annotations

import json
import time
from typing import Any

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from kintsmesh.errors import KintsmeshError, TransientError
from kintsmesh.registry.catalog import IncompatibleSchema, SchemaVersion, UnknownSchema, describe, load
from kintsmesh.settings import Settings

SCHEMA_NOT_FOUND = 40403
INCOMPATIBLE = 409
RETRY_S = 30.0


class SchemaRegistry:
    def __init__(self, settings: Settings) -> None:
        self.url = settings.registry_endpoint
        self.client = SchemaRegistryClient({**settings.registry_client_config(), "timeout": 10})
        self._by_id: dict[int, SchemaVersion] = {}

    def _call(self, what: str, call: Any, *args: Any) -> Any:
        try:
            return call(*args)
        except SchemaRegistryError as exc:
            if exc.http_status_code >= 500:
                raise TransientError(f"schema registry {self.url}: {what}: {exc.error_message}") from None
            raise
        except Exception as exc:  # requests' connection errors, timeouts
            raise TransientError(f"schema registry {self.url} did not answer ({what}): {exc}") from None

    def register(self, subject: str, schema: Any) -> SchemaVersion:
        """Register ``schema`` under ``subject`` (or find it there); IncompatibleSchema when the
        registry refuses it at the subject's compatibility level."""
        text = json.dumps(schema, ensure_ascii=False)
        try:
            self._call(f"register {subject}", self.client.register_schema, subject, Schema(text, "AVRO"))
        except SchemaRegistryError as exc:
            if exc.http_status_code == INCOMPATIBLE:
                level = self._call(f"level of {subject}", self.client.get_compatibility, subject)
                raise IncompatibleSchema(subject, level, [exc.error_message]) from None
            raise KintsmeshError(f"schema registry {self.url} refused {subject}: {exc.error_message}") from None
        found = self._call(f"look up {subject}", self.client.lookup_schema, subject, Schema(text, "AVRO"))
        version = describe(subject, found.version, found.schema_id, schema)
        self._by_id.setdefault(version.id, version)
        return version

    def schema(self, schema_id: int) -> SchemaVersion:
        cached = self._by_id.get(schema_id)
        if cached is not None:
            return cached
        deadline = time.monotonic() + RETRY_S   # a registry restarting must not stop a worker mid-stream
        while True:
            try:
                found = self._call(f"schema {schema_id}", self.client.get_schema, schema_id)
                break
            except TransientError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)
            except SchemaRegistryError as exc:
                if exc.error_code == SCHEMA_NOT_FOUND or exc.http_status_code == 404:
                    raise UnknownSchema(f"no schema with id {schema_id} in the registry at {self.url}") from None
                raise
        version = describe("", 0, schema_id, load(found.schema_str))
        self._by_id[schema_id] = version
        return version

    def versions(self) -> dict[str, list[SchemaVersion]]:
        """Every subject's versions (for ``kintsmesh schemas``)."""
        found: dict[str, list[SchemaVersion]] = {}
        for subject in self._call("list subjects", self.client.get_subjects):
            for number in self._call(f"versions of {subject}", self.client.get_versions, subject):
                registered = self._call(f"{subject} version {number}", self.client.get_version, subject, number)
                found.setdefault(subject, []).append(
                    describe(subject, registered.version, registered.schema_id, load(registered.schema.schema_str)))
        return found

    def close(self) -> None:
        self._by_id.clear()
