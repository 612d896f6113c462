import re

from connect.connectors import available_departments, connector_configs, render, tables
from kintsmesh.settings import DEPARTMENTS, Settings
from kintsmesh.stack.migrate import migration_files


def test_every_department_has_a_connector():
    assert available_departments() == sorted(DEPARTMENTS)


def test_rendered_config_is_complete_and_department_specific():
    settings = Settings(departments_pg_port=6543, pg_host_for_connect="pg.internal")
    configs = connector_configs(settings, DEPARTMENTS)
    slots = {c["slot.name"] for c in configs.values()}
    publications = {c["publication.name"] for c in configs.values()}
    assert len(slots) == len(publications) == len(DEPARTMENTS)
    for department in DEPARTMENTS:
        config = configs[f"kintsmesh-{department}"]
        # every placeholder filled, except the password's reference for Connect's config provider
        assert sorted(k for k, v in config.items() if "${" in v) == [
            "admin.override.sasl.jaas.config", "database.password", "producer.override.sasl.jaas.config"], config
        assert f'username="capture-{department}"' in config["producer.override.sasl.jaas.config"]
        assert config["database.user"] == f"kintsmesh_capture_{department}"
        assert config["database.sslmode"] == "verify-full"
        assert config["topic.prefix"] == f"raw.{department}"
        assert config["database.dbname"] == department
        assert config["database.hostname"] == "pg.internal"
        assert config["database.port"] == "6543"
        assert config["snapshot.mode"] == "initial"
        assert int(config["heartbeat.interval.ms"]) > 0
        assert config["plugin.name"] == "pgoutput"


def test_captured_tables_exist_with_full_replica_identity():
    settings = Settings()
    for department in DEPARTMENTS:
        ddl = "\n".join(p.read_text() for p in migration_files(department))
        for table in tables(settings, department):
            assert re.search(rf"CREATE TABLE {table} \(", ddl), (department, table)
            assert f"ALTER TABLE {table} REPLICA IDENTITY FULL" in ddl, (department, table)


def test_the_password_is_a_reference_the_worker_resolves_never_the_secret(tmp_path):
    settings = Settings(stack_dir=tmp_path)
    password = settings.role_password("capture_police")
    config = render(settings, "police")
    assert password not in str(config)
    assert config["database.password"] == f"${{file:{tmp_path}/secrets/connect-postgres.properties:police}}"
