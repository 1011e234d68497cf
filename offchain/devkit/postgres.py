"""A throwaway PostgreSQL cluster for tests: Debian's server binaries (``make install`` apt-gets ``postgresql``), a
data directory in a temporary directory, a free loopback port and a unix socket beside the data, ``fsync`` off
(a test cluster need not survive a power loss), trust authentication for the ``postgres`` role. ``initdb`` refuses
to run as root, so as root every server command runs as the ``postgres`` user (``runuser``).

``PostgresCluster().start()`` returns once the server accepts connections; ``database()`` creates a fresh, empty
database and returns its URL; ``stop()`` stops the server (immediate) and removes the directory.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from .devchain import free_port

__all__ = ["PostgresCluster", "PostgresMissing", "server_bin"]


class PostgresMissing(RuntimeError):
    """PostgreSQL's server binaries are not installed."""


def server_bin() -> Path:
    """The directory of the newest installed PostgreSQL server's binaries (``initdb``, ``pg_ctl``)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    initdb = found[-1] if found else shutil.which("initdb")
    if not initdb:
        raise PostgresMissing("PostgreSQL's server is not installed (no initdb): run `make install`, which "
                              "apt-gets Debian's postgresql package")
    return Path(initdb).parent


class PostgresCluster:
    """One private PostgreSQL server (see the module docstring)."""

    def __init__(self, user: str = "postgres"):
        self.bin = server_bin()
        self.root = Path(tempfile.mkdtemp(prefix="opg-postgres-"))
        self.data, self.socket_dir, self.log = self.root / "data", self.root / "run", self.root / "server.log"
        self.port = free_port()
        self.user = user  # the OS user the server runs as when we are root (initdb refuses root)
        self.started_in: float | None = None

    @property
    def url(self) -> str:
        """The ``postgres`` database of the cluster, over TCP on loopback."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        cmd = [str(self.bin / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        proc = subprocess.run(cmd, cwd=self.root, capture_output=True, text=True)
        if proc.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{argv[0]} failed ({proc.returncode}): {proc.stderr.strip()}\n{log}")

    def start(self) -> PostgresCluster:
        started = time.perf_counter()
        self.socket_dir.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.root, self.user)
            shutil.chown(self.socket_dir, self.user)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--locale=C", "--encoding=UTF8",
                  "--no-sync", "--no-instructions")
        options = (f"-c port={self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.socket_dir}"
                   " -c fsync=off -c full_page_writes=off -c max_connections=200")
        self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "30", "-s", "-o", options)
        self.started_in = time.perf_counter() - started
        return self

    def restart(self) -> None:
        """Stop the server at once (every connection is cut) and start it again on the same port."""
        self._run("pg_ctl", "restart", "-D", str(self.data), "-l", str(self.log), "-m", "immediate", "-w", "-t", "30",
                  "-s")  # -l: the server must not inherit our pipes (pg_ctl keeps the start options, not the log)

    def database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-s")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
