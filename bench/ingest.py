"""Ingest benchmark: server CPU per 20 ms frame, latency and frames handled, vs a naive floor.

Method (/work/shared/BENCHMARKING.md): the server under test is pinned to core 0
(`taskset -c 0`), this generator to core 1. For each load (N concurrent unmixed two-party
calls = N x 100 AudioData messages/s) it streams the fixture in real time, reads the
server's utime+stime from /proc/PID/stat before and after a steady window, and reports
server CPU us per frame, implied calls per core (1e6 / (us_per_frame x 100)), latency
and frames handled / frames sent. The same load is run against callstream
(CALLSTREAM_STT=acs: ingest + VAD + store + bus, no speech decoding) and against
bench/naive_server.py in the same session, and the ratio is printed.

Generator: a hand-rolled websocket client on raw asyncio transports. Every message is
pre-encoded once as a complete masked websocket frame (one frame pair per 20 ms of the
fixture: customer then agent, the fixture looped, timestamps reused), so sending a pair
is one `transport.write`. Calls are spread evenly over the 20 ms period (1 ms slots),
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
import base64
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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from procstat import CLK_TCK, core_busy_s  # noqa: E402  (bench/ is on sys.path when run as a script)

from pipeline.replay import audio_message, load_call_audio, metadata_message  # noqa: E402

FIXTURE = REPO / "tests" / "fixtures" / "support_call.wav"

MASK = b"\x5a\x17\xc3\x8e"
SLOTS = 20  # 1 ms slots in the 20 ms period
MAX_BACKLOG = 1 << 20  # per connection: beyond this the server is not reading; skip frames


# ----------------------------------------------------------------------------- websocket bits


def ws_frame(opcode: int, payload: bytes, mask: bytes = MASK) -> bytes:
    """A complete client->server frame (FIN set, masked as RFC 6455 requires)."""
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 1 << 16:
        head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    data = np.frombuffer(payload, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), n)
    return head + mask + data.tobytes()


class MediaClient(asyncio.Protocol):
    """One ACS media websocket: handshake, then raw pre-encoded writes; pings/pongs."""

    def __init__(self, host: str, port: int, call_id: str, stats: RunStats) -> None:
        self.request = (
            f"GET /media HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n"
            f"x-ms-call-connection-id: {call_id}\r\n\r\n"
        ).encode()
        self.stats = stats
        self.transport: asyncio.Transport | None = None
        self.open: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.buf = bytearray()
        self.handshaken = False
        self.closed = False
        self.pings: dict[int, float] = {}
        self.ping_seq = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.open.done():
            self.open.set_exception(ConnectionError(f"connection lost during handshake: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.handshaken:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.buf[:end]).split(b"\r\n", 1)[0]
            del self.buf[: end + 4]
            if b" 101 " not in status + b" ":
                self.open.set_exception(ConnectionError(status.decode(errors="replace")))
                return
            self.handshaken = True
            self.open.set_result(None)
        buf = self.buf
        while len(buf) >= 2:
            opcode, n = buf[0] & 0x0F, buf[1] & 0x7F
            off = 2
            if n == 126:
                if len(buf) < 4:
                    return
                n, off = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n, off = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < off + n:
                return
            payload = bytes(buf[off : off + n])
            del buf[: off + n]
            if opcode == 0x9:  # server keepalive ping: answer it
                self.transport.write(ws_frame(0xA, payload))  # type: ignore[union-attr]
            elif opcode == 0xA and len(payload) == 4:
                sent = self.pings.pop(int.from_bytes(payload, "big"), None)
                if sent is not None and self.stats.measuring:
                    now = time.perf_counter()
                    self.stats.rtts.append(now - sent)
                    self.stats.rtt_at.append(sent)
            elif opcode == 0x8:
                self.closed = True

    def ping(self) -> None:
        self.ping_seq += 1
        self.pings[self.ping_seq] = time.perf_counter()
        self.transport.write(ws_frame(0x9, self.ping_seq.to_bytes(4, "big")))  # type: ignore[union-attr]


# ----------------------------------------------------------------------------- measurement


@dataclass
class RunStats:
    measuring: bool = False
    rtts: list[float] = field(default_factory=list)
    rtt_at: list[float] = field(default_factory=list)
    lateness: list[float] = field(default_factory=list)
    sent: int = 0
    skipped: int = 0


def proc_cpu_s(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK




def http_get(url: str, timeout: float = 10.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - loopback only
        return r.read().decode()


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


class Target:
    def __init__(
        self, name: str, cmd: list[str], env: dict[str, str], port: int, counter_path: str
    ) -> None:
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
            cwd=REPO,
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


def build_frames(fixture: Path) -> tuple[bytes, list[bytes]]:
    audio = load_call_audio(fixture)
    if len(audio.tracks) != 2 or audio.rate != 16000:
        raise SystemExit("the ingest fixture must be a stereo 16 kHz WAV (unmixed two-party call)")
    fb = audio.frame_bytes
    t0 = time.time()
    pairs = []
    for i in range(audio.frames):
        ts = (
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t0 + i * 0.02))
            + f".{int((t0 * 1000 + i * 20) % 1000):03d}Z"
        )
        pair = b""
        for participant, pcm in audio.tracks:
            chunk = pcm[i * fb : (i + 1) * fb].ljust(fb, b"\0")
            pair += ws_frame(0x1, audio_message(chunk, participant, ts))
        pairs.append(pair)
    return ws_frame(0x1, metadata_message(audio.rate)), pairs


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
    loop = asyncio.get_running_loop()
    stats = RunStats()
    tag = uuid.uuid4().hex[:8]
    pid = target.proc.pid  # type: ignore[union-attr]
    before_count = -1
    for _ in range(100):  # a previous overloaded run may still be draining: wait for quiet
        count = await asyncio.to_thread(target.counter)
        if count == before_count:
            break
        before_count = count
        await asyncio.sleep(0.5)

    clients: list[MediaClient] = []
    for start in range(0, calls, 50):  # connect in batches
        batch = []
        for i in range(start, min(calls, start + 50)):
            c = MediaClient("127.0.0.1", target.port, f"bench-{tag}-{i}", stats)
            await loop.create_connection(lambda c=c: c, "127.0.0.1", target.port)
            batch.append(c)
        await asyncio.gather(*(c.open for c in batch))
        clients.extend(batch)
    for c in clients:
        c.transport.write(meta)  # type: ignore[union-attr]
    sent_meta = calls

    nframes = len(pairs)
    offsets = [(i * 97) % nframes for i in range(calls)]
    slots = [[i for i in range(calls) if i % SLOTS == s] for s in range(SLOTS)]
    ping_ticks = max(1, round(ping_every / 0.02))
    total_ticks = round((warmup + duration) / 0.02)
    warm_ticks = round(warmup / 0.02)
    cpu0 = cpu1 = 0.0
    t_start = t_end = 0.0
    sent_at_start = 0
    self0 = self1 = os.times()
    base = loop.time() + 0.05
    for k in range(total_ticks):
        if k == warm_ticks:
            cpu0, t_start, sent_at_start, self0 = (
                proc_cpu_s(pid),
                time.perf_counter(),
                stats.sent,
                os.times(),
            )
            core0 = core_busy_s(server_core)
            stats.measuring = True
        for s in range(SLOTS):
            due = base + k * 0.02 + s * (0.02 / SLOTS)
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if stats.measuring:
                stats.lateness.append(loop.time() - due)
            for i in slots[s]:
                c = clients[i]
                tr = c.transport
                if c.closed or tr is None or tr.is_closing():
                    continue
                if tr.get_write_buffer_size() > MAX_BACKLOG:
                    stats.skipped += 2
                    continue
                tr.write(pairs[(offsets[i] + k) % nframes])
                stats.sent += 2
                if (k + i) % ping_ticks == 0:
                    c.ping()
    cpu1, t_end, self1 = proc_cpu_s(pid), time.perf_counter(), os.times()
    core1 = core_busy_s(server_core)
    stats.measuring = False
    sent_window = stats.sent - sent_at_start
    backlog = sum(c.transport.get_write_buffer_size() for c in clients if c.transport is not None)

    # Drain: wait until the server's counter stops moving (or everything arrived). An
    # overloaded server may answer slowly; give up after ~20 s and report what it counted.
    expected = sent_meta + stats.sent
    handled: int | None = None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        try:
            now = await asyncio.to_thread(target.counter) - before_count
        except OSError:
            continue
        if now >= expected or (now == handled and backlog == 0):
            handled = now
            break
        handled = now
    for c in clients:
        if c.transport is not None and not c.transport.is_closing():
            c.transport.write(ws_frame(0x8, (1000).to_bytes(2, "big")))
    await asyncio.sleep(0.5)
    for c in clients:
        if c.transport is not None:
            c.transport.close()
    await asyncio.sleep(1.5)  # let the server end the calls before the next run

    wall = t_end - t_start
    if os.environ.get("BENCH_DEBUG"):
        worst = sorted(zip(stats.rtts, stats.rtt_at, strict=True), reverse=True)[:15]
        print(
            "# worst pings (ms, at s):",
            [(round(r * 1000, 1), round(a - t_start, 2)) for r, a in worst],
        )
    cpu = cpu1 - cpu0
    us_per_frame = cpu * 1e6 / sent_window if sent_window else float("nan")
    target_rate = calls * 100
    rtts_ms = [r * 1000 for r in stats.rtts]
    late_ms = [x * 1000 for x in stats.lateness]
    gen_cpu = (self1.user + self1.system) - (self0.user + self0.system)
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
        "other_on_server_core": round((core1[0] - core0[0] - cpu) / wall, 3),
        "steal_on_server_core": round((core1[1] - core0[1]) / wall, 3),
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
            "callstream", [py, "-m", "pipeline.cli", "serve"], cs_env, args.port, "/metrics"
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
        help="callstream, naive, and callstream:<uvicorn ws impl> (via bench/serve_variant.py)",
    )
    ap.add_argument(
        "--port", type=int, default=18780, help="callstream port; the naive server uses port+1"
    )
    ap.add_argument(
        "--ping-interval", type=float, default=1.0, help="latency ping per connection, seconds"
    )
    ap.add_argument("--server-core", type=int, default=0)
    ap.add_argument("--client-core", type=int, default=1)
    ap.add_argument("--fixture", default=str(FIXTURE))
    ap.add_argument("--json", help="also write the raw results here")
    return asyncio.run(amain(ap.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
