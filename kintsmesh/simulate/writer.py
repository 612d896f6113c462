"""Department systems committing their changes: one writer thread and connection per database.

Departments run on their own servers and commit independently; one thread per
department keeps each department's changes in order while letting PostgreSQL
group-commit the departments' transactions together, as it would in production.
"""

from __future__ import annotations

import queue
import threading
import time
from functools import cache
from typing import Literal

import psycopg
from psycopg import sql

from kintsmesh.errors import KintsmeshError
from kintsmesh.settings import DEPARTMENTS, Settings
from kintsmesh.simulate.departments import PRIMARY_KEYS, Row

Op = Literal["c", "u", "d"]
Change = tuple[Row, Op]

# tables whose rows carry an update timestamp the department's system maintains
_TABLES_WITH_GXSJ = frozenset({"hj_hu", "rk_jbxx", "jzz", "cszm", "sb_cbry", "fw_jbxx", "zl_ba", "qy_djxx", "xs_xj"})
_STOP = object()
RECONNECT_FOR_S = 180.0   # how long a department's writer waits for its database to come back


class DepartmentWriter:
    """``submit`` queues one transaction for a department; ``close`` waits for all of them."""

    def __init__(self, settings: Settings, backlog: int = 2000, replay: bool = False) -> None:
        self.settings = settings
        self.replay = replay   # inserts overwrite a row of the same key: redoing a run that was killed
        self.queues: dict[str, queue.Queue[object]] = {d: queue.Queue(maxsize=backlog) for d in DEPARTMENTS}
        self.errors: list[BaseException] = []
        self.threads = [
            threading.Thread(target=self._commit_loop, args=(d, self.queues[d]), name=f"writer-{d}", daemon=True)
            for d in DEPARTMENTS
        ]
        for thread in self.threads:
            thread.start()

    def _commit_loop(self, department: str, jobs: queue.Queue[object]) -> None:
        conn: psycopg.Connection | None = None
        while (job := jobs.get()) is not _STOP:
            if self.errors:
                continue  # drain: the run is failing
            replay, waited = self.replay, 0.0
            while True:
                try:
                    if conn is None or conn.closed or conn.broken:
                        conn = psycopg.connect(self.settings.dsn(department), connect_timeout=5)
                    with conn.cursor() as cur:
                        for row, op in job:  # type: ignore[attr-defined]
                            cur.execute(*statement(row, op, replay))
                    conn.commit()
                    break
                except psycopg.OperationalError as exc:
                    # the database went away (a restart): as a department's system would, commit again once it
                    # is back; the first try's outcome is unknown, so inserts overwrite rows of their key
                    if waited >= RECONNECT_FOR_S:
                        self.errors.append(exc)
                        break
                    replay = True
                    if conn is not None and not conn.broken:
                        try:
                            conn.rollback()
                        except psycopg.Error:
                            conn.close()
                    time.sleep(1.0)
                    waited += 1.0
                except BaseException as exc:  # noqa: BLE001 - reported by submit()/close()
                    self.errors.append(exc)
                    break
        if conn is not None:
            conn.close()

    def raise_first_error(self) -> None:
        if self.errors:
            first = self.errors[0]
            hint = ("; the department databases hold rows this city did not write (another simulated city's:"
                    " the demo and each benchmark keep their own). Start from empty databases with"
                    " `kintsmesh stack reset` then `make up`") if isinstance(first, psycopg.errors.UniqueViolation) else ""
            raise KintsmeshError(f"a department write failed: {first!r}{hint}") from first

    def submit(self, department: str, changes: list[Change]) -> None:
        self.raise_first_error()
        self.queues[department].put(changes)

    def close(self, flush: bool = True) -> None:
        for jobs in self.queues.values():
            jobs.put(_STOP)
        for thread in self.threads:
            thread.join()
        if flush:
            self.raise_first_error()


@cache
def _sql(table: str, op: Op, columns: tuple[str, ...], keys: tuple[str, ...], replay: bool = False) -> str:
    ident = sql.Identifier(table)
    where = sql.SQL(" AND ").join(sql.SQL("{} = %s").format(sql.Identifier(k)) for k in keys)
    if op == "c":
        statement_sql = sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
            ident, sql.SQL(", ").join(map(sql.Identifier, columns)), sql.SQL(", ").join(sql.Placeholder() * len(columns))
        )
        if replay:
            statement_sql += sql.SQL(" ON CONFLICT ({}) DO UPDATE SET {}").format(
                sql.SQL(", ").join(map(sql.Identifier, keys)),
                sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in columns if c not in keys))
    elif op == "u":
        assignments = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in columns)
        stamp = sql.SQL(", gxsj = localtimestamp(0)") if table in _TABLES_WITH_GXSJ else sql.SQL("")
        statement_sql = sql.SQL("UPDATE {} SET {}{} WHERE {}").format(ident, assignments, stamp, where)
    else:
        statement_sql = sql.SQL("DELETE FROM {} WHERE {}").format(ident, where)
    return statement_sql.as_string()


def statement(row: Row, op: Op, replay: bool = False) -> tuple[str, list[object]]:
    """The SQL a department system runs for one change of one row (``replay``: an insert overwrites a row
    of the same key, as when a killed run's changes are made again)."""
    keys = PRIMARY_KEYS[(row.database, row.table)]
    key_values = [row.values[k] for k in keys]
    if op == "c":
        columns = tuple(row.values)
        return _sql(row.table, op, columns, keys, replay), [row.values[c] for c in columns]
    if op == "u":
        columns = tuple(c for c in row.values if c not in keys)
        return _sql(row.table, op, columns, keys), [row.values[c] for c in columns] + key_values
    return _sql(row.table, op, (), keys), key_values
