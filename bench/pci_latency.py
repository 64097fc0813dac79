"""Intent-to-pause latency: from the partial transcript that carries a payment intent to
the recording pause request leaving callstream.

    /tmp/venv/bin/python bench/pci_latency.py                 # 300 calls, 10 concurrent
    /tmp/venv/bin/python bench/pci_latency.py --calls 50 --concurrency 1

Runs `callstream serve` (speech `acs`: ACS's own transcription passed through, so no
decoding in the way) pinned to core 0, configured against the local fake of ACS Call
Automation from tests/fake_acs.py (HMAC-checked, answering at once), and drives it from
core 1. For every call: register a recording (`POST /calls/{id}/recording`), open the
`/media` websocket, send a few ordinary transcript frames, then an Intermediate
TranscriptionData whose text carries "card number". Two figures per pause:

- **in process** (the goal's definition): the audit's `sentAfterMs` of the first pause
  attempt = from the moment the session received that partial to azure-core handing the
  request to the transport (its `raw_request_hook`);
- **on the wire**: from this script sending the frame to the fake receiving the pause
  request (adds websocket, parse and HTTP connect; one clock, the same process).

Calls run `--concurrency` at a time, so the service also carries other calls' frames.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from azure.communication.callautomation import CallAutomationClient  # noqa: E402
from azure.core.credentials import AzureKeyCredential  # noqa: E402
from procstat import core_busy_s  # noqa: E402  (bench/ is on sys.path when run as a script)
from websockets.asyncio.client import connect  # noqa: E402

from tests.fake_acs import FakeAcs  # noqa: E402

PORT = 18790


def transcription(text: str, status: str, participant: str, offset_ms: int) -> str:
    return json.dumps({
        "kind": "TranscriptionData",
        "transcriptionData": {
            "text": text, "format": "display", "confidence": 0.9, "offset": offset_ms * 10_000,
            "duration": 5_000_000, "words": [], "participantRawID": participant, "resultStatus": status,
        },
    })  # fmt: skip


def post(url: str, body: dict) -> int:
    req = urllib.request.Request(
        url, json.dumps(body).encode(), {"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        return r.status


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


async def one_call(i: int, base: str, fake: FakeAcs, sent_at: dict[str, float]) -> None:
    call_id = f"bench-pci-{i}"
    client = CallAutomationClient(fake.endpoint, AzureKeyCredential(fake.access_key), retry_total=0)
    props = await asyncio.to_thread(client.start_recording, server_call_id=f"server-call-{i}")
    rid = props.recording_id
    await asyncio.to_thread(post, f"{base}/calls/{call_id}/recording", {"recordingId": rid})
    async with connect(
        f"ws://127.0.0.1:{PORT}/media", additional_headers={"x-ms-call-connection-id": call_id}
    ) as ws:
        await ws.send(
            transcription("hello thanks for calling how can i help", "Final", "8:acs:agent", 0)
        )
        await ws.send(transcription("hi i want to pay my bill", "Final", "4:+15550100", 2000))
        await asyncio.sleep(0.05)
        sent_at[rid] = time.monotonic()
        await ws.send(
            transcription("sure can i take the card number", "Intermediate", "8:acs:agent", 4000)
        )
        await ws.send(
            transcription("sure can i take the card number please", "Final", "8:acs:agent", 4000)
        )
        deadline = time.monotonic() + 10

        # The fake records requests on its own threads: poll it.
        def paused() -> bool:
            return any(r.recording_id == rid for r in fake.of("pause"))

        while not paused() and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        await ws.send(
            transcription("thanks your payment has gone through", "Final", "8:acs:agent", 9000)
        )
        await asyncio.sleep(0.05)


async def run(args: argparse.Namespace) -> dict:
    fake = FakeAcs()
    fake.start()
    data = tempfile.mkdtemp(prefix="bench-pci-")
    env = {
        **os.environ, "CALLSTREAM_STT": "acs", "CALLSTREAM_PORT": str(PORT), "CALLSTREAM_DATA_DIR": data,
        "CALLSTREAM_ACS_ENDPOINT": fake.endpoint, "CALLSTREAM_ACS_KEY": fake.access_key,
        "CALLSTREAM_LOG_LEVEL": "WARNING",
    }  # fmt: skip
    proc = subprocess.Popen(  # noqa: ASYNC220 - once, before anything is measured
        ["taskset", "-c", "0", sys.executable, "-m", "pipeline.cli.commands", "serve"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{PORT}"
    try:
        for _ in range(300):
            try:
                if get_json(f"{base}/readyz")["ready"]:
                    break
            except OSError:
                await asyncio.sleep(0.2)
        # Warm-up (imports of the SDK, first HTTP connection): not measured.
        await one_call(-1, base, fake, {})
        sent_at: dict[str, float] = {}
        busy0 = core_busy_s(0)
        sem = asyncio.Semaphore(args.concurrency)

        async def guarded(i: int) -> None:
            async with sem:
                await one_call(i, base, fake, sent_at)

        t0 = time.monotonic()
        await asyncio.gather(*(guarded(i) for i in range(args.calls)))
        wall = time.monotonic() - t0
        busy1 = core_busy_s(0)
        await asyncio.sleep(1.5)  # calls end, audits are written
        wire = []
        for r in fake.of("pause"):
            if r.recording_id in sent_at:
                wire.append((r.t_mono - sent_at[r.recording_id]) * 1000)
        in_process = []
        for i in range(args.calls):
            # A pause is audited once ACS confirmed it (or after the confirmation wait).
            deadline = time.monotonic() + 15
            while True:
                doc = await asyncio.to_thread(get_json, f"{base}/calls/bench-pci-{i}/audit")
                first = [
                    x
                    for x in doc["requests"]
                    if x.get("action") == "pause" and x.get("attempt") == 1
                ]
                if first or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            if first and first[0].get("sentAfterMs") is not None:
                in_process.append(first[0]["sentAfterMs"])
    finally:
        proc.terminate()
        proc.wait(30)
        fake.stop()
    return {
        "calls": args.calls, "concurrency": args.concurrency, "wall_s": round(wall, 1),
        "server_core_busy": round((busy1[0] - busy0[0]) / wall, 2), "steal_s": round(busy1[1] - busy0[1], 2),
        "in_process_ms": in_process, "wire_ms": wire,
    }  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=10)
    ap.add_argument("--json", help="write the raw figures here")
    args = ap.parse_args()
    os.sched_setaffinity(0, {1})
    res = asyncio.run(run(args))
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}  calls={res['calls']}"
          f" concurrency={res['concurrency']}  wall={res['wall_s']} s  server core busy {res['server_core_busy']:.0%}"
          f"  steal {res['steal_s']} s")  # fmt: skip
    print("| measure | n | p50 ms | p90 ms | p99 ms | max ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, key in (("in process: partial received -> pause request sent", "in_process_ms"),
                      ("on the wire: frame sent -> fake ACS receives the pause", "wire_ms")):  # fmt: skip
        v = res[key]
        if v:
            print(
                f"| {name} | {len(v)} | {statistics.median(v):.1f} | {pct(v, 90):.1f} | {pct(v, 99):.1f} | {max(v):.1f} |"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(res))


if __name__ == "__main__":
    main()
