"""PostgreSQL least privilege: one login role per component (``postgres_roles.yaml``), its password the
installation's secret, its grants exactly the listed ones (re-applied on every ``stack up``, so a grant
removed from the file is revoked). PUBLIC may connect to no database."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import psycopg
import yaml
from psycopg import sql

from kintsmesh.settings import CLUSTERS, DEPARTMENTS, RESOURCE_LIBRARY_DB, Cluster, Settings, cluster_of, role_name

ROLES_FILE = Path(__file__).with_name("postgres_roles.yaml")
PRIVILEGES = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"})


@dataclass(frozen=True)
class Grant:
    role: str            # the login role, kintsmesh_<component>[_<department>]
    database: str
    table: str | None    # None: every table of the database
    privileges: tuple[str, ...]


@dataclass(frozen=True)
class Role:
    name: str            # the component's name: its secret is postgres-<name>
    login: str
    replication: bool
    member_of: tuple[str, ...]
    connect: tuple[str, ...]   # databases it reaches without table privileges (the monitor: ``postgres``)
    grants: tuple[Grant, ...]


@cache
def roles() -> tuple[Role, ...]:
    """Every login role the file declares, departments expanded."""
    spec: dict[str, Any] = yaml.safe_load(ROLES_FILE.read_text())
    groups: dict[str, list[str]] = spec["tables"]
    found = []
    for component, body in spec["roles"].items():
        names = [f"{component}_{d}" for d in DEPARTMENTS] if body.get("per_department") else [component]
        for name in names:
            login = role_name(name)
            grants = []
            for target, database in (("department", name.removeprefix(f"{component}_")),
                                     ("library", RESOURCE_LIBRARY_DB)):
                for group, privileges in (body.get(target) or {}).items():
                    unknown = set(privileges) - PRIVILEGES
                    if unknown:
                        raise ValueError(f"{ROLES_FILE}: {component}: unknown privileges {sorted(unknown)}")
                    tables = [None] if group == "all_tables" else groups.get(group, [group])
                    grants += [Grant(login, database, t, tuple(privileges)) for t in tables]
            found.append(Role(name, login, bool(body.get("replication")), tuple(body.get("member_of", ())),
                              tuple(body.get("connect", ())), tuple(grants)))
    return tuple(found)


def apply_roles(settings: Settings) -> list[str]:
    """Create or update every role and set its grants to the file's; returns the login role names. Each
    database's revokes and grants are one transaction: a running component never sees its grants missing."""
    databases = (*DEPARTMENTS, RESOURCE_LIBRARY_DB)
    for cluster in CLUSTERS:   # every role in both clusters, each database's grants in its own
        _apply_roles(settings, cluster, [d for d in databases if cluster_of(d) == cluster])
    return [role.login for role in roles()]


def _apply_roles(settings: Settings, cluster: Cluster, databases: list[str]) -> None:
    with psycopg.connect(settings.dsn("postgres", role="admin", cluster=cluster)) as conn:
        for role in roles():
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role.login,)).fetchone()
            verb = sql.SQL("ALTER" if exists else "CREATE")
            conn.execute(sql.SQL("{} ROLE {} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE {} PASSWORD {}").format(
                verb, sql.Identifier(role.login), sql.SQL("REPLICATION" if role.replication else "NOREPLICATION"),
                sql.Literal(settings.role_password(role.name))))
            for group in role.member_of:
                conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(role.login)))
        for database in ("postgres", *databases):
            conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(database)))
            for role in roles():
                if database in role.connect:
                    conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                        sql.Identifier(database), sql.Identifier(role.login)))
    for database in databases:
        with psycopg.connect(settings.dsn(database, role="admin")) as conn:   # committed on leaving
            conn.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
            for role in roles():
                login = sql.Identifier(role.login)
                conn.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {}").format(login))
                conn.execute(sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {}").format(login))
                mine = [g for g in role.grants if g.database == database]
                if not mine:
                    conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(sql.Identifier(database), login))
                    continue
                conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(
                    sql.Identifier(database), login))
                conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(login))
                for grant in mine:
                    target = (sql.SQL("ALL TABLES IN SCHEMA public") if grant.table is None
                              else sql.SQL("TABLE {}").format(sql.Identifier(grant.table)))
                    conn.execute(sql.SQL("GRANT {} ON {} TO {}").format(
                        sql.SQL(", ").join(sql.SQL(p) for p in grant.privileges), target, login))
                if any("INSERT" in g.privileges for g in mine):   # identity / serial columns
                    conn.execute(sql.SQL("GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {}").format(login))
