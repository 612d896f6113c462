"""The local stack's components, each a process started from files under ``.stack/``.

PostgreSQL (Debian binaries, private cluster, ``wal_level=logical``), Kafka in
KRaft mode and Kafka Connect with Debezium (jars from Maven Central, each JVM with the
Prometheus JMX exporter agent), the normalize, merge and life-event workers, the lag exporter, and
Prometheus (Debian binary). Each knows how to prepare its files, start, probe health and stop.
"""

from __future__ import annotations

import base64
import os
import pwd
import sys
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from string import Template

import psycopg
import requests

from kintsmesh.errors import PortBusy, StackError
from kintsmesh.settings import REPO_ROOT, Settings
from kintsmesh.stack import prerequisites
from kintsmesh.stack.process import alive, owned_pid, port_open, read_pid, spawn, terminate, wait_until

DEBEZIUM_POSTGRES_CLASS = "io.debezium.connector.postgresql.PostgresConnector"


@dataclass(frozen=True)
class Status:
    name: str
    port: int
    pid: int | None
    healthy: bool

    @property
    def state(self) -> str:
        if self.pid is None:
            return "down"
        return "up" if self.healthy else "starting/unhealthy"


class Component:
    """One process of the stack. Subclasses fill in ``prepare``, ``command`` and ``healthy``."""

    name: str = ""
    port_env: str = ""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.stack_dir / self.name
        self.pid_file = settings.stack_dir / "run" / f"{self.name}.pid"
        self.log_file = settings.stack_dir / "logs" / f"{self.name}.log"

    @property
    def port(self) -> int:
        raise NotImplementedError

    def pid(self) -> int | None:
        return owned_pid(self.pid_file, str(self.settings.stack_dir))

    def healthy(self) -> bool:
        raise NotImplementedError

    def status(self) -> Status:
        pid = self.pid()
        try:
            ok = pid is not None and self.healthy()
        except Exception:  # noqa: BLE001 - a failing probe is "unhealthy", shown in status
            ok = False
        return Status(self.name, self.port, pid, ok)

    def prepare(self) -> None:
        """Install / resolve / write config: everything before the process starts."""

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str] | None:
        return None

    def start(self) -> None:
        if port_open(self.port):
            raise PortBusy(self.name, self.port, self.port_env)
        spawn(self.command(), self.log_file, self.pid_file, cwd=self.settings.stack_dir, env=self.env())

    def after_start(self) -> None:
        """One-off work once healthy (databases, migrations)."""

    def stop(self) -> bool:
        """Stop the process if it is ours. True if something was stopped."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        terminate(pid)
        self.pid_file.unlink(missing_ok=True)
        return True


def _jvm_command(settings: Settings, heap: str, log_config: Path, main: str, *args: str,
                 agents: tuple[str, ...] = ()) -> list[str]:
    java = prerequisites.java()
    classpath = str(settings.stack_dir / "lib" / "kafka" / "*")
    return [
        java,
        f"-Xms{heap}", f"-Xmx{heap}",
        "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:ParallelGCThreads=2", "-XX:ConcGCThreads=1",
        "-XX:+ExitOnOutOfMemoryError",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log_config}",
        # marks the process as this stack's, see process.owned_pid
        f"-Dkintsmesh.stack={settings.stack_dir}",
        *(f"-javaagent:{agent}" for agent in agents),
        "-cp", classpath,
        main, *args,
    ]


def _jmx_agent(settings: Settings, port: int, rules: str) -> str:
    """The Prometheus JMX exporter java agent (stack/maven/jmx) serving ``monitoring/jmx/<rules>`` on ``port``."""
    prerequisites.resolve_jars(settings, "jmx", settings.stack_dir / "lib" / "jmx")
    jar = settings.stack_dir / "lib" / "jmx" / "jmx_prometheus_javaagent.jar"
    return f"{jar}=127.0.0.1:{port}:{REPO_ROOT / 'monitoring' / 'jmx' / rules}"


LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
logger.connect.name = org.apache.kafka.connect.runtime.WorkerSourceTask
logger.connect.level = INFO
logger.debezium.name = io.debezium
logger.debezium.level = INFO
logger.reflections.name = org.reflections
logger.reflections.level = ERROR
"""


def _write_properties(path: Path, values: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))


# --------------------------------------------------------------------------- PostgreSQL


class Postgres(Component):
    """A private PostgreSQL cluster with logical decoding, one database per department."""

    name = "postgres"
    port_env = "KINTSMESH_PG_PORT"

    @property
    def port(self) -> int:
        return self.settings.pg_port

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    def _as_cluster_owner(self, cmd: list[str]) -> list[str]:
        # postgres refuses to run as root; Debian's package creates the 'postgres' user
        if os.geteuid() == 0:
            return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *cmd]
        return cmd

    def _open_path_for_owner(self) -> None:
        """As root, the cluster owner must be able to reach the data folder."""
        if os.geteuid() != 0:
            return
        owner = pwd.getpwnam("postgres")
        self.home.mkdir(parents=True, exist_ok=True)
        for parent in [self.home, *self.home.parents]:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                print(f"  allowing the postgres user to traverse {parent} (chmod o+x)", flush=True)
                parent.chmod(mode | 0o001)
        for path in [self.home, *self.home.rglob("*")]:
            if path.stat().st_uid != owner.pw_uid:
                os.chown(path, owner.pw_uid, owner.pw_gid)

    def prepare(self) -> None:
        bindir = prerequisites.postgres_bindir()
        self._open_path_for_owner()
        if (self.data_dir / "PG_VERSION").is_file():
            return
        pwfile = self.home / "pwfile"
        pwfile.write_text(self.settings.pg_password.get_secret_value() + "\n")
        self._open_path_for_owner()
        result = subprocess.run(
            self._as_cluster_owner([
                str(bindir / "initdb"), "-D", str(self.data_dir), "-U", self.settings.pg_user,
                f"--pwfile={pwfile}", "-E", "UTF8", "--no-locale",
                "--auth-local=trust", "--auth-host=scram-sha-256",
            ]),
            capture_output=True, text=True,
        )
        pwfile.unlink()
        if result.returncode != 0:
            raise StackError(self.name, f"initdb failed: {(result.stderr or result.stdout).strip()[-300:]}")
        conf = self.data_dir / "postgresql.conf"
        with open(conf, "a") as out:
            out.write(
                "\n# --- kintsmesh local stack ---\n"
                f"port = {self.port}\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.home}'\n"
                "wal_level = logical\n"
                "max_wal_senders = 20\n"
                "max_replication_slots = 20\n"
                "max_connections = 200\n"
                "shared_buffers = 256MB\n"
                "wal_writer_delay = 10ms\n"
                "logging_collector = off\n"
            )

    def command(self) -> list[str]:
        bindir = prerequisites.postgres_bindir()
        # commit timestamps: sync lag is measured to the moment a merge became visible
        return self._as_cluster_owner([str(bindir / "postgres"), "-D", str(self.data_dir),
                                       "-c", "track_commit_timestamp=on"])

    def healthy(self) -> bool:
        with psycopg.connect(self.settings.dsn("postgres"), connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True

    def after_start(self) -> None:
        from kintsmesh.stack.migrate import ensure_databases

        ensure_databases(self.settings)

    def stop(self) -> bool:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        # SIGINT is PostgreSQL's "fast shutdown": roll back clients, checkpoint, exit
        os.kill(pid, 2)
        if not wait_until(lambda: not alive(pid), 60):
            terminate(pid)
        self.pid_file.unlink(missing_ok=True)
        return True


# --------------------------------------------------------------------------- Kafka (KRaft)


def kraft_cluster_id() -> str:
    """A random KRaft cluster id (a UUID in URL-safe base64), never one starting with '-': the storage
    tool's argument parser takes such a value for an option (1 id in 64; a CI run failed on one)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


class Kafka(Component):
    """A single-node Kafka in KRaft mode (broker and controller in one process)."""

    name = "kafka"
    port_env = "KINTSMESH_KAFKA_PORT"

    @property
    def port(self) -> int:
        return self.settings.kafka_port

    def prepare(self) -> None:
        prerequisites.java()
        prerequisites.resolve_jars(self.settings, "kafka", self.settings.stack_dir / "lib" / "kafka")
        s = self.settings
        (self.home / "log4j2.properties").parent.mkdir(parents=True, exist_ok=True)
        (self.home / "log4j2.properties").write_text(LOG4J2)
        _write_properties(self.home / "server.properties", {
            "process.roles": "broker,controller",
            "node.id": 1,
            "controller.quorum.voters": f"1@127.0.0.1:{s.kafka_controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{s.kafka_port},CONTROLLER://127.0.0.1:{s.kafka_controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{s.kafka_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": self.home / "data",
            "num.partitions": s.kafka_partitions,
            "default.replication.factor": 1,
            "offsets.topic.replication.factor": 1,
            "offsets.topic.num.partitions": 10,
            "transaction.state.log.replication.factor": 1,
            "transaction.state.log.min.isr": 1,
            "share.coordinator.state.topic.replication.factor": 1,
            "share.coordinator.state.topic.min.isr": 1,
            "group.initial.rebalance.delay.ms": 0,
            "auto.create.topics.enable": "true",
            "num.network.threads": 2,
            "num.io.threads": 4,
            "log.retention.hours": 168,
            "log.segment.bytes": 268435456,
        })
        if not (self.home / "data" / "meta.properties").is_file():
            cluster_id = kraft_cluster_id()
            cmd = _jvm_command(
                s, "128m", self.home / "log4j2.properties", "kafka.tools.StorageTool",
                "format", "-t", cluster_id, "-c", str(self.home / "server.properties"),
            )
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0:
                raise StackError(self.name, f"formatting the KRaft storage failed: {(result.stderr or result.stdout).strip()[-400:]}")

    def command(self) -> list[str]:
        return _jvm_command(
            self.settings, self.settings.kafka_heap, self.home / "log4j2.properties",
            "kafka.Kafka", str(self.home / "server.properties"),
            agents=(_jmx_agent(self.settings, self.settings.kafka_jmx_port, "kafka.yml"),),
        )

    def healthy(self) -> bool:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.settings.kafka_bootstrap, "socket.timeout.ms": 2000, "log_level": 0})
        metadata = admin.list_topics(timeout=3)
        return bool(metadata.brokers)


# --------------------------------------------------------------------------- Kafka Connect


class Connect(Component):
    """Kafka Connect in distributed mode (one worker) with Debezium on its plugin path."""

    name = "connect"
    port_env = "KINTSMESH_CONNECT_PORT"

    @property
    def port(self) -> int:
        return self.settings.connect_port

    @property
    def plugin_path(self) -> Path:
        return self.settings.stack_dir / "plugins"

    def prepare(self) -> None:
        prerequisites.java()
        prerequisites.resolve_jars(self.settings, "kafka", self.settings.stack_dir / "lib" / "kafka")
        prerequisites.resolve_jars(self.settings, "debezium", self.plugin_path / "debezium-connector-postgres")
        s = self.settings
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "log4j2.properties").write_text(LOG4J2)
        _write_properties(self.home / "connect-distributed.properties", {
            "bootstrap.servers": s.kafka_bootstrap,
            "group.id": "kintsmesh-connect",
            "key.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "key.converter.schemas.enable": "false",
            "value.converter.schemas.enable": "false",
            "config.storage.topic": "_kintsmesh_connect_configs",
            "offset.storage.topic": "_kintsmesh_connect_offsets",
            "status.storage.topic": "_kintsmesh_connect_status",
            "config.storage.replication.factor": 1,
            "offset.storage.replication.factor": 1,
            "status.storage.replication.factor": 1,
            # commit source offsets often: a crash replays at most ~1 s of changes
            "offset.flush.interval.ms": 1000,
            "listeners": f"http://127.0.0.1:{s.connect_port}",
            "rest.advertised.host.name": "127.0.0.1",
            "rest.advertised.port": s.connect_port,
            "plugin.path": self.plugin_path,
            "plugin.discovery": "hybrid_warn",
            "topic.creation.enable": "true",
            "producer.linger.ms": 5,
            "producer.compression.type": "lz4",
        })

    def command(self) -> list[str]:
        # the Prometheus JMX exporter serves Connect's and Debezium's MBeans
        return _jvm_command(
            self.settings, self.settings.connect_heap, self.home / "log4j2.properties",
            "org.apache.kafka.connect.cli.ConnectDistributed", str(self.home / "connect-distributed.properties"),
            agents=(_jmx_agent(self.settings, self.settings.connect_jmx_port, "connect.yml"),),
        )

    def healthy(self) -> bool:
        response = requests.get(f"{self.settings.connect_endpoint}/connector-plugins", timeout=3)
        response.raise_for_status()
        return any(plugin.get("class") == DEBEZIUM_POSTGRES_CLASS for plugin in response.json())


# --------------------------------------------------------------------------- Prometheus


class Prometheus(Component):
    """Prometheus scraping the stack's metrics endpoints (config: monitoring/prometheus.yml)."""

    name = "prometheus"
    port_env = "KINTSMESH_PROMETHEUS_PORT"
    template = REPO_ROOT / "monitoring" / "prometheus.yml"

    @property
    def port(self) -> int:
        return self.settings.prometheus_port

    @property
    def config_file(self) -> Path:
        return self.home / "prometheus.yml"

    def prepare(self) -> None:
        prerequisites.prometheus_binary()
        self.home.mkdir(parents=True, exist_ok=True)
        rendered = Template(self.template.read_text()).substitute(
            prometheus_target=f"127.0.0.1:{self.settings.prometheus_port}",
            normalize_target=f"127.0.0.1:{self.settings.normalize_metrics_port}",
            resolve_target=f"127.0.0.1:{self.settings.resolve_metrics_port}",
            merge_target=f"127.0.0.1:{self.settings.merge_metrics_port}",
            monitor_target=f"127.0.0.1:{self.settings.monitor_metrics_port}",
            events_target=f"127.0.0.1:{self.settings.events_metrics_port}",
            api_target=f"127.0.0.1:{self.settings.api_port}",
            registry_target=f"127.0.0.1:{self.settings.registry_port}",
            connect_jmx_target=f"127.0.0.1:{self.settings.connect_jmx_port}",
            kafka_jmx_target=f"127.0.0.1:{self.settings.kafka_jmx_port}",
            rules_dir=str(REPO_ROOT / "monitoring"),
        )
        self.config_file.write_text(rendered)

    def command(self) -> list[str]:
        binary, _ = prerequisites.prometheus_binary()
        return [
            binary,
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.home / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=7d",
            "--web.enable-lifecycle",
        ]

    def healthy(self) -> bool:
        return requests.get(f"{self.settings.prometheus_endpoint}/-/ready", timeout=3).status_code == 200


# --------------------------------------------------------------------------- stream workers


class StreamWorker(Component):
    """A ``kintsmesh <subcommand...>`` process, metrics on ``settings.<name>_metrics_port``."""

    subcommand: tuple[str, ...] = ()
    port_setting = ""   # the Settings field holding its port, when not <name>_metrics_port

    @property
    def port(self) -> int:
        return int(getattr(self.settings, self.port_setting or f"{self.name}_metrics_port"))

    def command(self) -> list[str]:
        # the data dir argument names the stack folder, which marks the process as ours
        # (Faust keeps its state there; the merge worker has none)
        return [sys.executable, "-m", "kintsmesh.cli", *self.subcommand, "--datadir", str(self.home)]

    def env(self) -> dict[str, str]:
        return {**os.environ, "KINTSMESH_STACK_DIR": str(self.settings.stack_dir), "PYTHONUNBUFFERED": "1"}

    def healthy(self) -> bool:
        response = requests.get(f"http://127.0.0.1:{self.port}/metrics", timeout=3)
        return response.status_code == 200


class Normalize(StreamWorker):
    """The Faust normalize worker (raw.* -> gldm.*.candidates / dlq.*)."""

    name = "normalize"
    port_env = "KINTSMESH_NORMALIZE_METRICS_PORT"
    subcommand = ("streams", "worker")


class Resolve(StreamWorker):
    """The resolve stage (gldm.*.candidates -> identity decisions -> gldm.*.resolved, keyed by canonical id)."""

    name = "resolve"
    port_env = "KINTSMESH_RESOLVE_METRICS_PORT"
    subcommand = ("streams", "resolve")


class Merge(StreamWorker):
    """The merge stage (gldm.*.resolved -> golden records in the resource library -> gldm.*.changes)."""

    name = "merge"
    port_env = "KINTSMESH_MERGE_METRICS_PORT"
    subcommand = ("streams", "merge")


class Events(StreamWorker):
    """The life-event worker (gldm.*.changes + the daily pass -> events.life.*)."""

    name = "events"
    port_env = "KINTSMESH_EVENTS_METRICS_PORT"
    subcommand = ("streams", "events")


class Api(StreamWorker):
    """The dossier HTTP endpoint for the education system (FastAPI), /metrics on the same port."""

    name = "api"
    port_env = "KINTSMESH_API_PORT"
    port_setting = "api_port"
    subcommand = ("api", "serve")


class Registry(StreamWorker):
    """The schema registry (Confluent REST API over a compacted topic), /metrics on the same port."""

    name = "registry"
    port_env = "KINTSMESH_REGISTRY_PORT"
    port_setting = "registry_port"
    subcommand = ("registry", "serve")


class Monitor(StreamWorker):
    """The lag exporter (connector states, consumer lag, DLQ sizes, T+1 batches) for Prometheus."""

    name = "monitor"
    port_env = "KINTSMESH_MONITOR_METRICS_PORT"
    subcommand = ("monitor", "serve")


def components(settings: Settings) -> list[Component]:
    """In start order; stopped in reverse."""
    return [Postgres(settings), Kafka(settings), Registry(settings), Connect(settings), Normalize(settings), Resolve(settings),
            Merge(settings),             Events(settings), Api(settings), Monitor(settings), Prometheus(settings)]


def stale_pid(component: Component) -> int | None:
    """A pid file whose process is gone or is not ours (reported, then cleared)."""
    recorded = read_pid(component.pid_file)
    return recorded if recorded is not None and component.pid() is None else None
