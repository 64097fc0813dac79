"""How fast the Redis bus empties a full outbox, and what a Redis that lost its data costs.

    /tmp/venv/bin/python bench/bus_drain.py                  # ~30 s
    /tmp/venv/bin/python bench/bus_drain.py --events 100000 --calls 200

Two `RedisBus`es in this process, as replica A (publisher) and replica B (a firehose
subscriber), one redis-server (no RDB, no AOF) pinned to core 1, this process on core 0.

- `drain`: A publishes N events (call.started-sized JSON of ~400 B, round-robin over
  `--calls` calls) at once, as after an outage that filled the outbox; reported: the time
  until Redis acknowledged them all (A's flush), until B's subscriber had them all, and the
  CPU of this process and of Redis per event.
- `lost`: after the drain, Redis is restarted empty while B's reader is held back, as if
  it were behind; A publishes one more event per call. Reported: the events A wrote again
  (its last `--window` seconds of acknowledged ones), the time until B had every event
  once and in order, and how many repeats B's reader skipped.

Run it from a checkout: the bus code is the checkout's (`pipeline/delivery/redis_bus.py`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scale_out import RedisProc

from pipeline.delivery.redis_bus import RedisBus


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _event(call_id: str, seq: int) -> bytes:
    body = {"type": "transcript.final", "callId": call_id, "seq": seq, "time": "2026-11-21T10:00:00.000Z",
            "participant": "4:+15551234", "role": "customer", "utteranceId": f"u-{seq}", "startMs": seq * 1000,
            "endMs": seq * 1000 + 900, "text": "thanks for calling I can help you with that today " * 4}  # fmt: skip
    return json.dumps(body).encode()


async def _take(sub, n: int, timeout: float) -> list:
    async with asyncio.timeout(timeout):
        return [await sub.get() for _ in range(n)]


async def run(args: argparse.Namespace, rds: RedisProc) -> dict:
    try:
        a = RedisBus(rds.url, resend_window_s=args.window)
    except TypeError:  # a checkout from before the resend window (the drain part still runs)
        a = RedisBus(rds.url)
    b = RedisBus(rds.url, default_maxsize=args.events + 10 * args.calls)
    await a.start()
    await b.start()
    calls = [f"drain-{i}" for i in range(args.calls)]
    per_call = args.events // args.calls
    out: dict = {}
    try:
        fire = b.subscribe(None)
        cpu0, rcpu0, t0 = _cpu_s(), rds.cpu(), time.perf_counter()
        for seq in range(1, per_call + 1):
            for call_id in calls:
                a.publish(call_id, seq, _event(call_id, seq))
        assert await a.flush(timeout=300)
        t_acked = time.perf_counter()
        got = await _take(fire, per_call * len(calls), 300)
        t_read = time.perf_counter()
        n = len(got)
        out["drain"] = {"events": n, "acked_s": t_acked - t0, "delivered_s": t_read - t0,
                        "events_per_s": n / (t_read - t0), "cpu_us_per_event": (_cpu_s() - cpu0) / n * 1e6,
                        "redis_cpu_us_per_event": (rds.cpu() - rcpu0) / n * 1e6}  # fmt: skip

        # B falls behind, Redis comes back empty, A goes on.
        gate = asyncio.Event()
        xread = b._reader.xread

        async def held(*a_, **kw):
            await gate.wait()
            return await xread(*a_, **kw)

        b._reader.xread = held
        await asyncio.sleep(0.7)  # B's read in flight returns
        for call_id in calls:
            a.publish(call_id, per_call + 1, _event(call_id, per_call + 1))
        assert await a.flush(timeout=60)
        await asyncio.to_thread(rds.stop)
        await asyncio.to_thread(rds.start)
        t1 = time.perf_counter()
        for call_id in calls:
            a.publish(call_id, per_call + 2, _event(call_id, per_call + 2))
        gate.set()
        try:
            got = await _take(fire, 2 * len(calls), 30)
        except TimeoutError:
            got = [fire._queue[i] for i in range(fire.depth)]  # what did arrive
        t_all = time.perf_counter()
        by_call: dict[str, list[int]] = {}
        for d in got:
            by_call.setdefault(d.call_id, []).append(d.seq)
        in_order = all(v == [per_call + 1, per_call + 2] for v in by_call.values()) and len(
            by_call
        ) == len(calls)
        await asyncio.sleep(0.5)
        out["lost"] = {"resent": getattr(a, "resent", "-"), "repeats_skipped": getattr(b, "repeats_skipped", "-"),
                       "gaps": getattr(b, "gaps", "-"),
                       "recovered_s": t_all - t1, "every_event_once_in_order": in_order and fire.depth == 0}  # fmt: skip
    finally:
        await a.aclose()
        await b.aclose()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=50_000)
    ap.add_argument("--calls", type=int, default=100)
    ap.add_argument(
        "--window", type=float, default=10.0, help="the publisher's resend window, seconds"
    )
    args = ap.parse_args()
    os.sched_setaffinity(0, {0})
    with tempfile.TemporaryDirectory(prefix="bus-drain-") as tmp:
        rds = RedisProc(1, Path(tmp))
        rds.start()
        try:
            result = asyncio.run(run(args, rds))
        finally:
            rds.stop()
    d, lost = result["drain"], result["lost"]
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}  events={d['events']} calls={args.calls}"
    )
    print(f"drain: acked by Redis in {d['acked_s']:.2f} s, all read by B in {d['delivered_s']:.2f} s "
          f"({d['events_per_s']:.0f} events/s); this process {d['cpu_us_per_event']:.1f} µs/event, "
          f"Redis {d['redis_cpu_us_per_event']:.1f} µs/event")  # fmt: skip
    print(f"lost: A wrote {lost['resent']} events again; B skipped {lost['repeats_skipped']} repeats, "
          f"{lost['gaps']} holes; every call's two newest events at B {lost['recovered_s']:.2f} s after the restart; "
          f"each once and in order: {lost['every_event_once_in_order']}")  # fmt: skip
    return 0 if lost["every_event_once_in_order"] else 1


if __name__ == "__main__":
    sys.exit(main())
