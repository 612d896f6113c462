"""``kintsmesh streams worker``: register the GLDM schemas, expose metrics, run the Faust worker."""

from __future__ import annotations

import logging
import sys

from prometheus_client import CollectorRegistry, start_http_server

from kintsmesh.settings import Settings
from streams.app import create_app, prepare
from streams.metrics import NormalizeMetrics


def run_worker(settings: Settings, log_level: str = "warn", datadir: str = "") -> None:
    versions = prepare(settings)
    registry = CollectorRegistry()
    metrics = NormalizeMetrics(registry)
    start_http_server(settings.normalize_metrics_port, addr=settings.metrics_host, registry=registry)
    logging.getLogger(__name__).info("normalize metrics on :%s", settings.normalize_metrics_port)
    app = create_app(settings, versions, metrics, datadir=datadir)
    sys.argv = ["kintsmesh-normalize", "worker", "--loglevel", log_level]
    app.main()
