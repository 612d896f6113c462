"""Connection and stack settings: the one place that reads the environment.

Every component (stack launcher, connector client, simulator, benchmarks, tests)
takes a ``Settings``; the same code runs against the local stack or an external
multi-node cluster by setting ``KINTSMESH_*`` variables, e.g.
``KINTSMESH_BOOTSTRAP_SERVERS=k1:9092,k2:9092``.
"""

from __future__ import annotations

from datetime import timedelta, timezone
from pathlib import Path
from typing import Literal

from psycopg.conninfo import make_conninfo
from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent

DEPARTMENTS: tuple[str, ...] = (
    "police",
    "civil_affairs",
    "health",
    "hrss",
    "housing",
    "market",
    "education",
)
Department = Literal["police", "civil_affairs", "health", "hrss", "housing", "market", "education"]
RESOURCE_LIBRARY_DB = "resource_library"
# The two PostgreSQL clusters: the departments' databases (captured by Debezium) and the resource library's
# (the library, its benchmarks' scratch copies, the maintenance database ``postgres``).
Cluster = Literal["library", "departments"]
CLUSTERS: tuple[Cluster, ...] = ("library", "departments")


def cluster_of(database: str) -> Cluster:
    return "departments" if database in DEPARTMENTS else "library"


DEMO_SEED = 2026   # ``kintsmesh simulate``'s default seed: the demo's city
# The city's calendar: what day a change or a birthday falls on. Asia/Shanghai has no daylight saving
# time, so a fixed offset is exact (and cheaper than a zoneinfo lookup per value).
CITY_TZ_NAME = "Asia/Shanghai"
CITY_TZ = timezone(timedelta(hours=8), CITY_TZ_NAME)


def role_name(component: str) -> str:
    """The PostgreSQL login role of a component (``capture_police``, ``merge``, ``api``...)."""
    return f"kintsmesh_{component}"


class Settings(BaseSettings):
    """Ports, heaps and endpoints. Endpoints default to the local stack's ports."""

    model_config = SettingsConfigDict(env_prefix="KINTSMESH_", extra="ignore")

    stack_dir: Path = REPO_ROOT / ".stack"
    # the installation's secrets (default <stack_dir>/secrets, fixed when the settings are made: a copy of the
    # settings with another stack_dir, such as a simulated city's folder, keeps the installation's secrets)
    secrets_dir: Path = Field(default=Path(), validate_default=True)
    # maven's local repository: jars are cached here, inside the ignored stack folder
    maven_repo: Path | None = None

    pg_host: str = "127.0.0.1"
    pg_port: int = 55432
    pg_user: str = "kintsmesh"   # the bootstrap superuser: the stack, migrations, operators' commands, tests
    pg_password: SecretStr | None = None   # default: the installation's secret (secrets/postgres-admin)
    # the component a process connects as (kintsmesh_<role>, least privilege: kintsmesh/security/postgres_roles.yaml);
    # the stack sets it for each of its processes; unset: the bootstrap user; "none": no database access
    pg_role: str | None = None
    pg_sslmode: str = "verify-full"   # TLS, the server verified against the installation's CA
    pg_sslrootcert: Path | None = None   # default: secrets/ca.pem
    # host name under which Debezium (inside Kafka Connect) reaches the department databases
    pg_host_for_connect: str | None = None
    # the department databases (what Debezium captures) are a cluster of their own, as on a city's
    # department servers: the resource library's writes never pass through their replication slots
    departments_pg_host: str | None = None   # default: pg_host
    departments_pg_port: int = 55433

    # where Kafka and Connect listen, and the name they advertise: 127.0.0.1 for the local stack; in containers
    # (docker-compose) they listen on every interface and are known by their service names
    listen_host: str = "127.0.0.1"
    kafka_host: str = "127.0.0.1"
    connect_host: str = "127.0.0.1"
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    kafka_heap: str = "384m"
    # 1: one broker (the demo's default); 3: three KRaft nodes, each broker and controller, every topic
    # replicated 3 times with min.insync.replicas 2 (how a city runs it). Broker n listens on
    # kafka_port + 2(n-1), its controller on kafka_controller_port + 2(n-1), its JMX exporter on
    # kafka_jmx_port + 100(n-1).
    kafka_brokers: int = Field(default=1, ge=1, le=3)   # 1 or 3 (two would make every write wait for both)
    kafka_partitions: int = 3
    bootstrap_servers: str | None = None
    # who a process is to Kafka (SCRAM-SHA-512 over TLS; its ACLs: kintsmesh/security/kafka_acls.yaml); the stack
    # sets it for each of its processes; unset: admin (the stack itself, operators' commands, tests)
    kafka_principal: str = "admin"
    ca_file: Path | None = None   # what clients trust (TLS to Kafka and PostgreSQL); default: secrets/ca.pem

    connect_port: int = 18083
    connect_heap: str = "512m"
    connect_url: str | None = None
    connect_user: str = "admin"   # who a process is to Connect's REST API (basic authentication)
    connect_plugin_path: Path | None = None   # default <stack_dir>/plugins (the Debezium image: /kafka/connect)

    prometheus_port: int = 19090
    registry_port: int = 18081          # the schema registry (Confluent REST API)
    registry_url: str | None = None     # another Confluent-compatible registry instead of the stack's
    normalize_metrics_port: int = 19101
    normalize_loop: Literal["uvloop", "aio"] = "uvloop"   # the normalize worker's event loop (Faust runs on it)
    resolve_metrics_port: int = 19108   # the resolve stage of the merge worker
    merge_metrics_port: int = 19102
    monitor_metrics_port: int = 19103   # the lag exporter: connectors, consumer lag, DLQ, T+1 batches
    events_metrics_port: int = 19106    # the life-event worker
    api_port: int = 19107               # the dossier HTTP endpoint (and its /metrics)
    supervisor_metrics_port: int = 19109  # the stack's supervisor (restarts, crash loops)
    connect_jmx_port: int = 19104       # the JMX exporter agent inside Kafka Connect
    kafka_jmx_port: int = 19105         # ... and inside the Kafka broker
    metrics_host: str = "127.0.0.1"   # where workers serve /metrics (0.0.0.0 inside a container)
    prometheus_url: str | None = None

    start_timeout_s: float = Field(default=180.0, gt=0)
    # a stage consumer holding no partition this long while its topics have messages waiting is built again
    assignment_timeout_s: float = Field(default=60.0, gt=0)
    # a record whose person reference does not resolve (``resolves:`` in its mapping) waits this long for its
    # person's row, then goes to dlq.merge as unresolved_reference
    reference_hold_s: float = Field(default=3600.0, gt=0)

    # -- derived endpoints -------------------------------------------------
    @property
    def kafka_bootstrap(self) -> str:
        return self.bootstrap_servers or ",".join(f"127.0.0.1:{self.broker_port(n)}"
                                                  for n in range(1, self.kafka_brokers + 1))

    def broker_port(self, node: int) -> int:
        return self.kafka_port + 2 * (node - 1)

    @field_validator("secrets_dir", mode="after")
    @classmethod
    def _secrets_beside_the_stack(cls, folder: Path, info: ValidationInfo) -> Path:
        return folder if folder != Path() else Path(info.data["stack_dir"]) / "secrets"

    @field_validator("kafka_brokers")
    @classmethod
    def _one_or_three(cls, brokers: int) -> int:
        if brokers not in (1, 3):
            raise ValueError("KINTSMESH_KAFKA_BROKERS is 1 (the default) or 3 (replicated)")
        return brokers

    @property
    def replication_factor(self) -> int:
        """Of every topic the stack creates: 3 with three brokers, else 1."""
        return min(3, self.kafka_brokers)

    @property
    def min_insync_replicas(self) -> int:
        """A write is acknowledged (acks=all) once this many replicas have it: 2 of 3, or 1 of 1."""
        return 2 if self.kafka_brokers >= 3 else 1

    @property
    def connect_endpoint(self) -> str:
        return (self.connect_url or f"http://127.0.0.1:{self.connect_port}").rstrip("/")

    @property
    def registry_endpoint(self) -> str:
        return (self.registry_url or f"https://127.0.0.1:{self.registry_port}").rstrip("/")

    def registry_client_config(self) -> dict[str, str]:
        """Confluent's SchemaRegistryClient configuration: this process's principal, the CA to verify with."""
        config = {"url": self.registry_endpoint,
                  "basic.auth.user.info": f"{self.kafka_principal}:{self.kafka_password()}"}
        if self.registry_endpoint.startswith("https:"):
            config["ssl.ca.location"] = str(self.trusted_ca)
        return config

    @property
    def api_endpoint(self) -> str:
        return f"https://127.0.0.1:{self.api_port}"

    @property
    def prometheus_endpoint(self) -> str:
        return (self.prometheus_url or f"http://127.0.0.1:{self.prometheus_port}").rstrip("/")

    @property
    def maven_repository(self) -> Path:
        return self.maven_repo or self.stack_dir / "m2"

    def secret(self, name: str) -> str:
        from kintsmesh.security.secrets import secret

        return secret(self.secrets_dir, name)

    def role_password(self, role: str) -> str:
        """The password of component role ``kintsmesh_<role>`` (or of the bootstrap user: ``admin``)."""
        if role == "admin" and self.pg_password is not None:
            return self.pg_password.get_secret_value()
        return self.secret(f"postgres-{role}")

    def dsn(self, database: str, role: str | None = None, cluster: Cluster | None = None) -> str:
        """libpq connection string for one department database or the resource library, as ``role``
        (by default this process's ``pg_role``), over TLS verified against the installation's CA. A
        department's database is in the departments' cluster, any other in the library's; ``cluster``
        names it for a database both have (``postgres``)."""
        role = role or self.pg_role
        if role == "none":
            raise PermissionError("this process has no database access (KINTSMESH_PG_ROLE=none)")
        user, password = (self.pg_user, self.role_password("admin")) if role in (None, "admin") \
            else (role_name(role), self.role_password(role))
        host, port = self.pg_endpoint(cluster or cluster_of(database))
        return make_conninfo(host=host, port=port, dbname=database, user=user, password=password,
                             sslmode=self.pg_sslmode, sslrootcert=str(self.pg_sslrootcert or self.trusted_ca))

    def pg_endpoint(self, cluster: Cluster) -> tuple[str, int]:
        if cluster == "departments":
            return self.departments_pg_host or self.pg_host, self.departments_pg_port
        return self.pg_host, self.pg_port

    @property
    def trusted_ca(self) -> Path:
        return self.ca_file or self.secrets_dir / "ca.pem"

    @property
    def connect_credentials(self) -> tuple[str, str]:
        return self.connect_user, self.secret(f"connect-rest-{self.connect_user}")

    def kafka_password(self, principal: str | None = None) -> str:
        """The SCRAM password of a Kafka principal (this process's by default)."""
        return self.secret(f"kafka-{principal or self.kafka_principal}")

    def masked(self) -> dict[str, object]:
        """Settings as printed by ``kintsmesh config``: secrets stay masked."""
        shown: dict[str, object] = {
            name: (str(value) if isinstance(value, SecretStr) else value)
            for name, value in self.model_dump().items()
        }
        shown.update(
            bootstrap_servers=self.kafka_bootstrap,
            connect_url=self.connect_endpoint,
            prometheus_url=self.prometheus_endpoint,
            registry_url=self.registry_endpoint,
            maven_repo=str(self.maven_repository),
        )
        return shown
