"""One utterance through pocketsphinx: normalised per channel, partials while it goes on.

WHY a module of its own: this is the part of the local engine that decides accuracy and
cost, and it runs the same in a worker process (`workers/stt/local.py`) and in-process in
`bench/` and the tests that measure it, so the curve in bench/RESULTS.md is the engine's.

An utterance (`UtteranceDecoding`):
1. buffers audio until it holds `warm_ms` of sound (idle-channel frames do not count), or
   its end arrives; a channel with `WARM_UNTIL_FRAMES` of history skips this;
2. starts a decoder from the mean of the channel's earlier utterances blended with the
   mean of that first sound (`channel_norm`): one with the full language model, or in a
   payment window one with the digits model (`DIGITS_LM`; each kind has its own pool);
3. decodes the buffer and then the audio as it comes, in slices of the partial interval,
   so a batch (a replay at full speed, a worker catching up) still yields partials; after
   1 s of audio, then 2, 4, 8 s, the mean over what was decoded so far (blended with the
   channel's) replaces the warm-up's for the frames to come;
4. at the end: the final hypothesis and its confidence; then (after the final is sent)
   the utterance's own mean and frame count, which the worker adds to the channel's
   history.

Payment digits: while a payment window is open a customer says card digits. The search
then uses a small unigram model (`assets/payment_digits.arpa` and its own dictionary,
made by `workers/stt/payment_lm.py`) in which digits carry most of the probability and the few dozen
other words people say while reading a card stay possible. On the phone fixtures this
found every spoken digit where the full model lost some, at about a tenth of the CPU. It
is only used on a customer's own channel (mixed audio has the agent in it too).

Decoder options (`DEFAULT_OPTIONS`) were chosen on the speed/accuracy curve in
bench/RESULTS.md ("Speech on telephone audio"); `bench/speech_curve.py --options ...`
draws it.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

from workers.stt.channel_norm import (
    MeanEstimator,
    blend,
    format_cmn,
    sounding_frames,
)

BYTES_PER_MS = 32  # 16 kHz * 2 bytes
DIGITS_LM = Path(__file__).resolve().parent / "assets" / "payment_digits.arpa"
DIGITS_DICT = DIGITS_LM.with_suffix(".dict")
DEFAULT_WARM_MS = 800
WARM_UNTIL_FRAMES = 300  # 3 s of a channel's sound: from then on its history is the start
# Idle frames before the sound (the VAD's pre-roll) are in the buffer too; this many ms of
# buffer start decoding whatever they hold, so a quiet utterance is not held back forever.
MAX_WARM_BUFFER_MS = 1500
# While the utterance goes on, its mean so far replaces the warm-up's: after this much
# audio, then each time the decoded audio has doubled.
REFRESH_MS = 1000
DEFAULT_OPTIONS: dict[str, Any] = {"maxhmmpf": 4000, "fwdflat": False}


def new_decoder(options: dict[str, Any], digits: bool = False) -> Any:
    """A decoder with the bundled US-English model and `bestpath` for word posteriors (the
    final's confidence). `digits`: the payment digits model with its own small dictionary
    instead of the full language model (see workers/stt/payment_lm.py)."""
    from pocketsphinx import Decoder

    if digits:
        return Decoder(
            loglevel="FATAL", bestpath=True, lm=str(DIGITS_LM), dict=str(DIGITS_DICT), **options
        )
    return Decoder(loglevel="FATAL", bestpath=True, **options)


def confidence(decoder: Any) -> float:
    """Mean posterior of the real words (fillers such as <s>, </s>, <sil>, [NOISE] excluded).

    The whole-utterance posterior `hyp().prob` is a product over words and collapses
    towards 0 for any long sentence, so it is not useful as a confidence."""
    probs = [
        s.prob
        for s in decoder.seg()
        if s.word and not (s.word[0] in "<[" or s.word.startswith("++"))
    ]
    if not probs:
        return 0.0
    return max(0.0, min(1.0, sum(probs) / len(probs)))


class Decoders:
    """A worker's decoders: a pool for utterances and one for payment-window utterances
    (each grown on demand, one of each made at start), and one mean estimator."""

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        self.options = dict(DEFAULT_OPTIONS if options is None else options)
        self.pools: dict[bool, list[Any]] = {
            False: [new_decoder(self.options)],
            True: [new_decoder(self.options, digits=True)],
        }
        self.initial_cmn: str = self.pools[False][0].get_cmn()
        self.estimator = MeanEstimator(lambda: _plain_decoder())

    def take(self, digits: bool = False) -> Any:
        pool = self.pools[digits]
        return pool.pop() if pool else new_decoder(self.options, digits)

    def give_back(self, decoder: Any, digits: bool = False) -> None:
        self.pools[digits].append(decoder)


def _plain_decoder() -> Any:
    """For the mean estimator: no language model (its search is a one-word grammar), which
    saves ~60 MB per worker and gives the same mean."""
    from pocketsphinx import Decoder

    return Decoder(loglevel="FATAL", lm=None)


class UtteranceDecoding:
    """One utterance's decode. Not thread-safe; the owner calls feed() then finish()."""

    __slots__ = (
        "decoders", "decoder", "start_ms", "prior", "digits", "warm_ms", "partial_bytes",
        "audio", "decoded", "started", "since_partial", "last_text", "failed", "decode_s",
        "channel", "next_refresh",
    )  # fmt: skip

    def __init__(
        self,
        decoders: Decoders,
        start_ms: int,
        prior: tuple[list[float], int] | None = None,
        digits: bool = False,
        warm_ms: int = DEFAULT_WARM_MS,
        partial_interval_ms: int = 300,
    ) -> None:
        self.decoders = decoders
        self.decoder: Any = None
        self.start_ms = start_ms
        self.prior = prior
        self.digits = digits
        # A channel with enough history starts at once from it (partials come without
        # delay); only a new channel waits for its own first sound.
        self.warm_ms = warm_ms if prior is None or prior[1] < WARM_UNTIL_FRAMES else 0
        self.partial_bytes = max(1, partial_interval_ms) * BYTES_PER_MS
        self.audio = bytearray()
        self.decoded = 0  # bytes of `audio` given to the decoder
        self.started = False
        self.since_partial = 0
        self.last_text = ""
        self.failed = False
        self.decode_s = 0.0
        self.channel: str | None = None  # the owner's key for `prior`'s channel
        self.next_refresh = 0  # decoded bytes at which the mean is next refreshed

    @property
    def audio_ms(self) -> int:
        return len(self.audio) // BYTES_PER_MS

    def feed(self, pcm: bytes) -> list[tuple[str, int]]:
        """Add audio; returns the partials (text, end_ms) it produced, oldest first."""
        if self.failed:
            return []
        t0 = time.perf_counter()
        self.audio += pcm
        out: list[tuple[str, int]] = []
        try:
            if not self.started and self._warm_enough():
                self._start()
            if self.started and not self.failed:
                self._decode(out)
        except Exception:  # decoder state is suspect; finish with an empty final
            self._fail()
        self.decode_s += time.perf_counter() - t0
        return out

    def finish(self) -> tuple[str, float]:
        """End of audio: (final text, confidence); ("", 0.0) if decoding failed."""
        t0 = time.perf_counter()
        text, conf = "", 0.0
        try:
            if not self.failed and not self.started:
                self._start()
            if self.started and not self.failed:
                self._decode([])
            if not self.failed:
                self.decoder.end_utt()
                hyp = self.decoder.hyp()
                text = hyp.hypstr if hyp is not None else ""
                conf = confidence(self.decoder) if text else 0.0
                self.decoders.give_back(self.decoder, self.digits)
                self.decoder = None
        except Exception:
            text, conf = "", 0.0
            self._fail()
        self.decode_s += time.perf_counter() - t0
        return text, conf

    def channel_mean(self) -> tuple[list[float], int] | None:
        """The whole utterance's (mean, frames) for its channel's history; called after
        the final is on its way, so it adds nothing to the final's latency."""
        if self.failed:
            return None
        return self.decoders.estimator.mean(bytes(self.audio))

    def cancel(self) -> None:
        if self.decoder is not None and not self.failed:
            try:
                if self.started:
                    self.decoder.end_utt()
                self.decoders.give_back(self.decoder, self.digits)
            except Exception:
                pass
        self.decoder = None

    # -- internals

    def _fail(self) -> None:
        """A decoder that raised may be stuck inside an utterance, which makes it refuse
        every later one: it is dropped, never pooled (a fresh one replaces it on demand)."""
        self.failed = True
        if self.decoder is not None:
            with contextlib.suppress(Exception):
                self.decoder.end_utt()
            self.decoder = None

    def _sound(self, upto: int | None = None) -> bytes:
        audio = self.audio if upto is None else self.audio[:upto]
        return sounding_frames(bytes(audio))

    def _warm_enough(self) -> bool:
        if len(self.audio) >= MAX_WARM_BUFFER_MS * BYTES_PER_MS:
            return True
        return len(self._sound()) >= self.warm_ms * BYTES_PER_MS

    def _start(self) -> None:
        """Set the mean and start decoding. The warm-up's mean is taken over exactly the
        first `warm_ms` of sound, however much audio has been buffered by now (a replay at
        full speed ships seconds at once), so results do not depend on the delivery."""
        self.started = True
        d = self.decoders
        own = (
            d.estimator.mean(self._sound()[: self.warm_ms * BYTES_PER_MS]) if self.warm_ms else None
        )
        mean = blend(self.prior, own)
        self.decoder = d.take(self.digits)
        try:
            # The front end's noise estimate is NOT reset here: carried on from the pooled
            # decoder's last utterance it found 9 of 12 digits in 20 dB noise, reset per
            # utterance 7 (bench/speech_curve.py); a line's noise floor is steady.
            self.decoder.set_cmn(format_cmn(mean) if mean is not None else d.initial_cmn)
            self.decoder.start_utt()
        except Exception:
            self._fail()
            return
        self.next_refresh = REFRESH_MS * BYTES_PER_MS

    def _refresh(self) -> None:
        """The utterance's mean over what has been decoded so far, blended with the
        channel's, for the frames to come. At 1, 2, 4, 8 ... s of audio: the estimator's
        work stays linear in the utterance's length (about twice it in all)."""
        self.next_refresh = 2 * self.decoded
        own = self.decoders.estimator.mean(bytes(self.audio[: self.decoded]))
        mean = blend(self.prior, own)
        if mean is not None:
            self.decoder.set_cmn(format_cmn(mean))

    def _decode(self, out: list[tuple[str, int]]) -> None:
        step = self.partial_bytes
        audio = self.audio
        while self.decoded < len(audio) and not self.failed:
            chunk = bytes(audio[self.decoded : self.decoded + step])
            self.decoder.process_raw(chunk)
            self.decoded += len(chunk)
            self.since_partial += len(chunk)
            if REFRESH_MS and self.decoded >= self.next_refresh:
                self._refresh()
            if self.since_partial >= step:
                self.since_partial = 0
                hyp = self.decoder.hyp()
                text = hyp.hypstr if hyp is not None else ""
                if text and text != self.last_text:
                    self.last_text = text
                    out.append((text, self.start_ms + self.decoded // BYTES_PER_MS))
