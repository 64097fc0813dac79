"""Bulk export throughput and memory: 1,000 stored calls through `callstream export --since
--until --out DIR` (and its manifest per call).

    /tmp/venv/bin/python bench/export.py                      # 1000 calls, jsonl and vtt
    /tmp/venv/bin/python bench/export.py --calls 200 --events 40 --formats jsonl

Builds a SQLite store of N synthetic calls (each: call.started, participants, finals with
sentiment, a payment window, call.ended: `--events` events a call), then runs the export
as a child process pinned to one core and reports calls/s, events/s and the child's peak
RSS (getrusage). Memory should not grow with the number of calls: the same export of a
tenth of the calls is run too, to compare peaks.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipeline.compliance.store import SqliteEventStore, StoredEvent  # noqa: E402


def _adder(batch: list[StoredEvent], cid: str, t: str):
    def add(kind: str, **fields: object) -> None:
        seq = len(batch) + 1
        body = json.dumps({"type": kind, "callId": cid, "seq": seq, "time": t, **fields}).encode()
        mode = fields.get("mode") if kind == "call.started" else None
        batch.append(
            StoredEvent(
                cid, seq, kind, t, body, mode, 16000 if mode else None, fields.get("reason")
            )
        )

    return add


def build_store(path: Path, calls: int, events_per_call: int) -> int:
    store = SqliteEventStore(path)
    total = 0
    for c in range(calls):
        cid = f"bench-call-{c:05d}"
        t = f"2026-01-01T{c // 3600 % 24:02d}:{c // 60 % 60:02d}:{c % 60:02d}.000Z"
        batch: list[StoredEvent] = []
        add = _adder(batch, cid, t)
        add("call.started", mode="unmixed", sampleRate=16000)
        add("participant.joined", participant="4:+15550100", role="customer")
        add("participant.joined", participant="8:acs:agent", role="agent")
        u = 0
        while len(batch) < events_per_call - 1:
            u += 1
            role, pid = ("agent", "8:acs:agent") if u % 2 else ("customer", "4:+15550100")
            add("transcript.final", participant=pid, role=role, utteranceId=f"u{u}", startMs=u * 3000,
                endMs=u * 3000 + 2500, text=f"utterance {u} about the order and my card [CREDIT_CARD] thanks",
                language="en-US", confidence=0.9, source="local", redactions=[])  # fmt: skip
            add(
                "sentiment",
                participant=pid,
                utteranceId=f"u{u}",
                label="neutral",
                score=0.0,
                rollingScore=0.0,
            )
        add("call.ended", reason="media-disconnected")
        store.append(batch)
        total += len(batch)
    store.close()
    return total


def run_export(data_dir: Path, out: Path, fmt: str, until: str | None) -> tuple[float, float]:
    cmd = ["taskset", "-c", "0", sys.executable, "-m", "pipeline.cli.commands", "export", "--since", "2026-01-01T00:00:00Z",
           "--format", fmt, "--out", str(out), "--data-dir", str(data_dir)]  # fmt: skip
    if until:
        cmd += ["--until", until]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak_kb, before) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--events", type=int, default=60, help="events per call")
    ap.add_argument("--formats", default="jsonl,vtt")
    args = ap.parse_args()
    os.sched_setaffinity(0, {1})
    tmp = Path(tempfile.mkdtemp(prefix="bench-export-"))
    t0 = time.perf_counter()
    total = build_store(tmp / "callstream.db", args.calls, args.events)
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}  store: {args.calls} calls, {total} events,"
          f" built in {time.perf_counter() - t0:.1f} s; export pinned to core 0")  # fmt: skip
    print("| format | calls | events | wall s | calls/s | events/s | peak RSS MB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    tenth = args.calls // 10
    for fmt in args.formats.split(","):
        # The small run first: RUSAGE_CHILDREN's peak only grows.
        until = f"2026-01-01T{tenth // 3600 % 24:02d}:{tenth // 60 % 60:02d}:{tenth % 60:02d}.000Z"
        wall, peak = run_export(tmp, tmp / f"out-small-{fmt}", fmt, until)
        ev = total * tenth // args.calls
        print(
            f"| {fmt} | {tenth} | {ev} | {wall:.1f} | {tenth / wall:.0f} | {ev / wall:.0f} | {peak:.0f} |"
        )
        wall, peak = run_export(tmp, tmp / f"out-{fmt}", fmt, None)
        print(
            f"| {fmt} | {args.calls} | {total} | {wall:.1f} | {args.calls / wall:.0f} | {total / wall:.0f} | {peak:.0f} |"
        )


if __name__ == "__main__":
    main()
