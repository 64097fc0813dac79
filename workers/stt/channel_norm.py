"""Cepstral mean normalisation per audio channel, for the local (pocketsphinx) engine.

WHY: the acoustic model was trained on features from which each recording's own cepstral
mean was subtracted (batch CMN). Live decoding has to subtract a mean before it has heard
the utterance, and pocketsphinx's live estimator starts from the model's initial mean and
gives it the weight of 5 s of audio, so short utterances, and every utterance of a
narrowband (8 kHz telephone) channel, whose mean is far from the wideband initial value,
were decoded un-normalised: 0 of 11 digit words on telephone audio (bench/RESULTS.md,
"Speech on telephone audio").

So each utterance starts from an estimate made the way batch CMN makes it:
- the channel's mean so far (every earlier utterance of the same participant in the call,
  weighted by its frames, capped at `MAX_FRAMES` so a changed line or speaker wins back);
- blended with the mean of the utterance's own first `warm_ms` of sound, which is why
  decoding starts that much after the utterance (partials come later by as much).

Means are computed by pocketsphinx itself (`MeanEstimator`): a decoder whose search is a
one-word grammar, fed whole utterances (`full_utt=True`, so it applies batch CMN and
`get_cmn()` returns the batch mean). Its search is trivial, so it costs ~0.7 % of real time
(measured), against ~30 % for a real decode; the features are exactly the decoder's.

Idle-channel frames (10 ms whose RMS is at most `SILENCE_RMS`, about -66 dBFS: digital
zeros, or a codec's idle pattern such as A-law's constant +/-8) are dropped before a mean
is taken: ACS sends silence as zeros and the VAD's pre-roll and hang-over carry them into
utterances; pocketsphinx floors their energy instead of skipping them, so they pulled the
mean away from the speech (mu-law: 73 % WER with them, batch level without; A-law's idle
pattern escaped a peak test and left A-law at 80 %). Measured on the phone fixtures:
gaps are at most 8.1 RMS, the quietest 1 % of speech frames 20-22. A real line's noise is
louder than that and stays in, as it does in batch decoding.

Nothing here sees text; the estimate is 13 numbers about the channel's spectrum.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

N_CEPS = 13
SAMPLES_PER_FRAME = 160  # 10 ms at 16 kHz: pocketsphinx's frame shift
SILENCE_RMS = 16.0  # a 10 ms frame at or below this RMS is an idle channel, not sound
MIN_FRAMES = 10  # fewer voiced frames than this say nothing about the channel
MAX_FRAMES = 3000  # 30 s: the channel's history counts at most this much
ONE_WORD_GRAMMAR = "#JSGF V1.0;\ngrammar mean;\npublic <s> = yes;\n"


def sounding_frames(pcm: bytes) -> bytes:
    """`pcm` (16 kHz PCM16 LE) without its digitally silent 10 ms frames."""
    x = np.frombuffer(pcm, dtype="<i2", count=len(pcm) // 2)  # a stray odd byte is no sample
    n = len(x) // SAMPLES_PER_FRAME
    if n == 0:
        return b""
    frames = x[: n * SAMPLES_PER_FRAME].reshape(n, SAMPLES_PER_FRAME)
    f = frames.astype(np.float64)
    keep = np.sqrt((f * f).mean(axis=1)) > SILENCE_RMS
    return frames[keep].tobytes()


def parse_cmn(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def format_cmn(mean: list[float] | np.ndarray) -> str:
    return ",".join(f"{v:.4f}" for v in mean)


class ChannelNorm:
    """Running cepstral mean of one channel: a frame-weighted sum, capped at `MAX_FRAMES`."""

    __slots__ = ("sum", "frames")

    def __init__(self) -> None:
        self.sum = np.zeros(N_CEPS)
        self.frames = 0

    def add(self, mean: list[float], frames: int) -> None:
        if frames <= 0 or len(mean) != N_CEPS:
            return
        self.sum += np.asarray(mean) * frames
        self.frames += frames
        if self.frames > MAX_FRAMES:
            self.sum *= MAX_FRAMES / self.frames
            self.frames = MAX_FRAMES

    def state(self) -> tuple[list[float], int] | None:
        """What a worker needs: (mean, frames), or None before the channel's first speech."""
        return ((self.sum / self.frames).tolist(), self.frames) if self.frames else None


def blend(
    prior: tuple[list[float], int] | None, own: tuple[list[float], int] | None
) -> list[float] | None:
    """The mean to start an utterance from: the channel's history and the utterance's
    own first sound, weighted by frames. None if neither exists (use the model's)."""
    total = np.zeros(N_CEPS)
    frames = 0
    for part in (prior, own):  # each (mean, frames)
        if part is not None and part[1] > 0:
            total += np.asarray(part[0]) * part[1]
            frames += part[1]
    return (total / frames).tolist() if frames else None


def reset_noise_estimate(decoder: Any) -> None:
    """Forget the front end's noise estimate (pocketsphinx's `remove_noise`), which it
    otherwise carries from one utterance into the next.

    `Decoder.start_stream()` is the only public way and pocketsphinx 5 marks it deprecated
    ("unnecessary": true for one stream, not for decoders shared by many channels). The
    version is pinned by the lock; tests/test_speech_telephone.py fails if measuring one
    channel changes the mean of another, which is what this prevents."""
    start_stream = getattr(decoder, "start_stream", None)
    if start_stream is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            start_stream()


class MeanEstimator:
    """Batch cepstral mean of some audio, computed by a pocketsphinx decoder (worker side).

    Stateless between calls: the model's front end removes noise with an estimate it
    carries from one utterance to the next (`remove_noise`), so each measurement starts
    the stream afresh (`start_stream()`); otherwise a channel's mean would depend on
    whichever call the worker measured before. A failed measurement rebuilds the decoder
    (a decoder left inside an utterance refuses every later one) and returns None."""

    def __init__(self, decoder_factory: Any) -> None:
        self._factory = decoder_factory
        self._decoder = self._new()

    def _new(self) -> Any:
        d = self._factory()
        d.add_jsgf_string("mean", ONE_WORD_GRAMMAR)
        d.activate_search("mean")
        self._initial = d.get_cmn()
        return d

    def mean(self, pcm: bytes) -> tuple[list[float], int] | None:
        """(mean, sounding frames) of `pcm` without its idle frames; None if too little."""
        sound = sounding_frames(pcm)
        frames = len(sound) // (2 * SAMPLES_PER_FRAME)
        if frames < MIN_FRAMES:
            return None
        d = self._decoder
        try:
            reset_noise_estimate(d)
            d.set_cmn(self._initial)
            d.start_utt()
            d.process_raw(sound, full_utt=True)  # whole: batch CMN, so get_cmn() is its mean
            d.end_utt()
            return parse_cmn(d.get_cmn()), frames
        except Exception:
            self._decoder = self._new()
            return None
