from pathlib import Path

from kintsmesh.settings import Settings


def test_defaults_point_at_the_local_stack(tmp_path: Path):
    s = Settings(stack_dir=tmp_path)   # (a dsn needs the installation's password: made in tmp_path, not .stack)
    assert s.kafka_bootstrap == f"127.0.0.1:{s.kafka_port}"
    assert s.connect_endpoint == f"http://127.0.0.1:{s.connect_port}"
    assert "dbname=police" in s.dsn("police")


def test_environment_points_at_an_external_cluster(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("KINTSMESH_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("KINTSMESH_CONNECT_URL", "http://connect:8083/")
    monkeypatch.setenv("KINTSMESH_PG_HOST", "db.example")
    monkeypatch.setenv("KINTSMESH_STACK_DIR", str(tmp_path))
    s = Settings()
    assert s.kafka_bootstrap == "k1:9092,k2:9092"
    assert s.connect_endpoint == "http://connect:8083"
    assert "host=db.example" in s.dsn("health")
    assert s.maven_repository == tmp_path / "m2"


def test_the_department_databases_and_the_library_are_two_clusters(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("KINTSMESH_PG_HOST", "library.example")
    monkeypatch.setenv("KINTSMESH_DEPARTMENTS_PG_HOST", "departments.example")
    monkeypatch.setenv("KINTSMESH_DEPARTMENTS_PG_PORT", "6432")
    s = Settings(stack_dir=tmp_path)
    for department in ("police", "hrss"):
        assert "host=departments.example port=6432" in s.dsn(department)
    for database in ("resource_library", "kintsmesh_bench_batch", "postgres"):
        assert f"host=library.example port={s.pg_port}" in s.dsn(database)
    assert "host=departments.example port=6432" in s.dsn("postgres", cluster="departments")
    monkeypatch.delenv("KINTSMESH_DEPARTMENTS_PG_HOST")
    assert "host=library.example port=6432" in Settings(stack_dir=tmp_path).dsn("police")   # one host by default


def test_secrets_are_masked_when_printed(monkeypatch):
    monkeypatch.setenv("KINTSMESH_PG_PASSWORD", "s3cret-value")
    shown = Settings().masked()
    assert "s3cret-value" not in repr(shown)
    assert shown["pg_password"] == "**********"
