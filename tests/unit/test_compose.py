"""docker-compose.yml cannot run here (no Docker engine): check it statically against the local stack."""

import re
from pathlib import Path

import pytest
import yaml

from kintsmesh.settings import REPO_ROOT, Settings
from kintsmesh.stack.components import components

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def host_ports(service: str) -> set[int]:
    return {int(str(p).split(":")[-2]) for p in SERVICES[service].get("ports", [])}


def test_every_local_component_has_a_service_on_the_same_host_port():
    settings = Settings()
    for component in components(settings):
        if component.name == "supervisor":   # Docker's restart policy is compose's supervisor
            continue
        assert component.name in SERVICES, component.name
        assert component.port in host_ports(component.name), (component.name, component.port)


def test_every_long_running_service_is_restarted_when_it_dies_as_the_local_supervisor_does():
    for name, service in SERVICES.items():
        if name in ("jmx-agent", "init", "setup"):   # one-shot: copy a jar, make files, apply grants, and exit
            continue
        assert service.get("restart") == "unless-stopped", name


def test_images_match_the_versions_the_local_stack_resolves():
    kafka_pom = (REPO_ROOT / "stack/maven/kafka/pom.xml").read_text()
    debezium_pom = (REPO_ROOT / "stack/maven/debezium/pom.xml").read_text()
    kafka_version = SERVICES["kafka"]["image"].split(":")[1]
    debezium_version = SERVICES["connect"]["image"].split(":")[1]
    assert f"<kafka.version>{kafka_version}</kafka.version>" in kafka_pom
    assert f"<debezium.version>{debezium_version}</debezium.version>" in debezium_pom


@pytest.mark.parametrize("service", ["postgres", "departments"])
def test_both_clusters_have_tls_and_their_password_from_the_installations_secrets(service):
    pg = SERVICES[service]
    command = " ".join(pg["command"])
    for option in ("ssl=on", "password_encryption=scram-sha-256", "hba_file=/stack/postgres/pg_hba.conf"):
        assert option in command, option
    assert pg["environment"]["POSTGRES_USER"] == Settings().pg_user
    assert "POSTGRES_PASSWORD" not in pg["environment"]
    assert pg["environment"]["POSTGRES_PASSWORD_FILE"] == "/stack/secrets/postgres-admin"
    assert "scram-sha-256" in pg["environment"]["POSTGRES_INITDB_ARGS"]


def test_only_the_department_databases_are_decoded_and_connect_reaches_them():
    # as the local stack: Debezium's slots read the departments' WAL, never the library's
    assert "wal_level=logical" in " ".join(SERVICES["departments"]["command"])
    assert "wal_level=logical" not in " ".join(SERVICES["postgres"]["command"])
    env = COMPOSE["x-kintsmesh-env"]
    assert env["KINTSMESH_PG_HOST_FOR_CONNECT"] == env["KINTSMESH_DEPARTMENTS_PG_HOST"] == "departments"
    assert "departments" in SERVICES["connect"]["depends_on"]


def test_no_port_is_published_beyond_this_host_and_nothing_is_open_by_default():
    for name, service in SERVICES.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
    assert "--web.enable-lifecycle" not in SERVICES["prometheus"]["command"]
    grafana = SERVICES["grafana"]["environment"]
    assert grafana["GF_AUTH_ANONYMOUS_ENABLED"] == "false" and "GF_SECURITY_ADMIN_PASSWORD__FILE" in grafana


def test_kafka_and_connect_run_the_local_stacks_configuration_rendered_for_the_containers(tmp_path: Path):
    from kintsmesh.stack.compose import compose_settings, render
    from kintsmesh.stack.jvm import Connect, Kafka

    settings = Settings(stack_dir=tmp_path)
    render(settings)
    containers = compose_settings(settings)
    broker, worker = Kafka(containers).properties(), Connect(containers).properties()
    local_worker = Connect(Settings(stack_dir=tmp_path / "local")).properties()
    assert broker["advertised.listeners"] == "BROKER://kafka:9092"
    assert broker["listener.security.protocol.map"] == "BROKER:SASL_SSL,CONTROLLER:SSL"
    assert broker["allow.everyone.if.no.acl.found"] == "false" and broker["auto.create.topics.enable"] == "false"
    assert worker["bootstrap.servers"] == "kafka:9092" and worker["plugin.path"] == Path("/kafka/connect")
    for key in ("group.id", "config.storage.topic", "offset.storage.topic", "status.storage.topic", "key.converter",
                "value.converter", "rest.extension.classes", "connector.client.config.override.policy",
                "config.providers", "security.protocol", "sasl.mechanism"):
        assert worker[key] == local_worker[key], key
    assert "/stack/kafka/server.properties" in " ".join(SERVICES["kafka"]["command"])
    assert SERVICES["connect"]["command"] == ["/kafka/bin/connect-distributed.sh",
                                              "/stack/connect/connect-distributed.properties"]
    assert "--add-scram" in " ".join(SERVICES["kafka"]["command"])


def test_every_file_a_service_reads_from_the_stack_folder_is_one_init_writes(tmp_path: Path):
    from kintsmesh.stack.compose import render

    render(Settings(stack_dir=tmp_path))
    text = (REPO_ROOT / "docker-compose.yml").read_text()
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    read = set(re.findall(r"/stack/((?:secrets|kafka|connect|postgres)/[\w.-]+)", text)) - {"normalize"}
    assert read and read <= written, sorted(read - written)


def test_python_services_run_with_the_local_stacks_principal_role_and_connect_user():
    from kintsmesh.stack.workers import WORKERS

    for spec in WORKERS:
        if spec.name == "supervisor":   # Docker's restart policy is compose's supervisor
            continue
        env = SERVICES[spec.name]["environment"]
        assert (env["KINTSMESH_KAFKA_PRINCIPAL"], env["KINTSMESH_PG_ROLE"], env["KINTSMESH_CONNECT_USER"]) == \
            (spec.principal, spec.pg_role, spec.connect_user), spec.name
        assert SERVICES[spec.name]["image"] == "kintsmesh:local" and "pip" not in " ".join(SERVICES[spec.name]["command"])


def test_the_image_installs_the_lock_with_hashes_once_at_build_time():
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert "pip install --no-cache-dir --require-hashes -r requirements.lock" in dockerfile
    assert "--no-deps --no-build-isolation" in dockerfile


def test_prometheus_config_files_define_the_same_jobs():
    local = yaml.safe_load((REPO_ROOT / "monitoring/prometheus.yml").read_text())
    compose = yaml.safe_load((REPO_ROOT / "monitoring/prometheus-compose.yml").read_text())
    local_jobs = [j["job_name"] for j in local["scrape_configs"] if j["job_name"] != "kintsmesh-supervisor"]
    assert local_jobs == [j["job_name"] for j in compose["scrape_configs"]]


def _mounts(service: str) -> dict[str, str]:
    """container path -> host path (relative to the repository) of a service's bind mounts."""
    mounts = {}
    for volume in SERVICES[service].get("volumes", []):
        host, container = volume.split(":")[:2]
        mounts[container] = host
    return mounts


@pytest.mark.parametrize("service, port_setting, rules", [
    ("kafka", "kafka_jmx_port", "kafka.yml"), ("connect", "connect_jmx_port", "connect.yml")])
def test_kafka_and_connect_load_the_jmx_exporter_agent_with_the_local_stacks_rules_and_port(service, port_setting, rules):
    port_expected = getattr(Settings(), port_setting)
    agent = SERVICES[service]["environment"]["KAFKA_OPTS"].split()[0]
    jar, options = agent.removeprefix("-javaagent:").split("=")
    port, config = options.split(":")
    assert int(port) == port_expected and port_expected in host_ports(service)
    mounts = _mounts(service)
    config_dir, config_name = config.rsplit("/", 1)
    assert (REPO_ROOT / mounts[config_dir] / config_name).resolve() == REPO_ROOT / "monitoring/jmx" / rules
    # the agent jar comes from the same pom the local stack resolves
    assert mounts[jar.rsplit("/", 1)[0]] == "jmx-agent"
    assert SERVICES[service]["depends_on"]["jmx-agent"] == {"condition": "service_completed_successfully"}
    assert SERVICES["jmx-agent"]["working_dir"] == "/src/stack/maven/jmx"
    assert (REPO_ROOT / "stack/maven/jmx/pom.xml").is_file()


def test_prometheus_loads_the_alert_rules_and_grafana_the_dashboard():
    prometheus = _mounts("prometheus")
    compose = yaml.safe_load((REPO_ROOT / "monitoring/prometheus-compose.yml").read_text())
    for rule_file in compose["rule_files"]:
        assert (REPO_ROOT / prometheus[rule_file]).resolve() == REPO_ROOT / "monitoring/alerts.yml"
    grafana = _mounts("grafana")
    assert (REPO_ROOT / grafana["/etc/grafana/provisioning"] / "datasources/prometheus.yml").is_file()
    assert (REPO_ROOT / grafana["/var/lib/grafana/dashboards"] / "kintsmesh.json").is_file()


def test_workers_reach_the_compose_registry_over_tls_not_localhost():
    registry = f"https://registry:{Settings().registry_port}"
    assert host_ports("registry") == {Settings().registry_port}
    for name in ("normalize", "resolve", "merge", "events"):   # the services that register schemas or decode messages
        assert SERVICES[name]["environment"]["KINTSMESH_REGISTRY_URL"] == registry, name
