"""Speed against accuracy of the local engine's decoding, on the telephone fixtures.

    .venv/bin/python bench/speech_curve.py                                # the default options
    .venv/bin/python bench/speech_curve.py --options maxhmmpf=2000 --options maxhmmpf=5000,fwdflat=no
    .venv/bin/python bench/speech_curve.py --digits                       # payment-window digits

In-process and offline, so that one option set costs a minute, not a replayed call per
condition: each condition of ``tests/fixtures/phone/`` (16 kHz as callstream receives it)
is cut into utterances by callstream's own VAD (``workers.vad.Segmenter`` with the
service's default settings, one per channel), and every utterance is decoded in call
order by the engine's own code (``workers.stt.local_decoding``: warm-up, the channel's
mean, partials every 300 ms) with the given pocketsphinx options. Finals are assigned to
clips and scored as ``bench/speech_accuracy.py`` does (which replays the same calls end to
end through ``serve``); the numbers match it for the same options (same code, same audio).

Reported per option set: WER and digit recall per condition and in all, how much of an
utterance's audio (VAD pre-roll included) had arrived when its first partial came, and
the CPU real-time factor (process CPU seconds / audio seconds; the decoding's own cost, not
sensitive to other processes on the machine the way wall time is). Batch (each clip whole,
pocketsphinx's default options) is printed once for reference with ``--batch``.

``--digits``: the payment-window question. Every utterance of the customer's role that
contains digit words is decoded twice, with the full model and with the payment digits
model (``digits=True``, as the engine does for a customer's own channel while a window is
open), and digit recall is reported for each beside batch's on the same clips.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from speech_accuracy import (  # noqa: E402
    DIGIT_WORDS,
    ORDER,
    assign,
    batch_decode,
    load_condition,
    score,
    words,
)

from models.settings import Settings  # noqa: E402
from workers.stt.channel_norm import ChannelNorm  # noqa: E402
from workers.stt.local_decoding import Decoders, UtteranceDecoding  # noqa: E402
from workers.vad import SegmentAudio, SegmentEnd, Segmenter, SegmentStart  # noqa: E402

SHIP_BYTES = 3200  # the engine ships audio to its workers every 100 ms


def segments(meta: dict, samples: np.ndarray) -> list[dict]:
    """callstream's VAD utterances of every channel, in start order."""
    s = Settings()
    stereo = samples.shape[1] == 2
    roles = ["mixed"]
    if stereo:
        side = {(0 if ch == "left" else 1): role for ch, role in meta["channels"].items()}
        roles = [side[0], side[1]]
    out = []
    for col, role in enumerate(roles):
        pcm = np.ascontiguousarray(samples[:, col]).tobytes()
        seg = Segmenter(
            aggressiveness=s.vad_aggressiveness,
            preroll_ms=s.vad_preroll_ms,
            hangover_ms=s.vad_hangover_ms,
            max_utterance_ms=s.vad_max_utterance_ms,
            min_utterance_ms=s.vad_min_utterance_ms,
        )
        cur: dict | None = None
        events = [ev for p in range(0, len(pcm) - 639, 640) for ev in seg.push(pcm[p : p + 640])]
        for ev in [*events, *seg.flush()]:
            if isinstance(ev, SegmentStart):
                cur = {"role": role, "startMs": ev.start_ms, "pcm": bytearray(ev.audio)}
            elif isinstance(ev, SegmentAudio) and cur is not None:
                cur["pcm"] += ev.audio
            elif isinstance(ev, SegmentEnd) and cur is not None:
                cur["pcm"] += ev.audio
                cur["endMs"] = ev.end_ms
                cur["pcm"] = bytes(cur["pcm"])
                out.append(cur)
                cur = None
    return sorted(out, key=lambda u: u["startMs"])


def decode_call(
    decoders: Decoders,
    segs: list[dict],
    digits_for: set[int] = frozenset(),
    first_partial_ms: list[int] | None = None,
) -> list[str]:
    """Each utterance as the engine's worker decodes it, channels carried in call order.
    `first_partial_ms` collects, per utterance, how much of its audio had arrived when
    its first partial came (the audio clock, not the wall clock)."""
    channels: dict[str, ChannelNorm] = {}
    texts = []
    for i, u in enumerate(segs):
        norm = channels.setdefault(u["role"], ChannelNorm())
        utt = UtteranceDecoding(decoders, u["startMs"], prior=norm.state(), digits=i in digits_for)
        pcm = u["pcm"]
        first = None
        for p in range(0, len(pcm), SHIP_BYTES):
            if utt.feed(pcm[p : p + SHIP_BYTES]) and first is None:
                first = min(p + SHIP_BYTES, len(pcm)) // 32
        if first_partial_ms is not None and first is not None:
            first_partial_ms.append(first)
        text, _conf = utt.finish()
        if (mean := utt.channel_mean()) is not None:
            norm.add(*mean)
        texts.append(text)
    return texts


def scored(meta: dict, segs: list[dict], texts: list[str], stereo: bool) -> dict:
    utts = meta["utterances"]
    finals = [{**u, "text": t} for u, t in zip(segs, texts, strict=True)]
    per_clip, _ = assign(finals, utts, stereo)
    refs = [words(u["text"]) for u in utts]
    hyps = [sum((words(finals[k]["text"]) for k in ks), []) for ks in per_clip]
    return score(refs, hyps)


def parse_options(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, _, value = part.partition("=")
        if value in ("yes", "no"):
            out[key] = value == "yes"
        else:
            try:
                out[key] = int(value)
            except ValueError:
                out[key] = float(value)
    return out


def curve(option_sets: list[str], names: list[str], with_batch: bool) -> None:
    calls = []
    for name in names:
        meta, samples, _ = load_condition(name)
        calls.append((name, meta, samples, segments(meta, samples), samples.shape[1] == 2))
    if with_batch:
        cells = []
        for name, meta, samples, _segs, _stereo in calls:
            texts = batch_decode(meta, samples)
            sc = score([words(u["text"]) for u in meta["utterances"]], [words(t) for t in texts])
            cells.append(
                f"{name} {sc['errors']}/{sc['words']} {sc['digits_recalled']}/{sc['digit_words']}"
            )
        print("batch (each clip whole, default options): " + "; ".join(cells), flush=True)
    print(
        "| options | WER | digits | CPU RTF | first partial p50/p95 (ms of audio) "
        "| per condition: errors/words, digits |"
    )
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for text in option_sets:
        decoders = Decoders(parse_options(text) if text else None)
        errors = n_words = digits = found = 0
        cpu = audio = 0.0
        cells = []
        firsts: list[int] = []
        for name, meta, _samples, segs, stereo in calls:
            t0 = time.process_time()
            texts = decode_call(decoders, segs, first_partial_ms=firsts)
            cpu += time.process_time() - t0
            audio += sum(len(u["pcm"]) for u in segs) / 32000
            sc = scored(meta, segs, texts, stereo)
            errors += sc["errors"]
            n_words += sc["words"]
            digits += sc["digit_words"]
            found += sc["digits_recalled"]
            cells.append(
                f"{name} {sc['errors']}/{sc['words']} {sc['digits_recalled']}/{sc['digit_words']}"
            )
        label = text or "(default)"
        print(
            f"| {label} | {100 * errors / n_words:.1f} % | {found}/{digits} | {cpu / audio:.3f} | "
            f"{np.percentile(firsts, 50):.0f} / {np.percentile(firsts, 95):.0f} | "
            + "; ".join(cells)
            + " |",
            flush=True,
        )


def digits_report(names: list[str], option_text: str) -> None:
    """Digit recall on the customer's digit utterances: full model, digits model, batch."""
    decoders = Decoders(parse_options(option_text) if option_text else None)
    totals = {"full": [0, 0], "digits": [0, 0], "batch": [0, 0]}
    cpu = {"full": 0.0, "digits": 0.0}
    for name in names:
        meta, samples, _ = load_condition(name)
        stereo = samples.shape[1] == 2
        segs = segments(meta, samples)
        utts = meta["utterances"]
        finals = [{**u, "text": ""} for u in segs]
        per_clip, _ = assign(finals, utts, stereo)
        clip_of = {k: i for i, ks in enumerate(per_clip) for k in ks}
        wanted = {
            k
            for k in range(len(segs))
            if k in clip_of
            and utts[clip_of[k]]["role"] == "customer"
            and any(w in DIGIT_WORDS for w in words(utts[clip_of[k]]["text"]))
        }
        clips = sorted({clip_of[k] for k in wanted})
        if not clips:  # no digits spoken by the customer (the festival call)
            continue
        batch = batch_decode({**meta, "utterances": [utts[i] for i in clips]}, samples)
        refs = [words(utts[i]["text"]) for i in clips]
        b = score(refs, [words(t) for t in batch])
        totals["batch"][0] += b["digits_recalled"]
        totals["batch"][1] += b["digit_words"]
        line = [f"{name}: batch {b['digits_recalled']}/{b['digit_words']}"]
        for kind in ("full", "digits"):
            t0 = time.process_time()
            texts = decode_call(decoders, segs, wanted if kind == "digits" else set())
            cpu[kind] += time.process_time() - t0
            hyps = [sum((words(texts[k]) for k in per_clip[i] if k in wanted), []) for i in clips]
            sc = score(refs, hyps)
            totals[kind][0] += sc["digits_recalled"]
            totals[kind][1] += sc["digit_words"]
            line.append(f"{kind} {sc['digits_recalled']}/{sc['digit_words']}")
        print("  " + ", ".join(line), flush=True)
    print(
        "customer digit utterances, digit recall: "
        + ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in totals.items())
        + f"; CPU of the whole calls: full model {cpu['full']:.1f} s, with the digits model"
        f" on those utterances {cpu['digits']:.1f} s"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--options",
        action="append",
        help="pocketsphinx options, comma-separated key=value (repeat for a curve); "
        "default: the engine's own (workers/stt/local_decoding.py DEFAULT_OPTIONS)",
    )
    ap.add_argument("--conditions", help=f"comma-separated (default: {','.join(ORDER)})")
    ap.add_argument("--batch", action="store_true", help="also decode each clip whole (reference)")
    ap.add_argument(
        "--digits", action="store_true", help="digit recall on the customer's digit utterances"
    )
    args = ap.parse_args()
    names = [n.strip() for n in args.conditions.split(",")] if args.conditions else ORDER
    for n in names:
        load_condition(n)
    if args.digits:
        digits_report(names, (args.options or [""])[0])
    else:
        curve(args.options or [""], names, args.batch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
