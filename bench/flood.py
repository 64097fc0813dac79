"""Bad input at scale (issue 8): a malformed-frame flood, oversized messages, idle
connections and a subscriber that never reads, each against `callstream serve`.

    /tmp/venv/bin/python bench/flood.py                               # every case, ~10 minutes
    /tmp/venv/bin/python bench/flood.py --cases flood --calls 50 --phase 30 --cycles 2
    /tmp/venv/bin/python bench/flood.py --cases idle --idle-ws 500 --idle-observe 150
    /tmp/venv/bin/python bench/flood.py --cases slowsub --slow-subs 5 --slow-observe 150

Each case starts its own `callstream serve` (`CALLSTREAM_STT=acs`, a temporary data dir)
pinned to core 0; this script runs on core 1. Normal calls are bench/soak.py's CallLoad
(bench/load_driver.py's generator: N unmixed calls in real time, a websocket ping per
connection about once a second for "frame sent -> frame read by the server", plus a
TranscriptionData Final every `--final-every` s per call timed to its transcript.final
on one `WS /events` firehose subscriber).

flood: N calls for `--phase` s without flood, then the same calls plus ONE connection
  (a separate process on core 1, `nice 10` so that it does not take the generator's time)
  writing malformed messages as fast as the server takes them for `--phase` s (then it
  waits until the server has read everything it wrote and closes), then `--phase` s
  without flood again (`--cycles` repeats flood / no flood). The flood messages: not JSON (text and binary), wrong kind or
  shape, bad base64, well-formed audio before any AudioMetadata, wrong sizes (odd, empty,
  over the 10-frame cap) and an unsupported AudioMetadata; never a valid message (the
  connection never sends a valid AudioMetadata, so the server refuses its audio at the
  first check, "before metadata", whatever its size). Each is checked with
  `models.acs.decode_message` before the run. Per phase: the normal calls' frame and
  event latency, the flood messages the server took in (`callstream_frames_malformed`),
  drops by reason, server CPU, and whether every normal message was handled
  (frames_received - frames_malformed == normal messages sent).
oversized: with N calls streaming, connections that send a valid AudioMetadata, then a
  message over the server's 1 MiB `ws_max_size` (a 1.5 MiB text frame, 3 x 512 KiB
  fragments, a 1.5 MiB binary frame; and, for comparison, a small text frame that is not
  UTF-8): the close code they get and how fast, `callstream_frames_dropped{reason="message_too_large"}`, and the other
  calls' latency in that window against the window before.
idle: no calls; groups of connections that send nothing: `/media` websockets that
  answer pings (`--idle-ws`), `/media` websockets that never answer pings, raw TCP
  connections that never send a byte, and connections that stop mid-way through their
  HTTP request. RSS and fds per connection; which ones the server closes, and when,
  over `--idle-observe` s (`CALLSTREAM_MEDIA_IDLE_TIMEOUT_S` can be set with `--media-idle`).
slowsub: N calls with a final every `--slow-final-every` s each (250 finals/s by default,
  so that a stalled reader's kernel socket buffers fill within the server's 20 + 20 s
  keepalive), one subscriber reading the firehose; `--slow-control` s of that load alone
  (the RSS trend without slow subscribers), then `--slow-subs` subscribers on
  `WS /events` that never read (reading paused after the handshake, 4 KiB receive
  buffer) and one that stalls `--slow-stall` s and then reads. Over `--slow-observe` s:
  RSS, fds, `callstream_subscribers`, `callstream_subscriber_queue_depth_max`,
  `callstream_subscriber_lag_notices`, and the never-readers' server-side sockets (state
  and send queue, /proc/net/tcp). Then the never-readers read for `--slow-read` s: what
  they get (events, lagged notices, close code).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from load_driver import FIXTURE, build_frames
from procstat import core_busy_s
from rawws import WsClient, ws_frame
from scale_out import cpu_model, tree_cpu
from soak import CallLoad, Window, ms, open_fds, rss_mb, scrape, start_server, wait_handled

from models.acs import AudioData, AudioMetadata, MalformedFrame, decode_message
from pipeline.cli.replay import CUSTOMER_ID, audio_message

# ----------------------------------------------------------------------------- flood messages


def _audio(data: bytes | str) -> bytes:
    b64 = data if isinstance(data, str) else base64.b64encode(data).decode()
    return json.dumps(
        {
            "kind": "AudioData",
            "audioData": {
                "timestamp": "2026-01-01T00:00:00.000Z",
                "participantRawID": CUSTOMER_ID,
                "data": b64,
                "silent": False,
            },
        }  # fmt: skip
    ).encode()


def flood_messages(mix: str = "mixed") -> list[tuple[str, int, bytes]]:
    """(category, opcode, payload): every one refused by the server. ``small``: only the
    shortest ones (the most messages per byte read)."""
    if mix == "small":
        return [
            ("not_json", 0x1, b"not json"),
            ("not_json", 0x2, b"\x00\x01\x02"),
            ("wrong_kind", 0x1, b'{"kind":42}'),
            ("wrong_kind", 0x1, b"[1,2,3]"),
            ("bad_base64", 0x1, b'{"kind":"AudioData","audioData":{"data":"!"}}'),
        ]
    pcm = (bytes(range(256)) * 60)[:12000]
    return [
        ("not_json", 0x1, b"this is not json"),
        (
            "not_json",
            0x1,
            b'{"kind":"AudioData","audioData":{"data":"' + b"QUFB" * 200,
        ),  # cut short
        ("not_json", 0x2, bytes((i * 37) & 0xFF for i in range(900))),  # binary garbage
        ("wrong_kind", 0x1, b'{"kind":42,"audioData":{}}'),
        ("wrong_kind", 0x1, b"[1,2,3]"),
        (
            "wrong_kind",
            0x1,
            json.dumps({"kind": "AudioData", "transcriptionData": {"text": "hello"}}).encode(),
        ),
        ("wrong_kind", 0x1, b'{"kind":"AudioMetadata","audioMetadata":"16000"}'),
        ("bad_base64", 0x1, _audio("!!!!" * 160)),
        ("bad_base64", 0x1, _audio("QUF" + "A" * 850)),  # bad padding
        ("before_metadata", 0x1, audio_message(pcm[:640], CUSTOMER_ID, "2026-01-01T00:00:00.000Z")),
        ("wrong_size", 0x1, _audio(pcm[:641])),  # odd
        ("wrong_size", 0x1, _audio(b"")),  # empty
        ("wrong_size", 0x1, _audio(pcm[:12000])),  # over 10 frames of 24 kHz
        (
            "wrong_size",
            0x1,
            json.dumps(
                {
                    "kind": "AudioMetadata",
                    "audioMetadata": {"encoding": "PCM", "sampleRate": 8000, "channels": 2},
                }
            ).encode(),
        ),  # fmt: skip
    ]


def check_flood_messages(msgs: list[tuple[str, int, bytes]]) -> None:
    """Decode-level categories must not decode; session-level ones must decode to what
    the session then refuses (audio with no valid metadata, an unsupported format)."""
    for cat, _op, raw in msgs:
        try:
            msg = decode_message(raw)
        except MalformedFrame:
            if cat in ("before_metadata",):
                raise SystemExit(f"flood message {cat} does not decode") from None
            continue
        if cat in ("not_json", "wrong_kind", "bad_base64"):
            raise SystemExit(f"flood message {cat} decodes as {type(msg).__name__}")
        if isinstance(msg, AudioMetadata) and msg.audioMetadata.sampleRate in (16000, 24000):
            raise SystemExit("a flood AudioMetadata would be accepted")
        if not isinstance(msg, AudioData | AudioMetadata):
            raise SystemExit(f"flood message {cat} decodes as {type(msg).__name__}")


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    f = bytearray(ws_frame(opcode, payload))
    if not fin:
        f[0] &= 0x7F
    return bytes(f)


# ----------------------------------------------------------------------------- raw clients


class RawWs(WsClient):
    """A websocket client on a raw transport: records the server's close code and when
    the connection ended; answers pings unless ``pong`` is False; can stop reading."""

    def __init__(self, host: str, port: int, path: str, headers: dict[str, str] | None = None, pong: bool = True,
                 pause_after_handshake: bool = False) -> None:  # fmt: skip
        super().__init__(host, port, path, headers)
        self.pong, self.pause_after_handshake = pong, pause_after_handshake
        self.ended: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.close_code: int | None = None
        self.close_at: float | None = None
        self.lost_at: float | None = None
        self.opened_at = time.perf_counter()
        self.bytes_in = 0
        self.lost_exc: str | None = None
        self.opcodes: dict[int, int] = {}
        self.texts: list[bytes] = []
        self.keep_texts = False
        self.writable = asyncio.Event()
        self.writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost_at = time.perf_counter()
        self.lost_exc = repr(exc) if exc is not None else None
        self.writable.set()
        if not self.open.done():
            self.open.set_exception(ConnectionError(f"lost during handshake: {exc}"))
        if not self.ended.done():
            self.ended.set_result(None)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        super().data_received(data)

    def on_handshake(self) -> bool:
        if self.pause_after_handshake:
            self.transport.pause_reading()  # type: ignore[union-attr]
            return False
        return True

    def on_frame(self, opcode: int, payload: bytes) -> None:
        self.opcodes[opcode] = self.opcodes.get(opcode, 0) + 1
        if (
            opcode == 0x9
            and self.pong
            and self.transport is not None
            and not self.transport.is_closing()
        ):
            self.transport.write(ws_frame(0xA, payload))
        elif opcode == 0x8:
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.close_at = time.perf_counter()
            if self.transport is not None and not self.transport.is_closing():
                with contextlib.suppress(Exception):
                    self.transport.write(ws_frame(0x8, payload[:2]))
                    self.transport.close()
        elif opcode == 0x1 and self.keep_texts:
            self.texts.append(payload)

    @property
    def is_open(self) -> bool:
        return self.lost_at is None and self.close_code is None


class RawTcp(asyncio.Protocol):
    """A TCP connection that sends ``first`` (possibly nothing) and then nothing."""

    def __init__(self, first: bytes = b"") -> None:
        self.first = first
        self.lost_at: float | None = None
        self.opened_at = time.perf_counter()
        self.got = b""
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        if self.first:
            transport.write(self.first)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.got += data[:200]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost_at = time.perf_counter()

    @property
    def is_open(self) -> bool:
        return self.lost_at is None


# ----------------------------------------------------------------------------- the flooder (own process)


async def flooder_main(port: int, seconds: float, mix: str) -> dict:
    msgs = flood_messages(mix)
    check_flood_messages(msgs)
    one_each = sum(len(frame(op, raw)) for _c, op, raw in msgs)
    per_block = max(20, (256 * 1024) // one_each)  # each message this many times per block
    block = b"".join(frame(op, raw) for _ in range(per_block) for _c, op, raw in msgs)
    frames_per_block = per_block * len(msgs)
    loop = asyncio.get_running_loop()
    c = RawWs(
        "127.0.0.1", port, "/media", {"x-ms-call-connection-id": f"flood-{uuid.uuid4().hex[:6]}"}
    )
    await loop.create_connection(lambda: c, "127.0.0.1", port)
    await c.open
    tr = c.transport
    assert tr is not None
    blocks = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while time.perf_counter() < end and c.is_open:
        if not c.writable.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(c.writable.wait(), max(0.001, end - time.perf_counter()))
            continue
        tr.write(block)
        blocks += 1
        await asyncio.sleep(0)
    t_stop = time.perf_counter()
    while tr.get_write_buffer_size() and c.is_open and time.perf_counter() < t_stop + 60:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    t_drained = time.perf_counter()
    if c.is_open:
        tr.write(ws_frame(0x8, (1000).to_bytes(2, "big")))
        with contextlib.suppress(TimeoutError):
            # The server echoes once it has taken in everything before: at its message rate per
            # connection (CALLSTREAM_MEDIA_MESSAGE_RATE), a backlog of 30 s of flood takes minutes.
            await asyncio.wait_for(c.ended, 600)
    me = os.times()
    cats: dict[str, int] = {}
    for cat, _op, _raw in msgs:
        cats[cat] = cats.get(cat, 0) + blocks * per_block
    return {
        "frames_written": blocks * frames_per_block, "bytes_written": blocks * len(block),
        "writing_s": round(t_stop - t0, 2), "drain_s": round(t_drained - t_stop, 2),
        "close_s": round(time.perf_counter() - t_drained, 2), "close_code": c.close_code,
        "lost_early": c.lost_at is not None and c.lost_at < t_stop, "by_category": cats,
        "cpu_s": round(me.user + me.system, 2),
    }  # fmt: skip


# ----------------------------------------------------------------------------- phases


class Meter:
    """Server-side snapshot: CPU of the server tree, core 0 busy, /metrics, RSS, fds."""

    def __init__(self, pid: int, port: int, core: int, client_core: int) -> None:
        self.pid, self.port, self.core, self.client_core = pid, port, core, client_core

    def snap(self, load: CallLoad | None = None) -> dict:
        me = os.times()
        return {
            "t": time.perf_counter(), "cpu": tree_cpu(self.pid)[0], "core": core_busy_s(self.core),
            "core1": core_busy_s(self.client_core)[0], "gen": me.user + me.system,
            "m": scrape(self.port), "rss": rss_mb(self.pid), "fds": open_fds(self.pid),
            "sent": load.sent_total if load else 0,
        }  # fmt: skip


def delta(a: dict, b: dict, key: str) -> float:
    return b["m"].get(key, 0.0) - a["m"].get(key, 0.0)


DROP_REASONS = ("invalid", "unsupported_format", "before_metadata", "bad_size", "payload_too_large",
                "internal_error", "call_ended", "message_too_large")  # fmt: skip


def phase_row(name: str, w: Window, a: dict, b: dict, helper_cpu: float = 0.0) -> dict:
    """``helper_cpu``: CPU seconds of a helper process on the client core (the flooder)."""
    wall = b["t"] - a["t"]
    cpu = b["cpu"] - a["cpu"]
    received = delta(a, b, "frames_received")
    malformed = delta(a, b, "frames_malformed")
    return {
        "phase": name, "wall_s": round(wall, 1), "normal_sent": b["sent"] - a["sent"],
        "received": int(received), "malformed": int(malformed), "malformed_per_s": round(malformed / wall),
        "drops": {r: int(delta(a, b, f'frames_dropped{{reason="{r}"}}')) for r in DROP_REASONS
                  if delta(a, b, f'frames_dropped{{reason="{r}"}}')},
        "frame_p50_ms": ms(w.rtts, 0.5), "frame_p90_ms": ms(w.rtts, 0.9), "frame_p99_ms": ms(w.rtts, 0.99),
        "frame_max_ms": ms(w.rtts, 1.0), "pings": len(w.rtts),
        "event_p50_ms": ms(w.event_lat, 0.5), "event_p99_ms": ms(w.event_lat, 0.99), "event_max_ms": ms(w.event_lat, 1.0),
        "finals_sent": w.finals_sent, "finals_received": len(w.event_lat), "skipped": w.skipped,
        "server_cpu": round(cpu / wall, 3), "other0": round(((b["core"][0] - a["core"][0]) - cpu) / wall, 3),
        "steal0": round((b["core"][1] - a["core"][1]) / wall, 3), "gen_late_p99_ms": ms(w.lateness, 0.99),
        "gen_cpu": round((b["gen"] - a["gen"]) / wall, 3), "helper_cpu": round(helper_cpu / wall, 3),
        "other1": round(((b["core1"] - a["core1"]) - (b["gen"] - a["gen"]) - helper_cpu) / wall, 3),
        "rss_mb": round(b["rss"], 1), "fds": b["fds"],
    }  # fmt: skip


PHASE_HEADER = (
    f"{'phase':<10} {'wall s':>6} {'normal':>7} {'malformed':>9} {'/s':>6} {'fr p50':>6} {'fr p90':>6} {'fr p99':>6} "
    f"{'fr max':>7} {'ev p50':>6} {'ev p99':>6} {'finals':>9} {'srvCPU':>6} {'other0':>6} {'genCPU':>6} {'flCPU':>6} {'other1':>6} {'late99':>6} {'RSS MB':>6}"
)


def fmt_phase(r: dict) -> str:
    return (
        f"{r['phase']:<10} {r['wall_s']:>6.1f} {r['normal_sent']:>7} {r['malformed']:>9} {r['malformed_per_s']:>6} "
        f"{r['frame_p50_ms']:>6.2f} {r['frame_p90_ms']:>6.2f} {r['frame_p99_ms']:>6.2f} {r['frame_max_ms']:>7.2f} "
        f"{r['event_p50_ms']:>6.2f} {r['event_p99_ms']:>6.2f} {r['finals_received']:>4}/{r['finals_sent']:<4} "
        f"{r['server_cpu'] * 100:>5.1f}% {r['other0'] * 100:>5.1f}% "
        f"{r['gen_cpu'] * 100:>5.1f}% {r['helper_cpu'] * 100:>5.1f}% {r['other1'] * 100:>5.1f}% {r['gen_late_p99_ms']:>6.2f} {r['rss_mb']:>6.1f}"
    )


async def with_load(
    args: argparse.Namespace, workdir: Path, tag: str, final_every: float, body, env=None
) -> dict:
    """Start a server and N calls (and the firehose subscriber), run ``body(load, meter)``,
    stop, check every normal message was handled."""
    meta, pairs = build_frames(Path(args.fixture))
    server = await asyncio.to_thread(start_server, workdir / tag, args.port, args.server_core, env)
    server.name = tag
    meter = Meter(server.pid, server.port, args.server_core, args.client_core)
    load = CallLoad(server.port, args.calls, meta, pairs, final_every)
    runner = None
    out: dict = {}
    try:
        m0 = await asyncio.to_thread(scrape, server.port)
        await load.start_subscriber()
        await load.connect()
        runner = asyncio.create_task(load.run())
        await asyncio.sleep(args.warmup)
        load.new_window()
        out = await body(load, meter)
        load.stop = True
        await runner
        runner = None
        # every message the normal calls sent, beyond what the case's own connections got
        # in: given by the case, or (flood) every malformed message
        m1 = await asyncio.to_thread(scrape, server.port)
        extra = out.get("extra_received")
        if extra is None:
            extra = int(m1.get("frames_malformed", 0) - m0.get("frames_malformed", 0))
        out["extra_received"] = extra
        out["normal_messages_sent"] = load.sent_total
        out["normal_messages_handled"] = await wait_handled(
            server.port, m0["frames_received"] + extra, load.sent_total, load
        )
        out["finals_sent"], out["finals_received"] = len(load.final_sent_at), len(load.final_got)
        out["firehose_lagged"] = load.lagged
        out["skipped"] = load.skipped
        await load.close()
        await load.stop_subscriber()
    finally:
        load.stop = True
        if runner is not None:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        out["server_exit"] = await asyncio.to_thread(server.stop)
        out["server_log_problems"] = server.log_problems()[:40]
    return out


# ----------------------------------------------------------------------------- case: flood


async def case_flood(args: argparse.Namespace, workdir: Path) -> dict:
    async def body(load: CallLoad, meter: Meter) -> dict:
        rows = []
        flood_info: list[dict] = []
        pooled: dict[str, list[float]] = {
            f"{k}_{w}": [] for k in ("flood", "noflood") for w in ("frame", "event")
        }
        print(PHASE_HEADER, flush=True)
        for name in ["no flood", "flood"] * args.cycles + ["no flood"]:
            a = await asyncio.to_thread(meter.snap, load)
            if name == "flood":
                cmd = ["taskset", "-c", str(args.client_core), "nice", "-n", "10", sys.executable, __file__,
                       "--flooder", "--port", str(meter.port), "--phase", str(args.phase), "--flood-mix", args.flood_mix]  # fmt: skip
                proc = await asyncio.create_subprocess_exec(
                    *cmd, stdout=subprocess.PIPE, cwd=Path(__file__).parent.parent
                )
                stdout, _ = await proc.communicate()
                flood_info.append(json.loads(stdout.decode().strip().splitlines()[-1]))
            else:
                await asyncio.sleep(args.phase)
            w = load.new_window()
            b = await asyncio.to_thread(meter.snap, load)
            r = phase_row(name, w, a, b, flood_info[-1]["cpu_s"] if name == "flood" else 0.0)
            rows.append(r)
            print(fmt_phase(r), flush=True)
            kind = "flood" if name == "flood" else "noflood"
            pooled[f"{kind}_frame"] += w.rtts
            pooled[f"{kind}_event"] += w.event_lat
        return {"rows": rows, "flooder": flood_info, "pooled": pooled}

    out = await with_load(args, workdir, "flood", args.final_every, body)
    rows = out["rows"]
    base = [r for r in rows if r["phase"] == "no flood"]
    fls = [r for r in rows if r["phase"] == "flood"]
    pooled = out.pop("pooled")
    malformed_total = sum(r["malformed"] for r in rows)
    out["malformed_total"] = malformed_total
    out["every_normal_handled"] = bool(
        out["normal_messages_handled"] == out["normal_messages_sent"] and out["skipped"] == 0
    )
    summ = {}
    for key, vals in pooled.items():  # pooled over the phases of each kind
        summ[key] = {
            q: ms(vals, v) for q, v in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))
        } | {"n": len(vals)}
    out["pooled"] = summ
    out["ratios"] = {
        f"{what}_{q}": round(summ[f"flood_{what}"][q] / summ[f"noflood_{what}"][q], 2)
        for what in ("frame", "event") for q in ("p50", "p99")
    }  # fmt: skip
    cpu_nf = statistics.fmean(r["server_cpu"] for r in base)
    cpu_f = statistics.fmean(r["server_cpu"] for r in fls)
    fl_malformed = sum(r["malformed"] for r in fls)
    fl_wall = sum(r["wall_s"] for r in fls)
    out["flood_cpu_share"] = round(cpu_f - cpu_nf, 3)
    out["us_per_malformed"] = (
        round((cpu_f - cpu_nf) * fl_wall * 1e6 / fl_malformed, 1) if fl_malformed else None
    )
    for fi in out["flooder"]:
        print(
            f"# flooder: wrote {fi.get('frames_written')} malformed messages ({fi.get('bytes_written', 0) / 1e6:.1f} MB) in "
            f"{fi.get('writing_s')} s (its CPU {fi.get('cpu_s')} s), all in the server's socket buffers {fi.get('drain_s')} s "
            f"later, its close answered {fi.get('close_s')} s after that: close code {fi.get('close_code')}"
            f"{'; CONNECTION LOST EARLY' if fi.get('lost_early') else ''}"
        )
    drops: dict[str, int] = {}
    for r in fls:
        for k, v in r["drops"].items():
            drops[k] = drops.get(k, 0) + v
    written = sum(fi.get("frames_written", 0) for fi in out["flooder"])
    out["flood_all_counted"] = fl_malformed == written
    print(
        f"# server counted {malformed_total} malformed messages in all ({fl_malformed} in the flood phases, "
        f"{fl_malformed / fl_wall:.0f}/s; the flooders wrote {written}: "
        f"{'all counted' if out['flood_all_counted'] else 'NOT ALL COUNTED'}); drops by reason: {drops}"
    )
    f, n = summ["flood_frame"], summ["noflood_frame"]
    fe, ne = summ["flood_event"], summ["noflood_event"]
    print(
        f"# normal calls' frame latency p50/p99, no flood {n['p50']}/{n['p99']} ms, flood {f['p50']}/{f['p99']} ms: "
        f"{out['ratios']['frame_p50']}x / {out['ratios']['frame_p99']}x; event latency no flood {ne['p50']}/{ne['p99']} ms, "
        f"flood {fe['p50']}/{fe['p99']} ms: {out['ratios']['event_p50']}x / {out['ratios']['event_p99']}x"
    )
    print(
        f"# server CPU: {cpu_nf * 100:.1f}% without the flood, {cpu_f * 100:.1f}% with it: the flood took "
        f"{out['flood_cpu_share'] * 100:.1f}% of core 0 ({out['us_per_malformed']} us per malformed message)"
    )
    print(
        f"# every normal message handled: {'yes' if out['every_normal_handled'] else 'NO'} ({out['normal_messages_handled']} "
        f"of {out['normal_messages_sent']}); finals {out['finals_received']} of {out['finals_sent']}, lagged {out['firehose_lagged']}"
    )
    return out


# ----------------------------------------------------------------------------- case: oversized


async def case_oversized(args: argparse.Namespace, workdir: Path) -> dict:
    big = 3 * 512 * 1024  # 1.5 MiB
    payload = b"x" * big
    single = frame(0x1, payload)
    frag = frame(0x1, payload[: 512 * 1024], fin=False) + frame(
        0x0, payload[512 * 1024 : 1024 * 1024], fin=False
    )
    frag += frame(0x0, payload[1024 * 1024 :])
    binary = frame(0x2, payload)

    async def body(load: CallLoad, meter: Meter) -> dict:
        loop = asyncio.get_running_loop()
        rows, results = [], []
        print(PHASE_HEADER, flush=True)
        a = await asyncio.to_thread(meter.snap, load)
        await asyncio.sleep(args.oversize_window)
        w = load.new_window()
        b = await asyncio.to_thread(meter.snap, load)
        rows.append(phase_row("before", w, a, b))
        print(fmt_phase(rows[-1]), flush=True)
        a = b
        kinds = [("single 1.5 MiB text frame", single), ("3 x 512 KiB fragments", frag), ("single 1.5 MiB binary", binary),
                 ("text frame, invalid UTF-8 (not oversized)", frame(0x1, b'{"kind":"\xff\xfe"}'))]  # fmt: skip
        t_end = loop.time() + args.oversize_window
        for n in range(args.oversize_count):
            label, data = kinds[n % len(kinds)]
            c = RawWs(
                "127.0.0.1",
                meter.port,
                "/media",
                {"x-ms-call-connection-id": f"big-{uuid.uuid4().hex[:6]}-{n}"},
            )
            await loop.create_connection(lambda c=c: c, "127.0.0.1", meter.port)
            await c.open
            c.transport.write(load.meta)  # type: ignore[union-attr]  # a valid AudioMetadata first (a ready frame)
            # in a read of its own: uvicorn drops the messages parsed in the same read as a
            # protocol error (too big, bad UTF-8) without handing them to the app
            await asyncio.sleep(0.1)
            t0 = time.perf_counter()
            c.transport.write(data)  # type: ignore[union-attr]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(c.ended, 10)
            results.append({
                "kind": label, "close_code": c.close_code,
                "close_ms": round((c.close_at - t0) * 1000, 1) if c.close_at else None,
                "lost_ms": round((c.lost_at - t0) * 1000, 1) if c.lost_at else None,
            })  # fmt: skip
            await asyncio.sleep(max(0.2, (t_end - loop.time()) / max(1, args.oversize_count - n)))
        await asyncio.sleep(max(0.0, t_end - loop.time()))
        w = load.new_window()
        b = await asyncio.to_thread(meter.snap, load)
        rows.append(phase_row("oversized", w, a, b))
        print(fmt_phase(rows[-1]), flush=True)
        # each oversized message is counted once in frames_received (and its metadata once)
        too_large = int(delta(a, b, 'frames_dropped{reason="message_too_large"}'))
        # each connection's AudioMetadata is counted in frames_received, and so is each
        # message refused as too large (the 1009 close); an invalid UTF-8 one is not
        return {"rows": rows, "connections": results, "extra_received": args.oversize_count + too_large,
                "too_large": too_large}  # fmt: skip

    out = await with_load(args, workdir, "oversized", args.final_every, body)
    out["every_normal_handled"] = bool(
        out["normal_messages_handled"] == out["normal_messages_sent"] and out["skipped"] == 0
    )
    codes: dict[str, list] = {}
    for r in out["connections"]:
        codes.setdefault(r["kind"], []).append((r["close_code"], r["close_ms"]))
    for kind, v in codes.items():
        print(
            f"# {kind}: close codes {sorted({c for c, _ in v})}, closed after {[t for _, t in v]} ms"
        )
    r0, r1 = out["rows"]
    print(
        f"# server counted {out['too_large']} messages too large; other calls' frame p99 {r1['frame_p99_ms']} ms vs "
        f"{r0['frame_p99_ms']} ms before, event p99 {r1['event_p99_ms']} vs {r0['event_p99_ms']} ms; every normal message "
        f"handled: {'yes' if out['every_normal_handled'] else 'NO'} ({out['normal_messages_handled']} of {out['normal_messages_sent']})"
    )
    return out


# ----------------------------------------------------------------------------- case: idle


async def case_idle(args: argparse.Namespace, workdir: Path) -> dict:
    env = {"CALLSTREAM_MEDIA_IDLE_TIMEOUT_S": str(args.media_idle)} if args.media_idle else None
    server = await asyncio.to_thread(
        start_server, workdir / "idle", args.port, args.server_core, env
    )
    pid, port = server.pid, server.port
    loop = asyncio.get_running_loop()
    groups: dict[str, list] = {}
    steps = []
    out: dict = {}
    try:
        await asyncio.sleep(1.0)
        base = {
            "rss": rss_mb(pid),
            "fds": open_fds(pid),
            "m": await asyncio.to_thread(scrape, port),
        }
        steps.append({"after": "start", "rss_mb": round(base["rss"], 1), "fds": base["fds"]})
        print(f"# idle server: RSS {base['rss']:.1f} MB, {base['fds']} fds", flush=True)

        async def open_group(name: str, n: int, make) -> None:
            before_rss, before_fds = rss_mb(pid), open_fds(pid)
            conns = []
            for i in range(n):
                c = make(i)
                await loop.create_connection(lambda c=c: c, "127.0.0.1", port)
                conns.append(c)
                if isinstance(c, RawWs) and (i % 50 == 49 or i == n - 1):
                    await asyncio.gather(*(x.open for x in conns[-50:]))
            groups[name] = conns
            await asyncio.sleep(3.0)
            rss, fds = rss_mb(pid), open_fds(pid)
            m = await asyncio.to_thread(scrape, port)
            s = {"after": name, "n": n, "rss_mb": round(rss, 1), "fds": fds,
                 "kb_per_conn": round((rss - before_rss) * 1e6 / 1024 / n, 1), "fds_per_conn": round((fds - before_fds) / n, 2),
                 "active_calls": m.get("active_calls"), "media_connections": int(m.get("media_connections", 0))}  # fmt: skip
            steps.append(s)
            print(
                f"# opened {n} x {name}: RSS {rss:.1f} MB ({s['kb_per_conn']:+.1f} KB per connection), {fds} fds "
                f"({s['fds_per_conn']:+.2f} per connection), active calls {s['active_calls']}",
                flush=True,
            )

        t_open = time.perf_counter()
        await open_group(
            "ws-idle",
            args.idle_ws,
            lambda i: RawWs("127.0.0.1", port, "/media", {"x-ms-call-connection-id": f"idle-{i}"}),
        )
        await open_group(
            "ws-no-pong",
            args.idle_other,
            lambda i: RawWs(
                "127.0.0.1", port, "/media", {"x-ms-call-connection-id": f"nopong-{i}"}, pong=False
            ),
        )
        await open_group("tcp-silent", args.idle_other, lambda i: RawTcp(b""))
        await open_group(
            "http-partial",
            args.idle_other,
            lambda i: RawTcp(b"GET /media HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"),
        )
        samples = []
        deadline = t_open + args.idle_observe
        while True:
            now = time.perf_counter()
            m = await asyncio.to_thread(scrape, port)
            samples.append({"t": round(now - t_open, 1), "rss_mb": round(rss_mb(pid), 1), "fds": open_fds(pid),
                            "active_calls": m.get("active_calls"),
                            **{g: sum(c.is_open for c in cs) for g, cs in groups.items()}})  # fmt: skip
            if now >= deadline:
                break
            await asyncio.sleep(min(5.0, deadline - now))
        print(
            f"{'t s':>5} {'RSS MB':>7} {'fds':>5} {'calls':>5} "
            + " ".join(f"{g:>12}" for g in groups)
        )
        for s in samples:
            print(
                f"{s['t']:>5} {s['rss_mb']:>7.1f} {s['fds']:>5} {s['active_calls']!s:>5} "
                + " ".join(f"{s[g]:>12}" for g in groups)
            )
        summary = {}
        for g, cs in groups.items():
            closed = [c for c in cs if not c.is_open]
            after_s = [
                round((getattr(c, "close_at", None) or c.lost_at) - c.opened_at, 1) for c in closed
            ]
            codes = sorted({getattr(c, "close_code", None) for c in closed}, key=str)
            summary[g] = {"n": len(cs), "closed": len(closed), "close_codes": codes,
                          "closed_after_s": [min(after_s), statistics.median(after_s), max(after_s)] if after_s else None}  # fmt: skip
            print(
                f"# {g}: {len(closed)} of {len(cs)} closed by the server within {args.idle_observe:g} s"
                + (
                    f" (codes {codes}, after {summary[g]['closed_after_s'][0]}-{summary[g]['closed_after_s'][2]} s)"
                    if closed
                    else ""
                )
            )
        # close everything; the server should be back to its idle state
        for cs in groups.values():
            for c in cs:
                t = getattr(c, "transport", None)
                if isinstance(c, RawWs) and t is not None and not t.is_closing():
                    t.write(ws_frame(0x8, (1000).to_bytes(2, "big")))
        await asyncio.sleep(1.0)
        for cs in groups.values():
            for c in cs:
                t = getattr(c, "transport", None)
                if t is not None:
                    t.close()
        prev = -1
        for _ in range(30):  # until the server's fd count stops falling
            await asyncio.sleep(1.0)
            if (fds := open_fds(pid)) == prev:
                break
            prev = fds
        m = await asyncio.to_thread(scrape, port)
        end = {"rss_mb": round(rss_mb(pid), 1), "fds": open_fds(pid), "fd_kinds": fd_kinds(pid),
               "server_sockets": server_sockets(port), "active_calls": m.get("active_calls")}  # fmt: skip
        print(
            f"# all closed by the client: RSS {end['rss_mb']} MB, {end['fds']} fds {end['fd_kinds']}, server-side "
            f"sockets on the port by state {end['server_sockets']}, active calls {end['active_calls']}"
        )
        out = {
            "steps": steps,
            "samples": samples,
            "groups": summary,
            "end": end,
            "base_fds": base["fds"],
        }
    finally:
        out["server_exit"] = await asyncio.to_thread(server.stop)
        out["server_log_problems"] = server.log_problems()[:40]
    return out


# ----------------------------------------------------------------------------- case: slow subscriber


def fd_kinds(pid: int) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            kind = (
                target.split(":")[0]
                if ":" in target
                else ("file" if target.startswith("/") else target)
            )
            kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def server_sockets(port: int) -> dict[str, int]:
    """TCP sockets whose local port is ``port`` (the server's side), by state."""
    states = {"01": "ESTABLISHED", "04": "FIN_WAIT1", "05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE",
              "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING"}  # fmt: skip
    out: dict[str, int] = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            p = line.split()
            if int(p[1].split(":")[1], 16) == port:
                st = states.get(p[3], p[3])
                out[st] = out.get(st, 0) + 1
    return out


def tcp_queues(port: int, peers: set[int]) -> dict[int, tuple[str, int, int]]:
    """Server-side sockets on ``port`` whose peer port is in ``peers``: (state, tx_queue, rx_queue)."""
    states = {"01": "ESTABLISHED", "04": "FIN_WAIT1", "05": "FIN_WAIT2", "06": "TIME_WAIT", "07": "CLOSE",
              "08": "CLOSE_WAIT", "09": "LAST_ACK", "0B": "CLOSING"}  # fmt: skip
    out = {}
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            p = line.split()
            lport, rport = int(p[1].split(":")[1], 16), int(p[2].split(":")[1], 16)
            if lport == port and rport in peers:
                tx, rx = (int(x, 16) for x in p[4].split(":"))
                out[rport] = (states.get(p[3], p[3]), tx, rx)
    return out


async def open_subscriber(port: int, pause: bool) -> tuple[RawWs, int]:
    """A raw `WS /events` subscriber with a 4 KiB receive buffer; reading paused after the
    handshake if ``pause``. Returns it and its local port."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    c = RawWs("127.0.0.1", port, "/events", pause_after_handshake=pause)
    await loop.create_connection(lambda: c, sock=sock)
    await c.open
    return c, sock.getsockname()[1]


async def case_slowsub(args: argparse.Namespace, workdir: Path) -> dict:
    async def body(load: CallLoad, meter: Meter) -> dict:
        loop = asyncio.get_running_loop()
        # control: the same load, no slow subscriber
        c0 = await asyncio.to_thread(meter.snap, load)
        await asyncio.sleep(args.slow_control)
        w = load.new_window()
        a = await asyncio.to_thread(meter.snap, load)
        control = phase_row("control", w, c0, a)
        print(
            f"# control, {args.slow_control:g} s without slow subscribers: RSS {c0['rss']:.1f} -> {a['rss']:.1f} MB, "
            f"server CPU {control['server_cpu'] * 100:.0f}%, {control['finals_sent'] / control['wall_s']:.0f} finals/s",
            flush=True,
        )
        never: dict[int, RawWs] = {}
        for _ in range(args.slow_subs):
            c, lport = await open_subscriber(meter.port, pause=True)
            never[lport] = c
        stall, stall_port = await open_subscriber(meter.port, pause=True)
        stall.keep_texts = True
        t0 = time.perf_counter()
        stall_resume = loop.call_later(args.slow_stall, stall.transport.resume_reading)  # type: ignore[union-attr]
        samples = []
        print(f"{'t s':>5} {'RSS MB':>7} {'fds':>4} {'subs':>4} {'depth max':>9} {'lag notices':>11}  "
              f"never-reading subscribers' server-side sockets: state and send queue")  # fmt: skip
        while True:
            now = time.perf_counter()
            s = await asyncio.to_thread(meter.snap, load)
            q = tcp_queues(meter.port, set(never))
            row = {"t": round(now - t0, 1), "rss_mb": round(s["rss"], 1), "fds": s["fds"],
                   "subscribers": s["m"].get("subscribers"), "depth_max": s["m"].get("subscriber_queue_depth_max"),
                   "lag_notices": s["m"].get("subscriber_lag_notices", 0) - a["m"].get("subscriber_lag_notices", 0),
                   "never_sockets": sorted(q.values())}  # fmt: skip
            samples.append(row)
            states: dict[str, list[int]] = {}
            for st, tx, _rx in row["never_sockets"]:
                states.setdefault(st, []).append(tx)
            qs = ", ".join(
                f"{len(v)} {st} {min(v) / 1e6:.2f}-{max(v) / 1e6:.2f} MB"
                for st, v in states.items()
            )
            print(f"{row['t']:>5} {row['rss_mb']:>7.1f} {row['fds']:>4} {row['subscribers']!s:>4} {row['depth_max']!s:>9} "
                  f"{row['lag_notices']!s:>11}  {qs}", flush=True)  # fmt: skip
            if now - t0 >= args.slow_observe:
                break
            await asyncio.sleep(min(10.0, args.slow_observe - (now - t0)))
        stall_resume.cancel()
        w = load.new_window()
        b = s
        phase = phase_row("slow subs", w, a, b)
        stall_lagged = [json.loads(t) for t in stall.texts if t.startswith(b'{"type":"lagged"')]
        stall_info = {"resumed_after_s": args.slow_stall, "bytes": stall.bytes_in, "events": len(stall.texts),
                      "lagged_notices": len(stall_lagged),
                      "missed_events": sum(x["missedTo"] - x["missedFrom"] + 1 for x in stall_lagged),
                      "open": stall.is_open, "close_code": stall.close_code}  # fmt: skip
        # then the never-reading ones read what is there
        for c in never.values():
            c.keep_texts = True
            c.transport.resume_reading()  # type: ignore[union-attr]
        await asyncio.sleep(args.slow_read)
        read = []
        for c in never.values():
            lagged = sum(1 for t in c.texts if t.startswith(b'{"type":"lagged"'))
            read.append({"bytes": c.bytes_in, "events": len(c.texts), "lagged": lagged, "close_code": c.close_code,
                         "ended": c.lost_at is not None, "lost_exc": c.lost_exc, "opcodes": c.opcodes,
                         "unparsed": len(c.buf)})  # fmt: skip
        m_after = await asyncio.to_thread(scrape, meter.port)
        for c in [*never.values(), stall]:
            if c.transport is not None and not c.transport.is_closing():
                c.transport.write(ws_frame(0x8, (1000).to_bytes(2, "big")))
                c.transport.close()
        return {"samples": samples, "control": control, "phase": phase, "read": read, "stall": stall_info,
                "lag_notices_after_read": m_after.get("subscriber_lag_notices", 0) - a["m"].get("subscriber_lag_notices", 0),
                "subscribers_after_read": m_after.get("subscribers"),
                "rss_control_start_mb": round(c0["rss"], 1), "rss_before_mb": round(a["rss"], 1),
                "stall_port": stall_port}  # fmt: skip

    env = (
        {"CALLSTREAM_SUBSCRIBER_QUEUE": str(args.subscriber_queue)}
        if args.subscriber_queue
        else None
    )
    out = await with_load(args, workdir, "slowsub", args.slow_final_every, body, env)
    f = out["phase"]
    s0, s1 = out["samples"][0], out["samples"][-1]
    ctl = out["control"]
    ctl_slope = (out["rss_before_mb"] - out["rss_control_start_mb"]) / ctl["wall_s"] * 60
    sub_slope = (s1["rss_mb"] - out["rss_before_mb"]) / f["wall_s"] * 60
    out["rss_slope_mb_per_min"] = {"control": round(ctl_slope, 2), "slow_subs": round(sub_slope, 2)}
    out["every_normal_handled"] = bool(
        out["normal_messages_handled"] == out["normal_messages_sent"] and out["skipped"] == 0
    )
    print(
        f"# RSS {out['rss_before_mb']} MB when the slow subscribers connected, {s1['rss_mb']} MB {s1['t']} s later "
        f"({s1['rss_mb'] - out['rss_before_mb']:+.1f} MB, {sub_slope:+.1f} MB/min; the control window without them: "
        f"{ctl_slope:+.1f} MB/min); subscriber queue depth max {s1['depth_max']} (CALLSTREAM_SUBSCRIBER_QUEUE "
        f"{args.subscriber_queue or 'default'}); subscribers {s0['subscribers']} -> {s1['subscribers']}"
    )
    st = out["stall"]
    print(
        f"# the subscriber that stalled {st['resumed_after_s']:g} s then read: {st['events']} events, "
        f"{st['lagged_notices']} lagged notices covering {st['missed_events']} missed events; still open {st['open']}"
    )
    print(
        f"# lag notices (metric) while the never-readers were unread: {s1['lag_notices']}; after they read "
        f"{args.slow_read:g} s: {out['lag_notices_after_read']}; subscribers then {out['subscribers_after_read']}"
    )
    for i, r in enumerate(out["read"]):
        print(f"#   never-reading subscriber {i}, when it finally read: {r['bytes']} bytes, {r['events']} events "
              f"({r['lagged']} lagged notices), close code {r['close_code']}, connection ended {r['ended']} "
              f"({r['lost_exc']}), frames by opcode {r['opcodes']}, {r['unparsed']} bytes unparsed")  # fmt: skip
    print(
        f"# the reading firehose subscriber: {out['finals_received']}/{out['finals_sent']} finals in all, lagged "
        f"{out['firehose_lagged']}; during the slow-subscriber window event p50/p99 {f['event_p50_ms']}/{f['event_p99_ms']} ms "
        f"(control {ctl['event_p50_ms']}/{ctl['event_p99_ms']}), frame p99 {f['frame_p99_ms']} ms (control "
        f"{ctl['frame_p99_ms']}), server CPU {f['server_cpu'] * 100:.0f}% (control {ctl['server_cpu'] * 100:.0f}%); "
        f"every normal message handled: {'yes' if out['every_normal_handled'] else 'NO'}"
    )
    return out


# ----------------------------------------------------------------------------- main


async def amain(args: argparse.Namespace) -> dict:
    os.sched_setaffinity(0, {args.client_core})
    check_flood_messages(flood_messages(args.flood_mix))
    workdir = Path(tempfile.mkdtemp(prefix="callstream-flood-"))
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    print(
        f"# {started}  nproc={os.cpu_count()}  cpu={cpu_model()!r}  python {sys.version.split()[0]}; server on core "
        f"{args.server_core}, clients on core {args.client_core}; {args.calls} normal unmixed calls",
        flush=True,
    )
    out: dict = {
        "started": started,
        "nproc": os.cpu_count(),
        "cpu": cpu_model(),
        "args": vars(args),
    }
    cases = {
        "flood": case_flood,
        "oversized": case_oversized,
        "idle": case_idle,
        "slowsub": case_slowsub,
    }
    try:
        for name in args.cases.split(","):
            print(f"\n## {name}", flush=True)
            out[name] = await cases[name](args, workdir)
            problems = out[name].get("server_log_problems", [])
            print(
                f"# server exit {out[name].get('server_exit')}; {len(problems)} log lines above INFO"
            )
            for line in problems[:6]:
                print(f"#   {line[:300]}")
    finally:
        if args.keep:
            print(f"# kept {workdir}")
        else:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(
        description="callstream bad-input benchmark (see module docstring)"
    )
    ap.add_argument("--cases", default="flood,oversized,idle,slowsub")
    ap.add_argument("--calls", type=int, default=50, help="normal unmixed calls")
    ap.add_argument(
        "--final-every",
        type=float,
        default=5.0,
        help="a TranscriptionData Final per call every N s",
    )
    ap.add_argument("--phase", type=float, default=30.0, help="flood: seconds per phase")
    ap.add_argument(
        "--cycles", type=int, default=1, help="flood: no flood, (flood, no flood) x cycles"
    )
    ap.add_argument("--flood-mix", choices=("mixed", "small"), default="mixed",
                    help="flood: every kind of bad message, or only the shortest ones")  # fmt: skip
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--oversize-window", type=float, default=15.0)
    ap.add_argument("--oversize-count", type=int, default=8)
    ap.add_argument(
        "--idle-ws", type=int, default=500, help="idle /media websockets that answer pings"
    )
    ap.add_argument(
        "--idle-other", type=int, default=100, help="connections in each other idle group"
    )
    ap.add_argument("--idle-observe", type=float, default=150.0,
                    help="idle: seconds to watch (the server's keepalive closes a peer that does not answer pings "
                         "after 20 + 20 s; CALLSTREAM_MEDIA_IDLE_TIMEOUT_S is 60 s, checked once per period)")  # fmt: skip
    ap.add_argument(
        "--media-idle",
        type=float,
        default=0,
        help="idle: CALLSTREAM_MEDIA_IDLE_TIMEOUT_S (0: the default)",
    )
    ap.add_argument("--slow-subs", type=int, default=5)
    ap.add_argument(
        "--slow-final-every", type=float, default=0.2, help="slowsub: a final per call every N s"
    )
    ap.add_argument(
        "--slow-control",
        type=float,
        default=30.0,
        help="slowsub: seconds of the same load without them",
    )
    ap.add_argument("--slow-observe", type=float, default=150.0)
    ap.add_argument(
        "--slow-stall",
        type=float,
        default=25.0,
        help="slowsub: one more subscriber reads after N s",
    )
    ap.add_argument(
        "--slow-read", type=float, default=5.0, help="seconds the slow subscribers then read"
    )
    ap.add_argument(
        "--subscriber-queue",
        type=int,
        default=0,
        help="CALLSTREAM_SUBSCRIBER_QUEUE (0: the default)",
    )
    ap.add_argument("--port", type=int, default=18850)
    ap.add_argument("--server-core", type=int, default=0)
    ap.add_argument("--client-core", type=int, default=1)
    ap.add_argument("--fixture", default=str(FIXTURE))
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--json", help="also write the raw results here")
    ap.add_argument("--flooder", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.flooder:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        print(
            json.dumps(asyncio.run(flooder_main(args.port, args.phase, args.flood_mix))), flush=True
        )
        return 0
    bad = [c for c in args.cases.split(",") if c not in ("flood", "oversized", "idle", "slowsub")]
    if bad:
        ap.error(f"unknown cases {bad}")
    out = asyncio.run(amain(args))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
