"""Ingest benchmark: server CPU per 20 ms frame, latency and frames handled, vs a naive floor.

Method (bench/README.md): the server under test is pinned to core 0
(`taskset -c 0`), this generator to core 1. For each load (N concurrent unmixed two-party
calls = N x 100 AudioData messages/s) it streams the fixture in real time, reads the
server's utime+stime from /proc/PID/stat before and after a steady window, and reports
server CPU us per frame, implied calls per core (1e6 / (us_per_frame x 100)), latency
and frames handled / frames sent. The same load is run against callstream
(CALLSTREAM_STT=acs: ingest + VAD + store + bus, no speech decoding) and against
bench/naive_server.py in the same session, and the ratio is printed.

Generator (bench/load_driver.py, which scale_out.py and soak.py share): a hand-rolled
websocket client on raw asyncio transports. Every message is pre-encoded once as a
complete masked websocket frame (one frame pair per 20 ms of the fixture: customer then
agent, the fixture looped, timestamps reused), so sending a pair is one `transport.write`. Calls are spread evenly over the 20 ms period (1 ms slots),
as independent ACS calls would be, and each call starts at a different place in the
fixture. Server pings are answered (uvicorn and websockets ping every 20 s).

Latency "frame sent -> frame handled": each media connection sends a websocket ping right
behind a frame pair, about once a second; the round trip is the time until the server's
event loop has read the frames ahead of it off the socket and parsed them (both servers
answer pings from the protocol layer, in order, when the bytes are parsed). It excludes
the app's own handling of the 2 frames just ahead of the ping (~0.1-0.3 ms), but
includes all queueing behind other calls' frames, which is what grows with load.
Frames handled: callstream's `callstream_frames_received` (GET /metrics) or the naive
server's count (GET /count), read before and after each run, vs messages sent.

    /tmp/venv/bin/python bench/ingest.py                      # 25,50,100,150,200,250 calls
    /tmp/venv/bin/python bench/ingest.py --loads 100 --duration 30 --targets callstream
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from load_driver import FIXTURE, REPO, RunStats, build_frames, run_calls, settled_count
from procstat import CLK_TCK, core_busy_s

# ----------------------------------------------------------------------------- measurement


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def http_get(url: str, timeout: float = 10.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


class Target:
    def __init__(
        self,
        name: str,
        cmd: list[str],
        env: dict[str, str],
        port: int,
        counter_path: str,
        cwd: Path = REPO,
    ) -> None:
        self.cwd = cwd
        self.name, self.cmd, self.env, self.port, self.counter_path = (
            name,
            cmd,
            env,
            port,
            counter_path,
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, core: int) -> None:
        self.proc = subprocess.Popen(
            ["taskset", "-c", str(core), *self.cmd],
            env=self.env,
            cwd=self.cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited: {self.proc.stdout.read().decode()[-2000:]}"
                )  # type: ignore[union-attr]
            try:
                http_get(f"http://127.0.0.1:{self.port}/readyz", 1.0)
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after 30 s")

    def stop(self) -> str:
        if self.proc is None or self.proc.poll() is not None:
            return ""
        self.proc.send_signal(signal.SIGINT)
        try:
            out, _ = self.proc.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        return out.decode(errors="replace")

    def counter(self) -> int:
        text = http_get(f"http://127.0.0.1:{self.port}{self.counter_path}")
        if self.counter_path == "/count":
            return int(text.strip())
        m = re.search(r"^callstream_frames_received(?:_total)? (\S+)$", text, re.M)
        if m is None:
            raise RuntimeError("callstream_frames_received not found in /metrics")
        return int(float(m.group(1)))


async def run_load(
    target: Target,
    calls: int,
    meta: bytes,
    pairs: list[bytes],
    warmup: float,
    duration: float,
    ping_every: float,
    server_core: int,
) -> dict:
    stats = RunStats()
    tag = uuid.uuid4().hex[:8]
    pid = target.proc.pid  # type: ignore[union-attr]

    async def counter() -> int:
        return await asyncio.to_thread(target.counter)

    before_count = await settled_count(counter)

    def snapshot() -> dict:
        return {"cpu": proc_cpu_s(pid), "t": time.perf_counter(), "sent": stats.sent, "self": os.times(),
                "core": core_busy_s(server_core)}  # fmt: skip

    run = await run_calls(
        target.port, calls, f"bench-{tag}-", stats, meta, pairs, warmup=warmup, duration=duration,
        ping_every=ping_every, snapshot=snapshot, count=counter, since=before_count, poll=0.2,
    )  # fmt: skip
    s0, s1 = run.start, run.end
    sent_window = stats.sent - s0["sent"]
    backlog, expected, handled = run.backlog, run.expected, run.handled

    wall = s1["t"] - s0["t"]
    if os.environ.get("BENCH_DEBUG"):
        worst = sorted(zip(stats.rtts, stats.rtt_at, strict=True), reverse=True)[:15]
        print(
            "# worst pings (ms, at s):",
            [(round(r * 1000, 1), round(a - s0["t"], 2)) for r, a in worst],
        )
    cpu = s1["cpu"] - s0["cpu"]
    us_per_frame = cpu * 1e6 / sent_window if sent_window else float("nan")
    target_rate = calls * 100
    rtts_ms = [r * 1000 for r in stats.rtts]
    late_ms = [x * 1000 for x in stats.lateness]
    gen_cpu = (s1["self"].user + s1["self"].system) - (s0["self"].user + s0["self"].system)
    result = {
        "target": target.name,
        "calls": calls,
        "window_s": round(wall, 2),
        "frames_sent_window": sent_window,
        "frames_per_s": round(sent_window / wall, 1),
        "target_frames_per_s": target_rate,
        "server_cpu_s": round(cpu, 3),
        "server_cpu_util": round(cpu / wall, 3),
        "us_per_frame": round(us_per_frame, 1),
        "calls_per_core": round(1e6 / (us_per_frame * 100), 1) if us_per_frame else None,
        "ping_p50_ms": round(pct(rtts_ms, 0.50), 3),
        "ping_p90_ms": round(pct(rtts_ms, 0.90), 3),
        "ping_p99_ms": round(pct(rtts_ms, 0.99), 3),
        "ping_max_ms": round(max(rtts_ms), 3) if rtts_ms else None,
        "pings": len(rtts_ms),
        "other_on_server_core": round((s1["core"][0] - s0["core"][0] - cpu) / wall, 3),
        "steal_on_server_core": round((s1["core"][1] - s0["core"][1]) / wall, 3),
        "gen_late_p99_ms": round(pct(late_ms, 0.99), 3),
        "gen_late_max_ms": round(max(late_ms), 3) if late_ms else None,
        "gen_cpu_util": round(gen_cpu / wall, 3),
        "skipped_frames": stats.skipped,
        "client_backlog_bytes": backlog,
        "messages_sent_total": expected,
        "messages_handled_total": handled,
        "handled_ratio": round(handled / expected, 5) if expected and handled is not None else None,
    }
    result["realtime"] = bool(
        stats.skipped == 0
        and sent_window >= 0.99 * target_rate * wall
        and result["gen_late_p99_ms"] < 20
    )
    result["ok"] = bool(
        result["realtime"] and result["ping_p99_ms"] < 5.0 and result["handled_ratio"] == 1.0
    )
    return result


def fmt_row(r: dict) -> str:
    return (
        f"{r['target']:<12.21} {r['calls']:>5} {r['frames_per_s']:>9.0f} {r['us_per_frame']:>8.1f} "
        f"{r['calls_per_core']:>9.1f} {r['server_cpu_util'] * 100:>6.1f}% {r['ping_p50_ms']:>7.2f} {r['ping_p90_ms']:>7.2f} "
        f"{r['ping_p99_ms']:>8.2f} {r['handled_ratio'] if r['handled_ratio'] is not None else float('nan'):>8.5f} {r['gen_late_p99_ms']:>7.2f} "
        f"{r['gen_cpu_util'] * 100:>5.1f}% {'yes' if r['realtime'] else 'NO':>4} {'yes' if r['ok'] else 'no':>4} "
        f"{r['other_on_server_core'] * 100:>5.1f}% {r['steal_on_server_core'] * 100:>5.1f}%"
    )


HEADER = (
    f"{'target':<12} {'calls':>5} {'frames/s':>9} {'us/frame':>8} {'calls/core':>9} {'srvCPU':>7} "
    f"{'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>8} {'handled':>8} {'late99':>7} {'genCPU':>6} {'rt':>4} {'ok':>4} "
    f"{'other0':>6} {'steal0':>6}"
)


def baseline_target(path: str, py: str, cs_env: dict[str, str], port: int) -> Target:
    """Another checkout of callstream (say, the commit before a change), served from its own
    tree with its own data dir, measured in the same run as this one."""
    base = Path(path).resolve()
    new_layout = (base / "pipeline" / "cli" / "commands.py").exists()
    return Target(
        "baseline",
        [py, "-m", "pipeline.cli.commands" if new_layout else "pipeline.cli", "serve"],
        cs_env
        | {
            "CALLSTREAM_PORT": str(port),
            "CALLSTREAM_DATA_DIR": tempfile.mkdtemp(prefix="callstream-bench-base-"),
            "PYTHONPATH": str(base),
        },
        port,
        "/metrics",
        cwd=base,
    )


async def amain(args: argparse.Namespace) -> int:
    os.sched_setaffinity(0, {args.client_core})
    meta, pairs = build_frames(Path(args.fixture))
    py = sys.executable
    data_dir = tempfile.mkdtemp(prefix="callstream-bench-")
    env = dict(os.environ)
    cs_env = env | {
        "CALLSTREAM_STT": "acs",
        "CALLSTREAM_DATA_DIR": data_dir,
        "CALLSTREAM_PORT": str(args.port),
    }
    targets = {
        "callstream": Target(
            "callstream",
            [py, "-m", "pipeline.cli.commands", "serve"],
            cs_env,
            args.port,
            "/metrics",
        ),
        "naive": Target(
            "naive",
            [py, str(REPO / "bench" / "naive_server.py"), "--port", str(args.port + 1)],
            env,
            args.port + 1,
            "/count",
        ),
    }
    for k, name in enumerate(n for n in args.targets.split(",") if n.startswith("callstream:")):
        ws_impl, port = name.split(":", 1)[1], args.port + 2 + k
        cmd = [py, str(REPO / "bench" / "serve_variant.py"), "--ws", ws_impl, "--port", str(port)]
        targets[name] = Target(name, cmd, cs_env | {"CALLSTREAM_PORT": str(port)}, port, "/metrics")
    if args.baseline:
        targets["baseline"] = baseline_target(args.baseline, py, cs_env, args.port + 9)
    chosen = [targets[n] for n in args.targets.split(",")]
    results = []
    try:
        for t in chosen:
            t.start(args.server_core)
        print(
            f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}  nproc={os.cpu_count()}  "
            f"server core {args.server_core}, generator core {args.client_core}; warm-up {args.warmup}s, "
            f"window {args.duration}s",
            flush=True,
        )
        print(HEADER, flush=True)
        for calls in [int(x) for x in args.loads.split(",")]:
            for t in chosen:
                r = await run_load(
                    t,
                    calls,
                    meta,
                    pairs,
                    args.warmup,
                    args.duration,
                    args.ping_interval,
                    args.server_core,
                )
                results.append(r)
                print(fmt_row(r), flush=True)
    finally:
        for t in chosen:
            out = t.stop()
            if t.name == "naive" and out.strip():
                print(f"# {out.strip().splitlines()[-1]}")
        shutil.rmtree(data_dir, ignore_errors=True)

    print("\n# callstream / naive (us per frame) at each load")
    by = {(r["target"], r["calls"]): r for r in results}
    for name in (t.name for t in chosen if t.name != "naive"):
        for calls in sorted({r["calls"] for r in results}):
            a, b = by.get((name, calls)), by.get(("naive", calls))
            if a and b:
                ratio = a["us_per_frame"] / b["us_per_frame"]
                print(
                    f"{name} {calls:>5} calls: {a['us_per_frame']:.1f} / {b['us_per_frame']:.1f} = {ratio:.2f}x"
                )
    for name in (t.name for t in chosen):
        good = [r["calls"] for r in results if r["target"] == name and r["ok"]]
        cpf = [
            r["us_per_frame"]
            for r in results
            if r["target"] == name and r["realtime"] and r["server_cpu_util"] < 0.9
        ]
        print(
            f"# {name}: most calls with real time, p99 < 5 ms and every frame handled: {max(good) if good else 'none'}; "
            f"median us/frame at unsaturated loads: {statistics.median(cpf) if cpf else float('nan'):.1f}"
        )
    if args.json:
        await asyncio.to_thread(Path(args.json).write_text, json.dumps(results, indent=1))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description="callstream ingest benchmark (see module docstring)")
    ap.add_argument(
        "--loads", default="25,50,100,150,200,250", help="concurrent unmixed calls, comma-separated"
    )
    ap.add_argument(
        "--duration", type=float, default=20.0, help="measured window per load, seconds"
    )
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument(
        "--targets",
        default="callstream,naive",
        help="callstream, naive, baseline (--baseline) and callstream:<uvicorn ws impl> "
        "(via bench/serve_variant.py)",
    )
    ap.add_argument(
        "--port", type=int, default=18780, help="callstream port; the naive server uses port+1"
    )
    ap.add_argument(
        "--ping-interval", type=float, default=1.0, help="latency ping per connection, seconds"
    )
    ap.add_argument(
        "--baseline",
        help="a checkout of another callstream commit: target 'baseline' serves from it",
    )
    ap.add_argument("--server-core", type=int, default=0)
    ap.add_argument("--client-core", type=int, default=1)
    ap.add_argument("--fixture", default=str(FIXTURE))
    ap.add_argument("--json", help="also write the raw results here")
    return asyncio.run(amain(ap.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
