"""``kintsmesh registry serve``: a schema registry speaking the Confluent Schema Registry REST API.

Any Confluent client works against it unchanged (``confluent_kafka.schema_registry``'s
``SchemaRegistryClient``, ``AvroSerializer`` / ``AvroDeserializer``, Kafka Connect's
``AvroConverter``). Avro only; schemas live in a compacted Kafka topic (``log.SchemaLog``), as
in Confluent's and Karapace's registries. One instance writes the topic (no leader election):
the stack runs one, and docker-compose runs Confluent's own image instead.

    GET  /subjects                                  GET  /schemas/ids/{id}[/schema|/subjects|/versions]
    GET  /subjects/{s}/versions                     GET  /schemas/types
    GET  /subjects/{s}/versions/{v|latest}[/schema] POST /compatibility/subjects/{s}/versions[/{v}]
    POST /subjects/{s}/versions   (register)        GET|PUT /config[/{s}]   DELETE /config/{s}
    POST /subjects/{s}            (look up)         GET  /mode
    GET  /metrics  GET /healthz

Served over TLS (the installation's CA). Every call but /metrics and /healthz authenticates with HTTP
basic: the Kafka principals and their passwords (``kintsmesh/security/kafka_acls.yaml``); any may read,
only the ``registry_writers`` may register a schema or change a compatibility level (401 / 403 otherwise,
Confluent's codes 40101 / 40301).

Errors carry Confluent's codes: 40401 subject, 40402 version, 40403 schema not found, 409 an
incompatible schema (with the reasons), 42201 an invalid schema, 42202 an invalid version,
42203 an invalid compatibility level. Versions are never deleted (405).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry, Counter, Gauge, make_asgi_app
from starlette.concurrency import run_in_threadpool

from kintsmesh.errors import TerminalError
from kintsmesh.registry.catalog import (LEVELS, IncompatibleSchema, InvalidSchema, SchemaCatalog, SchemaVersion,
                                        UnknownSchema, load)
from kintsmesh.registry.log import SchemaLog
from kintsmesh.settings import Settings

MEDIA_TYPE = "application/vnd.schemaregistry.v1+json"
MAX_BODY_BYTES = 2_000_000


class RegistryError(TerminalError):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _answer(content: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(content, status_code=status, media_type=MEDIA_TYPE)


def _version_of(catalog: SchemaCatalog, subject: str, version: str) -> SchemaVersion:
    if subject not in catalog.subjects:
        raise RegistryError(404, 40401, f"Subject '{subject}' not found.")
    if version != "latest" and not version.lstrip("-").isdigit():
        raise RegistryError(422, 42202, f"The specified version '{version}' is not a valid version id.")
    found = catalog.version(subject, version)
    if found is None:
        raise RegistryError(404, 40402, f"Version {version} not found.")
    return found


def _full(v: SchemaVersion) -> dict[str, Any]:
    return {"subject": v.subject, "version": v.version, "id": v.id, "schema": v.text}


async def _json_object(request: Request, code: int) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise RegistryError(422, code, f"a request body of {len(raw):,} bytes; at most {MAX_BODY_BYTES:,}")
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, RecursionError):
        raise RegistryError(422, code, "the request body is not JSON (or nested too deep)") from None
    if not isinstance(body, dict):
        raise RegistryError(422, code, "the request body must be a JSON object")
    return body


async def _schema_body(request: Request) -> Any:
    """The ``{"schema": "...", "schemaType": "AVRO"}`` body of a register / look-up / test call."""
    body = await _json_object(request, 42201)
    if body.get("schemaType", "AVRO") != "AVRO":
        raise RegistryError(422, 42201, f"schemaType {body['schemaType']} is not supported here: Avro only")
    if body.get("references"):
        raise RegistryError(422, 42201, "schema references are not supported here")
    if not isinstance(body.get("schema"), str):
        raise RegistryError(422, 42201, "the body needs a 'schema' string")
    try:
        return await run_in_threadpool(load, body["schema"])   # parsing a large schema stays off the event loop
    except InvalidSchema as exc:
        raise RegistryError(422, 42201, str(exc)) from None


async def _level_body(request: Request) -> str:
    level = str((await _json_object(request, 42203)).get("compatibility", "")).upper()
    if level not in LEVELS:
        raise RegistryError(422, 42203, f"Invalid compatibility level; one of {', '.join(LEVELS)}")
    return level


# calls that change nothing although they are POSTs: a lookup, a compatibility test
READ_POSTS = ("/compatibility/",)
OPEN_PATHS = ("/metrics", "/healthz")


def basic_credentials(header: str) -> tuple[str, str] | None:
    kind, _, encoded = header.partition(" ")
    if kind.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user, password


def principal_check(settings: Settings) -> Callable[[str, str], bool]:
    """Whether a user name and password are a Kafka principal's (the installation's secrets)."""
    from kintsmesh.security.kafka import principals

    known = {*principals(), "admin"}

    def check(user: str, password: str) -> bool:
        return user in known and hmac.compare_digest(password.encode(), settings.kafka_password(user).encode())
    return check


def create_app(log: SchemaLog, authenticate: Callable[[str, str], bool] | None = None,
               writers: frozenset[str] = frozenset()) -> FastAPI:
    """The registry's API; with ``authenticate`` (the stack's), every call but /metrics and /healthz needs a
    principal's credentials, and a change needs one of ``writers``."""
    metrics = CollectorRegistry()
    registrations = Counter("kintsmesh_registry_registrations_total", "Register calls by outcome",
                            ["outcome"], registry=metrics)
    app = FastAPI(title="Kintsmesh schema registry (Confluent API)")
    Gauge("kintsmesh_registry_skipped_records", "Records of the schema topic that are neither a schema version nor"
          " a level (skipped at replay)", registry=metrics).set_function(lambda: log.skipped)
    app.mount("/metrics", make_asgi_app(metrics))
    catalog = log.catalog

    @app.middleware("http")
    async def authorised(request: Request, call_next: Any) -> Any:
        path = request.url.path
        if authenticate is None or path.startswith(OPEN_PATHS):
            return await call_next(request)
        credentials = basic_credentials(request.headers.get("authorization", ""))
        if credentials is None or not authenticate(*credentials):
            answer = _answer({"error_code": 40101, "message": "Unauthorized: a principal's credentials are required"},
                             401)
            answer.headers["WWW-Authenticate"] = 'Basic realm="kintsmesh-registry"'
            return answer
        changes = request.method in ("PUT", "DELETE") or (
            request.method == "POST" and path.startswith("/subjects/") and path.endswith("/versions"))
        if changes and credentials[0] not in writers and not path.startswith(READ_POSTS):
            return _answer({"error_code": 40301, "message": f"Forbidden: {credentials[0]} may only read"}, 403)
        return await call_next(request)

    @app.exception_handler(RegistryError)
    async def registry_error(_: Request, exc: RegistryError) -> JSONResponse:
        return _answer({"error_code": exc.code, "message": exc.message}, exc.status)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Confluent's code for an error of the registry itself; the body stays JSON a client can read
        return _answer({"error_code": 50001, "message": f"{type(exc).__name__}: {str(exc)[:200]}"}, 500)

    @app.get("/")
    def root() -> JSONResponse:
        return _answer({})

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        return _answer({"status": "ok", "subjects": len(catalog.subjects)})

    @app.get("/schemas/types")
    def types() -> JSONResponse:
        return _answer(["AVRO"])

    def by_id(schema_id: int) -> SchemaVersion:
        try:
            return catalog.schema(schema_id)
        except UnknownSchema:
            log.refresh()   # written by another instance since
            try:
                return catalog.schema(schema_id)
            except UnknownSchema:
                raise RegistryError(404, 40403, f"Schema {schema_id} not found") from None

    @app.get("/schemas/ids/{schema_id}")
    def schema(schema_id: int) -> JSONResponse:
        return _answer({"schema": by_id(schema_id).text})

    @app.get("/schemas/ids/{schema_id}/schema")
    def schema_raw(schema_id: int) -> JSONResponse:
        return _answer(by_id(schema_id).schema)

    @app.get("/schemas/ids/{schema_id}/subjects")
    def schema_subjects(schema_id: int) -> JSONResponse:
        by_id(schema_id)
        return _answer(sorted({v.subject for vs in catalog.subjects.values() for v in vs if v.id == schema_id}))

    @app.get("/schemas/ids/{schema_id}/versions")
    def schema_versions(schema_id: int) -> JSONResponse:
        by_id(schema_id)
        return _answer([{"subject": v.subject, "version": v.version}
                        for _, vs in sorted(catalog.subjects.items()) for v in vs if v.id == schema_id])

    @app.get("/subjects")
    def subjects() -> JSONResponse:
        return _answer(sorted(catalog.subjects))

    @app.get("/subjects/{subject}/versions")
    def versions(subject: str) -> JSONResponse:
        if subject not in catalog.subjects:
            raise RegistryError(404, 40401, f"Subject '{subject}' not found.")
        return _answer([v.version for v in catalog.subjects[subject]])

    @app.get("/subjects/{subject}/versions/{version}")
    def version(subject: str, version: str) -> JSONResponse:
        return _answer(_full(_version_of(catalog, subject, version)))

    @app.get("/subjects/{subject}/versions/{version}/schema")
    def version_raw(subject: str, version: str) -> JSONResponse:
        return _answer(_version_of(catalog, subject, version).schema)

    @app.post("/subjects/{subject}/versions")
    async def register(subject: str, request: Request) -> JSONResponse:
        new = await _schema_body(request)
        try:
            registered = await run_in_threadpool(log.register, subject, new)
        except IncompatibleSchema as exc:
            registrations.labels("incompatible").inc()
            raise RegistryError(409, 409, f"Schema being registered is incompatible with an earlier schema for "
                                          f"subject \"{subject}\": {'; '.join(exc.problems)}") from None
        registrations.labels("registered").inc()
        return _answer(_full(registered))

    @app.post("/subjects/{subject}")
    async def lookup(subject: str, request: Request) -> JSONResponse:
        new = await _schema_body(request)
        if subject not in catalog.subjects:
            raise RegistryError(404, 40401, f"Subject '{subject}' not found.")
        found = catalog.lookup(subject, new)
        if found is None:
            raise RegistryError(404, 40403, "Schema not found")
        return _answer(_full(found))

    async def test(subject: str, request: Request, against: list[SchemaVersion]) -> JSONResponse:
        new = await _schema_body(request)
        problems = await run_in_threadpool(catalog.check, subject, new, against)
        answer: dict[str, Any] = {"is_compatible": not problems}
        if request.query_params.get("verbose", "false").lower() == "true":
            answer["messages"] = problems
        return _answer(answer)

    @app.post("/compatibility/subjects/{subject}/versions/{version}")
    async def compatible_with(subject: str, version: str, request: Request) -> JSONResponse:
        return await test(subject, request, [_version_of(catalog, subject, version)])

    @app.post("/compatibility/subjects/{subject}/versions")
    async def compatible(subject: str, request: Request) -> JSONResponse:
        return await test(subject, request, catalog.subjects.get(subject, []))

    @app.get("/config")
    def global_level() -> JSONResponse:
        return _answer({"compatibilityLevel": catalog.level(None)})

    @app.put("/config")
    async def set_global_level(request: Request) -> JSONResponse:
        level = await _level_body(request)
        log.set_level(None, level)
        return _answer({"compatibility": level})

    @app.get("/config/{subject}")
    def subject_level(subject: str) -> JSONResponse:
        return _answer({"compatibilityLevel": catalog.level(subject)})

    @app.put("/config/{subject}")
    async def set_subject_level(subject: str, request: Request) -> JSONResponse:
        level = await _level_body(request)
        log.set_level(subject, level)
        return _answer({"compatibility": level})

    @app.delete("/config/{subject}")
    def reset_subject_level(subject: str) -> JSONResponse:
        previous = catalog.level(subject)
        log.set_level(subject, None)
        return _answer({"compatibilityLevel": previous})

    @app.get("/mode")
    def mode() -> JSONResponse:
        return _answer({"mode": "READWRITE"})

    @app.delete("/subjects/{subject}")
    @app.delete("/subjects/{subject}/versions/{version}")
    def delete(subject: str, version: str | None = None) -> JSONResponse:
        raise RegistryError(405, 405, "this registry keeps every version: subjects and versions are not deleted")

    return app


def serve(settings: Settings, port: int | None = None) -> None:
    import uvicorn

    from kintsmesh.security.kafka import registry_writers
    from kintsmesh.security.pki import server_certificate

    log = SchemaLog(settings)
    pair = server_certificate(settings.secrets_dir, "registry")
    try:
        uvicorn.run(create_app(log, principal_check(settings), registry_writers()), host=settings.metrics_host,
                    port=port or settings.registry_port, log_level="warning", access_log=False,
                    ssl_certfile=str(pair.cert), ssl_keyfile=str(pair.key))
    finally:
        log.close()
