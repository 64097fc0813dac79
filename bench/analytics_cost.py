"""What call analytics cost on the media path, measured in one process, on real speech.

The ingest benchmark (bench/ingest.py --baseline) measures the whole server before and
after; its run-to-run noise (about 5-7 %) is as large as the effect sought. This one
isolates it: both channels of a fixture call (real VAD on real speech: utterance starts
and ends, which is where analytics is fed) go through `Channel.audio` with the real
`CallAnalytics` and with one that does nothing, alternating, several rounds, and reports
CPU µs per 20 ms frame of each and the ratio. It also times a `snapshot` (the figures
from every talk interval, what each `analytics` event and `GET .../analytics` costs) on
a long call's worth of intervals.

    .venv/bin/python bench/analytics_cost.py [--rounds 7] [--repeat 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from models.settings import load_settings
from pipeline.analytics.call_analytics import CallAnalytics
from pipeline.analytics.rules import load_rules
from pipeline.analytics.talk import Talk
from pipeline.cli.replay import load_call_audio
from pipeline.ingest.channel import Channel, Utterance
from pipeline.pci.payment_guard import GuardPolicy, PaymentGuard

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "support_call.wav"


class _NoAnalytics:
    """Takes what a channel reports and does nothing with it: the reference."""

    def talk_started(self, *args: object) -> None:
        pass

    def talk_ended(self, *args: object) -> None:
        pass


class _Stream:
    def push(self, pcm: bytes) -> None:
        pass

    def end(self, end_ms: int) -> None:
        pass


class _Call:
    """What a channel needs of its call, with no engine behind it."""

    def __init__(self, analytics: object) -> None:
        settings = load_settings(environ={}, overrides={})
        self.call_id = "bench"
        self.sample_rate = 16000
        self.audio_ended: dict[str, float] = {}
        self.guard = PaymentGuard(GuardPolicy.from_settings(settings))
        self.analytics = analytics
        self.settings = settings
        self.n = 0

    def now_ms(self) -> int:
        return 0

    def withholds(self, role: str) -> bool:
        return False

    def customer_speech(self, onset_ms: int) -> None:
        pass

    def open_continuous(self, channel: Channel, start_ms: int) -> None:
        return None

    def open_utterance(self, channel: Channel, start_ms: int) -> Utterance:
        self.n += 1
        return Utterance(f"u{self.n}", start_ms, _Stream())


def run_once(tracks: list[tuple[str, bytes]], real: bool, repeat: int) -> tuple[float, int]:
    """CPU seconds and frames for ``repeat`` calls, each the fixture through two channels."""
    rules = load_rules(None)
    frames = 0
    t0 = time.process_time()
    for _ in range(repeat):
        call = _Call(CallAnalytics("bench", rules, lambda e: None) if real else _NoAnalytics())
        channels = [
            Channel(call, call.settings, pid, role, 0)
            for pid, role in (("4:+15550100", "customer"), ("8:acs:agent", "agent"))
        ]
        pcm = [t for _, t in tracks]
        for i in range(0, min(len(p) for p in pcm) - 639, 640):
            for ch, p in zip(channels, pcm, strict=True):
                ch.audio(p[i : i + 640])
                frames += 1
        for ch in channels:
            ch.flush()
    return time.process_time() - t0, frames


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=20, help="passes of the call per round")
    args = ap.parse_args()
    audio = load_call_audio(FIXTURE)
    tracks = [(str(p), t) for p, t in audio.tracks]
    with_us: list[float] = []
    without_us: list[float] = []
    for r in range(args.rounds):
        order = (True, False) if r % 2 == 0 else (False, True)
        for real in order:
            cpu, frames = run_once(tracks, real, args.repeat)
            (with_us if real else without_us).append(cpu / frames * 1e6)
    w, wo = statistics.median(with_us), statistics.median(without_us)
    print(f"frames per round: {frames} ({args.repeat} passes of {FIXTURE.name}, 2 channels)")
    print(f"Channel.audio with analytics:    {w:.3f} µs/frame (median of {args.rounds})")
    print(f"Channel.audio without analytics: {wo:.3f} µs/frame")
    print(f"ratio with/without: {w / wo:.4f}")

    ca = CallAnalytics("bench", load_rules(None), lambda e: None)
    for i in range(2000):  # an hour-long call: 2000 utterances, a third of them overlapping
        base = i * 1800
        ca.talks.append(Talk("agent" if i % 2 else "customer", base, base + 1500 + (i % 3) * 300))
    t0 = time.perf_counter()
    n = 50
    for _ in range(n):
        ca.snapshot(2000 * 1800)
    print(f"snapshot over 2000 talk intervals: {(time.perf_counter() - t0) / n * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
