"""The JVM components: Kafka in KRaft mode and Kafka Connect with Debezium (jars from Maven Central,
each JVM with the Prometheus JMX exporter agent)."""

from __future__ import annotations

import base64
import subprocess
import uuid
from pathlib import Path

import requests

from kintsmesh import topics
from kintsmesh.errors import StackError
from kintsmesh.kafka import SCRAM
from kintsmesh.security.kafka import SUPER_USERS
from kintsmesh.security.pki import server_certificate
from kintsmesh.security.secrets import write_private
from kintsmesh.settings import DEPARTMENTS, REPO_ROOT, Settings
from kintsmesh.stack import prerequisites
from kintsmesh.stack.component import Component, write_properties

DEBEZIUM_POSTGRES_CLASS = "io.debezium.connector.postgresql.PostgresConnector"
CONNECT_REST_USERS = ("admin", "monitor")


def _jvm_command(settings: Settings, heap: str, log_config: Path, main: str, *args: str,
                 agents: tuple[str, ...] = (), options: tuple[str, ...] = ()) -> list[str]:
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
        *options,
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


def kraft_cluster_id() -> str:
    """A random KRaft cluster id (a UUID in URL-safe base64), never one starting with '-': the storage
    tool's argument parser takes such a value for an option (1 id in 64; a CI run failed on one)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def scram_jaas(username: str, password: str) -> str:
    return f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{username}" password="{password}";'


def tls_stores(settings: Settings, keystore: Path | None = None) -> dict[str, object]:
    """Java TLS settings in PEM: trust the installation's CA; present ``keystore`` (key and chain) if given."""
    stores: dict[str, object] = {"ssl.truststore.type": "PEM", "ssl.truststore.location": settings.trusted_ca,
                                 "ssl.endpoint.identification.algorithm": "https"}
    if keystore is not None:
        stores.update({"ssl.keystore.type": "PEM", "ssl.keystore.location": keystore})
    return stores


def client_security(settings: Settings, principal: str, password: str) -> dict[str, object]:
    """A Java client's SASL_SSL settings as ``principal`` (Connect's worker and its clients)."""
    return {"security.protocol": "SASL_SSL", "sasl.mechanism": SCRAM, "sasl.jaas.config": scram_jaas(principal, password),
            **tls_stores(settings)}


class JvmComponent(Component):
    """A Kafka distribution's JVM process: ``main`` with its properties file, the heap of ``heap_setting``
    and the JMX exporter agent serving ``monitoring/jmx/<jmx_rules>`` on ``jmx_port_setting``."""

    main: str
    properties_file: str
    heap_setting: str
    jmx_port_setting: str
    jmx_rules: str

    def prepare_jvm(self) -> None:
        """The JVM, the Kafka jars and the log configuration."""
        prerequisites.java()
        prerequisites.resolve_jars(self.settings, "kafka", self.settings.stack_dir / "lib" / "kafka")
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "log4j2.properties").write_text(LOG4J2)

    @property
    def jmx_port(self) -> int:
        return int(getattr(self.settings, self.jmx_port_setting))

    def jvm_options(self) -> tuple[str, ...]:
        return ()

    def command(self) -> list[str]:
        return _jvm_command(
            self.settings, getattr(self.settings, self.heap_setting), self.home / "log4j2.properties",
            self.main, str(self.home / self.properties_file),
            agents=(_jmx_agent(self.settings, self.jmx_port, self.jmx_rules),), options=self.jvm_options(),
        )


class Kafka(JvmComponent):
    """A Kafka node in KRaft mode, broker and controller in one process: ``kafka`` (node 1), and with
    ``KINTSMESH_KAFKA_BROKERS=3`` also ``kafka2`` and ``kafka3``, one cluster id and quorum."""

    port_setting = "kafka_port"
    main = "kafka.Kafka"
    properties_file = "server.properties"
    heap_setting = "kafka_heap"
    jmx_port_setting = "kafka_jmx_port"
    jmx_rules = "kafka.yml"

    def __init__(self, settings: Settings, node: int = 1) -> None:
        self.node = node
        self.name = "kafka" if node == 1 else f"kafka{node}"
        super().__init__(settings)

    @property
    def port(self) -> int:
        return self.settings.broker_port(self.node)

    @property
    def controller_port(self) -> int:
        return self.settings.kafka_controller_port + 2 * (self.node - 1)

    @property
    def jmx_port(self) -> int:
        return self.settings.kafka_jmx_port + 100 * (self.node - 1)

    def properties(self) -> dict[str, object]:
        """This node's ``server.properties``."""
        s = self.settings
        voters = ",".join(f"{n}@{s.kafka_host}:{Kafka(s, n).controller_port}" for n in range(1, s.kafka_brokers + 1))
        factor, min_isr = s.replication_factor, s.min_insync_replicas
        return {
            "process.roles": "broker,controller",
            "node.id": self.node,
            "controller.quorum.voters": voters,
            # clients and the other brokers: SASL/SCRAM over TLS; the controllers: mutual TLS (the nodes' certificate)
            "listeners": f"BROKER://{s.listen_host}:{self.port},CONTROLLER://{s.listen_host}:{self.controller_port}",
            "advertised.listeners": f"BROKER://{s.kafka_host}:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "BROKER",
            "listener.security.protocol.map": "BROKER:SASL_SSL,CONTROLLER:SSL",
            "sasl.enabled.mechanisms": SCRAM,
            "sasl.mechanism.inter.broker.protocol": SCRAM,
            "listener.name.broker.scram-sha-512.sasl.jaas.config": scram_jaas("admin", s.kafka_password("admin")),
            "listener.name.controller.ssl.client.auth": "required",
            **tls_stores(s, self.keystore),
            "ssl.principal.mapping.rules": "RULE:^.*CN=([a-zA-Z0-9._-]+).*$/$1/,DEFAULT",   # User:kafka-broker
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "allow.everyone.if.no.acl.found": "false",
            "super.users": ";".join(f"User:{u}" for u in SUPER_USERS),
            "log.dirs": self.home / "data",
            "num.partitions": s.kafka_partitions,
            "default.replication.factor": factor,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": factor,
            "offsets.topic.num.partitions": 10,
            "transaction.state.log.replication.factor": factor,
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": factor,
            "share.coordinator.state.topic.min.isr": min_isr,
            "unclean.leader.election.enable": "false",
            "group.initial.rebalance.delay.ms": 0,
            "auto.create.topics.enable": "false",   # a topic exists because its owner created it
            "num.network.threads": 2,
            "num.io.threads": 4,
            "log.retention.hours": 168,
            "log.segment.bytes": 268435456,
        }

    def cluster_id(self) -> str:
        """One id for every node of the cluster: node 1's (read from its formatted storage, or drawn
        and kept in its folder, which `stack reset` deletes with it)."""
        first = self.settings.stack_dir / "kafka"
        meta = first / "data" / "meta.properties"
        if meta.is_file():
            for line in meta.read_text().splitlines():
                if line.startswith("cluster.id="):
                    return line.split("=", 1)[1].strip()
        path = first / "cluster-id"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(kraft_cluster_id() + "\n")
        return path.read_text().strip()

    @property
    def keystore(self) -> Path:
        return self.home / "keystore.pem"

    def write_config(self) -> None:
        """``server.properties`` and the node's key store (docker-compose's Kafka reads the same files)."""
        self.home.mkdir(parents=True, exist_ok=True)
        pair = server_certificate(self.settings.secrets_dir, "kafka-broker", client_auth=True)
        write_private(self.keystore, pair.key.read_bytes() + pair.cert.read_bytes())
        write_properties(self.home / "server.properties", self.properties())
        self.cluster_id()

    def prepare(self) -> None:
        self.prepare_jvm()
        self.write_config()
        if not (self.home / "data" / "meta.properties").is_file():
            # the first super user's credential is in the cluster's first metadata: nobody ever connects unauthenticated
            admin = f"{SCRAM}=[name=admin,password={self.settings.kafka_password('admin')}]"
            cmd = _jvm_command(
                self.settings, "128m", self.home / "log4j2.properties", "kafka.tools.StorageTool",
                "format", "-t", self.cluster_id(), "-c", str(self.home / "server.properties"), "--add-scram", admin,
            )
            result = subprocess.run(cmd, capture_output=True, text=True)
            if result.returncode != 0:
                raise StackError(self.name, f"formatting the KRaft storage failed: {(result.stderr or result.stdout).strip()[-400:]}")

    def healthy(self) -> bool:
        from kintsmesh import kafka

        # this node itself answers, and knows itself registered (another node's metadata lists a dead
        # peer until its session times out)
        own = kafka.admin(self.settings, socket_timeout_ms=2000, bootstrap_servers=f"127.0.0.1:{self.port}")
        return self.node in own.list_topics(timeout=3).brokers


class Connect(JvmComponent):
    """Kafka Connect in distributed mode (one worker) with Debezium on its plugin path; the JMX exporter
    serves Connect's and Debezium's MBeans."""

    name = "connect"
    port_setting = "connect_port"
    main = "org.apache.kafka.connect.cli.ConnectDistributed"
    properties_file = "connect-distributed.properties"
    heap_setting = "connect_heap"
    jmx_port_setting = "connect_jmx_port"
    jmx_rules = "connect.yml"

    @property
    def plugin_path(self) -> Path:
        return self.settings.connect_plugin_path or self.settings.stack_dir / "plugins"

    def prepare(self) -> None:
        self.prepare_jvm()
        prerequisites.resolve_jars(self.settings, "debezium", self.plugin_path / "debezium-connector-postgres")
        self.write_config()

    def write_config(self) -> None:
        """The worker's properties, its REST users and JAAS file, the connectors' password files (docker-compose's
        Connect reads the same files)."""
        self.home.mkdir(parents=True, exist_ok=True)
        write_properties(self.home / "connect-distributed.properties", self.properties())
        # each department connector's passwords (database, Kafka), read by the worker's file config provider
        write_private(self.settings.secrets_dir / "connect-postgres.properties", "".join(
            f"{d}={self.settings.role_password(f'capture_{d}')}\n" for d in DEPARTMENTS).encode())
        write_private(self.settings.secrets_dir / "connect-kafka.properties", "".join(
            f"{d}={self.settings.kafka_password(f'capture-{d}')}\n" for d in DEPARTMENTS).encode())
        # the REST API's users (basic authentication; the extension has no roles: each may do everything)
        users = self.home / "rest-users.properties"
        write_private(users, "".join(f"{u}={self.settings.secret(f'connect-rest-{u}')}\n" for u in CONNECT_REST_USERS).encode())
        write_private(self.rest_jaas, ("KafkaConnect {\n  org.apache.kafka.connect.rest.basic.auth.extension."
                                       f'PropertyFileLoginModule required file="{users}";\n}};\n').encode())

    def properties(self) -> dict[str, object]:
        """The worker's ``connect-distributed.properties``."""
        s = self.settings
        return {
            "bootstrap.servers": s.kafka_bootstrap,
            "group.id": topics.CONNECT_GROUP,
            "key.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "key.converter.schemas.enable": "false",
            "value.converter.schemas.enable": "false",
            "config.storage.topic": topics.CONNECT_CONFIGS,
            "offset.storage.topic": topics.CONNECT_OFFSETS,
            "status.storage.topic": topics.CONNECT_STATUS,
            "config.storage.replication.factor": s.replication_factor,
            "offset.storage.replication.factor": s.replication_factor,
            "status.storage.replication.factor": s.replication_factor,
            # commit source offsets often: a crash replays at most ~1 s of changes
            "offset.flush.interval.ms": 1000,
            "listeners": f"http://{s.listen_host}:{s.connect_port}",
            "rest.advertised.host.name": s.connect_host,
            "rest.advertised.port": s.connect_port,
            "plugin.path": self.plugin_path,
            "plugin.discovery": "hybrid_warn",
            "topic.creation.enable": "true",
            "producer.linger.ms": 5,
            "producer.compression.type": "lz4",
            # ${file:<path>:<key>} in a connector config is read from the file by the worker
            "config.providers": "file",
            "config.providers.file.class": "org.apache.kafka.common.config.provider.FileConfigProvider",
            # the worker is principal `connect`; each connector's clients are its department's principal
            # (producer.override / admin.override in its config), which only this policy lets it set
            **{f"{prefix}{key}": value for prefix in ("", "producer.", "consumer.", "admin.")
               for key, value in client_security(s, "connect", s.kafka_password("connect")).items()},
            "connector.client.config.override.policy": "Principal",
            "rest.extension.classes": "org.apache.kafka.connect.rest.basic.auth.extension.BasicAuthSecurityRestExtension",
        }

    @property
    def rest_jaas(self) -> Path:
        return self.home / "rest-jaas.conf"

    def jvm_options(self) -> tuple[str, ...]:
        return (f"-Djava.security.auth.login.config={self.rest_jaas}",)   # the REST API's users

    def healthy(self) -> bool:
        response = requests.get(f"{self.settings.connect_endpoint}/connector-plugins", timeout=3,
                                auth=self.settings.connect_credentials)
        response.raise_for_status()
        return any(plugin.get("class") == DEBEZIUM_POSTGRES_CLASS for plugin in response.json())
