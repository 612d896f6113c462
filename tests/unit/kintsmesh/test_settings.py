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


def test_secrets_are_masked_when_printed(monkeypatch):
    monkeypatch.setenv("KINTSMESH_PG_PASSWORD", "s3cret-value")
    shown = Settings().masked()
    assert "s3cret-value" not in repr(shown)
    assert shown["pg_password"] == "**********"
