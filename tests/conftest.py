"""Shared test helpers: real `callstream serve` processes on loopback, and event clients."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

pytest_plugins = ["tests.pg_server", "tests.redis_server"]

FIXTURES = Path(__file__).parent / "fixtures"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    port: int
    data_dir: Path
    proc: subprocess.Popen
    log_path: Path
    token: str | None = None  # sent as `Authorization: Bearer` by the helpers below, when set

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def get_json(self, path: str) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(urllib.request.Request(self.http + path, headers=self.auth_headers), timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def post_json(self, path: str, body: object) -> tuple[int, dict]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(self.http + path, data=data, method="POST", headers={"content-type": "application/json", **self.auth_headers})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def get_bytes(self, path: str) -> bytes:
        with urllib.request.urlopen(urllib.request.Request(self.http + path, headers=self.auth_headers), timeout=10) as r:
            return r.read()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class KeptDemo:
    """`callstream demo --speed 0 --keep` in a subprocess, its output read line by line;
    killed on exit if a test fails before `stop()`."""

    def __init__(self, wav: Path, data_dir: Path, env: dict[str, str], timeout: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", "demo", "--speed", "0", "--keep", "--file", str(wav),
             "--data-dir", str(data_dir)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**env, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        self.lines: list[str] = []
        self.deadline = time.monotonic() + timeout

    def read_until(self, marker: str) -> str:
        assert self.proc.stdout is not None
        while time.monotonic() < self.deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            if marker in line:
                return line
        raise AssertionError(f"no {marker!r} in the demo's output:\n" + "".join(self.lines))

    def stop(self) -> str:
        """Ctrl-C, then everything it printed."""
        self.proc.send_signal(signal.SIGINT)
        rest, _ = self.proc.communicate(timeout=60)
        self.lines.append(rest)
        return "".join(self.lines)

    def __enter__(self) -> KeptDemo:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start_server(tmp: Path, public_url_self: bool = False, **env: str) -> Server:
    """`callstream serve` in a subprocess on a free port; ``public_url_self`` makes the
    server hand its own loopback URL to ACS (callbacks and the media transport URL)."""
    port = free_port()
    data_dir = tmp / f"data-{port}"
    log_path = tmp / f"server-{port}.log"
    environ = {**os.environ, "CALLSTREAM_DATA_DIR": str(data_dir), "CALLSTREAM_PORT": str(port), **env}
    if public_url_self:
        environ["CALLSTREAM_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
    fh = open(log_path, "wb")  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "serve", "--log-level", "INFO"],
        env=environ,
        stdout=fh,
        stderr=subprocess.STDOUT,
    )
    server = Server(port, data_dir, proc, log_path)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited:\n" + server.logs())
        try:
            if server.get_json("/readyz")[0] == 200:
                return server
        except OSError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError("server not ready in time:\n" + server.logs())


@pytest.fixture(scope="module")
def local_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("local"), CALLSTREAM_STT="local")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def acs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("acs"), CALLSTREAM_STT="acs", CALLSTREAM_SUBSCRIBER_QUEUE="64")
    yield server
    server.stop()


async def collect_call_events(
    ws_base: str, call_id: str, since: int | None = None, timeout: float = 180, token: str | None = None
) -> list[dict]:
    """Read a call's event stream until the server closes it after call.ended."""
    q = "" if since is None else f"?since={since}"
    events: list[dict] = []
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with connect(f"{ws_base}/calls/{call_id}/events{q}", max_size=None, additional_headers=headers) as ws:
        async with asyncio.timeout(timeout):
            async for raw in ws:
                events.append(json.loads(raw))
    return events


def load_manifest(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


_NUM = {"0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six", "7": "seven", "8": "eight", "9": "nine"}


def normalize_words(text: str) -> str:
    text = re.sub(r"\d", lambda m: f" {_NUM[m.group()]} ", text.lower())
    text = re.sub(r"[^a-z' ]+", " ", text)
    return " ".join(text.split())


def assert_seq_strict(events: list[dict]) -> None:
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs)), "seq must strictly increase"
    assert seqs[0] == 1 and seqs == list(range(1, len(seqs) + 1)), "no gap in seq"
