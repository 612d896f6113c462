"""The local stack's components, each a process started from files under ``.stack/``, in start order.

PostgreSQL (``postgres``: two clusters, ``departments`` for the department databases and ``postgres`` for
the resource library), Kafka in KRaft mode and Kafka Connect with Debezium (``jvm``), the Python processes
(``workers``: the registry, the stages, the API, the lag exporter), Prometheus (``prometheus``) and the
supervisor that starts again whatever dies (``supervise``). Each knows how to prepare its files, start,
probe health and stop (``component``).
"""

from __future__ import annotations

from kintsmesh.settings import Settings
from kintsmesh.stack.component import Component, Status
from kintsmesh.stack.jvm import Connect, Kafka
from kintsmesh.stack.postgres import Departments, Postgres
from kintsmesh.stack.process import read_pid
from kintsmesh.stack.prometheus import Prometheus
from kintsmesh.stack.workers import worker

__all__ = ["Component", "Connect", "Departments", "Kafka", "Postgres", "Prometheus", "Status", "components", "stale_pid"]


def components(settings: Settings) -> list[Component]:
    """In start order; stopped in reverse (the supervisor, started last, is stopped first)."""
    brokers = [Kafka(settings, node) for node in range(1, settings.kafka_brokers + 1)]
    return [Departments(settings), Postgres(settings), *brokers, worker(settings, "registry"), Connect(settings),
            *(worker(settings, name) for name in ("normalize", "resolve", "merge", "events", "api", "monitor")),
            Prometheus(settings), worker(settings, "supervisor")]


def stale_pid(component: Component) -> int | None:
    """A pid file whose process is gone or is not ours (reported, then cleared)."""
    recorded = read_pid(component.pid_file)
    return recorded if recorded is not None and component.pid() is None else None
