"""Explicit, versioned schema migrations for the department databases and the resource library.

``migrations/<database>/NNN_name.sql`` files are applied in order, once each, and
recorded in that database's ``kintsmesh_schema_migrations`` table. Nothing else
creates or alters tables: the simulator only writes rows.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
from psycopg import sql

from kintsmesh.settings import DEPARTMENTS, REPO_ROOT, RESOURCE_LIBRARY_DB, Settings

MIGRATIONS_DIR = REPO_ROOT / "migrations"
DATABASES: tuple[str, ...] = (*DEPARTMENTS, RESOURCE_LIBRARY_DB)


def migration_files(database: str) -> list[Path]:
    return sorted((MIGRATIONS_DIR / database).glob("[0-9][0-9][0-9]_*.sql"))


def ensure_databases(settings: Settings) -> None:
    with psycopg.connect(settings.dsn("postgres"), autocommit=True) as conn:
        existing = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
        for database in DATABASES:
            if database not in existing:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


def migrate(settings: Settings, database: str) -> list[str]:
    """Apply pending migrations of one database; returns the names applied."""
    applied_now: list[str] = []
    with psycopg.connect(settings.dsn(database)) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS kintsmesh_schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM kintsmesh_schema_migrations")}
        for path in migration_files(database):
            if path.name in done:
                continue
            conn.execute(path.read_text())  # type: ignore[call-overload]  # trusted repo file
            conn.execute("INSERT INTO kintsmesh_schema_migrations (version) VALUES (%s)", (path.name,))
            applied_now.append(path.name)
        conn.commit()
    return applied_now


def migrate_all(settings: Settings) -> dict[str, list[str]]:
    ensure_databases(settings)
    return {database: migrate(settings, database) for database in DATABASES}
