"""Soak (issue 8): the most concurrent calls the machine sustains, held for 10 minutes.

    /tmp/venv/bin/python bench/soak.py                          # 150 calls, 10 one-minute rows
    /tmp/venv/bin/python bench/soak.py --calls 100 --minutes 1  # short version (CI-style rerun)
    /tmp/venv/bin/python bench/soak.py --minutes 2 --window 20  # 2 x 20 s rows, quick check

With one window the growth and p99 checks compare that window with itself (they pass
trivially); the short run checks the rest: every message handled, every final delivered,
the server back to no call afterwards. Exit status 1 when the verdict is FAIL.

Method (bench/README.md): `callstream serve` with `CALLSTREAM_STT=acs` (the
pipeline's own cost: ingest, VAD, redaction, store, bus; no speech decoding) and a
temporary data dir, pinned to core 0; this generator on core 1. The audio generator is
bench/ingest.py's, in bench/load_driver.py (raw asyncio websocket client, pre-encoded
masked frames, N unmixed two-party calls = N x 100 AudioData messages/s spread over 1 ms
slots, one websocket ping per connection about once a second for latency).

The event path is soaked too: every `--final-every` seconds each call also sends an ACS
`TranscriptionData` Final (spread evenly over the calls), which with `STT=acs` becomes a
`transcript.final` (after redaction, stored, published) plus its `sentiment`. One
subscriber on `WS /events` (the firehose) records when each final arrives; a final is
matched by (callId, startMs), startMs being the message's offset, unique per final of a
call, so redaction cannot disturb the match. Event latency = TranscriptionData sent ->
its transcript.final received, one clock (this process).

Per window (`--window`, default 60 s; `--minutes` windows after a `--warmup`):
messages sent (audio + finals) and handled (`callstream_frames_received` from /metrics,
delta over the window: in-flight messages make single windows differ by a few; the
total is checked after the drain), frame latency p50/p99 (ping method of ingest.py),
event latency p50/p99, server RSS (VmRSS of the server and any children) and open file
descriptors at the end of the window, server CPU us per message (utime+stime of the
process tree / messages sent: everything the server did, events included), server CPU
use, the generator's slot lateness p99, and the share of core 0 other processes used.

Verdicts at the end: every message handled (total handled == total sent, none skipped
by the generator, every final delivered, no `lagged`); memory growth from the end of
the first window to the end of the last < `--rss-bound-pct` (default 10%) of the first;
p99 (frame and event) of the last window / first window <= `--p99-ratio-bound` (2.0).
After the calls end it also checks that the server is back to no active call and to its
file-descriptor count from before the calls.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from ingest import pct
from load_driver import (
    FIXTURE,
    MediaClient,
    Pacer,
    RunStats,
    build_frames,
    close_calls,
    drained_count,
    open_calls,
    write_backlog,
)
from procstat import core_busy_s
from rawws import ws_frame
from scale_out import Server, cpu_model, final_message, letters, tree_cpu, tree_pids
from websockets.asyncio.client import connect

from pipeline.cli.replay import AGENT_ID, CUSTOMER_ID

FINAL_TEXTS = (
    "thanks for holding the reference is {m} let me check that for you",
    "okay so the parcel {m} was sent on the twelfth and should arrive by friday",
    "I can see the order {m} here on my screen is there anything else I can help with",
    "sure my name is on the account it is the one ending {m} thanks",
)


# ----------------------------------------------------------------------------- server probes

_METRIC_LINE = re.compile(r"^(callstream_[a-z_]+?)(?:_total)?(\{[^}]*\})? (\S+)$", re.M)


def scrape(port: int) -> dict[str, float]:
    """Every callstream series of /metrics: `frames_received`, `frames_dropped{reason="invalid"}` ..."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {
        name[len("callstream_") :] + (labels or ""): float(v)
        for name, labels, v in _METRIC_LINE.findall(text)
    }


def _status_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def rss_mb(pid: int) -> float:
    """VmRSS of ``pid`` and its descendants, MB (1e6 bytes)."""
    total = 0
    for p in tree_pids(pid):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += _status_kb(p, "VmRSS")
    return total * 1024 / 1e6


def open_fds(pid: int) -> int:
    total = 0
    for p in tree_pids(pid):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, PermissionError):
            total += len(os.listdir(f"/proc/{p}/fd"))
    return total


def threads(pid: int) -> int:
    return sum(_status_kb(p, "Threads") for p in tree_pids(pid))


def start_server(workdir: Path, port: int, core: int, env: dict[str, str] | None = None) -> Server:
    workdir.mkdir(parents=True, exist_ok=True)
    server = Server("soak", str(core), port, 1, {"CALLSTREAM_STT": "acs", **(env or {})}, workdir)
    server.start()
    return server


# ----------------------------------------------------------------------------- the load


@dataclass
class Window(RunStats):
    """One measured window (a RunStats, so that MediaClient and Pacer count into it)."""

    measuring: bool = True
    finals_sent: int = 0
    event_lat: list[float] = field(default_factory=list)


def final_frame(call_id: str, k: int, start_ms: int) -> bytes:
    text = FINAL_TEXTS[k % len(FINAL_TEXTS)].format(m=f"zz{letters(k)}zz")
    return ws_frame(0x1, final_message(text, AGENT_ID if k % 2 else CUSTOMER_ID, start_ms).encode())


class CallLoad:
    """N unmixed calls streaming the fixture in real time (bench/load_driver.py's generator),
    each also sending a TranscriptionData Final every ``final_every`` s, and one firehose
    subscriber timing the finals. Windows are switched with ``new_window``."""

    def __init__(
        self,
        port: int,
        calls: int,
        meta: bytes,
        pairs: list[bytes],
        final_every: float,
        ping_every: float = 1.0,
    ) -> None:
        self.port, self.calls, self.meta, self.pairs = port, calls, meta, pairs
        self.final_every, self.ping_every = final_every, ping_every
        self.prefix = f"soak-{uuid.uuid4().hex[:6]}-"
        self.window = Window()
        self.clients: list[MediaClient] = []
        self.sent_meta = self.sent_finals = 0
        self._closed_windows = RunStats()  # audio sent and skipped before this window
        self._pacer: Pacer | None = None
        self.final_sent_at: dict[tuple[str, int], tuple[float, Window]] = {}
        self.final_got: set[tuple[str, int]] = set()
        self.duplicates = self.lagged = self.other_events = 0
        self.sub_ready = asyncio.Event()
        self.stop = False
        self._sub_task: asyncio.Task | None = None

    @property
    def sent_audio(self) -> int:
        return self._closed_windows.sent + self.window.sent

    @property
    def skipped(self) -> int:
        return self._closed_windows.skipped + self.window.skipped

    @property
    def sent_total(self) -> int:
        return self.sent_meta + self.sent_audio + self.sent_finals

    def new_window(self) -> Window:
        old, self.window = self.window, Window()
        self._closed_windows.sent += old.sent
        self._closed_windows.skipped += old.skipped
        for c in self.clients:
            c.stats = self.window
        if self._pacer is not None:
            self._pacer.stats = self.window
        return old

    async def _subscribe(self) -> None:
        async with connect(
            f"ws://127.0.0.1:{self.port}/events", max_size=None, max_queue=None
        ) as ws:
            self.sub_ready.set()
            async for raw in ws:
                now = time.perf_counter()
                e = json.loads(raw)
                kind, cid = e.get("type", ""), str(e.get("callId", ""))
                if not cid.startswith(self.prefix):
                    continue
                if kind == "transcript.final":
                    key = (cid, int(e["startMs"]))
                    sent = self.final_sent_at.get(key)
                    if key in self.final_got:
                        self.duplicates += 1
                    elif sent is not None:
                        self.final_got.add(key)
                        sent[1].event_lat.append(now - sent[0])
                elif kind == "lagged":
                    self.lagged += 1
                else:
                    self.other_events += 1

    async def start_subscriber(self) -> None:
        self._sub_task = asyncio.create_task(self._subscribe())
        done, _ = await asyncio.wait(
            {self._sub_task, asyncio.create_task(self.sub_ready.wait())}, timeout=10
        )
        if self._sub_task in done or not self.sub_ready.is_set():
            raise RuntimeError(
                f"subscriber did not connect: {self._sub_task.exception() if self._sub_task.done() else 'timeout'}"
            )

    async def connect(self) -> None:
        self.clients = await open_calls(self.port, self.calls, self.prefix, self.window, self.meta)
        self.sent_meta += len(self.clients)

    async def run(self) -> None:
        """Stream until ``self.stop`` (checked every 20 ms tick)."""
        calls = self.calls
        final_ticks = max(1, round(self.final_every / 0.02)) if self.final_every > 0 else 0
        final_phase = [i * final_ticks // calls if final_ticks else 0 for i in range(calls)]
        finals_of = [0] * calls

        def send_final(i: int, k: int, tr: asyncio.Transport) -> None:
            if (k + final_phase[i]) % final_ticks == final_ticks - 1:
                start_ms = (k + 1) * 20  # unique per final of this call
                tr.write(final_frame(self._cid(i), finals_of[i], start_ms))
                self.final_sent_at[(self._cid(i), start_ms)] = (time.perf_counter(), self.window)
                finals_of[i] += 1
                self.sent_finals += 1
                self.window.finals_sent += 1

        pacer = Pacer(
            self.clients,
            self.pairs,
            self.window,
            self.ping_every,
            send_final if final_ticks else None,
        )
        self._pacer = pacer
        k = 0
        while not self.stop:
            await pacer.tick(k)
            k += 1

    def _cid(self, i: int) -> str:
        return f"{self.prefix}{i}"

    def backlog(self) -> int:
        return write_backlog(self.clients)

    async def close(self) -> None:
        await close_calls(self.clients)

    async def stop_subscriber(self) -> None:
        if self._sub_task is not None:
            self._sub_task.cancel()
            await asyncio.gather(self._sub_task, return_exceptions=True)


async def wait_handled(
    port: int, base: float, expected: int, load: CallLoad, timeout: float = 30.0
) -> int:
    """Wait until the server counted ``expected`` messages beyond ``base`` (or its count
    stops moving with nothing left in our buffers), and the finals sent have arrived."""

    async def frames() -> float:
        return (await asyncio.to_thread(scrape, port))["frames_received"]

    def finals_in() -> bool:
        return len(load.final_got) >= len(load.final_sent_at)

    handled = await drained_count(
        frames, base, expected, load.backlog, poll=0.25, timeout=timeout, arrived=finals_in
    )
    return -1 if handled is None else handled


# ----------------------------------------------------------------------------- reporting


def ms(values: list[float], q: float) -> float:
    return round(pct(values, q) * 1000, 2) if values else float("nan")


def window_row(n: int, w: Window, wall: float, handled: int, cpu: float, other0: float, steal0: float,
               rss: float, fds: int, sent_msgs: int) -> dict:  # fmt: skip
    return {
        "window": n, "wall_s": round(wall, 1), "sent": sent_msgs, "handled": handled,
        "audio_frames": w.sent, "finals_sent": w.finals_sent, "finals_received": len(w.event_lat),
        "skipped": w.skipped, "frame_p50_ms": ms(w.rtts, 0.5), "frame_p99_ms": ms(w.rtts, 0.99),
        "frame_max_ms": ms(w.rtts, 1.0), "pings": len(w.rtts),
        "event_p50_ms": ms(w.event_lat, 0.5), "event_p99_ms": ms(w.event_lat, 0.99), "event_max_ms": ms(w.event_lat, 1.0),
        "rss_mb": round(rss, 1), "fds": fds, "us_per_msg": round(cpu * 1e6 / sent_msgs, 1) if sent_msgs else None,
        "server_cpu": round(cpu / wall, 3), "gen_late_p99_ms": ms(w.lateness, 0.99),
        "other0": round(other0 / wall, 3), "steal0": round(steal0 / wall, 3),
    }  # fmt: skip


def gc_full_collections(a: dict[str, float], b: dict[str, float]) -> dict:
    """Full (generation 2) collections between two scrapes, from callstream_gc_pause_seconds:
    how many, and their total pause (they stall every call on the replica)."""
    key = 'gc_pause_seconds_{}{{generation="2"}}'
    n = b.get(key.format("count"), 0.0) - a.get(key.format("count"), 0.0)
    total = b.get(key.format("sum"), 0.0) - a.get(key.format("sum"), 0.0)
    return {"gc2_n": int(n), "gc2_ms": round(total * 1000, 1)}


HEADER = (
    f"{'win':>3} {'sent':>7} {'handled':>7} {'fr p50':>6} {'fr p99':>6} {'fr max':>7} {'ev p50':>6} {'ev p99':>6} "
    f"{'ev max':>7} {'finals':>9} {'RSS MB':>7} {'fds':>4} {'us/msg':>6} {'srvCPU':>6} {'late99':>6} {'other0':>6} "
    f"{'gc2 n/ms':>9}"
)


def fmt_row(r: dict) -> str:
    return (
        f"{r['window']:>3} {r['sent']:>7} {r['handled']:>7} {r['frame_p50_ms']:>6.2f} {r['frame_p99_ms']:>6.2f} "
        f"{r['frame_max_ms']:>7.2f} {r['event_p50_ms']:>6.2f} {r['event_p99_ms']:>6.2f} {r['event_max_ms']:>7.2f} "
        f"{r['finals_received']:>4}/{r['finals_sent']:<4} {r['rss_mb']:>7.1f} {r['fds']:>4} "
        f"{r['us_per_msg'] if r['us_per_msg'] is not None else float('nan'):>6.1f} {r['server_cpu'] * 100:>5.1f}% "
        f"{r['gen_late_p99_ms']:>6.2f} {r['other0'] * 100:>5.1f}% {r.get('gc2_n', 0):>3}/{r.get('gc2_ms', 0):<5.0f}"
    )


# ----------------------------------------------------------------------------- main


async def soak(args: argparse.Namespace) -> dict:
    os.sched_setaffinity(0, {args.client_core})
    meta, pairs = build_frames(Path(args.fixture))
    workdir = Path(tempfile.mkdtemp(prefix="callstream-soak-"))
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    print(
        f"# {started}  nproc={os.cpu_count()}  cpu={cpu_model()!r}  python {sys.version.split()[0]}; "
        f"{args.calls} unmixed calls, a final every {args.final_every:g} s per call, {args.minutes} x {args.window:g} s "
        f"windows after {args.warmup:g} s warm-up; server on core {args.server_core}, generator on core {args.client_core}",
        flush=True,
    )
    server = await asyncio.to_thread(start_server, workdir, args.port, args.server_core)
    pid, port = server.pid, server.port
    out: dict = {
        "started": started,
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "args": vars(args),
        "rows": [],
    }
    load = CallLoad(port, args.calls, meta, pairs, args.final_every)
    runner: asyncio.Task | None = None
    try:
        m0 = await asyncio.to_thread(scrape, port)
        idle = {"rss_mb": round(rss_mb(pid), 1), "fds": open_fds(pid), "threads": threads(pid)}
        out["idle"] = idle
        await load.start_subscriber()
        await load.connect()
        runner = asyncio.create_task(load.run())
        await asyncio.sleep(args.warmup)
        load.new_window()
        loop = asyncio.get_running_loop()

        def snap() -> dict:
            return {"t": time.perf_counter(), "cpu": tree_cpu(pid)[0], "core": core_busy_s(args.server_core),
                    "sent": load.sent_total}  # fmt: skip

        s0 = await asyncio.to_thread(snap)
        g0 = await asyncio.to_thread(scrape, port)
        rows = []
        print(HEADER, flush=True)
        t_next = loop.time() + args.window
        for n in range(1, args.minutes + 1):
            await asyncio.sleep(max(0.0, t_next - loop.time()))
            t_next += args.window
            w = load.new_window()
            s1 = await asyncio.to_thread(snap)
            g1 = await asyncio.to_thread(scrape, port)
            rss, fds = rss_mb(pid), open_fds(pid)
            cpu = s1["cpu"] - s0["cpu"]
            other0 = (s1["core"][0] - s0["core"][0]) - cpu
            r = window_row(n, w, s1["t"] - s0["t"], int(g1["frames_received"] - g0["frames_received"]), cpu, other0,
                           s1["core"][1] - s0["core"][1], rss, fds, s1["sent"] - s0["sent"])  # fmt: skip
            r |= gc_full_collections(g0, g1)
            rows.append(r)
            print(fmt_row(r), flush=True)
            s0, g0 = s1, g1
        load.stop = True
        await runner
        runner = None
        expected = load.sent_total
        handled = await wait_handled(port, m0["frames_received"], expected, load)
        m1 = await asyncio.to_thread(scrape, port)
        rss_loaded = rss_mb(pid)
        await load.close()
        # the calls end (clean close): wait for the server to have none
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            m2 = await asyncio.to_thread(scrape, port)
            if (
                m2.get("active_calls", 0) == 0
                and m2.get("calls_ended", 0) - m0.get("calls_ended", 0) >= args.calls
            ):
                break
        await asyncio.sleep(1.0)
        m2 = await asyncio.to_thread(scrape, port)
        after = {"rss_mb": round(rss_mb(pid), 1), "fds": open_fds(pid), "threads": threads(pid),
                 "active_calls": m2.get("active_calls"), "calls_ended": int(m2.get("calls_ended", 0) - m0.get("calls_ended", 0))}  # fmt: skip
        await load.stop_subscriber()
        await asyncio.sleep(0.5)
        after["fds_without_subscriber"] = open_fds(pid)
    finally:
        load.stop = True
        if runner is not None:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        code = await asyncio.to_thread(server.stop)
        problems = server.log_problems()
        if args.keep:
            print(f"# kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    first, last = rows[0], rows[-1]
    growth = last["rss_mb"] - first["rss_mb"]
    growth_pct = 100 * growth / first["rss_mb"]
    slope = None
    if len(rows) >= 3:  # MB per window over windows 2..N (least squares)
        xs, ys = [r["window"] for r in rows[1:]], [r["rss_mb"] for r in rows[1:]]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
            (x - mx) ** 2 for x in xs
        )
    malformed = m1.get("frames_malformed", 0) - m0.get("frames_malformed", 0)
    v = {
        "messages_sent": expected, "messages_handled": handled, "skipped": load.skipped,
        "finals_sent": len(load.final_sent_at), "finals_received": len(load.final_got),
        "finals_duplicated": load.duplicates, "lagged_notices": load.lagged,
        "malformed": int(malformed), "every_message_handled": bool(handled == expected and load.skipped == 0),
        "every_final_delivered": bool(len(load.final_got) == len(load.final_sent_at) and load.lagged == 0),
        "rss_first_mb": first["rss_mb"], "rss_last_mb": last["rss_mb"], "rss_growth_mb": round(growth, 1),
        "rss_growth_pct": round(growth_pct, 1), "rss_bound_pct": args.rss_bound_pct,
        "rss_slope_mb_per_window": round(slope, 2) if slope is not None else None,
        "memory_ok": bool(growth_pct < args.rss_bound_pct),
        "frame_p99_ratio": round(last["frame_p99_ms"] / first["frame_p99_ms"], 2),
        "event_p99_ratio": round(last["event_p99_ms"] / first["event_p99_ms"], 2),
        "p99_ratio_bound": args.p99_ratio_bound,
        "rss_loaded_end_mb": round(rss_loaded, 1),
        "idle": idle, "after_calls_ended": after,
        "server_exit": code, "server_log_problems": len(problems),
    }  # fmt: skip
    v["p99_stable"] = bool(
        v["frame_p99_ratio"] <= args.p99_ratio_bound
        and v["event_p99_ratio"] <= args.p99_ratio_bound
    )
    v["verdict"] = (
        "PASS"
        if v["every_message_handled"]
        and v["every_final_delivered"]
        and v["memory_ok"]
        and v["p99_stable"]
        else "FAIL"
    )
    out["rows"], out["verdicts"], out["log_problems"] = rows, v, problems[:50]
    print(
        f"\n# every message handled: {'yes' if v['every_message_handled'] else 'NO'} "
        f"({handled} of {expected}: {load.sent_meta} metadata + {load.sent_audio} audio + {load.sent_finals} finals; "
        f"{load.skipped} skipped by the generator; {v['malformed']} counted malformed)"
    )
    print(
        f"# every final delivered: {'yes' if v['every_final_delivered'] else 'NO'} ({len(load.final_got)} of "
        f"{len(load.final_sent_at)} to the firehose subscriber; {load.duplicates} duplicates, {load.lagged} lagged notices)"
    )
    print(
        f"# memory: RSS {first['rss_mb']:.1f} MB at the end of window 1 -> {last['rss_mb']:.1f} MB at the end of window "
        f"{last['window']}: {growth:+.1f} MB ({growth_pct:+.1f}%), bound < {args.rss_bound_pct:g}%: "
        f"{'PASS' if v['memory_ok'] else 'FAIL'}"
        + (
            f"; slope over windows 2..{last['window']}: {slope:+.2f} MB/window"
            if slope is not None
            else ""
        )
    )
    print(
        f"# p99 last/first window: frames {last['frame_p99_ms']:.2f}/{first['frame_p99_ms']:.2f} ms = "
        f"{v['frame_p99_ratio']:.2f}x, events {last['event_p99_ms']:.2f}/{first['event_p99_ms']:.2f} ms = "
        f"{v['event_p99_ratio']:.2f}x (bound <= {args.p99_ratio_bound:g}x): {'PASS' if v['p99_stable'] else 'FAIL'}"
    )
    print(
        f"# server idle before the calls: RSS {idle['rss_mb']} MB, {idle['fds']} fds, {idle['threads']} threads; "
        f"after the calls ended: RSS {after['rss_mb']} MB, {after['fds']} fds ({after['fds_without_subscriber']} "
        f"without the subscriber), {after['threads']} threads, active calls {after['active_calls']}, "
        f"calls ended {after['calls_ended']} of {args.calls}"
    )
    print(f"# server exit {code}; {len(problems)} log lines above INFO")
    for line in problems[:8]:
        print(f"#   {line[:300]}")
    print(f"# verdict: {v['verdict']}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description="callstream soak benchmark (see module docstring)")
    ap.add_argument(
        "--calls", type=int, default=150, help="concurrent unmixed calls (100 messages/s each)"
    )
    ap.add_argument("--minutes", type=int, default=10, help="number of measured windows")
    ap.add_argument("--window", type=float, default=60.0, help="seconds per window (a 'minute')")
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument(
        "--final-every",
        type=float,
        default=5.0,
        help="a TranscriptionData Final per call every N s (0: none)",
    )
    ap.add_argument("--rss-bound-pct", type=float, default=10.0)
    ap.add_argument("--p99-ratio-bound", type=float, default=2.0)
    ap.add_argument("--port", type=int, default=18830)
    ap.add_argument("--server-core", type=int, default=0)
    ap.add_argument("--client-core", type=int, default=1)
    ap.add_argument("--fixture", default=str(FIXTURE))
    ap.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (server log, data dir)"
    )
    ap.add_argument("--json", help="also write the raw results here")
    args = ap.parse_args()
    out = asyncio.run(soak(args))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    return 0 if out["verdicts"]["verdict"] == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
