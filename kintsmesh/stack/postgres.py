"""PostgreSQL: two private clusters from Debian's binaries. ``postgres`` holds the resource library;
``departments`` holds one database per department, with logical decoding for Debezium. In a city the
department databases are the departments' own servers; kept apart here too, the library's writes (five
rows per merged change) are not read by every department's replication slot (measured: 81 µs of the
walsenders' CPU per T+1 row while they shared a cluster)."""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

import psycopg

from kintsmesh.errors import StackError
from kintsmesh.security.pki import server_certificate
from kintsmesh.security.secrets import write_private
from kintsmesh.settings import Cluster
from kintsmesh.stack import prerequisites
from kintsmesh.stack.component import Component
from kintsmesh.stack.process import alive, terminate, wait_until

INCLUDE = "include_if_exists = 'kintsmesh.conf'"
# every client authenticates with a password (SCRAM); over TCP only with TLS: there is no `host` line
PG_HBA = """# kintsmesh (rewritten by every `stack up`): no trust, no cleartext TCP
local    all          all                   scram-sha-256
local    replication  all                   scram-sha-256
hostssl  all          all   127.0.0.1/32    scram-sha-256
hostssl  replication  all   127.0.0.1/32    scram-sha-256
"""


class Postgres(Component):
    """The resource library's private PostgreSQL cluster."""

    name = "postgres"
    port_setting = "pg_port"
    cluster: Cluster = "library"
    config = ""   # the cluster's own settings, after the common ones

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    def _as_cluster_owner(self, cmd: list[str]) -> list[str]:
        # postgres refuses to run as root; Debian's package creates the 'postgres' user
        if os.geteuid() == 0:
            return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *cmd]
        return cmd

    def _open_path_for_owner(self) -> None:
        """As root, the cluster owner must be able to reach the data folder."""
        if os.geteuid() != 0:
            return
        owner = pwd.getpwnam("postgres")
        self.home.mkdir(parents=True, exist_ok=True)
        for parent in [self.home, *self.home.parents]:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                print(f"  allowing the postgres user to traverse {parent} (chmod o+x)", flush=True)
                parent.chmod(mode | 0o001)
        for path in [self.home, *self.home.rglob("*")]:
            if path.stat().st_uid != owner.pw_uid:
                os.chown(path, owner.pw_uid, owner.pw_gid)

    def prepare(self) -> None:
        bindir = prerequisites.postgres_bindir()
        self._open_path_for_owner()
        if not (self.data_dir / "PG_VERSION").is_file():
            self._initdb(bindir)
        elif self.settings.pg_password is None and not (self.settings.secrets_dir / "postgres-admin").is_file():
            raise StackError(self.name, f"{self.data_dir} was made before this installation's secrets (or they were"
                             " deleted): its passwords are unknown. Start afresh with `kintsmesh stack reset`")
        self._secure()
        self._open_path_for_owner()

    def _initdb(self, bindir: Path) -> None:
        pwfile = self.home / "pwfile"
        write_private(pwfile, (self.settings.role_password("admin") + "\n").encode())
        self._open_path_for_owner()
        result = subprocess.run(
            self._as_cluster_owner([
                str(bindir / "initdb"), "-D", str(self.data_dir), "-U", self.settings.pg_user,
                f"--pwfile={pwfile}", "-E", "UTF8", "--no-locale",
                "--auth-local=scram-sha-256", "--auth-host=scram-sha-256",
            ]),
            capture_output=True, text=True,
        )
        pwfile.unlink()
        if result.returncode != 0:
            raise StackError(self.name, f"initdb failed: {(result.stderr or result.stdout).strip()[-300:]}")

    def _secure(self) -> None:
        """TLS with the installation's CA, password authentication on every line of pg_hba (no trust), the
        socket private to the cluster owner. Written on every start, so an older cluster is tightened too."""
        conf = self.data_dir / "postgresql.conf"
        if INCLUDE not in conf.read_text():
            with open(conf, "a") as out:
                out.write(f"\n{INCLUDE}\n")
        pair = server_certificate(self.settings.secrets_dir, "postgres")
        for source, target in ((pair.cert, "server.crt"), (pair.key, "server.key")):
            write_private(self.data_dir / target, source.read_bytes())   # the server refuses a key others can read
        (self.data_dir / "kintsmesh.conf").write_text(
            "# --- kintsmesh local stack (rewritten by every `stack up`) ---\n"
            f"port = {self.port}\n"
            "listen_addresses = '127.0.0.1'\n"
            f"unix_socket_directories = '{self.home}'\n"
            "unix_socket_permissions = 0700\n"
            "password_encryption = 'scram-sha-256'\n"
            "ssl = on\n"
            "ssl_cert_file = 'server.crt'\n"
            "ssl_key_file = 'server.key'\n"
            "ssl_min_protocol_version = 'TLSv1.2'\n"
            "max_connections = 200\n"
            # a T+1 chunk's sessions lock a key per RIC they link (sinks.library.tables.lock_keys): 10,000 each
            "max_locks_per_transaction = 256\n"
            "shared_buffers = 256MB\n"
            "wal_writer_delay = 10ms\n"
            "logging_collector = off\n"
            + self.config + self._earlier_slots()
        )
        (self.data_dir / "pg_hba.conf").write_text(PG_HBA)

    def _earlier_slots(self) -> str:
        """A library cluster made before the department databases had their own keeps their replication slots,
        and PostgreSQL refuses to start one with slots below ``wal_level = logical``: it keeps that level (the
        slots, unused now, hold its WAL back until dropped; docs/known-gaps.md)."""
        slots = self.data_dir / "pg_replslot"
        if self.cluster != "library" or not slots.is_dir() or not any(slots.iterdir()):
            return ""
        print(f"  {self.name:<11} keeps wal_level=logical: replication slots of an earlier installation remain in"
              f" {slots} (drop them: docs/known-gaps.md)", flush=True)
        return "wal_level = logical\nmax_replication_slots = 20\n"

    def command(self) -> list[str]:
        bindir = prerequisites.postgres_bindir()
        # commit timestamps: sync lag is measured to the moment a merge became visible
        return self._as_cluster_owner([str(bindir / "postgres"), "-D", str(self.data_dir),
                                       "-c", "track_commit_timestamp=on"])

    def healthy(self) -> bool:
        with psycopg.connect(self.settings.dsn("postgres", role="admin", cluster=self.cluster), connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True

    def after_start(self) -> None:
        from kintsmesh.stack.migrate import ensure_databases

        ensure_databases(self.settings, self.cluster)

    def stop(self) -> bool:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        # SIGINT is PostgreSQL's "fast shutdown": roll back clients, checkpoint, exit
        os.kill(pid, 2)
        if not wait_until(lambda: not alive(pid), 60):
            terminate(pid)
        self.pid_file.unlink(missing_ok=True)
        return True


class Departments(Postgres):
    """The department databases' cluster (the simulated departments' servers), with logical decoding."""

    name = "departments"
    port_setting = "departments_pg_port"
    cluster: Cluster = "departments"
    config = "wal_level = logical\nmax_wal_senders = 20\nmax_replication_slots = 20\n"
