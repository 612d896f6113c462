import re

from connect.connectors import available_departments, connector_configs, render, tables
from kintsmesh.settings import DEPARTMENTS, Settings
from kintsmesh.stack.migrate import migration_files


def test_every_department_has_a_connector():
    assert available_departments() == sorted(DEPARTMENTS)


def test_rendered_config_is_complete_and_department_specific():
    settings = Settings(pg_port=6543, pg_host_for_connect="pg.internal")
    configs = connector_configs(settings, DEPARTMENTS)
    slots = {c["slot.name"] for c in configs.values()}
    publications = {c["publication.name"] for c in configs.values()}
    assert len(slots) == len(publications) == len(DEPARTMENTS)
    for department in DEPARTMENTS:
        config = configs[f"kintsmesh-{department}"]
        assert not any("${" in v for v in config.values()), config
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


def test_password_comes_from_settings():
    from pydantic import SecretStr

    assert render(Settings(pg_password=SecretStr("pw-1")), "police")["database.password"] == "pw-1"
