"""``kintsmesh api serve``: the HTTP endpoint for the education system (FastAPI).

    GET /dossiers/school-enrolment/{ric}?purpose=...&level=primary|junior_high[&year=2027]
        header X-Requester: who asks (an office, an officer) — required, as is the purpose
    GET /audit/{ric}       the citizen's access history: who looked at their data, when and why
    GET /metrics           Prometheus: requests by outcome, latency
    GET /healthz

Every dossier is audit-logged before it is returned (``sinks.dossier``).
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Header, HTTPException, Query
from fastapi.responses import ORJSONResponse
from prometheus_client import CollectorRegistry, Counter, Histogram, make_asgi_app
from psycopg_pool import ConnectionPool

from kintsmesh.settings import RESOURCE_LIBRARY_DB, Settings
from sinks.library.dossier import DossierError, audit_history, school_enrolment


def create_app(settings: Settings, database: str = RESOURCE_LIBRARY_DB) -> FastAPI:
    pool = ConnectionPool(settings.dsn(database), min_size=2, max_size=8, open=True)
    registry = CollectorRegistry()
    requests = Counter("kintsmesh_dossier_requests_total", "Dossier requests by verdict (or error)", ["outcome"],
                       registry=registry)
    seconds = Histogram("kintsmesh_dossier_seconds", "Assembling, judging and audit-logging one dossier",
                        registry=registry, buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1))
    app = FastAPI(title="Kintsmesh dossiers", default_response_class=ORJSONResponse)
    app.mount("/metrics", make_asgi_app(registry))

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/dossiers/school-enrolment/{ric}")
    def dossier(ric: str, purpose: str = Query(min_length=1), level: str = "primary", year: int | None = None,
                x_requester: str = Header(min_length=1)) -> Any:
        started = time.perf_counter()
        try:
            with pool.connection() as conn:
                result = school_enrolment(conn, ric, requester=x_requester, purpose=purpose, level=level, year=year,
                                          channel="http")
        except DossierError as exc:
            requests.labels("refused").inc()
            raise HTTPException(status_code=400, detail=str(exc)) from exc
        seconds.observe(time.perf_counter() - started)
        requests.labels(result["verdict"]["verdict"]).inc()
        if result["child"] is None:
            raise HTTPException(status_code=404, detail=result["verdict"]["reasons"][0])
        return ORJSONResponse(result)   # straight to orjson: no per-field encoding pass

    @app.get("/audit/{ric}")
    def audit(ric: str, limit: int = 100) -> Any:
        with pool.connection() as conn:
            return {"ric": ric, "accesses": audit_history(conn, ric, limit)}

    return app


def serve(settings: Settings, database: str = RESOURCE_LIBRARY_DB, port: int | None = None) -> None:
    import uvicorn

    uvicorn.run(create_app(settings, database), host=settings.metrics_host, port=port or settings.api_port,
                log_level="warning", access_log=False)
