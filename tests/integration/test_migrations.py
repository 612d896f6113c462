"""Schema migrations on the real PostgreSQL: applied once, and an applied file edited later is refused."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from psycopg import sql

from kintsmesh.errors import StackError
from kintsmesh.stack import migrate

pytestmark = pytest.mark.integration


def test_an_applied_migration_that_changed_is_refused(settings, tmp_path, monkeypatch):
    database = f"kintsmesh_test_migrate_{uuid.uuid4().hex[:8]}"
    (tmp_path / database).mkdir()
    first = tmp_path / database / "001_first.sql"
    first.write_text("CREATE TABLE t (id int PRIMARY KEY);")
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", tmp_path)
    with psycopg.connect(settings.dsn("postgres"), autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    try:
        assert migrate.migrate(settings, database) == ["001_first.sql"]
        assert migrate.migrate(settings, database) == []           # once each
        (tmp_path / database / "002_second.sql").write_text("ALTER TABLE t ADD COLUMN name text;")
        assert migrate.migrate(settings, database) == ["002_second.sql"]
        first.write_text("CREATE TABLE t (id bigint PRIMARY KEY);")  # edited after it was applied
        with pytest.raises(StackError, match="001_first.sql changed after it was applied"):
            migrate.migrate(settings, database)
    finally:
        with psycopg.connect(settings.dsn("postgres"), autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
