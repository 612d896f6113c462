"""``kintsmesh streams worker``: register the GLDM schemas, expose metrics, run the Faust worker."""

from __future__ import annotations

import logging
import sys

import mode.loop
from prometheus_client import CollectorRegistry, start_http_server

from kintsmesh.settings import Settings
from monitoring.metrics import NormalizeMetrics
from streams.normalize.agent import create_app, create_passthrough_app, prepare


def run_worker(settings: Settings, log_level: str = "warn", datadir: str = "",
               bench: tuple[list[str], str, str] | None = None, passthrough: bool = False) -> None:
    """Run the normalize worker; ``bench`` = (input topics, output prefix, app id) for ``bench normalize``."""
    # before any event loop is made: Faust's per-message machinery (a wait per message, channel -> stream ->
    # take_events per event) runs on the loop (``KINTSMESH_NORMALIZE_LOOP=aio``: asyncio's own)
    mode.loop.use(settings.normalize_loop)
    versions = prepare(settings)
    registry = CollectorRegistry()
    metrics = NormalizeMetrics(registry)
    start_http_server(settings.normalize_metrics_port, addr=settings.metrics_host, registry=registry)
    logging.getLogger(__name__).info("normalize metrics on :%s", settings.normalize_metrics_port)
    if bench is None:
        app = create_app(settings, versions, metrics, datadir=datadir)
    elif passthrough:
        app = create_passthrough_app(settings, metrics, bench[0], f"{bench[1]}passthrough", bench[2], datadir)
    else:
        app = create_app(settings, versions, metrics, datadir=datadir, inputs=bench[0], prefix=bench[1], app_id=bench[2])
    # no Faust web server: metrics are served by prometheus-client; two workers must not fight over :6066
    sys.argv = ["kintsmesh-normalize", "worker", "--loglevel", log_level, "--without-web"]
    app.main()
