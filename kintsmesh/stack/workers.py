"""The stack's Python processes: each a ``kintsmesh <subcommand>`` with its metrics (or API) port, one row
of ``WORKERS`` each."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import requests

from kintsmesh.settings import Settings
from kintsmesh.stack.component import Component


@dataclass(frozen=True)
class WorkerSpec:
    name: str
    subcommand: tuple[str, ...]
    description: str
    port_setting: str = ""   # the Settings field holding its port, when not <name>_metrics_port
    pg_role: str = "none"    # its PostgreSQL role (kintsmesh/security/postgres_roles.yaml); none: no access
    kafka_principal: str = ""   # its Kafka principal (kintsmesh/security/kafka_acls.yaml); default: its name
    connect_user: str = "none"   # its user of Connect's REST API, if it needs one
    tls: bool = False        # serves HTTPS (a certificate of the installation's CA), not HTTP

    @property
    def setting(self) -> str:
        return self.port_setting or f"{self.name}_metrics_port"

    @property
    def principal(self) -> str:
        return self.kafka_principal or self.name


WORKERS: tuple[WorkerSpec, ...] = (
    WorkerSpec("registry", ("registry", "serve"),
               "The schema registry (Confluent REST API over a compacted topic), /metrics on the same port",
               "registry_port", tls=True),
    WorkerSpec("normalize", ("streams", "worker"), "The Faust normalize worker (raw.* -> gldm.*.candidates / dlq.*)"),
    WorkerSpec("resolve", ("streams", "resolve"),
               "The resolve stage (gldm.*.candidates -> identity decisions -> gldm.*.resolved, keyed by canonical id)",
               pg_role="resolve"),
    WorkerSpec("merge", ("streams", "merge"),
               "The merge stage (gldm.*.resolved -> golden records in the resource library -> gldm.*.changes)",
               pg_role="merge"),
    WorkerSpec("events", ("streams", "events"), "The life-event worker (gldm.*.changes + the daily pass -> events.life.*)",
               pg_role="events"),
    WorkerSpec("api", ("api", "serve"),
               "The dossier HTTP endpoint for the education system (FastAPI), /metrics on the same port", "api_port",
               pg_role="api", kafka_principal="none", tls=True),
    WorkerSpec("monitor", ("monitor", "serve"),
               "The lag exporter (connector states, consumer lag, DLQ sizes, T+1 batches) for Prometheus",
               pg_role="monitor", connect_user="monitor"),
    WorkerSpec("supervisor", ("stack", "supervise"),
               "Starts again every component that dies, with backoff; restarts and crash loops as metrics",
               pg_role="admin", kafka_principal="admin", connect_user="admin"),   # it checks every component's health: the stack's own
)


class PythonWorker(Component):
    """A ``kintsmesh <subcommand...>`` process, healthy when its port serves /metrics."""

    def __init__(self, settings: Settings, spec: WorkerSpec) -> None:
        self.name, self.port_setting, self.spec = spec.name, spec.setting, spec
        super().__init__(settings)

    def command(self) -> list[str]:
        # the data dir argument names the stack folder, which marks the process as ours
        # (Faust keeps its state there; the other workers have none)
        return [sys.executable, "-m", "kintsmesh.cli", *self.spec.subcommand, "--datadir", str(self.home)]

    def env(self) -> dict[str, str]:
        return {**os.environ, "KINTSMESH_STACK_DIR": str(self.settings.stack_dir), "PYTHONUNBUFFERED": "1",
                "KINTSMESH_PG_ROLE": self.spec.pg_role, "KINTSMESH_KAFKA_PRINCIPAL": self.spec.principal,
                "KINTSMESH_CONNECT_USER": self.spec.connect_user}

    def healthy(self) -> bool:
        scheme = "https" if self.spec.tls else "http"
        response = requests.get(f"{scheme}://127.0.0.1:{self.port}/metrics", timeout=3, verify=str(self.settings.trusted_ca))
        return response.status_code == 200


def worker(settings: Settings, name: str) -> PythonWorker:
    return PythonWorker(settings, next(spec for spec in WORKERS if spec.name == name))
