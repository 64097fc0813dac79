"""Scale-out benchmark (issue 7): worker processes on one port, and delivery across replicas.

    /tmp/venv/bin/python bench/scale_out.py                       # ~3 minutes
    /tmp/venv/bin/python bench/scale_out.py --loads 50,100,150 --duration 30 --delivery-duration 60
    /tmp/venv/bin/python bench/scale_out.py --skip-delivery --configs redis-w2,redis-w2-spread

Part 1, ingest with worker processes. The generator of bench/ingest.py, in
bench/load_driver.py (raw asyncio websocket client, pre-encoded frames, N unmixed calls =
N x 100 AudioData messages/s, pings for latency), drives, in one session and under the
same loads:

- `memory`:          `serve`, the in-memory bus, one process on core 0 (the reference);
- `redis-w1`:        `serve --workers 1` with the Redis bus (one process), core 0;
- `redis-w2`:        `serve --workers 2`: a supervisor and two worker processes sharing the
                     port with SO_REUSEPORT, all on core 0 (children inherit the affinity);
- `redis-w2-spread`: the same on cores 0 and 1, i.e. sharing core 1 with the generator
                     and Redis.

The generator runs on core 1. redis-server (its own temporary directory, no RDB, no AOF)
is pinned to core 1 too: in a deployment Redis is its own service, so it is kept off the
server's core and its CPU (utime+stime of its process) is reported in its own column
rather than folded into the server's; with audio-only ingest and CALLSTREAM_STT=acs it
handles only a few events per call (call.started, participant.joined, call.ended, none
while the call streams) and each replica's blocking XREAD. Server CPU is the sum over the whole process tree (the supervisor and its workers,
found through /proc/PID/task/*/children), read before and after the measured window.

Frames handled: GET /metrics on the shared port reaches one worker at random (the kernel
hashes each new connection), so the script scrapes it over fresh connections until it
has seen every worker, tells the workers apart by their histograms' `_created`
timestamps (one per process), and sums `callstream_frames_received`. The same scrapes
give each worker's share of the media connections (the `split` column).

Part 2, event delivery across replicas: two `serve` processes, A and B (own ports, own
data dirs, one Redis bus, CALLSTREAM_STT=acs), both on core 0. From core 1, 20 calls
stream to A's /media, each sending a `TranscriptionData` Final every 0.5 s (40 finals/s
in all); one subscriber on B's `WS /events` and one on A's record when each
transcript.final arrives. A final is matched by (callId, startMs): startMs is the
message's offset, unique per final, so redaction cannot disturb the match. Reported:
p50/p99 of send -> receive on B and on A, their difference, and how many finals reached
each. The same client against one `serve` with the memory bus gives the same-process
reference. One clock (this process) for send and receive. A third replica C, on the same
bus and core, has no subscriber: its CPU is what each further replica costs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import redis
from ingest import pct, proc_cpu_s  # bench/ is on sys.path when run as a script
from load_driver import FIXTURE, REPO, RunStats, build_frames, run_calls, settled_count
from procstat import core_busy_s
from websockets.asyncio.client import connect

CONFIGS = {
    # name: (bus, workers, cores: "server" = --server-core, "all" = every core)
    "memory": ("memory", 1, "server"),
    "redis-w1": ("redis", 1, "server"),
    "redis-w2": ("redis", 2, "server"),
    "redis-w2-spread": ("redis", 2, "all"),
}
AGENT, CUSTOMER = "8:acs:agent-7", "4:+15551234"


# ----------------------------------------------------------------------------- /proc


def tree_pids(pid: int) -> list[int]:
    """``pid`` and all its descendants (through /proc/PID/task/*/children)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except FileNotFoundError:
            continue
        for t in tasks:
            try:
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
            except FileNotFoundError:
                pass
    return out


def tree_cpu(pid: int) -> tuple[float, frozenset[int]]:
    """utime+stime summed over a process tree (seconds), and the pids it was read from."""
    total, seen = 0.0, set()
    for p in tree_pids(pid):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += proc_cpu_s(p)
            seen.add(p)
    return total, frozenset(seen)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cores_of(spec: str) -> set[int]:
    return {int(c) for c in spec.split(",")}


# ----------------------------------------------------------------------------- processes


class RedisProc:
    def __init__(self, core: int, workdir: Path) -> None:
        self.core, self.workdir, self.port = core, workdir, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        log = open(self.workdir / "redis.log", "ab")
        self.proc = subprocess.Popen(
            ["taskset", "-c", str(self.core), binary, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    "redis-server exited: " + (self.workdir / "redis.log").read_text()[-2000:]
                )
            with contextlib.suppress(redis.RedisError):
                if self.client().ping():
                    return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start in time")

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    def cpu(self) -> float:
        return proc_cpu_s(self.proc.pid) if self.proc else 0.0  # type: ignore[union-attr]

    def firehose_added(self) -> int:
        """Entries ever added to the firehose stream (0 if it does not exist yet)."""
        try:
            return int(self.client().xinfo_stream("callstream:events")["entries-added"])
        except redis.ResponseError:
            return 0

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class Server:
    """`callstream serve` (optionally `--workers N`) pinned with taskset, logging to a file."""

    def __init__(
        self, name: str, cores: str, port: int, workers: int, env: dict[str, str], workdir: Path
    ) -> None:
        self.name, self.cores, self.port, self.workers = name, cores, port, workers
        self.data_dir = workdir / f"data-{name}-{port}"
        self.log_path = workdir / f"server-{name}-{port}.log"
        self.env = (
            os.environ
            | {"CALLSTREAM_DATA_DIR": str(self.data_dir), "CALLSTREAM_PORT": str(port)}
            | env
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [sys.executable, "-m", "pipeline.cli.commands", "serve"]
        if self.workers > 1:
            cmd += ["--workers", str(self.workers)]
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            ["taskset", "-c", self.cores, *cmd],
            env=self.env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log_path.read_text()[-3000:]}")
            try:
                if len(scrape_workers(self.port, 1, tries=1)) >= 1:
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError(f"{self.name} not ready in time")
        while time.monotonic() < deadline:  # every worker up (each one answers /metrics)
            with contextlib.suppress(OSError):
                if len(scrape_workers(self.port, self.workers, tries=40)) >= self.workers:
                    return
            time.sleep(0.3)
        raise RuntimeError(f"{self.name}: not all {self.workers} workers answered in time")

    @property
    def pid(self) -> int:
        return self.proc.pid  # type: ignore[union-attr]

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(45)
            except subprocess.TimeoutExpired:
                for p in reversed(tree_pids(self.proc.pid)):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode

    def log_problems(self) -> list[str]:
        """Log lines at WARNING or above, tracebacks and stderr lines that are not INFO."""
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if '"level": "INFO"' in line or '"level": "DEBUG"' in line:
                continue
            out.append(line)
        return out


# ----------------------------------------------------------------------------- /metrics per worker

_METRIC = re.compile(r"^(callstream_[a-z_]+?)(?:_total)? (\S+)$", re.M)
_CREATED = re.compile(r"^callstream_\w+_created(?:\{[^}]*\})? (\S+)$", re.M)


def _scrape_once(port: int) -> tuple[str, dict[str, float]]:
    # urllib opens a new connection per request: a new source port, so the kernel's
    # SO_REUSEPORT hash may pick another worker each time.
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    created = _CREATED.findall(text)
    if not created:
        raise RuntimeError("no *_created series in /metrics: cannot tell the workers apart")
    return ",".join(created), {m: float(v) for m, v in _METRIC.findall(text)}


def scrape_workers(port: int, workers: int, tries: int = 200) -> dict[str, dict[str, float]]:
    """Each worker's unlabelled callstream counters, keyed by its `_created` timestamps;
    scrapes until ``workers`` distinct workers answered (at least 4 x workers scrapes when
    there is more than one, up to ``tries``)."""
    seen: dict[str, dict[str, float]] = {}
    for n in range(tries):
        key, values = _scrape_once(port)
        seen[key] = values
        if len(seen) >= workers and (workers == 1 or n + 1 >= 4 * workers):
            break
    return seen


def frames_received(port: int, workers: int) -> tuple[int, dict[str, dict[str, float]]]:
    per = scrape_workers(port, workers)
    if len(per) < workers:
        raise RuntimeError(f"saw {len(per)} of {workers} workers on /metrics")
    return int(sum(w.get("callstream_frames_received", 0) for w in per.values())), per


# ----------------------------------------------------------------------------- part 1: ingest


async def run_ingest(
    server: Server,
    rds: RedisProc | None,
    calls: int,
    meta: bytes,
    pairs: list[bytes],
    args: argparse.Namespace,
) -> dict:
    stats = RunStats()
    tag = uuid.uuid4().hex[:8]
    workers: dict[str, dict[str, float]] = {}  # each worker's counters, as of the last read

    async def frames() -> int:
        nonlocal workers
        n, workers = await asyncio.to_thread(frames_received, server.port, server.workers)
        return n

    before = await settled_count(frames)
    workers_before, workers = workers, {}
    all_cores = sorted(cores_of(server.cores) | {args.client_core, args.redis_core})

    def snapshot() -> dict:
        cpu, pids = tree_cpu(server.pid)
        t = os.times()
        return {
            "t": time.perf_counter(), "server": cpu, "pids": pids, "redis": rds.cpu() if rds else 0.0,
            "gen": t.user + t.system, "sent": stats.sent, "cores": {c: core_busy_s(c) for c in all_cores},
            "events": rds.firehose_added() if rds else 0,
        }  # fmt: skip

    run = await run_calls(
        server.port, calls, f"scale-{tag}-", stats, meta, pairs, warmup=args.warmup, duration=args.duration,
        ping_every=args.ping_interval, snapshot=snapshot, count=frames, since=before, poll=0.3,
    )  # fmt: skip
    s0, s1 = run.start, run.end
    backlog, closed_early, expected, handled = (
        run.backlog,
        run.closed_early,
        run.expected,
        run.handled,
    )
    workers_after = workers

    wall = s1["t"] - s0["t"]
    sent = s1["sent"] - s0["sent"]
    srv = s1["server"] - s0["server"]
    red = s1["redis"] - s0["redis"]
    gen = s1["gen"] - s0["gen"]
    srv_cores = cores_of(server.cores)
    busy = sum(s1["cores"][c][0] - s0["cores"][c][0] for c in srv_cores)
    steal = sum(s1["cores"][c][1] - s0["cores"][c][1] for c in srv_cores)
    mine = (
        srv
        + (red if args.redis_core in srv_cores else 0)
        + (gen if args.client_core in srv_cores else 0)
    )
    us = srv * 1e6 / sent if sent else float("nan")
    us_redis = red * 1e6 / sent if sent else float("nan")
    rtts = [r * 1000 for r in stats.rtts]
    late = [x * 1000 for x in stats.lateness]
    # Each worker's share of this run's media connections (workers keyed the same way).
    conns = [
        w.get("callstream_media_connections", 0)
        - workers_before.get(key, {}).get("callstream_media_connections", 0)
        for key, w in sorted(workers_after.items())
    ]
    split = "/".join(str(int(c)) for c in conns) if server.workers > 1 else "-"
    r = {
        "config": server.name, "calls": calls, "workers": server.workers, "server_cores": server.cores,
        "window_s": round(wall, 2), "frames_sent_window": sent, "frames_per_s": round(sent / wall, 1),
        "server_cpu_s": round(srv, 3), "server_cpu_util": round(srv / wall, 3),
        "redis_cpu_s": round(red, 3), "redis_cpu_util": round(red / wall, 3),
        "us_per_frame": round(us, 1), "redis_us_per_frame": round(us_redis, 2),
        "calls_per_core": round(1e6 / (us * 100), 1),
        "calls_per_core_with_redis": round(1e6 / ((us + us_redis) * 100), 1),
        "bus_events_per_s": round((s1["events"] - s0["events"]) / wall, 1),
        "ping_p50_ms": round(pct(rtts, 0.50), 3), "ping_p90_ms": round(pct(rtts, 0.90), 3),
        "ping_p99_ms": round(pct(rtts, 0.99), 3), "ping_max_ms": round(max(rtts), 3) if rtts else None,
        "pings": len(rtts), "gen_late_p99_ms": round(pct(late, 0.99), 3), "gen_cpu_util": round(gen / wall, 3),
        "other_on_server_cores": round((busy - mine) / wall, 3), "steal_on_server_cores": round(steal / wall, 3),
        "skipped_frames": stats.skipped, "client_backlog_bytes": backlog, "connections_closed_early": closed_early,
        "messages_sent_total": expected, "messages_handled_total": handled,
        "handled_ratio": round(handled / expected, 5) if handled is not None else None,
        "split": split, "worker_pids_changed": s0["pids"] != s1["pids"],
    }  # fmt: skip
    r["realtime"] = bool(
        stats.skipped == 0 and sent >= 0.99 * calls * 100 * wall and r["gen_late_p99_ms"] < 20
    )
    return r


HEADER = (
    f"{'config':<16} {'calls':>5} {'frames/s':>8} {'srv us/fr':>9} {'redis us':>8} {'calls/core':>10} "
    f"{'+redis':>7} {'srvCPU':>7} {'redisCPU':>8} {'ev/s':>6} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} "
    f"{'handled':>8} {'split':>7} {'late99':>7} {'genCPU':>6} {'rt':>3} {'other':>6} {'steal':>6}"
)


def fmt_row(r: dict) -> str:
    handled = r["handled_ratio"] if r["handled_ratio"] is not None else float("nan")
    return (
        f"{r['config']:<16} {r['calls']:>5} {r['frames_per_s']:>8.0f} {r['us_per_frame']:>9.1f} "
        f"{r['redis_us_per_frame']:>8.2f} {r['calls_per_core']:>10.1f} {r['calls_per_core_with_redis']:>7.1f} "
        f"{r['server_cpu_util'] * 100:>6.1f}% {r['redis_cpu_util'] * 100:>7.1f}% {r['bus_events_per_s']:>6.1f} "
        f"{r['ping_p50_ms']:>7.2f} {r['ping_p90_ms']:>7.2f} {r['ping_p99_ms']:>7.2f} {handled:>8.5f} "
        f"{r['split']:>7} {r['gen_late_p99_ms']:>7.2f} {r['gen_cpu_util'] * 100:>5.1f}% "
        f"{'yes' if r['realtime'] else 'NO':>3} {r['other_on_server_cores'] * 100:>5.1f}% "
        f"{r['steal_on_server_cores'] * 100:>5.1f}%"
    )


async def part_ingest(
    args: argparse.Namespace, rds: RedisProc, workdir: Path, problems: dict
) -> list[dict]:
    meta, pairs = build_frames(Path(args.fixture))
    loads = [int(x) for x in args.loads.split(",")]
    results = []
    print(
        f"\n## Part 1: ingest, warm-up {args.warmup} s, window {args.duration} s per load; generator and "
        f"redis-server on core {args.client_core}/{args.redis_core}",
        flush=True,
    )
    print(HEADER, flush=True)
    for name in args.configs.split(","):
        bus, workers, where = CONFIGS[name]
        cores = (
            str(args.server_core)
            if where == "server"
            else ",".join(str(c) for c in range(os.cpu_count() or 1))
        )
        env = {"CALLSTREAM_STT": "acs"}
        if bus == "redis":
            await asyncio.to_thread(rds.client().flushall)
            env["CALLSTREAM_BUS"] = rds.url
        server = Server(name, cores, args.port, workers, env, workdir)
        try:
            await asyncio.to_thread(server.start)
            for calls in loads:
                r = await run_ingest(
                    server, rds if bus == "redis" else None, calls, meta, pairs, args
                )
                results.append(r)
                print(fmt_row(r), flush=True)
        finally:
            code = await asyncio.to_thread(server.stop)
            problems[name] = (code, server.log_problems())
    return results


# ----------------------------------------------------------------------------- part 2: delivery


def final_message(text: str, participant: str, offset_ms: int) -> str:
    return json.dumps({
        "kind": "TranscriptionData",
        "transcriptionData": {
            "text": text, "format": "display", "confidence": 0.9, "offset": offset_ms * 10_000,
            "duration": 5_000_000, "words": [], "participantRawID": participant, "resultStatus": "Final",
        },
    })  # fmt: skip


def letters(n: int) -> str:
    """An index as letters (digits in a transcript may be redacted as numbers)."""
    s = ""
    while True:
        n, d = divmod(n, 26)
        s = "abcdefghijklmnopqrstuvwxyz"[d] + s
        if n == 0:
            return s


async def subscriber(port: int, prefix: str, got: dict[tuple[str, int], float], info: dict) -> None:
    async with connect(f"ws://127.0.0.1:{port}/events", max_size=None) as ws:
        info["open"] = True
        async for raw in ws:
            now = time.perf_counter()
            e = json.loads(raw)
            kind = e.get("type", "")
            if str(e.get("callId", "")).startswith(prefix):
                info["events"] = info.get("events", 0) + 1
            if kind == "transcript.final" and str(e.get("callId", "")).startswith(prefix):
                key = (e["callId"], int(e["startMs"]))
                if key in got:
                    info["duplicates"] = info.get("duplicates", 0) + 1
                else:
                    got[key] = now
                    if info["markers"].get(key, "") in e.get("text", ""):
                        info["markers_intact"] = info.get("markers_intact", 0) + 1
            elif "lag" in kind:
                info["lagged"] = info.get("lagged", 0) + 1


async def delivery_run(
    media_port: int,
    sub_ports: dict[str, int],
    cpu_of: dict[str, Callable[[], float]],
    args: argparse.Namespace,
) -> dict:
    """Finals to ``media_port``, subscribers on ``sub_ports``; CPU of ``cpu_of`` from the
    first final sent to the last one received (drain included)."""
    prefix = f"deliv-{uuid.uuid4().hex[:6]}-"
    sent: dict[tuple[str, int], float] = {}
    markers: dict[tuple[str, int], str] = {}
    got = {name: {} for name in sub_ports}
    infos = {name: {"markers": markers} for name in sub_ports}
    subs = [
        asyncio.create_task(subscriber(p, prefix, got[n], infos[n])) for n, p in sub_ports.items()
    ]
    deadline = time.monotonic() + 10
    while not all(i.get("open") for i in infos.values()):
        if time.monotonic() > deadline or any(t.done() for t in subs):
            raise RuntimeError(
                f"subscribers did not connect: {[t.exception() for t in subs if t.done()]}"
            )
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)  # subscriptions registered with the bus
    call_ids = [f"{prefix}{i}" for i in range(args.delivery_calls)]
    media = []
    for cid in call_ids:
        ws = await connect(
            f"ws://127.0.0.1:{media_port}/media",
            additional_headers={"x-ms-call-connection-id": cid},
        )
        await ws.send(
            json.dumps(
                {
                    "kind": "TranscriptionMetadata",
                    "transcriptionMetadata": {"locale": "en-us", "callConnectionId": cid},
                }
            )
        )
        media.append(ws)
    period = 1.0 / args.finals_per_s
    ticks = round(args.delivery_duration / period)
    lateness = []
    loop = asyncio.get_running_loop()
    base = loop.time() + 0.2
    n = 0
    cpu0 = {name: f() for name, f in cpu_of.items()}
    for k in range(ticks):
        for i, ws in enumerate(media):
            due = base + k * period + i * period / len(media)
            if (delay := due - loop.time()) > 0:
                await asyncio.sleep(delay)
            lateness.append(loop.time() - due)
            key = (call_ids[i], (k + 1) * 1000)
            markers[key] = f"zz{letters(n)}zz"
            text = f"thanks for holding the reference is {markers[key]} let me check that for you"
            msg = final_message(text, AGENT if k % 2 else CUSTOMER, (k + 1) * 1000)
            sent[key] = time.perf_counter()
            await ws.send(msg)
            n += 1
    wait_until = time.monotonic() + args.delivery_drain
    while time.monotonic() < wait_until and not all(len(g) >= len(sent) for g in got.values()):  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    cpu1 = {name: f() for name, f in cpu_of.items()}
    for ws in media:
        await ws.close()
    await asyncio.sleep(1.0)
    for t in subs:
        t.cancel()
    await asyncio.gather(*subs, return_exceptions=True)
    out: dict = {
        "sent": len(sent), "send_late_p99_ms": round(pct([x * 1000 for x in lateness], 0.99), 2),
        "cpu_ms_per_final": {name: round((cpu1[name] - cpu0[name]) * 1000 / len(sent), 3) for name in cpu_of},
    }  # fmt: skip
    for name, g in got.items():
        lat = [(g[k] - sent[k]) * 1000 for k in sent if k in g]
        info = infos[name]
        out[name] = {
            "received": len(lat), "missing": len(sent) - len(lat), "duplicates": info.get("duplicates", 0),
            "lagged_notices": info.get("lagged", 0), "markers_intact": info.get("markers_intact", 0),
            "events_per_final": round(info.get("events", 0) / len(sent), 2),
            "p50_ms": round(pct(lat, 0.5), 2), "p90_ms": round(pct(lat, 0.9), 2),
            "p99_ms": round(pct(lat, 0.99), 2), "max_ms": round(max(lat), 2) if lat else None,
            "mean_ms": round(statistics.fmean(lat), 2) if lat else None,
        }  # fmt: skip
    if "B" in got and "A" in got:
        diff = [(got["B"][k] - got["A"][k]) * 1000 for k in sent if k in got["A"] and k in got["B"]]
        out["B_minus_A"] = {
            "p50_ms": round(pct(diff, 0.5), 2), "p99_ms": round(pct(diff, 0.99), 2),
            "min_ms": round(min(diff), 2) if diff else None, "max_ms": round(max(diff), 2) if diff else None,
        }  # fmt: skip
    return out


def print_delivery(label: str, res: dict) -> None:
    for name in ("A", "B", "local"):
        if name not in res:
            continue
        d = res[name]
        print(
            f"{label:<34} {name:<5} {res['sent']:>5} {d['received']:>8} {d['missing']:>7} {d['p50_ms']:>7.2f} "
            f"{d['p90_ms']:>7.2f} {d['p99_ms']:>7.2f} {d['max_ms'] if d['max_ms'] is not None else float('nan'):>7.2f} "
            f"{d['duplicates']:>4} {d['lagged_notices']:>4} {d['markers_intact']:>7}",
            flush=True,
        )
    cpu = ", ".join(f"{k} {v:.2f}" for k, v in res["cpu_ms_per_final"].items())
    per = ", ".join(
        f"{k} {res[k]['events_per_final']:.2f}" for k in ("A", "B", "local") if k in res
    )
    print(
        f"# CPU ms per final sent (whole run, includes redaction and the store): {cpu}; events received per final: {per}"
    )
    if "B_minus_A" in res:
        x = res["B_minus_A"]
        print(
            f"# same final, B's arrival minus A's: p50 {x['p50_ms']:.2f} ms, p99 {x['p99_ms']:.2f} ms, "
            f"min {x['min_ms']:.2f}, max {x['max_ms']:.2f}; p50(B) - p50(A) = {res['B']['p50_ms'] - res['A']['p50_ms']:.2f} ms, "
            f"p99(B) - p99(A) = {res['B']['p99_ms'] - res['A']['p99_ms']:.2f} ms",
            flush=True,
        )


async def part_delivery(
    args: argparse.Namespace, rds: RedisProc, workdir: Path, problems: dict
) -> dict:
    print(
        f"\n## Part 2: delivery, {args.delivery_calls} calls x {args.finals_per_s:g} finals/s for "
        f"{args.delivery_duration:g} s to A's /media; servers on core {args.server_core}, client and redis on "
        f"core {args.client_core}/{args.redis_core}",
        flush=True,
    )
    print(f"{'run':<34} {'sub':<5} {'sent':>5} {'received':>8} {'missing':>7} {'p50 ms':>7} {'p90 ms':>7} "
          f"{'p99 ms':>7} {'max ms':>7} {'dup':>4} {'lag':>4} {'markers':>7}")  # fmt: skip
    out = {}
    await asyncio.to_thread(rds.client().flushall)
    env = {"CALLSTREAM_STT": "acs", "CALLSTREAM_BUS": rds.url}
    a = Server("A", str(args.server_core), args.port + 1, 1, env, workdir)
    b = Server("B", str(args.server_core), args.port + 2, 1, env, workdir)
    # C: a third replica with no subscriber at all (what each further replica costs).
    c = Server("C", str(args.server_core), args.port + 4, 1, env, workdir)
    try:
        await asyncio.gather(
            asyncio.to_thread(a.start), asyncio.to_thread(b.start), asyncio.to_thread(c.start)
        )
        cpu = {"A": lambda: tree_cpu(a.pid)[0], "B": lambda: tree_cpu(b.pid)[0], "C": lambda: tree_cpu(c.pid)[0],
               "redis": rds.cpu}  # fmt: skip
        out["redis"] = await delivery_run(a.port, {"A": a.port, "B": b.port}, cpu, args)
        print_delivery("redis bus: media on A, subs A + B", out["redis"])
    finally:
        for s in (a, b, c):
            problems[f"delivery-{s.name}"] = (await asyncio.to_thread(s.stop), s.log_problems())
    if not args.no_memory_reference:
        m = Server(
            "mem", str(args.server_core), args.port + 3, 1, {"CALLSTREAM_STT": "acs"}, workdir
        )
        try:
            await asyncio.to_thread(m.start)
            out["memory"] = await delivery_run(
                m.port, {"local": m.port}, {"server": lambda: tree_cpu(m.pid)[0]}, args
            )
            print_delivery("memory bus: one process (reference)", out["memory"])
        finally:
            problems["delivery-memory"] = (await asyncio.to_thread(m.stop), m.log_problems())
    return out


# ----------------------------------------------------------------------------- main


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "?"


async def amain(args: argparse.Namespace) -> int:
    os.sched_setaffinity(0, {args.client_core})
    workdir = Path(tempfile.mkdtemp(prefix="callstream-scale-"))
    rds = RedisProc(args.redis_core, workdir)
    problems: dict[str, tuple[int | None, list[str]]] = {}
    results: dict = {}
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}  nproc={os.cpu_count()}  cpu={cpu_model()!r}  "
        f"python {sys.version.split()[0]}  redis-server {args.redis_version}",
        flush=True,
    )
    t0 = time.monotonic()
    try:
        await asyncio.to_thread(rds.start)
        if not args.skip_ingest:
            results["ingest"] = await part_ingest(args, rds, workdir, problems)
        if not args.skip_delivery:
            results["delivery"] = await part_delivery(args, rds, workdir, problems)
    finally:
        rds.stop()
        print(
            f"\n# finished in {time.monotonic() - t0:.0f} s; server exit codes and log lines above INFO:"
        )
        for name, (code, lines) in problems.items():
            print(f"#   {name}: exit {code}, {len(lines)} lines")
            for line in lines[: args.show_log_lines]:
                print(f"#     {line[:300]}")
        if args.keep:
            print(f"# kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if "ingest" in results:
        print("\n# calls per core (server CPU only; with Redis's CPU added) at each load:")
        by: dict[str, list[dict]] = {}
        for r in results["ingest"]:
            by.setdefault(r["config"], []).append(r)
        ref = {r["calls"]: r["us_per_frame"] for r in by.get("memory", [])}
        for name, rows in by.items():
            parts = []
            for r in rows:
                vs = (
                    f", {r['us_per_frame'] / ref[r['calls']]:.2f}x memory"
                    if r["calls"] in ref
                    else ""
                )
                parts.append(
                    f"{r['calls']} calls: {r['calls_per_core']:.0f} ({r['calls_per_core_with_redis']:.0f}){vs}"
                )
            print(f"#   {name:<16} " + "; ".join(parts))
    if args.json:
        await asyncio.to_thread(
            Path(args.json).write_text, json.dumps(results, indent=1, default=str)
        )
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(
        description="callstream scale-out benchmark (see module docstring)"
    )
    ap.add_argument(
        "--loads", default="50,100", help="concurrent unmixed calls for part 1, comma-separated"
    )
    ap.add_argument(
        "--duration", type=float, default=8.0, help="part 1: measured window per load, seconds"
    )
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument(
        "--configs", default=",".join(CONFIGS), help=f"part 1 configurations: {', '.join(CONFIGS)}"
    )
    ap.add_argument(
        "--ping-interval", type=float, default=1.0, help="latency ping per connection, seconds"
    )
    ap.add_argument("--delivery-calls", type=int, default=20)
    ap.add_argument(
        "--finals-per-s", type=float, default=2.0, help="part 2: finals per second per call"
    )
    ap.add_argument(
        "--delivery-duration", type=float, default=12.0, help="part 2: seconds of sending"
    )
    ap.add_argument(
        "--delivery-drain", type=float, default=15.0, help="part 2: longest wait for stragglers"
    )
    ap.add_argument(
        "--no-memory-reference", action="store_true", help="part 2 without the memory-bus run"
    )
    ap.add_argument("--skip-ingest", action="store_true")
    ap.add_argument("--skip-delivery", action="store_true")
    ap.add_argument(
        "--port", type=int, default=18810, help="part 1 port; part 2 uses port+1..port+4"
    )
    ap.add_argument("--server-core", type=int, default=0, help="core of the pinned servers")
    ap.add_argument("--client-core", type=int, default=1)
    ap.add_argument("--redis-core", type=int, default=1)
    ap.add_argument("--fixture", default=str(FIXTURE))
    ap.add_argument("--show-log-lines", type=int, default=8)
    ap.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (logs, data dirs)"
    )
    ap.add_argument("--json", help="also write the raw results here")
    args = ap.parse_args()
    bad = [c for c in args.configs.split(",") if c not in CONFIGS]
    if bad:
        ap.error(f"unknown configs {bad}")
    version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True
    ).stdout.split()
    args.redis_version = next((v[2:] for v in version if v.startswith("v=")), "?")
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
