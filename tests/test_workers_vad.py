"""Segmenter on real webrtcvad with the festival two-voice call fixture."""

from __future__ import annotations

import json
import shutil
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from workers.vad import (
    EMPTY,
    FRAME_BYTES,
    SegmentAudio,
    SegmentEnd,
    Segmenter,
    SegmentStart,
)

FIXTURES = Path(__file__).parent / "fixtures"
TOLERANCE_MS = 300


@pytest.fixture(scope="session")
def support_call(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, dict]:
    """(stereo int16 samples, manifest): the committed fixture, else synthesized now."""
    wav_path, man_path = FIXTURES / "support_call.wav", FIXTURES / "support_call.json"
    if wav_path.exists() and man_path.exists():
        wav_bytes, manifest = wav_path.read_bytes(), json.loads(man_path.read_text())
    else:
        if shutil.which("text2wave") is None:
            pytest.skip("no support_call fixture and festival's text2wave is not installed")
        sys.path.insert(0, str(FIXTURES))
        import make_fixtures  # type: ignore[import-not-found]

        wav_bytes, manifest = make_fixtures.build(
            "support_call", make_fixtures.DIALOGUES["support_call"]
        )
    out = tmp_path_factory.mktemp("audio") / "support_call.wav"
    out.write_bytes(wav_bytes)
    with wave.open(str(out), "rb") as w:
        assert w.getframerate() == 16000 and w.getnchannels() == 2
        samples = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    return samples, manifest


def _frames(pcm: bytes) -> list[bytes]:
    return [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)]


def _run(seg: Segmenter, frames: list[bytes]) -> list[dict]:
    """Feed frames; return utterances with start/end/last-voiced offsets and audio size."""
    utts: list[dict] = []
    cur: dict | None = None

    def feed():  # lazily, so last_voiced_end_ms is read right after each SegmentEnd
        for f in frames:
            yield seg.push(f)
        yield seg.flush()

    for events in feed():
        for ev in events:
            if isinstance(ev, SegmentStart):
                assert cur is None
                cur = {"start": ev.start_ms, "bytes": len(ev.audio)}
            elif isinstance(ev, SegmentAudio):
                assert cur is not None
                cur["bytes"] += len(ev.audio)
            else:
                assert isinstance(ev, SegmentEnd) and cur is not None
                cur.update(end=ev.end_ms, voiced_end=seg.last_voiced_end_ms)
                cur["bytes"] += len(ev.audio)
                utts.append(cur)
                cur = None
    return utts


@pytest.mark.parametrize("channel,role", [(0, "customer"), (1, "agent")])
def test_finds_manifest_utterances(
    support_call: tuple[np.ndarray, dict], channel: int, role: str
) -> None:
    samples, manifest = support_call
    ref = [u for u in manifest["utterances"] if u["role"] == role]
    seg = Segmenter()
    utts = _run(seg, _frames(samples[:, channel].tobytes()))
    assert len(utts) == len(ref)
    for got, want in zip(utts, ref, strict=True):
        # start includes the pre-roll, so it sits a little before the true onset
        assert abs(got["start"] - want["startMs"]) <= TOLERANCE_MS
        assert abs(got["voiced_end"] - want["endMs"]) <= TOLERANCE_MS
        # end_ms also covers the streamed hangover
        assert 0 <= got["end"] - got["voiced_end"] <= 400 + 20
        # the audio streamed is exactly the [start, end) span: no gap, no duplicate
        assert got["bytes"] == (got["end"] - got["start"]) * 32
    assert seg.frames == len(samples) // 320
    assert seg.clock_ms == seg.frames * 20
    assert 0 < seg.speech_frames < seg.frames


def test_silence_and_low_noise_yield_nothing() -> None:
    seg = Segmenter()
    zero = bytes(FRAME_BYTES)
    for _ in range(250):
        assert seg.push(zero) is EMPTY
        assert seg.push_silence() is EMPTY
    noise = (np.random.default_rng(1).standard_normal(16000 * 3) * 100).astype("<i2").tobytes()
    assert all(not seg.push(f) for f in _frames(noise))
    assert seg.flush() == ()
    assert not seg.in_utterance
    assert seg.clock_ms == 500 * 20 + 3000


def test_max_utterance_forces_contiguous_split(support_call: tuple[np.ndarray, dict]) -> None:
    samples, manifest = support_call
    first = manifest["utterances"][0]  # agent, ~3.2 s
    pcm = samples[: (first["endMs"] + 600) * 16, 1].tobytes()
    utts = _run(Segmenter(max_utterance_ms=1000), _frames(pcm))
    assert len(utts) >= 3
    for a, b in zip(utts, utts[1:], strict=False):
        if b["start"] - a["end"] < 100:  # a forced split: the next one starts right away
            assert b["start"] == a["end"]
    assert all(u["end"] - u["start"] <= 1000 for u in utts)
    forced = [u for u in utts if u["end"] - u["start"] == 1000]
    assert len(forced) >= 2


def test_push_silence_inside_utterance_keeps_audio_aligned(
    support_call: tuple[np.ndarray, dict],
) -> None:
    samples, manifest = support_call
    u = manifest["utterances"][0]
    seg = Segmenter(start_ms=1000)
    frames = _frames(samples[u["startMs"] * 16 : (u["startMs"] + 800) * 16, 1].tobytes())
    events = [ev for f in frames for ev in seg.push(f)]
    assert seg.in_utterance
    start = next(ev for ev in events if isinstance(ev, SegmentStart))
    assert start.start_ms >= 1000
    before = seg.speech_frames
    out: list = []
    while seg.in_utterance:
        out.extend(seg.push_silence())
    assert len(out) <= 400 // 20  # ended by the hangover, in silent frames
    assert seg.speech_frames == before
    assert isinstance(out[-1], SegmentEnd)
    assert out[-1].end_ms == seg.clock_ms
    assert all(len(ev.audio) == FRAME_BYTES for ev in out)


def test_rejects_wrong_frame_size() -> None:
    with pytest.raises(ValueError):
        Segmenter().push(b"\x00" * 960)
