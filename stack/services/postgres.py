"""A private PostgreSQL 15 cluster under the state dir, TCP on 127.0.0.1 only, trust auth for local users.

PostgreSQL refuses to run as root: as root every server command runs as the `postgres` system user
(`runuser`), which then must be able to reach the data dir (every parent directory needs o+x).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

from stack.services.base import ServiceError, ServiceStatus, cmdline, pid_alive, read_pid, run, wait_until
from stack.settings import StackSettings

NAME = "postgres"
PG_MAJOR = "15"
_BIN_CANDIDATES = (f"/usr/lib/postgresql/{PG_MAJOR}/bin",)


def bin_dir() -> Path:
    for d in _BIN_CANDIDATES:
        if (Path(d) / "pg_ctl").exists():
            return Path(d)
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    raise ServiceError(f"postgres: no PostgreSQL {PG_MAJOR} server binaries (apt-get install postgresql-{PG_MAJOR})")


class PostgresService:
    name = NAME

    def __init__(self, settings: StackSettings) -> None:
        self.s = settings
        self.dir = settings.state_path / "postgres"
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self._as_root = os.geteuid() == 0

    @property
    def address(self) -> str:
        return f"{self.s.host}:{self.s.postgres_port}"

    def _cmd(self, tool: str, *args: str) -> list[str]:
        argv = [str(bin_dir() / tool), *args]
        if self._as_root:
            if shutil.which("runuser") is None:
                raise ServiceError("postgres: running as root needs `runuser` to start the server as `postgres`")
            return ["runuser", "-u", "postgres", "--", *argv]
        return argv

    def _check_reachable(self) -> None:
        """As root, the postgres user must traverse every parent of the data dir."""
        if not self._as_root:
            return
        for parent in [self.dir, *self.dir.parents]:
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                raise ServiceError(f"postgres: {parent} is not traversable by the postgres user (mode "
                                   f"{stat.filemode(mode)}); use a state dir whose parents have o+x, e.g. under /tmp")

    def _init(self) -> None:
        if (self.data / "PG_VERSION").exists():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self._check_reachable()
        self.data.mkdir(parents=True, exist_ok=True)
        self.data.chmod(0o700)
        if self._as_root:
            shutil.chown(self.dir, "postgres", "postgres")
            shutil.chown(self.data, "postgres", "postgres")
        run(self._cmd("initdb", "-D", str(self.data), "-U", self.s.pg_user, "--auth=trust", "-E", "UTF8",
                      "--locale=C", "--no-sync"), "postgres: initdb", timeout_s=120)
        with open(self.data / "postgresql.conf", "a") as f:
            f.write(f"\n# commodex stack\nport = {self.s.postgres_port}\nlisten_addresses = '{self.s.host}'\n"
                    "unix_socket_directories = ''\nmax_connections = 50\nshared_buffers = 128MB\n"
                    "logging_collector = off\n")

    def pid(self) -> int:
        pid = read_pid(self.data / "postmaster.pid")  # first line: the postmaster's pid
        return pid if pid and pid_alive(pid) and str(self.data) in cmdline(pid) else 0

    def _connect(self, dbname: str):  # type: ignore[no-untyped-def]
        import psycopg

        return psycopg.connect(host=self.s.host, port=self.s.postgres_port, user=self.s.pg_user, dbname=dbname,
                               connect_timeout=2, autocommit=True)

    def healthy(self) -> bool:
        import psycopg

        try:
            with self._connect("postgres") as c:
                c.execute("SELECT 1")
            return True
        except psycopg.OperationalError:
            return False

    def up(self) -> ServiceStatus:
        self._init()
        if not self.pid():
            if self._as_root:
                self.log.touch()
                shutil.chown(self.log, "postgres", "postgres")
            run(self._cmd("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t",
                          str(int(self.s.start_timeout_s)), "start"), "postgres: pg_ctl start",
                timeout_s=self.s.start_timeout_s + 10)
        wait_until(self.healthy, self.s.start_timeout_s, f"postgres on {self.address}", log=self.log)
        self.ensure_database(self.s.pg_database)
        return self.status()

    def ensure_database(self, name: str) -> None:
        with self._connect("postgres") as c:
            if c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
                c.execute(f'CREATE DATABASE "{name}"')

    def down(self) -> bool:
        if not self.pid():
            return False
        run(self._cmd("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop"), "postgres: pg_ctl stop",
            timeout_s=60)
        return True

    def version(self) -> str:
        try:
            out = subprocess.run([str(bin_dir() / "postgres"), "--version"], capture_output=True, text=True,
                                 check=True).stdout
        except (ServiceError, OSError, subprocess.CalledProcessError):
            return "not installed"
        return out.strip().removeprefix("postgres (PostgreSQL) ")

    def status(self) -> ServiceStatus:
        pid = self.pid()
        healthy = bool(pid) and self.healthy()
        return ServiceStatus(NAME, self.address, self.version(), running=bool(pid), healthy=healthy,
                             pid=pid)

