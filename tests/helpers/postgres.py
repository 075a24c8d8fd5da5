"""A throwaway PostgreSQL 15 server for tests.

Usage in a conftest.py::

    from tests.helpers.postgres import postgres_server  # noqa: F401  (session fixture)

    async def test_x(postgres_server):
        db = postgres_server.create_database()      # fresh database + owner per test
        db.url          # "postgresql://user:password@127.0.0.1:PORT/name"
        db.env          # {"SQL_TYPE": "postgresql", "SQL_USER": ..., "SQL_PASSWORD": ...,
                        #  "SQL_HOST": "127.0.0.1", "SQL_PORT": "...", "SQL_DATABASE": ...}

``postgres_server`` starts one server per test session from ``/usr/lib/postgresql/15/bin``
(override with ``$OUTPOST_TEST_PG_BIN``) in a temporary directory, listening on
127.0.0.1 on a free port, and stops it at the end of the session (also when tests fail).
``initdb`` refuses to run as root, so as root every server command runs as the
``postgres`` system user via ``runuser -u postgres --``. When the binaries are missing the
fixture skips with a printed reason. Outside pytest use ``PostgresServer`` directly
(``start()``/``stop()``, also a context manager).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass

import pytest

DEFAULT_BIN = "/usr/lib/postgresql/15/bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PostgresDatabase:
    name: str
    user: str
    password: str
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{self.name}"

    @property
    def env(self) -> dict[str, str]:
        """The SQL_* variables the Outpost reads (see docs/configuration.md)."""
        return {
            "SQL_TYPE": "postgresql",
            "SQL_USER": self.user,
            "SQL_PASSWORD": self.password,
            "SQL_HOST": self.host,
            "SQL_PORT": str(self.port),
            "SQL_DATABASE": self.name,
        }


class PostgresServer:
    """One PostgreSQL server in a temporary directory; ``start()`` blocks until it accepts."""

    def __init__(self, bin_dir: str | None = None):
        self.bin_dir = bin_dir or os.environ.get("OUTPOST_TEST_PG_BIN", DEFAULT_BIN)
        self.host = "127.0.0.1"
        self.port = 0
        self.tmp = None
        self._as_root = os.geteuid() == 0
        self._count = 0

    @classmethod
    def unavailable_reason(cls, bin_dir: str | None = None) -> str | None:
        bin_dir = bin_dir or os.environ.get("OUTPOST_TEST_PG_BIN", DEFAULT_BIN)
        for tool in ("initdb", "pg_ctl", "postgres"):
            if not os.access(os.path.join(bin_dir, tool), os.X_OK):
                return f"PostgreSQL binaries not found ({bin_dir}/{tool} is missing)"
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                return "running as root but there is no 'postgres' system user for initdb"
            if not shutil.which("runuser"):
                return "running as root but runuser is missing"
        return None

    def _argv(self, tool: str, *args: str) -> list[str]:
        argv = [os.path.join(self.bin_dir, tool), *args]
        if self._as_root:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        return argv

    def _run(self, tool: str, *args: str) -> subprocess.CompletedProcess:
        # cwd: the server's own directory; the postgres user may not enter the checkout
        return subprocess.run(
            self._argv(tool, *args), check=True, capture_output=True, text=True, cwd=self.tmp
        )

    def start(self) -> PostgresServer:
        self.tmp = tempfile.mkdtemp(prefix="outpost-pg-")
        self.data = os.path.join(self.tmp, "data")
        self.sockets = os.path.join(self.tmp, "sockets")
        os.makedirs(self.sockets)
        if self._as_root:
            pw = pwd.getpwnam("postgres")
            for path in (self.tmp, self.sockets):
                os.chown(path, pw.pw_uid, pw.pw_gid)
        self.superpassword = secrets.token_hex(16)
        pwfile = os.path.join(self.tmp, "pwfile")
        with open(pwfile, "w") as f:
            f.write(self.superpassword)
        if self._as_root:
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        self._run(
            "initdb",
            "-D",
            self.data,
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
            "-E",
            "UTF8",
            "--no-instructions",
        )
        os.unlink(pwfile)
        self.port = free_port()
        self._run(
            "pg_ctl",
            "-D",
            self.data,
            "-l",
            os.path.join(self.tmp, "log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-h {self.host} -p {self.port} -k {self.sockets} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
            "start",
        )
        return self

    def stop(self) -> None:
        if self.tmp is None:
            return
        try:
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def psql(self, sql: str, database: str = "postgres") -> str:
        env = dict(os.environ, PGPASSWORD=self.superpassword)
        return subprocess.run(
            [
                os.path.join(self.bin_dir, "psql"),
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-qAt",
                "-c",
                sql,
            ],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        ).stdout

    def create_database(self, prefix: str = "outpost") -> PostgresDatabase:
        """A new database owned by a new role with a random password (as in the seed)."""
        self._count += 1
        name = f"{prefix}_{self._count}_{secrets.token_hex(3)}"
        password = secrets.token_hex(12)
        self.psql(f"CREATE USER {name} WITH ENCRYPTED PASSWORD '{password}'")
        self.psql(f"CREATE DATABASE {name} OWNER {name}")
        return PostgresDatabase(name, name, password, self.host, self.port)


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server for the whole test session (skips when unavailable)."""
    reason = PostgresServer.unavailable_reason()
    if reason:
        print(f"SKIP postgres tests: {reason}")
        pytest.skip(reason)
    server = PostgresServer()
    started = time.monotonic()
    try:
        server.start()
    except subprocess.CalledProcessError as e:
        server.stop()
        pytest.fail(f"PostgreSQL did not start: {e.stderr or e.stdout}")
    print(f"PostgreSQL 15 on 127.0.0.1:{server.port} ({time.monotonic() - started:.1f}s)")
    try:
        yield server
    finally:
        server.stop()
