"""A real PostgreSQL server for the end-to-end tests (Debian's `postgresql`, /usr/lib/postgresql/15/bin).

    with PostgresCluster() as pg:
        url = pg.create_database()          # postgres://stagepass@127.0.0.1:PORT/t_xxxx
        Broker(..., database=url)

The cluster lives in a fresh temporary directory owned by the `postgres` user (initdb refuses root: as root the
server commands run through `runuser -u postgres --`), listens on 127.0.0.1 on a free port and on a socket in that
directory, with `trust` authentication (loopback only) and fsync on. A role `stagepass` (LOGIN, CREATEDB) owns the
databases. The server is stopped by its PID on exit (`pg_ctl stop -m immediate`, then SIGKILL) and the directory
removed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import uuid
from pathlib import Path

from broker import free_port

BIN = Path(os.environ.get("STAGEPASS_PG_BIN", "/usr/lib/postgresql/15/bin"))


class PostgresCluster:
    def __init__(self):
        self.dir: Path | None = None
        self.port = 0
        self.pid: int | None = None

    @staticmethod
    def _as_postgres(cmd: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd

    def _server(self, tool: str, *args: str) -> None:
        proc = subprocess.run(self._as_postgres([str(BIN / tool), *args]), capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{tool} {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")

    def start(self) -> "PostgresCluster":
        if not (BIN / "initdb").exists():
            raise RuntimeError(f"no PostgreSQL server in {BIN} (make deps installs postgresql)")
        self.dir = Path(tempfile.mkdtemp(prefix="sp-pg-"))
        data, sockets = self.dir / "data", self.dir / "sock"
        sockets.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            shutil.chown(sockets, "postgres", "postgres")
        self._server("initdb", "-D", str(data), "--auth=trust", "--username=postgres", "--encoding=UTF8",
                     "--locale=C", "--no-sync")
        self.port = free_port()
        self._server("pg_ctl", "-D", str(data), "-l", str(self.dir / "server.log"), "-w", "-t", "60", "-o",
                     f"-k {sockets} -p {self.port} -c listen_addresses=127.0.0.1 -c fsync=on", "start")
        self.pid = int((data / "postmaster.pid").read_text().splitlines()[0])
        self.psql("CREATE ROLE stagepass LOGIN CREATEDB")
        return self

    def pause(self) -> None:
        """Stops the server (fast shutdown: open sessions are terminated), keeping its data for ``resume``."""
        self._server("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "-t", "60", "stop")
        self.pid = None

    def resume(self) -> None:
        """Starts the paused server again on the same port and socket directory."""
        data, sockets = self.dir / "data", self.dir / "sock"
        self._server("pg_ctl", "-D", str(data), "-l", str(self.dir / "server.log"), "-w", "-t", "60", "-o",
                     f"-k {sockets} -p {self.port} -c listen_addresses=127.0.0.1 -c fsync=on", "start")
        self.pid = int((data / "postmaster.pid").read_text().splitlines()[0])

    def psql(self, sql: str, database: str = "postgres") -> str:
        proc = subprocess.run(
            [str(BIN / "psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port),
             "-U", "postgres", "-d", database, "-c", sql], capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            raise RuntimeError(f"psql {sql!r} failed:\n{proc.stderr}")
        return proc.stdout

    def create_database(self) -> str:
        name = "t_" + uuid.uuid4().hex
        self.psql(f"CREATE DATABASE {name} OWNER stagepass")
        return self.url(name)

    def url(self, database: str) -> str:
        return f"postgres://stagepass@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        if self.dir is None:
            return
        try:
            self._server("pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "-w", "-t", "10", "stop")
        except (RuntimeError, subprocess.TimeoutExpired):
            pass
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = None

    def __enter__(self) -> "PostgresCluster":
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
