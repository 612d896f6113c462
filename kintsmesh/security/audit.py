"""The access audit's integrity and the operators' own accesses.

``access_audit`` is append-only (triggers refuse UPDATE, DELETE and TRUNCATE; no component role may
do either) and hash-chained by its insert trigger (migration 007): each row's ``row_hash`` is
SHA-256 of the previous row's hash and its own content. ``verify`` recomputes every link in one
statement; the head it returns (sequence number and hash) is what an operator records elsewhere, so
that even a superuser rewriting the whole tail is caught by comparing heads.
"""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from typing import Any

import psycopg

from kintsmesh.errors import KintsmeshError
from kintsmesh.settings import RESOURCE_LIBRARY_DB, Settings
from sinks.library.dossier import record_access

VERIFY_SQL = """
SELECT chain_seq, audit_id, encode(row_hash, 'hex'),
       row_hash IS DISTINCT FROM sha256(prev_hash || access_audit_content(a)) AS altered,
       prev_hash IS DISTINCT FROM coalesce(lag(row_hash) OVER (ORDER BY chain_seq), '\\x'::bytea) AS unlinked,
       chain_seq IS DISTINCT FROM row_number() OVER (ORDER BY chain_seq) AS gap
FROM access_audit a ORDER BY chain_seq
"""


@dataclass(frozen=True)
class ChainReport:
    rows: int
    head_seq: int | None
    head_hash: str | None
    broken: int                    # rows altered, unlinked (one before them removed) or out of sequence
    findings: list[dict[str, Any]]   # the first of them

    @property
    def intact(self) -> bool:
        return self.broken == 0


def verify(conn: psycopg.Connection[Any], show: int = 20) -> ChainReport:
    rows = broken = 0
    findings: list[dict[str, Any]] = []
    head_seq, head_hash = None, None
    with conn.cursor(name="audit_verify") as cur:   # a server-side cursor: the audit can be large
        cur.execute(VERIFY_SQL)
        for seq, audit_id, head_hash, altered, unlinked, gap in cur:   # in chain order: the last row is the head
            rows, head_seq = rows + 1, seq
            if altered or unlinked or gap:
                broken += 1
                if len(findings) < show:
                    findings.append({"chain_seq": seq, "audit_id": audit_id, "altered": altered,
                                     "unlinked": unlinked, "gap": gap})
    return ChainReport(rows, head_seq, head_hash, broken, findings)


def operator() -> str:
    """How an operator's command is named in the audit: the OS account that ran it."""
    try:
        return f"os:{getpass.getuser()}"
    except (KeyError, OSError):
        return "os:unknown"


def cli_access(settings: Settings, subject: str, resource: str, purpose: str | None, fields: list[str]) -> None:
    """Audit an operator's command that reads personal data, before it shows anything; without a purpose
    the command is refused."""
    if purpose is None or not purpose.strip():
        raise KintsmeshError(f"{resource}: say why you read it (--purpose); it is audited with your OS user")
    with psycopg.connect(settings.dsn(RESOURCE_LIBRARY_DB)) as conn:
        record_access(conn, subject=subject, requester=operator(), purpose=purpose, channel="cli", resource=resource,
                      fields=fields, outcome="read")
        conn.commit()
