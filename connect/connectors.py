"""Debezium connector configs, one per department, rendered from ``connect/connectors/*.json``.

``_defaults.json`` holds what every department shares (pgoutput, heartbeats, the
``initial`` snapshot, low-latency polling, topic creation); ``<department>.json``
holds that department's own keys (its tables) and may override any default.
``${...}`` placeholders are filled from ``Settings``; ``$${file:...}`` becomes a reference that
Connect's ``FileConfigProvider`` resolves inside the worker (secrets never travel in a config). Adding a department is one
new JSON file (plus its database and migrations).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from string import Template

from kintsmesh.settings import Settings
from kintsmesh.topics import raw_topic

CONNECTORS_DIR = Path(__file__).resolve().parent / "connectors"


def connector_name(department: str) -> str:
    return f"kintsmesh-{department}"


def available_departments() -> list[str]:
    return sorted(p.stem for p in CONNECTORS_DIR.glob("*.json") if not p.stem.startswith("_"))


def render(settings: Settings, department: str) -> dict[str, str]:
    path = CONNECTORS_DIR / f"{department}.json"
    if not path.is_file():
        raise FileNotFoundError(f"no connector config for department {department!r} ({path})")
    merged = json.loads((CONNECTORS_DIR / "_defaults.json").read_text())
    merged.update(json.loads(path.read_text()))
    host, port = settings.pg_endpoint("departments")
    values = {
        "department": department,
        "pg_host": settings.pg_host_for_connect or host,
        "pg_port": str(port),
        # the password is not in the config (a GET of it shows none): Connect's file config provider reads it
        "secrets_dir": str(settings.secrets_dir),
        "partitions": str(settings.kafka_partitions),
        "replication_factor": str(settings.replication_factor),
    }
    return {key: Template(str(value)).substitute(values) for key, value in merged.items()}


def tables(settings: Settings, department: str) -> list[str]:
    """Table names (without schema) a department's connector captures."""
    include = render(settings, department)["table.include.list"]
    return [entry.split(".", 1)[1] for entry in include.split(",") if entry]


def connector_configs(settings: Settings, departments: Iterable[str]) -> dict[str, dict[str, str]]:
    return {connector_name(d): render(settings, d) for d in departments}


def raw_topics(settings: Settings) -> list[str]:
    """Every captured table's raw topic. (Faust's pattern subscription does not work:
    faust-streaming issue #62, so the topics are listed from the connector configs.)"""
    return [raw_topic(d, t) for d in available_departments() for t in tables(settings, d)]
