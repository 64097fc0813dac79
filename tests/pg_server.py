"""A real PostgreSQL server for the tests, started from the installed binaries.

`postgres_server` (session scope) runs initdb into a fresh temporary directory and starts
the server with pg_ctl on a free loopback port (its unix socket inside that directory,
trust authentication, durability switched off: the data is thrown away); at the end of
the session it is stopped (pg_ctl stop -m fast) and the directory removed. PostgreSQL
refuses to run as root: as root the server runs as the `postgres` system user (Debian's
package creates it), or as a `callstream-test` system user created for it.

`postgres_url` (per test) is a fresh empty database on that server, dropped after the
test, like the fresh SQLite file a test gets in tmp_path. Fixtures of a wider scope can
call `postgres_server.create_database()` / `.url(name)` themselves.

The binaries come from Debian's `postgresql` package (install.sh installs it), found
under /usr/lib/postgresql/<version>/bin (the newest), or in CALLSTREAM_TEST_PG_BINDIR.
CALLSTREAM_TEST_POSTGRES_URL uses a server that is already running instead.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

USER = "callstream"
DATABASE = "callstream_test"
SERVICE_USER = "callstream-test"


def _bindir() -> Path:
    configured = os.environ.get("CALLSTREAM_TEST_PG_BINDIR")
    if configured:
        candidates = [configured]
    else:
        candidates = sorted(
            (os.path.dirname(p) for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
            key=lambda d: [int(x) if x.isdigit() else 0 for x in Path(d).parent.name.split(".")],
        )
        on_path = shutil.which("initdb")
        if on_path:
            candidates.insert(0, os.path.dirname(on_path))
    for d in reversed(candidates):
        if all(
            os.access(os.path.join(d, tool), os.X_OK) for tool in ("initdb", "pg_ctl", "postgres")
        ):
            return Path(d)
    raise RuntimeError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found under /usr/lib/postgresql/*/bin:"
        " run ./install.sh (it installs Debian's `postgresql` package) or `apt-get install postgresql`,"
        " or set CALLSTREAM_TEST_PG_BINDIR / CALLSTREAM_TEST_POSTGRES_URL"
    )


def _run_as() -> pwd.struct_passwd | None:
    """The unprivileged user the server runs as when the tests run as root (None: ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", SERVICE_USER):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(SERVICE_USER)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self) -> None:
        self.bindir = _bindir()
        self.user = _run_as()
        self.root = Path(tempfile.mkdtemp(prefix="callstream-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.base_url = ""  # the server's maintenance database; test databases are made from it
        self._databases = itertools.count(1)
        if self.user is not None:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)

    @classmethod
    def existing(cls, url: str) -> PostgresServer:
        """A server run by someone else (the URL's user must be allowed to create databases)."""
        server = cls.__new__(cls)
        server.root = None
        server.base_url = url
        server._databases = itertools.count(1)
        return server

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        kwargs: dict = {}
        if self.user is not None:
            kwargs = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LC_ALL": "C",
            "HOME": str(self.root),
        }
        return subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            **kwargs,
        )

    def _check(self, proc: subprocess.CompletedProcess, what: str) -> None:
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            raise RuntimeError(
                f"PostgreSQL {what} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n{log}"
            )

    def start(self) -> None:
        self._check(
            self._run(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                USER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ),
            "initdb",
        )
        for attempt in range(
            3
        ):  # another process may take the free port before the server binds it
            port = _free_port()
            options = (
                f"-c listen_addresses=127.0.0.1 -p {port} -k {self.root}"
                " -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
            )
            proc = self._run(
                "pg_ctl",
                "-D",
                str(self.data),
                "-l",
                str(self.log),
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            )
            if proc.returncode == 0:
                self._options = options
                break
            if attempt == 2:
                self._check(proc, "start")
        self.base_url = f"postgresql://{USER}@127.0.0.1:{port}/postgres"
        deadline = time.monotonic() + 30
        while True:  # pg_ctl -w returns once the server accepts connections; belt and braces
            try:
                psycopg.connect(self.base_url, connect_timeout=5).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def pause(self) -> None:
        """Stop the server (fast: clients are cut off), keeping its data and port."""
        self._check(self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop"), "stop")

    def resume(self) -> None:
        """Start it again after `pause`, on the same port."""
        self._check(
            self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", self._options, "-w", "-t", "60", "start"),
            "restart",
        )  # fmt: skip

    def url(self, database: str) -> str:
        return urlunsplit(urlsplit(self.base_url)._replace(path="/" + database))

    def create_database(self) -> str:
        name = f"{DATABASE}_{os.getpid()}_{next(self._databases)}"
        with psycopg.connect(self.base_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.base_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.root is None:
            return
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The session's server (or the one CALLSTREAM_TEST_POSTGRES_URL names)."""
    external = os.environ.get("CALLSTREAM_TEST_POSTGRES_URL")
    if external:
        yield PostgresServer.existing(external)
        return
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database on the session's server for one test, like the fresh
    SQLite file in tmp_path: tests see only their own calls (purge, listings)."""
    name = postgres_server.create_database()
    yield postgres_server.url(name)
    postgres_server.drop_database(name)
