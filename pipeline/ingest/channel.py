"""One participant's audio (or the mixed stream): resample, VAD, utterances, engine feed.

This is the per-frame hot path after parsing: every AudioData payload of a participant
lands in `Channel.audio`, is brought to 16 kHz, cut into 20 ms VAD frames and segmented
into utterances, whose audio goes to the speech engine as it is spoken. A channel talks
to its call only through `ChannelCall`, the few things a segment boundary needs.
"""

from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING, Protocol

from models.acs import frame_bytes
from workers.resample import Resampler
from workers.vad import SegmentAudio, SegmentEnd, Segmenter, SegmentStart

if TYPE_CHECKING:
    from models.settings import Settings
    from pipeline.analytics.call_analytics import CallAnalytics
    from pipeline.pci.payment_guard import PaymentGuard
    from workers.stt.base import SpeechChannel, SpeechStream

VAD_FRAME_BYTES = frame_bytes(16000)


class Utterance:
    """An utterance in progress on a channel: its id and the engine stream fed its audio."""

    __slots__ = ("id", "start_ms", "stream")

    def __init__(self, uid: str, start_ms: int, stream: SpeechStream | None) -> None:
        self.id = uid
        self.start_ms = start_ms
        self.stream = stream


class ChannelCall(Protocol):
    """What a channel needs of its call."""

    call_id: str
    sample_rate: int | None
    guard: PaymentGuard
    analytics: CallAnalytics
    # utterance id -> monotonic time its audio ended, for the speech-latency histogram
    audio_ended: dict[str, float]

    def now_ms(self) -> int: ...
    def customer_speech(self, onset_ms: int) -> None: ...
    def withholds(self, role: str) -> bool: ...
    def open_continuous(self, channel: Channel, start_ms: int) -> SpeechChannel | None: ...
    def open_utterance(self, channel: Channel, start_ms: int) -> Utterance: ...


class Channel:
    """One participant's audio (or the mixed stream): resampler, segmenter, open utterance."""

    __slots__ = (
        "call", "participant", "role", "resampler", "segmenter", "buf", "utterance", "in_frame_bytes", "continuous",
        "engine_key", "tape",
    )  # fmt: skip

    def __init__(
        self, call: ChannelCall, settings: Settings, participant: str, role: str, start_ms: int
    ) -> None:
        s = settings
        self.call = call
        self.participant = participant
        self.role = role
        # Names this channel to the speech engine (which carries what it learned about the
        # line from one utterance to the next) without handing it the caller's number.
        self.engine_key = hashlib.blake2b(
            f"{call.call_id}/{participant}".encode(), digest_size=12
        ).hexdigest()
        rate = call.sample_rate or 16000
        self.in_frame_bytes = frame_bytes(rate)
        self.resampler = Resampler(rate) if rate != 16000 else None
        self.segmenter = Segmenter(
            aggressiveness=s.vad_aggressiveness,
            preroll_ms=s.vad_preroll_ms,
            hangover_ms=s.vad_hangover_ms,
            max_utterance_ms=s.vad_max_utterance_ms,
            min_utterance_ms=s.vad_min_utterance_ms,
            start_ms=start_ms,
        )
        self.buf = bytearray()
        self.utterance: Utterance | None = None
        # callstream's own recorder, when on (frames.py sets it): the frames as they came, at
        # the call's rate, or the number of zero bytes a silent frame or a gap stands for.
        self.tape: list[bytes | int] | None = None
        # A continuous engine (Azure) hears the participant's whole audio, silence and all,
        # so that its offsets stay on the call's timeline; VAD still runs for the guard.
        self.continuous = call.open_continuous(self, start_ms)

    def audio(self, data: bytes) -> None:
        if self.tape is not None:
            self.tape.append(data)
        if self.resampler is not None:
            data = self.resampler.process(data)
        if self.continuous is not None:
            self.continuous.push(bytes(len(data)) if self._withheld() else data)
        if not self.buf and len(data) == VAD_FRAME_BYTES:
            self._handle(self.segmenter.push(data))
            return
        self.buf += data
        while len(self.buf) >= VAD_FRAME_BYTES:
            frame = bytes(self.buf[:VAD_FRAME_BYTES])
            del self.buf[:VAD_FRAME_BYTES]
            self._handle(self.segmenter.push(frame))

    def silence(self, nbytes: int) -> None:
        frames = max(1, round(nbytes / self.in_frame_bytes))
        if self.tape is not None:
            self.tape.append(frames * self.in_frame_bytes)
        if self.continuous is not None:
            self.continuous.push(bytes(VAD_FRAME_BYTES * frames))
        for _ in range(frames):
            self._handle(self.segmenter.push_silence())

    def flush(self) -> None:
        self._handle(self.segmenter.flush())
        if self.continuous is not None:
            self.continuous.close()  # the engine delivers its last finals, then stops

    def skip(self, gap_ms: int) -> None:
        """Frames stopped for `gap_ms`: end any open utterance where the audio stopped, and
        move the clock on so later offsets stay on the call's timeline."""
        self._handle(self.segmenter.flush())
        self.buf.clear()
        step = gap_ms - gap_ms % 20
        if self.tape is not None:
            self.tape.append(step * (self.in_frame_bytes // 20))
        if self.continuous is not None:
            self.continuous.push(bytes(32 * step))  # silence for the gap keeps offsets true
        self.segmenter.clock_ms += step

    def _withheld(self) -> bool:
        """During a payment the customer's audio does not go to a remote speech engine."""
        return self.call.withholds(self.role)

    def _handle(self, events: tuple) -> None:
        for ev in events:
            kind = type(ev)
            if kind is SegmentAudio:
                if (
                    self.utterance is not None
                    and self.utterance.stream is not None
                    and not self._withheld()
                ):
                    self.utterance.stream.push(ev.audio)
            elif kind is SegmentStart:
                vad = self.segmenter
                if self.role != "agent":
                    self.call.customer_speech(vad.onset_ms)
                self.call.analytics.talk_started(self, self.role, vad.onset_ms, vad)
                self.utterance = self.call.open_utterance(self, ev.start_ms)
                if self.utterance.stream is not None and not self._withheld():
                    self.utterance.stream.push(ev.audio)
            elif kind is SegmentEnd:
                vad = self.segmenter
                self.call.analytics.talk_ended(self, vad.last_voiced_end_ms, not vad.last_too_short)
                utt, self.utterance = self.utterance, None
                if utt is not None and utt.stream is not None:
                    if ev.audio and not self._withheld():
                        utt.stream.push(ev.audio)
                    # Before end(): an engine may deliver the final from within it.
                    self.call.audio_ended[utt.id] = time.monotonic()
                    utt.stream.end(ev.end_ms)
