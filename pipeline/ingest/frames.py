"""ACS media frames of one call: parse, dispatch by kind, count and skip what is bad.

This is where every websocket message of a call lands (`MediaEndpoint` hands it to
`on_message`), and with `Channel.audio` it is the whole per-frame hot path: bounded,
non-blocking work per frame, never an await. A malformed frame is counted by reason,
logged without its payload (rate-limited) and skipped; the call goes on.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import TYPE_CHECKING, Protocol

from models.acs import (
    AudioData,
    AudioDataPayload,
    AudioMetadata,
    DtmfData,
    MalformedFrame,
    TranscriptionData,
    TranscriptionMetadata,
    UnknownKind,
    decode_message,
    frame_bytes,
)
from pipeline.ingest.channel import Channel

if TYPE_CHECKING:
    from pipeline.ingest.payment_window import PaymentWindows
    from pipeline.ingest.ports import CallPorts, CallRecorder
    from pipeline.ingest.transcripts import Transcripts
    from pipeline.observability.stats import Stats
    from pipeline.pci.payment_guard import PaymentGuard
    from workers.stt.acs import AcsTranscriptionAdapter

log = logging.getLogger(__name__)

MIXED = "mixed"
# Largest AudioData payload accepted: ten 20 ms frames at 24 kHz. Anything bigger is not
# an ACS frame, and bounding it bounds the work one message can cause.
MAX_AUDIO_BYTES = 10 * frame_bytes(24000)
# In unmixed mode ACS streams only the dominant speakers, so a participant's frames can
# stop and resume later. A timestamp this far ahead of a channel's frame clock is a gap.
GAP_MS = 100
_KNOWN_ENCODINGS = frozenset(
    {"PCM", "OPUS", "MULAW", "ALAW", "PCMU", "PCMA", "G722", "MP3", "AAC", "SILK"}
)


def _parse_ts(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(value).timestamp() * 1000.0
    except ValueError:
        return None


class FramedCall(Protocol):
    """The call state frames read and move: its clock, channels, counters and parts."""

    call_id: str
    ports: CallPorts
    stats: Stats
    ending: bool
    started: bool
    sample_rate: int | None
    t0_mono: float | None
    t0_wall_ms: float | None
    t0_from_acs: bool
    channels: dict[str, Channel]
    malformed: int
    dtmf_tones: int
    guard: PaymentGuard
    payment: PaymentWindows
    transcripts: Transcripts
    acs_adapter: AcsTranscriptionAdapter
    recorder: CallRecorder

    def now_ms(self) -> int: ...
    def start(self, mode: str) -> None: ...
    def join(self, raw: str) -> tuple[str, str]: ...


class FrameDispatch:
    __slots__ = ("call",)

    def __init__(self, call: FramedCall) -> None:
        self.call = call

    def on_message(self, raw: bytes | str) -> None:
        call = self.call
        call.stats.frames_received += 1
        if call.ending:
            # Its finals are being (or have been) published and call.ended follows: a frame
            # now would open an utterance after the end. Counted, never processed.
            call.stats.dropped_call_ended += 1
            return
        try:
            msg = decode_message(raw)
        except MalformedFrame as exc:
            self.malformed(str(exc), "dropped_invalid")
            return
        kind = type(msg)
        if kind is AudioData:
            self._on_audio(msg.audioData)
        elif kind is AudioMetadata:
            self._on_metadata(msg)
        elif kind is TranscriptionData:
            self._on_transcription(msg)
        elif kind is DtmfData:
            # Digits are card data during a payment: count that a tone came, never which.
            call.dtmf_tones += 1
            call.stats.dtmf_tones += 1
            call.payment.apply(call.guard.on_dtmf(call.now_ms()))
        elif kind is TranscriptionMetadata:
            if msg.transcriptionMetadata.locale:
                call.acs_adapter.set_locale(msg.transcriptionMetadata.locale)
        elif kind is UnknownKind:
            call.stats.frames_unknown += 1

    def malformed(self, reason: str, counter: str) -> None:
        """Count and skip a bad frame. ``counter`` is the `Stats` field of its drop reason
        (a fixed name, see metrics.DROP_REASONS); ``reason`` is for the log only."""
        call = self.call
        call.malformed += 1
        stats = call.stats
        stats.frames_malformed += 1
        setattr(stats, counter, getattr(stats, counter) + 1)
        # Rate-limited, and never the payload: the reason names a path and a rule only.
        if call.malformed <= 5 or call.malformed % 1000 == 0:
            log.warning(
                "call %s: malformed frame #%d skipped: %s", call.call_id, call.malformed, reason,
                extra={"callId": call.call_id},
            )  # fmt: skip

    def _on_metadata(self, msg: AudioMetadata) -> None:
        call = self.call
        meta = msg.audioMetadata
        if (
            meta.sampleRate not in (16000, 24000)
            or meta.channels != 1
            or meta.encoding.upper() != "PCM"
        ):
            # The encoding is the sender's text: named only when it is a known one.
            encoding = (
                meta.encoding if meta.encoding.upper() in _KNOWN_ENCODINGS else "another encoding"
            )
            self.malformed(
                f"unsupported audio format ({encoding}, {meta.sampleRate} Hz, {meta.channels} ch)",
                "dropped_unsupported_format",
            )
            return
        if call.sample_rate is not None and call.sample_rate != meta.sampleRate and call.channels:
            self.malformed("sample rate changed mid-call", "dropped_unsupported_format")
            return
        call.sample_rate = meta.sampleRate

    def _on_audio(self, p: AudioDataPayload) -> None:
        call = self.call
        if call.sample_rate is None:
            self.malformed("audio before AudioMetadata", "dropped_before_metadata")
            return
        n = len(p.data)
        if n == 0 or n & 1 or n > MAX_AUDIO_BYTES:
            self.malformed(
                f"audio payload of {n} bytes",
                "dropped_payload_too_large" if n > MAX_AUDIO_BYTES else "dropped_bad_size",
            )
            return
        raw = p.participantRawID or MIXED
        ch = call.channels.get(raw)  # by raw id: no pseudonym is computed per frame
        if ch is None:
            ch = self._new_channel(raw, p.timestamp)
        elif call.t0_from_acs and p.timestamp is not None:
            ts = _parse_ts(p.timestamp)
            if ts is not None:
                ahead = int(ts - call.t0_wall_ms) - ch.segmenter.clock_ms  # type: ignore[operator]
                if ahead >= GAP_MS:
                    ch.skip(ahead)
        call.stats.frames_audio += 1
        if p.silent:
            call.stats.frames_silent += 1
            ch.silence(n)
        else:
            ch.audio(p.data)

    def _new_channel(self, raw: str, timestamp: str | None) -> Channel:
        call = self.call
        ts = _parse_ts(timestamp)
        if call.t0_mono is None:
            call.t0_mono = time.monotonic()
            call.t0_wall_ms = ts if ts is not None else time.time() * 1000.0
            call.t0_from_acs = ts is not None
            start_ms = 0
        else:
            start_ms = (
                int(ts - call.t0_wall_ms) if ts is not None and call.t0_wall_ms else call.now_ms()
            )
            start_ms = max(0, start_ms - start_ms % 20)
        if not call.started:
            call.start(MIXED if raw == MIXED else "unmixed")
        participant, role = call.join(raw)  # the channel knows only the published id
        ch = Channel(call, call.ports.settings, participant, role, start_ms)
        ch.tape = call.recorder.track(ch, start_ms, call.sample_rate)
        call.channels[raw] = ch
        return ch

    def _on_transcription(self, msg: TranscriptionData) -> None:
        call = self.call
        p = msg.transcriptionData
        raw = p.participantRawID or MIXED
        if call.t0_mono is None:
            call.t0_mono = time.monotonic()
        if not call.started:
            call.start(MIXED if raw == MIXED else "unmixed")
        participant, _role = call.join(raw)  # utterance ids are made from the published id
        result = call.acs_adapter.on_transcription(p, participant, call.now_ms())
        call.transcripts.expect(result.utterance_id)  # open until its Final is published
        call.transcripts.on_result(participant, result)
