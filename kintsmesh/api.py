"""``kintsmesh api serve``: the HTTP endpoint for the education system and for auditors (FastAPI).

Served over TLS (a certificate of the installation's CA). Every request but /healthz and /metrics carries
``Authorization: Bearer <token>`` (``kintsmesh token issue``): a JWT signed by the installation's key naming
the client, its scopes and its registered legal purpose.

    GET /dossiers/school-enrolment/{ric}?level=primary|junior_high[&year=2027]   scope dossier:school-enrolment
        a child who reaches the level's age in the year: the dossier minimised to what the verdict needs;
        anyone else (unknown, adult, dead): the same NO_DATA answer (200), so it tells nothing of existence
    GET /items/{item}/evidence/{ric}     scope evidence:<item>
        what the library holds of the business item's evidence for the applicant (source department,
        record, date) and what is still to present (sinks/library/items.yaml)
    GET /residents/{ric}/services        scope services:read, or the citizen's own token
        the basic public services the resident qualifies for, each with its reasons and missing evidence
        (streams/events/services.yaml)
    GET /aggregates/population?level=district|street|community   scope aggregates:read
    GET /aggregates/needs                                          scope aggregates:read
        the actual resident population by age band and sex, health centres and school places needed per
        district; cells under 10 residents suppressed (no personal data)
    GET /audit/{ric}      who looked at a citizen's data: scope audit:read, or the citizen's own token
    GET /metrics          Prometheus: requests by outcome, latency
    GET /healthz

Every request to a personal-data route is in the append-only audit, refused and failed ones included;
each client has a rate limit (429 beyond it). No interactive docs or OpenAPI document are served.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import ORJSONResponse
from prometheus_client import CollectorRegistry, Counter, Histogram, make_asgi_app
from psycopg_pool import ConnectionPool

from kintsmesh.errors import TerminalError
from kintsmesh.security.tokens import Client, TokenError, Verifier
from kintsmesh.settings import CITY_TZ, RESOURCE_LIBRARY_DB, Settings
from sinks.library.dossier import DossierError, audit_history, record_access, school_enrolment
from sinks.library.evidence import ItemError, evidence_for, items
from sinks.library.population import needs_report, population
from sinks.library.residents import services_for

DOSSIER_SCOPE = "dossier:school-enrolment"
AUDIT_SCOPE = "audit:read"
SERVICES_SCOPE = "services:read"
AGGREGATES_SCOPE = "aggregates:read"


class Refused(TerminalError):
    """A request answered with an HTTP error; ``client`` when the caller was authenticated."""

    def __init__(self, status: int, reason: str, client: Client | None = None) -> None:
        super().__init__(reason)
        self.status, self.reason, self.client = status, reason, client


class RateLimiter:
    """A token bucket per client: ``requests_per_minute`` sustained, the same number as a burst."""

    def __init__(self) -> None:
        self.buckets: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def allow(self, client: Client, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        rate = client.requests_per_minute / 60.0
        with self.lock:
            tokens, last = self.buckets.get(client.client_id, (float(client.requests_per_minute), now))
            tokens = min(float(client.requests_per_minute), tokens + (now - last) * rate)
            allowed = tokens >= 1.0
            self.buckets[client.client_id] = (tokens - 1.0 if allowed else tokens, now)
        return allowed


def create_app(settings: Settings, database: str = RESOURCE_LIBRARY_DB) -> FastAPI:
    # each connection checked when taken: one PostgreSQL closed (a restart) is replaced, not answered with a 500
    pool = ConnectionPool(settings.dsn(database), min_size=2, max_size=8, open=True,
                          check=ConnectionPool.check_connection)
    verifier, limiter = Verifier(settings.secrets_dir), RateLimiter()
    registry = CollectorRegistry()
    requests = Counter("kintsmesh_dossier_requests_total", "API requests by outcome (verdict, refused, error)",
                       ["outcome"], registry=registry)
    seconds = Histogram("kintsmesh_dossier_seconds", "Assembling, judging and audit-logging one dossier",
                        registry=registry, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1))
    evidence_seconds = Histogram("kintsmesh_evidence_seconds", "Reading, assessing and audit-logging one item's"
                                 " evidence", registry=registry, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 1))
    app = FastAPI(title="Kintsmesh", default_response_class=ORJSONResponse, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.mount("/metrics", make_asgi_app(registry))

    def authorised(request: Request, scopes: Callable[[Client], bool]) -> Client:
        header = request.headers.get("authorization", "")
        kind, _, token = header.partition(" ")
        if kind.lower() != "bearer" or not token.strip():
            raise Refused(401, "a bearer token is required")
        try:
            client = verifier.client(token.strip())
        except TokenError as exc:
            raise Refused(401, str(exc)) from exc
        if not limiter.allow(client):
            raise Refused(429, f"rate limit of {client.requests_per_minute} requests per minute", client)
        if not scopes(client):
            raise Refused(403, "the token's scopes do not allow this", client)
        return client

    def refusal(request: Request, subject: str, resource: str, refused: Refused) -> Any:
        """Audit the refused request (who tried, for what), then answer it."""
        client = refused.client
        requests.labels(f"refused_{refused.status}").inc()
        with pool.connection() as conn:
            record_access(conn, subject=subject, requester=client.client_id if client else _anonymous(request),
                          purpose=client.purpose if client else "-", channel="http", resource=resource, fields=[],
                          outcome=f"refused: {refused.reason}"[:200], status=refused.status)
        headers = {"WWW-Authenticate": 'Bearer realm="kintsmesh"'} if refused.status == 401 else None
        return ORJSONResponse({"detail": refused.reason}, status_code=refused.status, headers=headers)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/dossiers/school-enrolment/{ric}")
    def dossier(request: Request, ric: str, level: str = "primary", year: int | None = None) -> Any:
        started = time.perf_counter()
        try:
            client = authorised(request, lambda c: DOSSIER_SCOPE in c.scopes)
        except Refused as refused:
            return refusal(request, ric, "school_enrolment_dossier", refused)
        try:
            with pool.connection() as conn:
                result = school_enrolment(conn, ric, requester=client.client_id, purpose=client.purpose, level=level,
                                          year=year, channel="http")
        except DossierError as exc:
            return refusal(request, ric, "school_enrolment_dossier", Refused(400, str(exc), client))
        seconds.observe(time.perf_counter() - started)
        requests.labels(result["verdict"]["verdict"]).inc()
        return ORJSONResponse(result)   # straight to orjson: no per-field encoding pass

    @app.get("/items/{item}/evidence/{ric}")
    def evidence(request: Request, item: str, ric: str) -> Any:
        started = time.perf_counter()
        resource = f"evidence:{item}"[:100]
        try:
            client = authorised(request, lambda c: resource in c.scopes)
            if item not in items():
                raise Refused(404, f"no business item {item!r}", client)
        except Refused as refused:
            return refusal(request, ric, resource, refused)
        try:
            with pool.connection() as conn:
                result = evidence_for(conn, item, ric, requester=client.client_id, purpose=client.purpose,
                                      channel="http")
        except ItemError as exc:
            return refusal(request, ric, resource, Refused(400, str(exc), client))
        evidence_seconds.observe(time.perf_counter() - started)
        requests.labels("evidence").inc()
        return ORJSONResponse(result)

    @app.get("/residents/{ric}/services")
    def resident_services(request: Request, ric: str) -> Any:
        subject = ric.strip().upper()
        try:
            client = authorised(request, lambda c: SERVICES_SCOPE in c.scopes or (c.ric is not None and c.ric == subject))
        except Refused as refused:
            return refusal(request, ric, "services_for_me", refused)
        with pool.connection() as conn:
            result = services_for(conn, subject, requester=client.client_id, purpose=client.purpose, channel="http")
        requests.labels("services").inc()
        return ORJSONResponse(result)

    @app.get("/aggregates/{view}")
    def aggregates(request: Request, view: str, level: str = "district") -> Any:
        try:
            authorised(request, lambda c: AGGREGATES_SCOPE in c.scopes)
        except Refused as refused:
            return refusal(request, "-", f"aggregates:{view}"[:100], refused)
        if view not in ("population", "needs") or level not in ("district", "street", "community"):
            return ORJSONResponse({"detail": "GET /aggregates/population?level=district|street|community or"
                                             " /aggregates/needs"}, status_code=404)
        with pool.connection() as conn:
            result = ({"level": level, "population": population(conn, level)} if view == "population"
                      else needs_report(conn, datetime.now(CITY_TZ).date()))
        requests.labels("aggregates").inc()
        return ORJSONResponse(result)

    @app.get("/audit/{ric}")
    def audit(request: Request, ric: str, limit: int = 100) -> Any:
        subject = ric.strip().upper()
        try:
            client = authorised(request, lambda c: AUDIT_SCOPE in c.scopes or (c.ric is not None and c.ric == subject))
        except Refused as refused:
            return refusal(request, ric, "access_audit", refused)
        with pool.connection() as conn, conn.transaction():
            accesses = audit_history(conn, subject, max(1, min(limit, 1000)))
            record_access(conn, subject=subject, requester=client.client_id, purpose=client.purpose, channel="http",
                          resource="access_audit", fields=["accesses"], outcome="read", status=200)
        requests.labels("audit_read").inc()
        return {"ric": subject, "accesses": accesses}

    return app


def _anonymous(request: Request) -> str:
    """How an unauthenticated caller is named in the audit: its address."""
    return f"unauthenticated {request.client.host if request.client else 'unknown'}"


def serve(settings: Settings, database: str = RESOURCE_LIBRARY_DB, port: int | None = None) -> None:
    """Over TLS only: the bearer tokens and the dossiers never cross the network in clear."""
    import uvicorn

    from kintsmesh.security.pki import server_certificate

    pair = server_certificate(settings.secrets_dir, "api")
    uvicorn.run(create_app(settings, database), host=settings.metrics_host, port=port or settings.api_port,
                log_level="warning", access_log=False, ssl_certfile=str(pair.cert), ssl_keyfile=str(pair.key))
