"""Explicit, versioned schema migrations for the department databases and the resource library.

``migrations/<database>/NNN_name.sql`` files are applied in order, once each, and
recorded in that database's ``kintsmesh_schema_migrations`` table with their SHA-256:
a migration edited after it was applied is refused (change the schema with a new
file), since databases that applied the old text would silently differ from fresh
ones. Nothing else creates or alters tables: the simulator only writes rows.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import psycopg
from psycopg import sql

from kintsmesh.errors import StackError
from kintsmesh.settings import CLUSTERS, DEPARTMENTS, REPO_ROOT, RESOURCE_LIBRARY_DB, Cluster, Settings, cluster_of

MIGRATIONS_DIR = REPO_ROOT / "migrations"
DATABASES: tuple[str, ...] = (*DEPARTMENTS, RESOURCE_LIBRARY_DB)


def migration_files(database: str) -> list[Path]:
    return sorted((MIGRATIONS_DIR / database).glob("[0-9][0-9][0-9]_*.sql"))


def ensure_databases(settings: Settings, cluster: Cluster) -> None:
    """The databases of one cluster (the departments' or the library's)."""
    with psycopg.connect(settings.dsn("postgres", role="admin", cluster=cluster), autocommit=True) as conn:
        existing = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
        for database in DATABASES:
            if cluster_of(database) == cluster and database not in existing:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))


def checksum(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def migrate(settings: Settings, database: str, schema: str | None = None) -> list[str]:
    """Apply pending migrations of one database (those of ``migrations/<schema>``, by default its own name:
    a benchmark's scratch resource library takes resource_library's); returns the names applied."""
    applied_now: list[str] = []
    with psycopg.connect(settings.dsn(database, role="admin")) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS kintsmesh_schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        # recorded since checksums were introduced; older rows are stamped with the file as it is now
        conn.execute("ALTER TABLE kintsmesh_schema_migrations ADD COLUMN IF NOT EXISTS checksum text")
        done: dict[str, str | None] = dict(conn.execute("SELECT version, checksum FROM kintsmesh_schema_migrations").fetchall())
        for path in migration_files(schema or database):
            digest = checksum(path)
            if path.name in done:
                if done[path.name] is None:
                    conn.execute("UPDATE kintsmesh_schema_migrations SET checksum = %s WHERE version = %s",
                                 (digest, path.name))
                elif done[path.name] != digest:
                    raise StackError("migrate", f"{database}: {path.name} changed after it was"
                                     f" applied; restore it and put the change in a new migration file ({path.parent})")
                continue
            conn.execute(path.read_text())  # type: ignore[call-overload]  # trusted repo file
            conn.execute("INSERT INTO kintsmesh_schema_migrations (version, checksum) VALUES (%s, %s)",
                         (path.name, digest))
            applied_now.append(path.name)
        conn.commit()
    return applied_now


def migrate_all(settings: Settings) -> dict[str, list[str]]:
    for cluster in CLUSTERS:
        ensure_databases(settings, cluster)
    return {database: migrate(settings, database) for database in DATABASES}
