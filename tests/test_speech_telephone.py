"""The local engine on real human speech through a telephone line (issue 15).

The calls are real recordings (Debian's pocketsphinx-testdata: card names and numbers, a
digit string, LibriVox read speech, "go forward ten meters") passed through telephone
conditions (tests/fixtures/phone/, made by tests/fixtures/make_phone_fixtures.py). The
reference is batch decoding: the same pocketsphinx model decoding each clip whole, in the
same run. Before the per-channel normalisation callstream recognised 0 of 11 digit words
on every narrowband condition where batch recognised 10.

End to end means `callstream serve` (local engine, two workers) and `callstream replay`
at full speed: a worker that lags behind the replay must give the same finals as one that
keeps up, because a channel's utterances are decoded in order on one worker.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing as mp
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from pipeline.cli.replay import AGENT_ID, CUSTOMER_ID
from workers.stt import payment_lm
from workers.stt.base import Capabilities
from workers.stt.channel_norm import (
    MAX_FRAMES,
    ChannelNorm,
    MeanEstimator,
    blend,
    parse_cmn,
    sounding_frames,
)
from workers.stt.local_decoding import Decoders, UtteranceDecoding

from .conftest import FIXTURES, Server, payment_call_session, start_server

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
import speech_accuracy  # noqa: E402
import speech_curve  # noqa: E402

CONDITIONS = speech_accuracy.ORDER  # every condition in tests/fixtures/phone/
# End-to-end WER may exceed batch WER by at most this many words per condition (of ~100):
# VAD segments are not the clips' exact bounds, and a live decode starts from an estimate
# of the mean where batch uses the clip's own. Measured margins: bench/RESULTS.md.
MARGIN_WORDS = 3


def _batch(name: str) -> list[str]:
    meta, samples, _ = speech_accuracy.load_condition(name)
    return speech_accuracy.batch_decode(meta, samples)


# ------------------------------------------------------------------ the fixtures


def test_the_phone_fixtures_are_what_their_script_makes(tmp_path) -> None:
    """The committed calls are reproducible from their sources (install.sh --test installs
    pocketsphinx-testdata and sox), byte for byte."""
    import shutil
    import subprocess

    if not Path("/usr/share/pocketsphinx/test/data").is_dir() or shutil.which("sox") is None:
        pytest.skip("needs pocketsphinx-testdata and sox (bash install.sh --test)")
    script = FIXTURES / "make_phone_fixtures.py"
    subprocess.run([sys.executable, str(script), "--out", str(tmp_path)], check=True)
    committed = sorted(
        p.name for p in (FIXTURES / "phone").iterdir() if p.suffix in (".wav", ".json")
    )
    made = sorted(p.name for p in tmp_path.iterdir())
    assert made == committed
    for name in made:
        assert (tmp_path / name).read_bytes() == (FIXTURES / "phone" / name).read_bytes(), name


# ------------------------------------------------------------------ the pieces, alone


def _tone(n_frames: int, rms: float) -> np.ndarray:
    t = np.arange(n_frames * 160)
    return (rms * math.sqrt(2) * np.sin(2 * math.pi * 440 * t / 16000)).astype("<i2")


def test_idle_channel_frames_are_dropped_and_quiet_sound_is_kept() -> None:
    zeros = np.zeros(160 * 5, dtype="<i2")
    alaw_idle = np.full(160 * 5, 8, dtype="<i2")  # A-law's quietest code decodes to +/-8
    alaw_idle[::2] = -8
    quiet = _tone(3, 22.0)  # the quietest 1 % of the fixtures' speech frames: RMS 20-22
    pcm = np.concatenate([zeros, quiet, alaw_idle, quiet]).tobytes()
    kept = sounding_frames(pcm)
    assert len(kept) == 6 * 320
    assert kept == np.concatenate([quiet, quiet]).tobytes()
    assert sounding_frames(b"") == b"" and sounding_frames(b"\x01\x00" * 100) == b""


def test_a_channel_s_history_is_frame_weighted_and_capped() -> None:
    norm = ChannelNorm()
    assert norm.state() is None
    norm.add([1.0] * 13, 100)
    norm.add([3.0] * 13, 300)
    mean, frames = norm.state()
    assert frames == 400 and mean == pytest.approx([2.5] * 13)
    norm.add([0.0] * 13, MAX_FRAMES)  # a long new stretch wins back most of the weight
    mean, frames = norm.state()
    assert frames == MAX_FRAMES and mean[0] == pytest.approx(2.5 * 400 / (400 + MAX_FRAMES))
    norm.add([9.0] * 12, 50)  # a malformed mean is ignored
    assert norm.state()[1] == MAX_FRAMES
    assert blend(None, None) is None
    assert blend(([1.0] * 13, 300), ([4.0] * 13, 100)) == pytest.approx([1.75] * 13)
    assert blend(None, ([4.0] * 13, 100)) == pytest.approx([4.0] * 13)


def test_the_mean_estimator_gives_the_batch_mean_of_a_full_decode() -> None:
    """The trick the engine relies on: a decoder with a one-word grammar, fed a whole
    utterance, computes the same batch cepstral mean as a real decode of that audio."""
    from pocketsphinx import Decoder

    meta, samples, _ = speech_accuracy.load_condition("mulaw")
    pcm = speech_accuracy.clip_pcm(meta, samples, meta["utterances"][1])
    sound = sounding_frames(pcm)
    full = Decoder(loglevel="FATAL")
    full.start_utt()
    full.process_raw(sound, full_utt=True)
    full.end_utt()
    got = MeanEstimator(lambda: Decoder(loglevel="FATAL")).mean(pcm)
    assert got is not None
    assert got[1] == len(sound) // 320
    assert got[0] == pytest.approx(parse_cmn(full.get_cmn()), abs=1e-3)
    assert MeanEstimator(lambda: Decoder(loglevel="FATAL")).mean(bytes(3200)) is None
    # What it measured before (another channel, another call) changes nothing.
    estimator = MeanEstimator(lambda: Decoder(loglevel="FATAL", lm=None))
    first = estimator.mean(pcm)
    estimator.mean(speech_accuracy.clip_pcm(meta, samples, meta["utterances"][2]))
    assert estimator.mean(pcm) == first
    assert first[0] == pytest.approx(got[0], abs=1e-3)


def test_a_decoder_that_failed_mid_utterance_is_not_pooled() -> None:
    """One decode error gives that utterance an empty final and nothing else: a decoder
    left inside an utterance would refuse every later one if it went back to the pool."""
    meta, samples, _ = speech_accuracy.load_condition("clean16k")
    pcm = speech_accuracy.clip_pcm(meta, samples, meta["utterances"][1])
    decoders = Decoders()

    class Breaks:
        def __init__(self, real: object) -> None:
            self.real = real

        def process_raw(self, data: bytes) -> None:
            self.real.process_raw(data)
            raise RuntimeError("decoder fault")

        def __getattr__(self, name: str) -> object:
            return getattr(self.real, name)

    real = decoders.take()
    decoders.give_back(Breaks(real))
    broken = UtteranceDecoding(decoders, 0, warm_ms=0)
    assert broken.feed(pcm) == [] and broken.finish() == ("", 0.0)
    assert broken.channel_mean() is None and not any(
        isinstance(d, Breaks) for d in decoders.pools[False]
    )
    texts = []
    for _ in range(2):
        utt = UtteranceDecoding(decoders, 0)
        for p in range(0, len(pcm), 3200):
            utt.feed(pcm[p : p + 3200])
        texts.append(utt.finish()[0])
    assert texts == ["two nine three four zero"] * 2


def test_the_payment_digits_model_is_what_its_generator_writes() -> None:
    assert payment_lm.ASSET.read_text() == payment_lm.arpa()
    assert payment_lm.DICT_ASSET.read_text() == payment_lm.dictionary()
    words = {line.split()[1] for line in payment_lm.arpa().splitlines() if line.startswith("-")}
    assert set(payment_lm.DIGITS) <= words


# ------------------------------------------------------------------ payment windows


def test_a_payment_window_decodes_the_customer_s_digits_with_the_digits_model() -> None:
    """Digit recall where it matters: the customer's digit utterances of every telephone
    condition, decoded as the engine's worker decodes them (100 ms shipments, the
    channel's mean carried from its earlier window utterances) with the digits model on, as
    in a payment window, against batch decoding of the same clips with the full model. (The
    session asks for digits only on a customer's own channel; here the mixed conditions
    stand for what a customer's line sounds like.)"""
    decoders = Decoders()
    found = {"window": 0, "batch": 0}
    total = 0
    for name in CONDITIONS:
        meta, samples, _ = speech_accuracy.load_condition(name)
        segs = speech_curve.segments(meta, samples)
        utts = meta["utterances"]
        finals = [{**u, "text": ""} for u in segs]
        per_clip, _ = speech_accuracy.assign(finals, utts, samples.shape[1] == 2)
        clips = [
            i
            for i, u in enumerate(utts)
            if u["role"] == "customer"
            and any(w in speech_accuracy.DIGIT_WORDS for w in speech_accuracy.words(u["text"]))
        ]
        # Only the window's utterances are decoded (the rest of the call is the full
        # model's business, measured end to end below): in call order, each starting from
        # the channel's mean so far, all with the digits model.
        if not clips:  # the festival call: no digits spoken
            continue
        window = sorted({k for i in clips for k in per_clip[i]})
        decoded = speech_curve.decode_call(
            decoders, [segs[k] for k in window], digits_for=set(range(len(window)))
        )
        texts = dict(zip(window, decoded, strict=True))
        batch = speech_accuracy.batch_decode(
            {**meta, "utterances": [utts[i] for i in clips]}, samples
        )
        refs = [speech_accuracy.words(utts[i]["text"]) for i in clips]
        hyps = [sum((speech_accuracy.words(texts[k]) for k in per_clip[i]), []) for i in clips]
        got = speech_accuracy.score(refs, hyps)
        found["window"] += got["digits_recalled"]
        found["batch"] += speech_accuracy.score(refs, [speech_accuracy.words(t) for t in batch])[
            "digits_recalled"
        ]
        total += got["digit_words"]
    assert total >= 6 * len(CONDITIONS)
    assert found["window"] >= found["batch"], found
    assert found["window"] == total, found  # every digit the customer read


class _LocalLikeEngine:
    """Stands in for the local engine: records the hints each utterance was opened with."""

    source = "local"
    capabilities = Capabilities(
        audio_input=True, continuous=False, interim_results=False, remote=False
    )

    def __init__(self) -> None:
        self.opened: list[tuple[str, str | None, bool]] = []

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    def open_stream(self, uid, start_ms, on_result, language, channel=None, digits=False):
        self.opened.append((uid, channel, digits))

        class Stream:
            def push(self, pcm: bytes) -> None:
                pass

            def end(self, end_ms: int) -> None:
                from models.speech import SpeechResult

                on_result(SpeechResult(uid, True, "", start_ms, end_ms, 0.0, "en-US", "local"))

            def cancel(self) -> None:
                pass

        return Stream()


async def test_the_session_asks_for_digits_only_for_the_customer_in_a_window(tmp_path) -> None:
    engine = _LocalLikeEngine()
    async with payment_call_session(tmp_path, engine, "hint-call") as (session, feed):

        def send(ms_from: int, ms_to: int) -> list[tuple[str, str | None, bool]]:
            before = len(engine.opened)
            feed(ms_from, ms_to)
            return engine.opened[before:]

        outside = send(0, 6000)
        session.manual("pause")
        inside = send(6000, 12000)
        session.manual("resume")
        after = send(12000, 19000)
    assert outside and inside and after
    keys = {c for _, c, _ in engine.opened}
    assert len(keys) == 2 and all(c and "hint-call" not in c for c in keys)
    assert not any(
        pid in c or pid.split(":")[-1] in c for c in keys for pid in (CUSTOMER_ID, AGENT_ID)
    )
    # One key per participant, the same for every utterance of theirs.
    first = {c for u, c, _ in outside[:1]}
    assert first <= keys
    customer = next(c for _, c, d in inside if d)
    (agent,) = keys - {customer}
    assert not any(d for _, _, d in outside + after)
    assert [d for _, c, d in inside if c == customer] and all(
        d for _, c, d in inside if c == customer
    )
    assert not any(d for _, c, d in inside if c == agent)


# ------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def phone_server(tmp_path_factory: pytest.TempPathFactory):
    server = start_server(
        tmp_path_factory.mktemp("phone"), CALLSTREAM_STT="local", CALLSTREAM_STT_WORKERS="2"
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def batch_pool():
    """Batch decoding runs beside the end-to-end calls, in a process of its own."""
    with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        yield {name: pool.submit(_batch, name) for name in CONDITIONS}


@pytest.mark.parametrize(("name", "rate"), [(c, 16000) for c in CONDITIONS])
async def test_end_to_end_wer_within_batch_and_digits_at_least_batch(
    name: str, rate: int, phone_server: Server, batch_pool: dict
) -> None:
    future = batch_pool[name]
    r = await speech_accuracy.evaluate(
        name, rate, 0, phone_server, False, batch_texts=asyncio.wrap_future(future)
    )
    e2e, batch = r["callstream"], r["batch"]
    detail = [(c["reference"], c["batch"], c["callstream"]) for c in r["clip_detail"]]
    assert r["clips_without_final"] == 0, detail
    assert e2e["errors"] <= batch["errors"] + MARGIN_WORDS, detail
    assert e2e["digits_recalled"] >= batch["digits_recalled"], detail
