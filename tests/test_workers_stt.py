"""Speech engines: real pocketsphinx in real spawned worker processes; ACS passthrough."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import sys
import wave
from pathlib import Path

import jiwer
import numpy as np
import pytest
import pytest_asyncio

from models.acs import ResultStatus, TranscriptionDataPayload
from models.speech import SpeechResult
from workers.stt.acs import AcsPassthroughEngine, AcsTranscriptionAdapter
from workers.stt.base import SpeechEngine, SpeechStream
from workers.stt.local import LocalSpeechEngine

FIXTURES = Path(__file__).parent / "fixtures"
LOOP = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def call() -> tuple[np.ndarray, dict]:
    """(stereo int16 samples, manifest) of support_call: the fixture, else synthesized."""
    wav_path, man_path = FIXTURES / "support_call.wav", FIXTURES / "support_call.json"
    if wav_path.exists() and man_path.exists():
        with wave.open(str(wav_path), "rb") as w:
            raw = w.readframes(w.getnframes())
        return np.frombuffer(raw, dtype="<i2").reshape(-1, 2), json.loads(man_path.read_text())
    if shutil.which("text2wave") is None:
        pytest.skip("no support_call fixture and festival's text2wave is not installed")
    sys.path.insert(0, str(FIXTURES))
    import io

    import make_fixtures  # type: ignore[import-not-found]

    wav_bytes, manifest = make_fixtures.build(
        "support_call", make_fixtures.DIALOGUES["support_call"]
    )
    with wave.open(io.BytesIO(wav_bytes), "rb") as w:
        raw = w.readframes(w.getnframes())
    return np.frombuffer(raw, dtype="<i2").reshape(-1, 2), manifest


def _utterance(call: tuple[np.ndarray, dict], i: int) -> tuple[bytes, int, int, str]:
    """(pcm, start_ms, end_ms, reference text) of manifest utterance i, with VAD-like margins."""
    samples, manifest = call
    u = manifest["utterances"][i]
    ch = 0 if u["role"] == "customer" else 1
    start, end = u["startMs"] - 200, u["endMs"] + 300
    ref = re.sub(r"[^a-z' ]", "", u["text"].lower())
    return samples[start * 16 : end * 16, ch].tobytes(), start, end, ref


class Collector:
    """Callback that records results and lets a test await the final."""

    def __init__(self) -> None:
        self.results: list[SpeechResult] = []
        self.final = asyncio.get_running_loop().create_future()
        self.thread_ok = True

    def __call__(self, r: SpeechResult) -> None:
        self.results.append(r)
        if r.is_final:
            assert not self.final.done(), "more than one final"
            self.final.set_result(r)


async def _feed(stream: SpeechStream, pcm: bytes, frames_per_tick: int = 10) -> None:
    """Push 20 ms frames, ~5x faster than real time, yielding to the loop in between."""
    for i in range(0, len(pcm), 640 * frames_per_tick):
        for j in range(i, min(i + 640 * frames_per_tick, len(pcm)), 640):
            stream.push(pcm[j : j + 640])
        # Pacing a live stream (not a wait for anything): no assertion depends on it.
        await asyncio.sleep(0.04)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def engine():
    eng = LocalSpeechEngine(workers=2)
    await eng.start()
    yield eng
    await eng.aclose()


@LOOP
async def test_is_a_speech_engine(engine: LocalSpeechEngine) -> None:
    assert isinstance(engine, SpeechEngine)
    assert engine.source == "local"
    stream = engine.open_stream("x", 0, lambda r: None)
    assert isinstance(stream, SpeechStream)
    stream.cancel()
    assert engine.active_streams == 0


@LOOP
async def test_partials_before_final_and_wer(engine: LocalSpeechEngine, call) -> None:
    # agent utterances (the slt voice), decoded concurrently on both workers
    picks = [0, 4, 6, 8]
    cols, feeds = [], []
    for i in picks:
        pcm, start, end, _ = _utterance(call, i)
        col = Collector()
        stream = engine.open_stream(f"agent-{i}", start, col)
        cols.append(col)
        feeds.append((stream, pcm, end))

    async def run(stream: SpeechStream, pcm: bytes, end: int) -> None:
        await _feed(stream, pcm)
        stream.end(end)

    await asyncio.gather(*(run(*f) for f in feeds))
    finals = await asyncio.wait_for(asyncio.gather(*(c.final for c in cols)), 30)

    refs, hyps = [], []
    for i, col, final in zip(picks, cols, finals, strict=True):
        _, start, end, ref = _utterance(call, i)
        partials = col.results[:-1]
        assert col.results[-1] is final and final.is_final
        assert (final.utterance_id, final.start_ms, final.end_ms) == (f"agent-{i}", start, end)
        assert final.source == "local" and final.language == "en-US"
        assert 0.0 < final.confidence <= 1.0
        assert len(partials) >= 2, "a 3 s utterance yields several partials"
        assert all(not p.is_final and p.text and p.start_ms == start for p in partials)
        ends = [p.end_ms for p in partials]
        assert ends == sorted(ends) and ends[-1] <= end
        assert all(a.text != b.text for a, b in zip(partials, partials[1:], strict=False))
        assert str(final).find(final.text) == -1 or not final.text  # repr hides text
        refs.append(ref)
        hyps.append(final.text)
    assert jiwer.wer(refs, hyps) < 0.3
    # Measured, not judged here (its value is bench/local_speech.py's business).
    assert engine.stats.utterances >= 4 and engine.stats.decode_s > 0 and engine.stats.audio_s > 0


@LOOP
async def test_two_concurrent_streams_use_both_workers(engine: LocalSpeechEngine, call) -> None:
    a_pcm, a_start, a_end, _ = _utterance(call, 6)
    b_pcm, b_start, b_end, _ = _utterance(call, 7)
    a_col, b_col = Collector(), Collector()
    a = engine.open_stream("a", a_start, a_col)
    b = engine.open_stream("b", b_start, b_col)
    assert a._worker is not b._worker  # least-active pinning spreads them
    await asyncio.gather(_feed(a, a_pcm), _feed(b, b_pcm))
    a.end(a_end)
    b.end(b_end)
    fa, fb = await asyncio.wait_for(asyncio.gather(a_col.final, b_col.final), 20)
    assert fa.utterance_id == "a" and fa.text
    assert fb.utterance_id == "b" and fb.text
    assert engine.active_streams == 0


@LOOP
async def test_cancel_produces_nothing(call) -> None:
    """SpeechStream.cancel(): "no further results are delivered". Partials of the audio
    fed before cancel() may or may not have come back by then (that depends on how fast
    the worker decodes); nothing comes after it: no partial still in flight, no final."""
    eng = LocalSpeechEngine(workers=1)  # one worker: d's final proves c's messages were handled
    await eng.start()
    try:
        pcm, start, end, _ = _utterance(call, 0)
        cancelled, after = Collector(), Collector()
        c = eng.open_stream("c", start, cancelled)
        d = eng.open_stream("d", start, after)
        await _feed(c, pcm[: 1600 * 32])
        before_cancel = list(cancelled.results)
        c.cancel()
        c.push(pcm)  # ignored after cancel
        c.end(end)  # ignored after cancel
        d.end(start + 100)  # no audio at all: still exactly one (empty) final
        final = await asyncio.wait_for(after.final, 20)
        assert final.text == "" and final.end_ms == start + 100
        # The worker handles one queue in order and its results come back in order on one
        # pipe, each through one call_soon_threadsafe: when d's final has been delivered,
        # every result of c that the worker sent has been handled too. No sleep needed.
        assert cancelled.results == before_cancel, "a result was delivered after cancel()"
        assert not any(r.is_final for r in cancelled.results)
        assert not cancelled.final.done()
        assert eng.active_streams == 0
    finally:
        await eng.aclose()


@LOOP
async def test_worker_crash_gives_empty_final_and_restarts(call) -> None:
    eng = LocalSpeechEngine(workers=1)
    await eng.start()
    try:
        pcm, start, end, _ = _utterance(call, 4)
        open_col, ended_col = Collector(), Collector()
        open_stream = eng.open_stream("open", start, open_col)
        ended = eng.open_stream("ended", start, ended_col)
        for s in (open_stream, ended):
            for i in range(0, len(pcm), 640):
                s.push(pcm[i : i + 640])
        ended.end(end)  # ~3 s of audio queued: the worker is still decoding when killed
        [pid] = eng.worker_pids()
        os.kill(pid, signal.SIGKILL)
        lost = await asyncio.wait_for(ended_col.final, 10)
        assert (lost.text, lost.end_ms, lost.confidence) == ("", end, 0.0)
        open_stream.end(end)
        assert (await asyncio.wait_for(open_col.final, 1)).text == ""
        assert eng.restarts == 1
        # the replacement worker serves new streams
        col = Collector()
        s = eng.open_stream("after", start, col)
        await _feed(s, pcm, frames_per_tick=50)
        s.end(end)
        assert (await asyncio.wait_for(col.final, 20)).text
        assert eng.worker_pids() != [pid]
    finally:
        await eng.aclose()


def _exists(pid: int) -> bool:
    """True while the process exists, zombie included (i.e. until it is reaped)."""
    return Path(f"/proc/{pid}").exists()


@LOOP
async def test_aclose_leaves_no_child_processes() -> None:
    import multiprocessing

    eng = LocalSpeechEngine(workers=2)
    await eng.start()
    pids = eng.worker_pids()
    assert len(pids) == 2 and all(_exists(p) for p in pids)
    await eng.aclose()
    assert not any(_exists(p) for p in pids)  # exited and reaped
    assert not [p for p in multiprocessing.active_children() if p.pid in pids]
    with pytest.raises(RuntimeError):
        eng.open_stream("late", 0, lambda r: None)


# ----------------------------------------------------------------------------- ACS


def _payload(
    status: str, offset: int, duration: int, text: str = "hello there"
) -> TranscriptionDataPayload:
    return TranscriptionDataPayload(
        text=text,
        resultStatus=ResultStatus(status),
        confidence=0.9,
        offset=offset,
        duration=duration,
    )


def test_acs_relative_offsets_and_utterance_ids() -> None:
    ad = AcsTranscriptionAdapter()
    ad.set_locale("en-gb")
    cust, agent = "4:+15550100", "8:acs:agent"
    r1 = ad.on_transcription(_payload("Intermediate", 20_000_000, 5_000_000), cust, now_ms=2600)
    r2 = ad.on_transcription(_payload("Intermediate", 20_000_000, 9_000_000), cust, now_ms=3000)
    r3 = ad.on_transcription(_payload("Intermediate", 25_000_000, 1_000_000), agent, now_ms=3000)
    r4 = ad.on_transcription(_payload("Final", 20_000_000, 12_000_000), cust, now_ms=3300)
    r5 = ad.on_transcription(_payload("Intermediate", 40_000_000, 1_000_000), cust, now_ms=4200)
    assert (r1.start_ms, r1.end_ms, r2.end_ms, r4.end_ms) == (2000, 2500, 2900, 3200)
    assert r1.utterance_id == r2.utterance_id == r4.utterance_id == "550100-1"
    assert r3.utterance_id == "agent-2"
    assert r5.utterance_id == "550100-3"  # a new utterance after the Final
    assert [r.is_final for r in (r1, r2, r3, r4, r5)] == [False, False, False, True, False]
    assert r4.source == "acs" and r4.language == "en-GB" and r4.confidence == 0.9
    assert r4.text == "hello there"
    assert "hello" not in repr(r4)


def test_acs_absolute_offsets_are_rebased_on_the_call_clock() -> None:
    ad = AcsTranscriptionAdapter()
    base = 2516998782481234400  # as seen on the wire
    r1 = ad.on_transcription(_payload("Final", base, 31_600_000), "8:acs:x", now_ms=10_000)
    assert (r1.start_ms, r1.end_ms) == (10_000 - 3160, 10_000)
    r2 = ad.on_transcription(_payload("Final", base + 50_000_000, 10_000_000), "8:acs:x", now_ms=99)
    assert (r2.start_ms, r2.end_ms) == (6840 + 5000, 6840 + 6000)


async def test_acs_passthrough_engine_never_emits() -> None:
    eng = AcsPassthroughEngine()
    assert isinstance(eng, SpeechEngine) and eng.source == "acs"
    await eng.start()
    got: list[SpeechResult] = []
    s = eng.open_stream("u", 0, got.append)
    s.push(b"\x00" * 640)
    s.end(20)
    s.cancel()
    await asyncio.sleep(0)  # a negative check: give any callback the loop already holds its turn
    await eng.aclose()
    assert got == []
