"""Speech accuracy on real human speech in telephone conditions: callstream end to end
against batch decoding with the same model, per condition.

    .venv/bin/python tests/fixtures/make_phone_fixtures.py        # once (needs the package)
    .venv/bin/python bench/speech_accuracy.py                     # every condition, real time
    .venv/bin/python bench/speech_accuracy.py --conditions mulaw,alaw --speed 0 --json out.json
    .venv/bin/python bench/speech_accuracy.py --rates 16000,24000 --show-text

Fixtures: ``tests/fixtures/phone/<condition>.{wav,json}`` (see its README.md): a call of
real recordings (pocketsphinx-testdata: spoken card names and numbers, a digit string,
LibriVox read speech), one clip per utterance, passed through a telephone channel.

For each condition (and delivery rate):

1. **batch**: every clip (the manifest's startMs..endMs, from the role's channel in the
   stereo call) is decoded whole by pocketsphinx's default US-English model in its
   default configuration (``Decoder(loglevel="FATAL", bestpath=True)``, cepstral mean reset
   to the model's initial value before the clip), with ``process_raw(full_utt=True)``: one
   call, the whole clip, batch CMN. It hears what callstream hears at that delivery rate:
   at 24 kHz the audio goes up to 24 kHz (the replay) and back to 16 kHz (the session's
   resampler) first.
2. **callstream**: ``python -m pipeline.cli.commands serve`` with ``CALLSTREAM_STT=local`` on a free
   loopback port and a temporary data dir (one server for the whole run; decoders carry
   nothing from one utterance to the next), a subscriber on
   ``ws://127.0.0.1:PORT/calls/{id}/events?since=0``, then
   ``python -m pipeline.cli.commands replay FILE --url ws://127.0.0.1:PORT/media --call-id ID
   --speed S --rate R``. ``transcript.final`` events are collected until ``call.ended``
   and assigned to clips by time: each final goes to the clip its [startMs, endMs] overlaps
   most (the nearest clip if it overlaps none; in a stereo call only clips of the final's
   role are candidates); a clip's hypothesis is its finals in startMs order.

Scoring (jiwer): lower-cased words, digits spelled out, punctuation dropped; WER over all
the clips of a condition (errors / reference words); digit recall = reference digit words
(zero..nine, oh) that the alignment marks equal / all of them.

Redaction: callstream never publishes raw text, and no setting turns the redactor off
(models/settings.py has none), so a final may carry tags such as ``[PHONE_NUMBER]``,
``[CREDIT_CARD]``, ``[CARD_SECURITY_CODE]``. For the callstream WER each tag is counted as
covering the reference words it replaced: a minimum-edit alignment in which a tag may stand
for any run of one or more reference words at no cost (or be an inserted word), and the tag
is replaced by those words before jiwer scores it. That is the most favourable reading of
a tag; the strict reading (a tag is one wrong word) is in the JSON, with how many tags
there were and how many reference (digit) words they covered. Batch text is never redacted.

Final latency (speed > 0 only): the clip's endMs on the call clock -> arrival of the last
final assigned to the clip at this subscriber, wall clock, where the call clock starts at
the ``time`` of ``call.started`` (stamped by the server when the first audio arrives; the
media clock of a speed-S replay runs S times the wall clock). endMs is the end of the
clip, which in these recordings is the last word plus 0-300 ms of the recording's own
trailing silence, so this slightly under-states latency from the last word's end.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import re
import shlex
import sys
import tempfile
import time
from collections.abc import Awaitable
from pathlib import Path

import jiwer
import numpy as np
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # tests/ (the server launcher) when run as a script

from pipeline.cli.replay import load_call_audio  # noqa: E402
from tests.conftest import Server, start_server  # noqa: E402

FIXTURES = REPO / "tests" / "fixtures" / "phone"
ORDER = [
    "clean16k",
    "band8k",
    "mulaw",
    "alaw",
    "mulaw_noise20",
    "mulaw_unmixed",
    "festival_mulaw_unmixed",
]
DIGIT_WORDS = frozenset("zero one two three four five six seven eight nine oh".split())
_DIGIT_NAMES = "zero one two three four five six seven eight nine".split()
_TAG = re.compile(r"(\[[A-Z][A-Z_]*\])")
_OTHER_TAG = "<tag>"  # a tag that covers no reference word: one inserted word


# --------------------------------------------------------------------------- scoring


def words(text: str) -> list[str]:
    """Lower-cased words, digits spelled out, punctuation dropped; ``[TAG]``s kept whole."""
    out: list[str] = []
    for part in _TAG.split(text):
        if _TAG.fullmatch(part):
            out.append(part)
            continue
        p = re.sub(r"\d", lambda m: f" {_DIGIT_NAMES[int(m.group())]} ", part.lower())
        out += re.sub(r"[^a-z' ]+", " ", p).replace("'", "").split()
    return out


def expand_tags(ref: list[str], hyp: list[str]) -> tuple[list[str], list[list[str]]]:
    """Replace each redaction tag in ``hyp`` by the reference words it covers in a
    minimum-edit alignment where a tag may stand for any run of >= 1 reference words at
    no cost; a tag covering nothing becomes one inserted word. Returns (hyp, covered)."""
    if not any(_TAG.fullmatch(w) for w in hyp):
        return hyp, []
    n, m = len(ref), len(hyp)
    inf = float("inf")
    cost = [[inf] * (m + 1) for _ in range(n + 1)]
    back: list[list[tuple[str, int] | None]] = [[None] * (m + 1) for _ in range(n + 1)]
    cost[0][0] = 0
    for i in range(n + 1):
        for j in range(m + 1):
            c = cost[i][j]
            if c == inf:
                continue
            moves: list[tuple[int, int, float, tuple[str, int]]] = []
            if i < n:
                moves.append((i + 1, j, 1, ("del", 0)))
            if j < m:
                moves.append((i, j + 1, 1, ("ins", 0)))
                if _TAG.fullmatch(hyp[j]):
                    moves += [(i + k, j + 1, 0, ("tag", k)) for k in range(1, n - i + 1)]
                elif i < n:
                    moves.append((i + 1, j + 1, 0 if ref[i] == hyp[j] else 1, ("sub", 0)))
            for ni, nj, dc, how in moves:
                if c + dc < cost[ni][nj]:
                    cost[ni][nj] = c + dc
                    back[ni][nj] = how
    out: list[str] = []
    covered: list[list[str]] = []
    i, j = n, m
    while i or j:
        how = back[i][j]
        assert how is not None
        kind, k = how
        if kind == "del":
            i -= 1
        elif kind == "ins":
            j -= 1
            out.append(_OTHER_TAG if _TAG.fullmatch(hyp[j]) else hyp[j])
            if _TAG.fullmatch(hyp[j]):
                covered.append([])
        elif kind == "tag":
            j -= 1
            out += reversed(ref[i - k : i])
            covered.append(ref[i - k : i])
            i -= k
        else:
            i, j = i - 1, j - 1
            out.append(hyp[j])
    return out[::-1], covered[::-1]


def score(refs: list[list[str]], hyps: list[list[str]]) -> dict:
    """Corpus WER and digit recall over clips (lists of words; a reference is never empty)."""
    out = jiwer.process_words([" ".join(r) for r in refs], [" ".join(h) for h in hyps])
    digits = sum(w in DIGIT_WORDS for r in refs for w in r)
    found = 0
    for r, chunks in zip(out.references, out.alignments, strict=True):
        for ch in chunks:
            if ch.type == "equal":
                found += sum(w in DIGIT_WORDS for w in r[ch.ref_start_idx : ch.ref_end_idx])
    n_words = sum(len(r) for r in refs)
    errors = out.substitutions + out.deletions + out.insertions
    return {
        "words": n_words,
        "errors": errors,
        "wer": errors / n_words,
        "substitutions": out.substitutions,
        "deletions": out.deletions,
        "insertions": out.insertions,
        "digit_words": digits,
        "digits_recalled": found,
        "digit_recall": found / digits if digits else None,
    }


# --------------------------------------------------------------------------- fixtures


def load_condition(name: str, rate: int = 16000) -> tuple[dict, np.ndarray, Path]:
    """The condition's call at 16 kHz as callstream hears it when it is delivered at
    `rate`: the replay's resampler brings the stored audio to `rate`, and at 24 kHz the
    session's own resampler (workers.resample) brings that down to 16 kHz."""
    wav_path = FIXTURES / f"{name}.wav"
    meta_path = FIXTURES / f"{name}.json"
    if not wav_path.exists() or not meta_path.exists():
        raise SystemExit(
            f"{wav_path} missing: run tests/fixtures/make_phone_fixtures.py (needs pocketsphinx-testdata, sox)"
        )
    meta = json.loads(meta_path.read_text())
    audio = load_call_audio(wav_path, rate)
    tracks = [pcm for _, pcm in audio.tracks]
    if rate != 16000:
        tracks = [_session_resample(pcm, rate) for pcm in tracks]
    n = min(len(t) for t in tracks) // 2
    samples = np.stack([np.frombuffer(t, dtype="<i2")[:n] for t in tracks], axis=1)
    return meta, samples, wav_path


def _session_resample(pcm: bytes, rate: int) -> bytes:
    from workers.resample import Resampler

    r = Resampler(rate)
    return r.process(pcm) + r.flush()


def clip_pcm(meta: dict, samples: np.ndarray, utt: dict) -> bytes:
    col = 0
    if samples.shape[1] == 2:
        side = {role: (0 if ch == "left" else 1) for ch, role in meta["channels"].items()}
        col = side[utt["role"]]
    a, b = utt["startMs"] * 16, utt["endMs"] * 16
    return np.ascontiguousarray(samples[a:b, col]).tobytes()


# --------------------------------------------------------------------------- batch


def batch_decode(meta: dict, samples: np.ndarray) -> list[str]:
    """Each clip whole, with the engine's decoder configuration (workers/stt/local.py)."""
    from pocketsphinx import Decoder

    decoder = Decoder(loglevel="FATAL", bestpath=True)
    initial_cmn = decoder.get_cmn()
    texts = []
    for utt in meta["utterances"]:
        decoder.set_cmn(initial_cmn)
        decoder.start_utt()
        decoder.process_raw(clip_pcm(meta, samples, utt), full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        texts.append(hyp.hypstr if hyp is not None else "")
    return texts


# --------------------------------------------------------------------------- callstream


def _epoch(iso: str) -> float:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def run_call(
    port: int, wav: Path, call_id: str, speed: float, rate: int, duration_s: float
) -> dict:
    """Subscribe, replay the call with `callstream replay`, collect events until call.ended."""
    events: list[tuple[float, dict]] = []
    ended = asyncio.Event()

    async def subscribe() -> None:
        last = 0
        while not ended.is_set():
            url = f"ws://127.0.0.1:{port}/calls/{call_id}/events?since={last}"
            try:
                async with connect(url, max_size=None) as ws:
                    async for raw in ws:
                        now = time.time()
                        ev = json.loads(raw)
                        last = max(last, int(ev.get("seq", 0)))
                        events.append((now, ev))
                        if ev.get("type") == "call.ended":
                            ended.set()
                            return
            except (OSError, ConnectionClosed, InvalidStatus):
                pass
            # closed before the call existed (or ended): subscribe again from where we were
            await asyncio.sleep(0.1)

    sub = asyncio.create_task(subscribe())
    cmd = [
        sys.executable, "-m", "pipeline.cli.commands", "replay", str(wav),
        "--url", f"ws://127.0.0.1:{port}/media", "--call-id", call_id,
        "--speed", f"{speed:g}", "--rate", str(rate),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        *cmd, cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    first = await proc.stdout.readline()
    t_print = time.time()
    out, err = await proc.communicate()
    if proc.returncode != 0:
        sub.cancel()
        raise RuntimeError(
            f"replay failed ({proc.returncode}): {(first + out).decode()} {err.decode()[-2000:]}"
        )
    timeout = 120 + (duration_s / speed if speed > 0 else duration_s)
    try:
        await asyncio.wait_for(ended.wait(), timeout)
    finally:
        sub.cancel()
    started = next((e for _, e in events if e.get("type") == "call.started"), None)
    return {
        "command": shlex.join(["python", *cmd[1:]]),
        "t_replay_printed": t_print,
        "t_call_started": _epoch(started["time"]) if started else None,
        "events": events,
    }


def assign(finals: list[dict], utts: list[dict], stereo: bool) -> tuple[list[list[int]], int]:
    """For each final (index), the clip it belongs to; and how many overlapped no clip."""
    per_clip: list[list[int]] = [[] for _ in utts]
    orphans = 0
    for k, f in enumerate(finals):
        cands = [i for i, u in enumerate(utts) if not stereo or u["role"] == f["role"]] or list(
            range(len(utts))
        )

        def overlap(i: int, f: dict = f) -> int:
            u = utts[i]
            return min(f["endMs"], u["endMs"]) - max(f["startMs"], u["startMs"])

        best = max(cands, key=overlap)  # no overlap anywhere: the least negative, the nearest
        if overlap(best) <= 0:
            orphans += 1
        per_clip[best].append(k)
    return per_clip, orphans


def percentile(xs: list[float], q: float) -> float | None:
    return float(np.percentile(xs, q)) if xs else None


# --------------------------------------------------------------------------- main


async def evaluate(
    name: str,
    rate: int,
    speed: float,
    server: Server,
    show_text: bool,
    batch_texts: Awaitable[list[str]] | None = None,
) -> dict:
    """One condition end to end, beside batch. `batch_texts`: batch decoding already under
    way elsewhere (the tests run it in another process while the call is replayed)."""
    meta, samples, wav = load_condition(name)
    utts = meta["utterances"]
    stereo = samples.shape[1] == 2
    refs = [words(u["text"]) for u in utts]

    call_id = f"acc-{name}-{rate // 1000}k-{int(time.time())}"
    duration_s = len(samples) / 16000
    run = await run_call(server.port, wav, call_id, speed, rate, duration_s)

    t = time.perf_counter()
    if batch_texts is not None:
        texts = await batch_texts
    else:
        texts = batch_decode(*load_condition(name, rate)[:2])
    batch_s = time.perf_counter() - t
    batch = score(refs, [words(x) for x in texts])
    finals = []
    for arrived, ev in run["events"]:
        if ev.get("type") == "transcript.final":
            finals.append({**ev, "arrived": arrived})
    finals.sort(key=lambda f: f["startMs"])
    per_clip, orphans = assign(finals, utts, stereo)

    t0 = run["t_call_started"] if run["t_call_started"] is not None else run["t_replay_printed"]
    clips = []
    e2e_hyps, strict_hyps = [], []
    tags, covered_words, covered_digits = 0, 0, 0
    latencies: list[float] = []
    for i, u in enumerate(utts):
        fs = [finals[k] for k in per_clip[i]]
        text = " ".join(f["text"] for f in fs)
        hyp = words(text)
        expanded, covered = expand_tags(refs[i], hyp)
        tags += len(covered)
        covered_words += sum(len(c) for c in covered)
        covered_digits += sum(w in DIGIT_WORDS for c in covered for w in c)
        e2e_hyps.append(expanded)
        strict_hyps.append([_OTHER_TAG if _TAG.fullmatch(w) else w for w in hyp])
        latency = None
        if fs and speed > 0:
            latency = max(f["arrived"] for f in fs) - (t0 + u["endMs"] / 1000 / speed)
            latencies.append(latency)
        clips.append(
            {
                "clip": u["clip"],
                "role": u["role"],
                "startMs": u["startMs"],
                "endMs": u["endMs"],
                "reference": u["text"],
                "batch": texts[i],
                "callstream": text,
                "finals": [
                    {
                        "startMs": f["startMs"],
                        "endMs": f["endMs"],
                        "text": f["text"],
                        "confidence": f["confidence"],
                        "redactions": f.get("redactions", []),
                        "arrivedAfterStartS": round(f["arrived"] - t0, 3),
                    }
                    for f in fs
                ],
                "finalLatencyS": round(latency, 3) if latency is not None else None,
            }
        )
    e2e = score(refs, e2e_hyps)
    strict = score(refs, strict_hyps)
    label = name if rate == 16000 else f"{name} @{rate // 1000}k"
    result = {
        "condition": name,
        "label": label,
        "rate": rate,
        "speed": speed,
        "description": meta.get("condition"),
        "clips": len(utts),
        "words": e2e["words"],
        "callstream": e2e,
        "callstream_strict_tags": strict,
        "batch": batch,
        "batch_decode_s": round(batch_s, 2),
        "redaction_tags": tags,
        "tag_covered_words": covered_words,
        "tag_covered_digit_words": covered_digits,
        "finals": len(finals),
        "finals_outside_clips": orphans,
        "clips_without_final": sum(1 for c in per_clip if not c),
        "latency_s": [round(x, 3) for x in latencies],
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
        "replay_command": run["command"],
        "call_started_minus_replay_print_s": (
            round(run["t_call_started"] - run["t_replay_printed"], 3)
            if run["t_call_started"] is not None
            else None
        ),
        "clip_detail": clips,
    }
    if show_text:
        print(f"\n## {label}", file=sys.stderr)
        for c in clips:
            lat = f"{c['finalLatencyS']:.2f} s" if c["finalLatencyS"] is not None else "-"
            segs = " | ".join(f"{f['startMs']}-{f['endMs']}: {f['text']}" for f in c["finals"])
            print(
                f"  {c['clip']} ({c['role']}, {c['startMs']}-{c['endMs']} ms, latency {lat})\n"
                f"    ref:   {c['reference']}\n    batch: {c['batch']}\n    e2e:   {segs or '(no final)'}",
                file=sys.stderr,
            )
    return result


async def _ready(value: list[str]) -> list[str]:
    return value


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def row(r: dict) -> str:
    cs, b = r["callstream"], r["batch"]
    lat = (
        f"{r['latency_p50_s']:.2f} / {r['latency_p95_s']:.2f} s (n={len(r['latency_s'])})"
        if r["latency_p50_s"] is not None
        else "n/a"
    )
    return (
        f"| {r['label']} | {r['clips']} | {r['words']} "
        f"| {pct(cs['wer'])} ({cs['errors']}/{cs['words']}) | {pct(b['wer'])} ({b['errors']}/{b['words']}) "
        f"| {cs['digits_recalled']}/{cs['digit_words']} | {b['digits_recalled']}/{b['digit_words']} "
        f"| {lat} |"
    )


def machine() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version()}


async def amain(args: argparse.Namespace) -> int:
    names = (
        [n.strip() for n in args.conditions.split(",") if n.strip()] if args.conditions else ORDER
    )
    rates = [int(x) for x in args.rates.split(",")]
    for r in rates:
        if r not in (16000, 24000):
            raise SystemExit(f"--rates: {r} is not 16000 or 24000")
    for n in names:
        load_condition(n)  # fail early on a missing fixture
    info = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "command": shlex.join(["python", *sys.argv]),
        **machine(),
        "loadavg_before": os.getloadavg(),
    }
    print(
        f"# {info['date']}  nproc={info['nproc']}  {info['cpu']}  loadavg {info['loadavg_before'][0]:.2f}",
        flush=True,
    )
    settings = {"CALLSTREAM_STT": "local", "CALLSTREAM_STT_WORKERS": str(args.workers)}
    info["server_settings"] = settings
    results = []
    # Batch once per condition, before any call: the same for every delivery rate, and
    # never competing with a call being measured.
    batches: dict[tuple[str, int], list[str]] = {}
    for name in names:
        for rate in rates:
            meta, samples, _ = load_condition(name, rate)
            batches[name, rate] = batch_decode(meta, samples)
            print(f"  batch {name} @{rate}", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="speech-accuracy-") as tmp:
        # The test suite's own launcher: `callstream serve` on a free loopback port, ready.
        server = await asyncio.to_thread(start_server, Path(tmp), **settings)
        try:
            for name in names:
                for rate in rates:
                    r = await evaluate(
                        name, rate, args.speed, server, args.show_text, _ready(batches[name, rate])
                    )
                    results.append(r)
                    print(f"  done {r['label']}", file=sys.stderr, flush=True)
        finally:
            server.stop()
    info["loadavg_after"] = os.getloadavg()
    speed = (
        "real time"
        if args.speed == 1
        else ("as fast as possible" if args.speed == 0 else f"{args.speed:g}x")
    )
    print(f"\nreplay speed {args.speed:g} ({speed}); WER = (S+D+I)/N over the condition's clips\n")
    print(
        "| condition | clips | words | WER callstream | WER batch | digit recall callstream "
        "| digit recall batch | final latency p50/p95 |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(row(r))
    tagged = [r for r in results if r["redaction_tags"]]
    if tagged:
        print(
            "\nredaction tags in finals (counted as covering the reference words they align with):"
        )
        for r in tagged:
            print(
                f"  {r['label']}: {r['redaction_tags']} tag(s) covering {r['tag_covered_words']} word(s) "
                f"({r['tag_covered_digit_words']} digit words); strict WER {pct(r['callstream_strict_tags']['wer'])}"
            )
    else:
        print("\nno redaction tag appeared in any final")
    odd = [r for r in results if r["finals_outside_clips"] or r["clips_without_final"]]
    for r in odd:
        print(
            f"  {r['label']}: {r['finals_outside_clips']} final(s) outside every clip, "
            f"{r['clips_without_final']} clip(s) without a final"
        )
    if args.json:
        body = json.dumps({"run": info, "results": results}, indent=2) + "\n"
        await asyncio.to_thread(Path(args.json).write_text, body)
        print(f"\nwrote {args.json}")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--conditions",
        help=f"comma-separated (default: {','.join(ORDER)}); see tests/fixtures/phone/",
    )
    ap.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="replay speed: 1 = real time (default), 0 = as fast as possible",
    )
    ap.add_argument(
        "--rates", default="16000", help="delivery rates, comma-separated: 16000 and/or 24000"
    )
    ap.add_argument(
        "--workers", type=int, default=1, help="CALLSTREAM_STT_WORKERS of the server (default 1)"
    )
    ap.add_argument("--json", metavar="OUT", help="write every figure, per clip, to this file")
    ap.add_argument(
        "--show-text",
        action="store_true",
        help="print reference, batch and callstream text per clip (stderr)",
    )
    args = ap.parse_args()
    if args.speed < 0:
        ap.error("--speed must be >= 0")
    return asyncio.run(amain(args))


if __name__ == "__main__":
    sys.exit(main())
