"""Shared test helpers: real `callstream serve` processes on loopback, and event clients."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
            with urllib.request.urlopen(
                urllib.request.Request(self.http + path, headers=self.auth_headers), timeout=10
            ) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def post_json(self, path: str, body: object) -> tuple[int, dict]:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(
            self.http + path,
            data=data,
            method="POST",
            headers={"content-type": "application/json", **self.auth_headers},
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"{}")

    def get_bytes(self, path: str) -> bytes:
        with urllib.request.urlopen(
            urllib.request.Request(self.http + path, headers=self.auth_headers), timeout=10
        ) as r:
            return r.read()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metric(self, name: str) -> float:
        """One sample of /metrics (see `metric`)."""
        return metric(self.get_bytes("/metrics").decode(), name)

    def subscribers(self) -> int:
        """Agent-assist subscriptions attached to the live bus right now (the
        `callstream_subscribers` gauge: a subscription counts once it can receive)."""
        return int(self.metric("callstream_subscribers"))

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
            [sys.executable, "-m", "pipeline.cli.commands", "demo", "--speed", "0", "--keep", "--file", str(wav),
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
    environ = {
        **os.environ,
        "CALLSTREAM_DATA_DIR": str(data_dir),
        "CALLSTREAM_PORT": str(port),
        **env,
    }
    if public_url_self:
        environ["CALLSTREAM_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
    fh = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli.commands", "serve", "--log-level", "INFO"],
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
    server = start_server(
        tmp_path_factory.mktemp("acs"), CALLSTREAM_STT="acs", CALLSTREAM_SUBSCRIBER_QUEUE="64"
    )
    yield server
    server.stop()


async def collect_call_events(
    ws_base: str,
    call_id: str,
    since: int | None = None,
    timeout: float = 180,
    token: str | None = None,
    into: list[dict] | None = None,
) -> list[dict]:
    """Read a call's event stream until the server closes it after call.ended. Events are
    appended to ``into`` as they come, when given (a test can wait on what arrived)."""
    q = "" if since is None else f"?since={since}"
    events: list[dict] = [] if into is None else into
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with connect(
        f"{ws_base}/calls/{call_id}/events{q}", max_size=None, additional_headers=headers
    ) as ws:
        async with asyncio.timeout(timeout):
            async for raw in ws:
                events.append(json.loads(raw))
    return events


# ----------------------------------------------------------------- waiting for a signal
# A test waits for the state it needs (a condition polled against a deadline), never for a
# fixed time: a fixed sleep is too short on a busy machine and wasted on an idle one.


def metric(text: str, name: str) -> float:
    """The value of the sample ``name`` in a Prometheus exposition, labels included as
    exposed (`callstream_x_total{kind="a"}`); 0.0 when absent."""
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def wait_until(
    predicate: Callable[[], object],
    timeout: float = 10.0,
    what: str = "condition",
    interval: float = 0.05,
) -> object:
    """Poll ``predicate`` until it returns something truthy (returned), or fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
    return value


async def wait_for(
    predicate: Callable[[], object | Awaitable[object]],
    timeout: float = 10.0,
    what: str = "condition",
    interval: float = 0.05,
) -> object:
    """`wait_until` for async tests: ``predicate`` may also return an awaitable (say
    ``lambda: asyncio.to_thread(server.metric, ...)``, to keep blocking I/O off the loop)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)


async def wait_subscribed(server: Server, at_least: int, timeout: float = 30.0) -> None:
    """Until ``server`` has ``at_least`` agent-assist subscriptions attached to its bus: from
    then on every event it publishes reaches them live (the stream subscribes right after
    the websocket handshake, so a client's connect() returning is not yet that signal)."""
    await wait_for(
        lambda: asyncio.to_thread(lambda: server.subscribers() >= at_least),
        timeout, f"{at_least} subscriber(s) attached on :{server.port}",
    )  # fmt: skip


async def start_subscribers(
    server: Server, *streams: Coroutine[object, object, object], timeout: float = 30.0
) -> list[asyncio.Task]:
    """Run each coroutine (one that opens one subscription on ``server``, such as
    `collect_call_events`) as a task; return once all of them are attached, so that media
    sent next is seen live. Fails at once if one of them ends before it attached."""
    before = await asyncio.to_thread(server.subscribers)
    tasks = [asyncio.create_task(c) for c in streams]

    async def attached() -> bool:
        for task in tasks:
            if task.done():
                task.result()  # raises what it raised
                # (the server closes a per-call stream whose call is not live after 2 s idle)
                raise AssertionError("a subscriber's stream ended before it was seen attached")
        return await asyncio.to_thread(server.subscribers) >= before + len(tasks)

    try:
        await wait_for(attached, timeout, f"{len(tasks)} subscriber(s) attached on :{server.port}")
    except BaseException:
        for task in tasks:
            task.cancel()
        raise
    return tasks


def load_manifest(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


_NUM = {
    "0": "zero",
    "1": "one",
    "2": "two",
    "3": "three",
    "4": "four",
    "5": "five",
    "6": "six",
    "7": "seven",
    "8": "eight",
    "9": "nine",
}


def normalize_words(text: str) -> str:
    text = re.sub(r"\d", lambda m: f" {_NUM[m.group()]} ", text.lower())
    text = re.sub(r"[^a-z' ]+", " ", text)
    return " ".join(text.split())


def assert_seq_strict(events: list[dict]) -> None:
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(set(seqs)), "seq must strictly increase"
    assert seqs[0] == 1 and seqs == list(range(1, len(seqs) + 1)), "no gap in seq"


def run_cli(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """The real `callstream` command line in a child process (standard input closed unless
    ``stdin`` is given)."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli.commands", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
        **({} if stdin is not None else {"stdin": subprocess.DEVNULL}),
    )


def payment_call_sender(session: Any) -> Callable[[int, int], None]:
    """Feed tests/fixtures/payment_call.wav to an attached CallSession as ACS does (its
    AudioMetadata, then one customer and one agent frame per 20 ms); returns
    send(ms_from, ms_to), which delivers that stretch of the call."""
    import base64

    from pipeline.cli.replay import AGENT_ID, CUSTOMER_ID, load_call_audio

    tracks = dict(load_call_audio(FIXTURES / "payment_call.wav").tracks)
    session.on_message(json.dumps({"kind": "AudioMetadata", "audioMetadata": {
        "subscriptionId": "s", "encoding": "PCM", "sampleRate": 16000, "channels": 1, "length": 640}}))  # fmt: skip

    def send(ms_from: int, ms_to: int) -> None:
        for ms in range(ms_from, ms_to, 20):
            for pid in (CUSTOMER_ID, AGENT_ID):
                pcm = tracks[pid][ms * 32 : ms * 32 + 640]
                if len(pcm) == 640:
                    session.on_message(json.dumps({"kind": "AudioData", "audioData": {
                        "data": base64.b64encode(pcm).decode(), "participantRawID": pid,
                        "silent": False}}))  # fmt: skip

    return send


@contextlib.asynccontextmanager
async def payment_call_session(tmp_path: Path, engine: Any, call_id: str):
    """A started Service with `engine` and one attached session fed payment_call.wav:
    yields (session, send); the session is detached and closed, the service stopped."""
    from models.settings import load_settings
    from pipeline.compliance.store import SqliteEventStore
    from pipeline.service import Service

    cfg = load_settings(environ={}, overrides={"data_dir": str(tmp_path)})
    service = Service(cfg, engine=engine, store=SqliteEventStore(tmp_path / "events.db"))
    service.final_timeout_s = 0.5
    await service.start()
    try:
        session = service.session(call_id)
        session.attach()
        yield session, payment_call_sender(session)
        session.detach("test")
        await session.close_task
    finally:
        await service.stop()
