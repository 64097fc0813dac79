"""Local speech (pocketsphinx) benchmark: real-time factor and concurrent-stream capacity.

Feeds the fixture's utterances (tests/fixtures/support_call.json: startMs/endMs and role
of each; the matching channel of support_call.wav is sliced) to
`workers.stt.local.LocalSpeechEngine` as fast as possible, with the service's default
partial interval (300 ms), and measures:

1. One stream at a time on 1 worker: per-utterance real-time factor, both as the worker's
   own decode time / audio time (`engine.stats`) and as wall time from the first push to
   the final / audio time (adds IPC and batching).
2. N concurrent streams on 2 workers: aggregate throughput = audio seconds decoded per
   wall second (= how many real-time speaking streams the machine sustains), and the
   same from the workers' CPU time (audio s per worker CPU s x 2 cores), which is less
   sensitive to other processes sharing this machine.

A call has two participants who each speak about half the time, so about one speaking
stream per call on average: concurrent calls ~= concurrent real-time speaking streams.

    .venv/bin/python bench/local_speech.py                  # streams 2,4,6; 2 rounds
    .venv/bin/python bench/local_speech.py --streams 4 --rounds 5
    .venv/bin/python bench/local_speech.py --fixture tests/fixtures/phone/mulaw   # telephone audio
    .venv/bin/python bench/local_speech.py --options none   # pocketsphinx defaults (before issue 15)

Each concurrent lane is one channel (`channel=lane<k>`), so its utterances start from the
lane's cepstral mean as a call's participant's do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

FIXTURE = REPO / "tests" / "fixtures" / "support_call"
CLK_TCK = os.sysconf("SC_CLK_TCK")
OPTIONS: dict | None = None  # pocketsphinx options (--options); None = the engine's defaults


def load_utterances(base: Path) -> list[tuple[str, bytes]]:
    """(role, PCM16 16 kHz mono) for each utterance of the fixture. A fixture stored at
    another rate (the telephone ones in tests/fixtures/phone/ are at 8 kHz) is brought to
    16 kHz by the replay's own resampler, as callstream receives it."""
    from pipeline.cli.replay import load_call_audio

    meta = json.loads(base.with_suffix(".json").read_text())
    audio = load_call_audio(base.with_suffix(".wav"), 16000)
    samples = np.stack([np.frombuffer(pcm, dtype="<i2") for _, pcm in audio.tracks], axis=1)
    nch = samples.shape[1]
    channels = meta.get("channels")  # {"left": role, "right": role}, or "mixed"
    side = (
        {role: (0 if ch == "left" else 1) for ch, role in channels.items()}
        if isinstance(channels, dict)
        else {}
    )
    out = []
    for u in meta["utterances"]:
        col = side[u["role"]] if nch == 2 else 0
        a, b = u["startMs"] * 16, u["endMs"] * 16
        out.append((u["role"], np.ascontiguousarray(samples[a:b, col]).tobytes()))
    return out


def proc_cpu_s(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


async def decode(
    engine, uid: str, pcm: bytes, chunk: int = 640, channel: str | None = None
) -> tuple[float, str]:
    """Push one utterance in 20 ms pieces as fast as possible; wall seconds to its final."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[str] = loop.create_future()

    def on_result(r) -> None:
        if r.is_final and not done.done():
            done.set_result(r.text)

    t0 = time.perf_counter()
    stream = engine.open_stream(uid, 0, on_result, channel=channel)
    for pos in range(0, len(pcm), chunk):
        stream.push(pcm[pos : pos + chunk])
    stream.end(len(pcm) // 32)
    text = await done
    return time.perf_counter() - t0, text


async def single(utts: list[tuple[str, bytes]], rounds: int) -> dict:
    from workers.stt.local import LocalSpeechEngine

    engine = LocalSpeechEngine(workers=1, decoder_options=OPTIONS)
    t = time.perf_counter()
    await engine.start()
    start_s = time.perf_counter() - t
    try:
        await decode(engine, "warm", utts[0][1])  # first decode pays page faults
        engine.stats.utterances, engine.stats.decode_s, engine.stats.audio_s = 0, 0.0, 0.0
        walls, rtfs = [], []
        texts = []
        for r in range(rounds):
            for i, (_role, pcm) in enumerate(utts):
                before = engine.stats.decode_s
                wall, text = await decode(engine, f"s{r}-{i}", pcm)
                audio_s = len(pcm) / 32000
                walls.append(wall / audio_s)
                rtfs.append((engine.stats.decode_s - before) / audio_s)
                if r == 0:
                    texts.append(text)
        return {
            "engine_start_s": round(start_s, 2),
            "utterances": len(walls),
            "audio_s": round(engine.stats.audio_s, 2),
            "rtf_decode_mean": round(engine.stats.real_time_factor, 3),
            "rtf_decode_p50": round(statistics.median(rtfs), 3),
            "rtf_decode_max": round(max(rtfs), 3),
            "rtf_wall_p50": round(statistics.median(walls), 3),
            "rtf_wall_max": round(max(walls), 3),
            "texts": texts,
        }
    finally:
        await engine.aclose()


async def concurrent(
    utts: list[tuple[str, bytes]], streams: int, rounds: int, workers: int
) -> dict:
    from workers.stt.local import LocalSpeechEngine

    engine = LocalSpeechEngine(workers=workers, decoder_options=OPTIONS)
    await engine.start()
    try:
        # Warm every worker's decoder pool up to the concurrency it will see.
        await asyncio.gather(
            *(decode(engine, f"w{k}", utts[k % len(utts)][1]) for k in range(streams))
        )
        pids = engine.worker_pids()
        cpu0 = sum(proc_cpu_s(p) for p in pids)
        self0 = os.times()
        audio = 0.0

        async def lane(k: int) -> float:
            a = 0.0
            for r in range(rounds):
                for j in range(len(utts)):
                    pcm = utts[(j + k) % len(utts)][1]
                    await decode(engine, f"c{k}-{r}-{j}", pcm, channel=f"lane{k}")
                    a += len(pcm) / 32000
            return a

        t0 = time.perf_counter()
        audio = sum(await asyncio.gather(*(lane(k) for k in range(streams))))
        wall = time.perf_counter() - t0
        worker_cpu = sum(proc_cpu_s(p) for p in pids) - cpu0
        self1 = os.times()
        parent_cpu = (self1.user + self1.system) - (self0.user + self0.system)
        return {
            "streams": streams,
            "workers": workers,
            "audio_s": round(audio, 1),
            "wall_s": round(wall, 2),
            "throughput_x_realtime": round(audio / wall, 2),
            "worker_cpu_s": round(worker_cpu, 2),
            "audio_per_worker_cpu_s": round(audio / worker_cpu, 2) if worker_cpu else None,
            "capacity_2_cores_from_cpu": round(2 * audio / worker_cpu, 2) if worker_cpu else None,
            "parent_cpu_s": round(parent_cpu, 2),
            "rtf_decode_mean": round(engine.stats.real_time_factor, 3),
        }
    finally:
        await engine.aclose()


async def amain(args: argparse.Namespace) -> int:
    utts = load_utterances(Path(args.fixture))
    total = sum(len(p) for _, p in utts) / 32000
    print(
        f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}  nproc={os.cpu_count()}  "
        f"{len(utts)} utterances, {total:.1f} s of speech",
        flush=True,
    )
    results: dict = {}
    s = await single(utts, args.rounds)
    results["single"] = s
    print(
        f"1 stream, 1 worker: engine start {s['engine_start_s']} s; RTF decode mean {s['rtf_decode_mean']} "
        f"(p50 {s['rtf_decode_p50']}, max {s['rtf_decode_max']}); RTF wall p50 {s['rtf_wall_p50']} "
        f"(max {s['rtf_wall_max']}) over {s['utterances']} utterances / {s['audio_s']} s",
        flush=True,
    )
    if args.show_text:
        for (role, _), text in zip(utts, s["texts"], strict=True):
            print(f"  {role}: {text}")
    results["concurrent"] = []
    print(
        f"{'streams':>7} {'workers':>7} {'audio s':>8} {'wall s':>7} {'x realtime':>10} "
        f"{'wkr CPU s':>9} {'audio/CPU':>9} {'cap 2 cores':>11} {'RTF':>6}"
    )
    for n in [int(x) for x in args.streams.split(",")]:
        c = await concurrent(utts, n, args.rounds, args.workers)
        results["concurrent"].append(c)
        print(
            f"{c['streams']:>7} {c['workers']:>7} {c['audio_s']:>8} {c['wall_s']:>7} "
            f"{c['throughput_x_realtime']:>10} {c['worker_cpu_s']:>9} {c['audio_per_worker_cpu_s']:>9} "
            f"{c['capacity_2_cores_from_cpu']:>11} {c['rtf_decode_mean']:>6}",
            flush=True,
        )
    best = max(c["throughput_x_realtime"] for c in results["concurrent"])
    print(
        f"# sustained: ~{best:.1f} concurrent real-time speaking streams on {args.workers} workers "
        f"(measured wall throughput) => ~{best:.0f} calls at ~1 speaking stream per call "
        "(2 participants x ~50% talk time), before any headroom for the media path"
    )
    if args.json:
        await asyncio.to_thread(Path(args.json).write_text, json.dumps(results, indent=1))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description="local pocketsphinx RTF and capacity (see docstring)")
    ap.add_argument("--streams", default="2,4,6", help="concurrent stream counts, comma-separated")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="passes over the fixture's utterances")
    ap.add_argument("--fixture", default=str(FIXTURE), help="path without extension (.wav + .json)")
    ap.add_argument("--show-text", action="store_true", help="print the first round's transcripts")
    ap.add_argument(
        "--options",
        help="pocketsphinx options, comma-separated key=value (default: the engine's own); "
        "'none' = pocketsphinx's defaults, as the engine ran before issue 15",
    )
    ap.add_argument("--json", help="also write the raw results here")
    args = ap.parse_args()
    global OPTIONS
    if args.options:
        from speech_curve import parse_options

        OPTIONS = {} if args.options == "none" else parse_options(args.options)
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
