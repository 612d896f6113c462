"""PostgreSQL: a private cluster from Debian's binaries, with logical decoding, one database per department."""

from __future__ import annotations

import os
import pwd
import subprocess
from pathlib import Path

import psycopg

from kintsmesh.errors import StackError
from kintsmesh.stack import prerequisites
from kintsmesh.stack.component import Component
from kintsmesh.stack.process import alive, terminate, wait_until


class Postgres(Component):
    """A private PostgreSQL cluster with logical decoding, one database per department."""

    name = "postgres"
    port_setting = "pg_port"

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
        if (self.data_dir / "PG_VERSION").is_file():
            return
        pwfile = self.home / "pwfile"
        pwfile.write_text(self.settings.pg_password.get_secret_value() + "\n")
        self._open_path_for_owner()
        result = subprocess.run(
            self._as_cluster_owner([
                str(bindir / "initdb"), "-D", str(self.data_dir), "-U", self.settings.pg_user,
                f"--pwfile={pwfile}", "-E", "UTF8", "--no-locale",
                "--auth-local=trust", "--auth-host=scram-sha-256",
            ]),
            capture_output=True, text=True,
        )
        pwfile.unlink()
        if result.returncode != 0:
            raise StackError(self.name, f"initdb failed: {(result.stderr or result.stdout).strip()[-300:]}")
        conf = self.data_dir / "postgresql.conf"
        with open(conf, "a") as out:
            out.write(
                "\n# --- kintsmesh local stack ---\n"
                f"port = {self.port}\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.home}'\n"
                "wal_level = logical\n"
                "max_wal_senders = 20\n"
                "max_replication_slots = 20\n"
                "max_connections = 200\n"
                "shared_buffers = 256MB\n"
                "wal_writer_delay = 10ms\n"
                "logging_collector = off\n"
            )

    def command(self) -> list[str]:
        bindir = prerequisites.postgres_bindir()
        # commit timestamps: sync lag is measured to the moment a merge became visible
        return self._as_cluster_owner([str(bindir / "postgres"), "-D", str(self.data_dir),
                                       "-c", "track_commit_timestamp=on"])

    def healthy(self) -> bool:
        with psycopg.connect(self.settings.dsn("postgres"), connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True

    def after_start(self) -> None:
        from kintsmesh.stack.migrate import ensure_databases

        ensure_databases(self.settings)

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
