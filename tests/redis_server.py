"""A real Redis server for the tests, started from the installed `redis-server` binary.

`redis_server` (session scope) runs redis-server on a free loopback port with its data in a
fresh temporary directory and persistence off; it is shut down at the end of the session.
`redis_url` (per test) is one of its numbered databases, flushed before the test, like
the fresh SQLite file a test gets in tmp_path. `RedisServer.restart()` stops and starts
the same server on the same port (for tests of the bus reconnecting).

The binary comes from Debian's `redis-server` package (install.sh --test installs it), or
CALLSTREAM_TEST_REDIS_SERVER names another one.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None
        self._dbs = itertools.cycle(range(16))

    def start(self) -> None:
        log = open(self.workdir / "redis.log", "ab")
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--databases", "16"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    "redis-server exited: " + (self.workdir / "redis.log").read_text()[-2000:]
                )
            try:
                if redis.Redis(port=self.port, socket_timeout=1).ping():
                    return
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start in time")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def fresh_url(self) -> str:
        db = next(self._dbs)
        redis.Redis(port=self.port, db=db).flushdb()
        return self.url(db)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    binary = (
        os.environ.get("CALLSTREAM_TEST_REDIS_SERVER")
        or shutil.which("redis-server")
        or "/usr/bin/redis-server"
    )
    if not os.access(binary, os.X_OK):
        raise RuntimeError(
            "redis-server not found: run `bash install.sh --test` (installs Debian's redis-server)"
        )
    workdir = Path(tempfile.mkdtemp(prefix="callstream-redis-"))
    server = RedisServer(binary, workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.fresh_url()
