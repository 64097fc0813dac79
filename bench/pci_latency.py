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

`--payment-call` measures the whole path instead, on the call's own timeline (issue 18):

    .venv/bin/python bench/pci_latency.py --payment-call --runs 10 --fail 2
    .venv/bin/python bench/pci_latency.py --payment-call --runs 10 --fail 2 --intent card

tests/fixtures/payment_call.wav (through its customer's card number) streamed in real
time to `callstream serve` with the local engine, the call answered through the fake of
ACS (so the recording's state comes back by callback, as in production), whose first
`--fail` pause requests answer HTTP 500. Per run, in ms of the call's audio: when the
agent's intent words ended (pocketsphinx's own word alignment of the agent's turn, the
first prefix the payment guard opens on), when the window opened, each pause request
(sent, outcome, hedge), when ACS's confirmation arrived (`pauseConfirmedMs`), and when
the customer's first digit began (the digit word's alignment; the VAD's start of that
utterance, `startMs`, is earlier still). `--intent card` keeps only the phrases about
the card itself ("number on the front", ...), as on a call where the agent asks for the
card without announcing the payment: the intent then ends 1.6 s before the first digit
instead of 4.7 s.
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

FIXTURES = REPO / "tests" / "fixtures"

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


# ----- --payment-call: the fixture's timeline ----------------------------------------------
# Phrases about the card itself (the default list without "take the payment" and the like).
CARD_PHRASES = (
    "card number|long number|number on the front|card details|expiry date|security code|cvv"
)
DIGIT_WORDS = {"zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}
SECRET = "bench-pci-secret"
REPLAY_UNTIL_MS = 12_500  # through the customer's card number


def aligned(
    pcm: bytes, from_ms: int, to_ms: int, digits: bool = False
) -> list[tuple[str, int, int]]:
    """(word, start ms, end ms) of one turn, by the local engine's own model, whole."""
    from workers.stt.local_decoding import DEFAULT_OPTIONS, new_decoder

    dec = new_decoder(DEFAULT_OPTIONS, digits=digits)
    dec.start_utt()
    dec.process_raw(pcm[from_ms * 32 : to_ms * 32], full_utt=True)
    dec.end_utt()
    return [
        (x.word, from_ms + x.start_frame * 10, from_ms + x.end_frame * 10)
        for x in dec.seg()
        if x.word and x.word[0] not in "<[" and not x.word.startswith("++")
    ]


def audio_marks(intent_phrases: str | None) -> dict[str, int]:
    """When the intent words ended (the first word prefix of the agent's turn the guard
    opens on) and when the customer's first digit began, in ms of the call's audio."""
    from models.settings import load_settings
    from pipeline.cli.replay import AGENT_ID, CUSTOMER_ID, load_call_audio
    from pipeline.pci.payment_guard import GuardPolicy, PaymentGuard

    manifest = json.loads((FIXTURES / "payment_call.json").read_text())
    agent, customer = manifest["utterances"][0], manifest["utterances"][1]
    tracks = dict(load_call_audio(FIXTURES / "payment_call.wav").tracks)
    over = {"payment_intent_phrases": intent_phrases} if intent_phrases else {}
    policy = GuardPolicy.from_settings(load_settings(environ={}, overrides=over))
    words = aligned(tracks[AGENT_ID], agent["startMs"] - 300, agent["endMs"] + 400)
    intent_end = next(
        end
        for i, (_, _, end) in enumerate(words)
        if PaymentGuard(policy).on_text(" ".join(w for w, _, _ in words[: i + 1]), "agent", 0, 0)
    )
    said = aligned(tracks[CUSTOMER_ID], customer["startMs"] - 300, customer["endMs"] + 400, True)
    first_digit = next(start for w, start, _ in said if w in DIGIT_WORDS)
    return {"intentEndMs": intent_end, "agentEndMs": agent["endMs"], "firstDigitMs": first_digit,
            "customerStartMs": customer["startMs"]}  # fmt: skip


async def stored_events(ws_base: str, call_id: str) -> list[dict]:
    async with connect(f"{ws_base}/calls/{call_id}/events?since=0", max_size=None) as ws:
        return [json.loads(raw) async for raw in ws]


async def one_payment_call(i: int, base: str, fake: FakeAcs, fail: int) -> dict:
    from pipeline.cli.replay import CallAudio, load_call_audio, replay_call
    from tests.fake_acs import post_event_grid

    call_id = f"bench-payment-{i}"
    fake.next_call_connection_id = call_id
    before = len(fake.of("start_recording"))
    await asyncio.to_thread(
        post_event_grid, f"{base}/acs/events?secret={SECRET}", fake.incoming_call()
    )
    while len([r for r in fake.of("start_recording") if r.status == 200]) <= before:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    fake.script("pause", *([500] * fail))
    audio = load_call_audio(FIXTURES / "payment_call.wav")
    cut = REPLAY_UNTIL_MS * 32
    audio = CallAudio(audio.rate, [(p, pcm[:cut]) for p, pcm in audio.tracks])
    await replay_call(f"ws://127.0.0.1:{PORT}/media", audio, call_id, speed=1.0)
    while True:  # the call ends (its window closes with it); then its audit is complete
        doc = await asyncio.to_thread(get_json, f"{base}/calls/{call_id}/audit")
        if any(r["kind"] == "window.closed" for r in doc.get("records", [])):
            break
        await asyncio.sleep(0.2)
    events = await stored_events(f"ws://127.0.0.1:{PORT}", call_id)
    [w] = doc["windows"][:1]
    customer = [
        e for e in events if e["type"].startswith("transcript.") and e["role"] == "customer"
    ]
    return {
        "callId": call_id, "trigger": w["trigger"], "openMs": w["startMs"],
        "confirmedMs": w["pauseConfirmedMs"], "exposures": doc["exposures"],
        "customerStartMs": customer[0]["startMs"] if customer else None,
        "requests": [
            {"attempt": r["attempt"], "outcome": r.get("outcome"), "hedge": r.get("hedge", False),
             "sentMs": None if r.get("sentAfterMs") is None else round(w["startMs"] + r["sentAfterMs"]),
             "answeredMs": round(w["startMs"] + r["latencyMs"])}
            for r in doc["requests"] if r["kind"] == "recording.request" and r["action"] == "pause"
        ],
    }  # fmt: skip


async def run_payment_calls(runs: int, fail: int, intent: str) -> dict:
    phrases = CARD_PHRASES if intent == "card" else None
    marks = await asyncio.to_thread(audio_marks, phrases)
    fake = FakeAcs()
    fake.start()
    data = tempfile.mkdtemp(prefix="bench-pci-call-")
    base = f"http://127.0.0.1:{PORT}"
    env = {
        **os.environ, "CALLSTREAM_STT": "local", "CALLSTREAM_PORT": str(PORT), "CALLSTREAM_DATA_DIR": data,
        "CALLSTREAM_PUBLIC_URL": base, "CALLSTREAM_ACS_ENDPOINT": fake.endpoint,
        "CALLSTREAM_ACS_KEY": fake.access_key, "CALLSTREAM_MEDIA_AUTH": "off",
        "CALLSTREAM_CALLBACK_SECRET": SECRET, "CALLSTREAM_LOG_LEVEL": "WARNING",
        **({"CALLSTREAM_PAYMENT_INTENT_PHRASES": phrases} if phrases else {}),
    }  # fmt: skip
    proc = subprocess.Popen(  # noqa: ASYNC220 - once, before anything is measured
        [sys.executable, "-m", "pipeline.cli.commands", "serve"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    calls = []
    try:
        for _ in range(600):
            try:
                if get_json(f"{base}/readyz")["ready"]:
                    break
            except OSError:
                await asyncio.sleep(0.2)
        for i in range(runs):
            calls.append(await one_payment_call(i, base, fake, fail))
    finally:
        proc.terminate()
        proc.wait(30)
        fake.stop()
    return {"runs": runs, "fail": fail, "intent": intent, "marks": marks, "calls": calls,
            "load": os.getloadavg()}  # fmt: skip


def report(res: dict) -> None:
    m = res["marks"]
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}  payment call, {res['runs']} runs,"
          f" first {res['fail']} pauses HTTP 500, intent phrases: {res['intent']};"
          f" load average {res['load'][0]:.1f} on {os.cpu_count()} cores")  # fmt: skip
    print(
        f"# audio: intent words end {m['intentEndMs']} ms, agent stops {m['agentEndMs']} ms,"
        f" customer's turn {m['customerStartMs']} ms, first digit word {m['firstDigitMs']} ms"
    )
    print(
        "| run | window opened | pause requests: sent (outcome) | confirmed | first digit - confirmed |"
    )
    print("| ---: | ---: | --- | ---: | ---: |")
    cols: dict[str, list[float]] = {"open": [], "confirm": [], "total": [], "margin": []}
    for i, c in enumerate(res["calls"]):
        reqs = ", ".join(
            f"{r['sentMs']} ({r['outcome']}{', hedge' if r['hedge'] else ''})"
            for r in c["requests"]
        )
        conf = c["confirmedMs"]
        margin = None if conf is None else m["firstDigitMs"] - conf
        print(f"| {i + 1} | {c['openMs']} ({c['trigger']}) | {reqs} | {conf} | {margin} |")
        cols["open"].append(c["openMs"] - m["intentEndMs"])
        if conf is not None:
            cols["confirm"].append(conf - c["openMs"])
            cols["total"].append(conf - m["intentEndMs"])
            cols["margin"].append(margin)
    print()
    print("| ms | n | p50 | p95 | min | max |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    names = {"open": "intent words end -> window opens", "confirm": "window opens -> pause confirmed",
             "total": "intent words end -> pause confirmed", "margin": "pause confirmed -> first digit (margin)"}  # fmt: skip
    for key, name in names.items():
        v = cols[key]
        if v:
            print(
                f"| {name} | {len(v)} | {statistics.median(v):.0f} | {pct(v, 95):.0f} | {min(v):.0f} | {max(v):.0f} |"
            )
    exposed = sum(1 for c in res["calls"] if c["exposures"])
    print(f"\nexposures on record: {exposed} of {len(res['calls'])} calls")


# ----- --false-triggers: what the guard opens on, looking more often --------------------
SCANNED = ("pipeline/cli/assets/sample_call", "tests/fixtures/support_call",
           "tests/fixtures/phone/festival_mulaw_unmixed", "tests/fixtures/phone/clean16k",
           "tests/fixtures/phone/mulaw_noise20", "tests/fixtures/payment_call")  # fmt: skip


def guard_looks(name: str, look_ms: int, publish_ms: int = 300) -> dict:
    """One fixture's turns decoded as a worker does (100 ms batches, a look every
    ``look_ms``, thinned as `workers.stt.local` sends them), every partial and final read
    by a payment guard with the default policy: what opened a window, and when."""
    from models.settings import load_settings
    from pipeline.cli.replay import load_call_audio
    from pipeline.pci.payment_guard import GuardPolicy, PaymentGuard
    from workers.stt.local import _thin
    from workers.stt.local_decoding import Decoders, UtteranceDecoding

    manifest = json.loads((REPO / f"{name}.json").read_text())
    tracks = load_call_audio(REPO / f"{name}.wav").tracks
    by_role = {"customer": tracks[0][1], "agent": tracks[-1][1]}  # (mixed: one track)
    guard = PaymentGuard(GuardPolicy.from_settings(load_settings(environ={})))
    decoders, opened, partials, cpu = Decoders(), [], 0, time.process_time()
    for u in manifest["utterances"]:
        pcm, start, end = by_role[u["role"]], max(0, u["startMs"] - 300), u["endMs"] + 400
        utt = UtteranceDecoding(decoders, start, partial_interval_ms=look_ms)
        results, last = [], {}
        for ms in range(start, end, 100):
            for text, end_ms in _thin(
                utt.feed(pcm[ms * 32 : (ms + 100) * 32]), last, 0, publish_ms
            ):
                results.append((text, end_ms))
        final, _ = utt.finish()
        partials += len(results)
        for text, end_ms in [*results, (final, end)]:
            d = guard.on_text(text, u["role"], start, end_ms)
            if d is not None and d.action == "open":
                opened.append(
                    {"atMs": end_ms, "role": u["role"], "trigger": d.trigger, "heard": text}
                )
        if guard.is_open and "payment_call" not in name:
            guard.manual("resume", end)  # count every false window, not just the first
    return {"fixture": name, "lookMs": look_ms, "partials": partials, "opened": opened,
            "cpuS": round(time.process_time() - cpu, 2)}  # fmt: skip


def false_triggers() -> None:
    print("| fixture | look every | partials sent | windows opened (at ms: trigger, heard) |")
    print("| --- | ---: | ---: | --- |")
    for name in SCANNED:
        for look in (300, 20):
            r = guard_looks(name, look)
            opened = "; ".join(
                f"{o['atMs']}: {o['trigger']} ({o['role']}: ...{o['heard'][-40:]})"
                for o in r["opened"]
            )
            print(f"| {Path(name).name} | {look} ms | {r['partials']} | {opened or 'none'} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--concurrency", type=int, default=10)
    ap.add_argument("--json", help="write the raw figures here")
    ap.add_argument("--payment-call", action="store_true", help="the fixture's timeline instead")
    ap.add_argument("--runs", type=int, default=10, help="--payment-call: calls, one at a time")
    ap.add_argument("--fail", type=int, default=2, help="--payment-call: pauses answered 500")
    ap.add_argument("--intent", choices=("default", "card"), default="default")
    ap.add_argument("--false-triggers", action="store_true", help="scan fixtures, in process")
    args = ap.parse_args()
    if args.false_triggers:
        false_triggers()
        return
    if args.payment_call:
        res = asyncio.run(run_payment_calls(args.runs, args.fail, args.intent))
        report(res)
        if args.json:
            Path(args.json).write_text(json.dumps(res))
        return
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
