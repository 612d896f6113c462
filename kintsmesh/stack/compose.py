"""The files docker-compose's containers read, made by the same code as the local stack's: ``kintsmesh secrets
init --compose`` (run by compose's ``init`` service into ``.stack/compose``, mounted at ``/stack``) writes the
installation's secrets and CA (with the service names in the certificates), Kafka's ``server.properties`` and
key store, Connect's worker properties, REST users and connector password files, and PostgreSQL's pg_hba."""

from __future__ import annotations

from pathlib import Path

from kintsmesh.security.install import initialise
from kintsmesh.settings import Settings
from kintsmesh.stack.jvm import Connect, Kafka

SERVICE_HOSTS = ("postgres", "departments", "kafka", "connect", "registry", "api")
COMPOSE_PG_HBA = """# kintsmesh in docker-compose: every client authenticates with a password (SCRAM), over TLS only
local    all          all                   scram-sha-256
hostssl  all          all   all             scram-sha-256
hostssl  replication  all   all             scram-sha-256
"""


def compose_settings(settings: Settings) -> Settings:
    """The local stack's settings as the containers see each other: every JVM listens on all interfaces and is
    known by its service name, on the image's usual ports."""
    return settings.model_copy(update={
        "listen_host": "0.0.0.0", "kafka_host": "kafka", "connect_host": "connect", "kafka_port": 9092,
        "kafka_controller_port": 9093, "connect_port": 8083, "bootstrap_servers": "kafka:9092",
        "connect_plugin_path": Path("/kafka/connect")})


def render(settings: Settings) -> list[str]:
    """Write everything the compose services read; returns the files written (nothing existing is replaced
    among the secrets; the configuration files are written again)."""
    containers = compose_settings(settings)
    names = initialise(containers, SERVICE_HOSTS)
    Kafka(containers).write_config()
    Connect(containers).write_config()
    hba = containers.stack_dir / "postgres" / "pg_hba.conf"
    hba.parent.mkdir(parents=True, exist_ok=True)
    hba.write_text(COMPOSE_PG_HBA)
    return [*names, "kafka/server.properties", "kafka/keystore.pem", "kafka/cluster-id",
            "connect/connect-distributed.properties", "connect/rest-jaas.conf", "postgres/pg_hba.conf"]
