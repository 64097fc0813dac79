"""One call: its participants' channels, utterances, seq counter and lifecycle.

Everything here runs on the event loop and does bounded, non-blocking work per frame:
decode, (resample), VAD, and hand audio to the speech engine, which decodes elsewhere.
Speech results come back as callbacks; their raw text goes straight to the redaction
runner and only the redacted text is turned into events. A call may have several
websockets at once (ACS opens one for audio and one for its own transcription); it
ends when the last one closes and every pending final has been published.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import logging
import re
import time
from collections import Counter, deque
from typing import TYPE_CHECKING, Any

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
from models.events import (
    CallEnded,
    CallStarted,
    Event,
    ParticipantJoined,
    PaymentEnded,
    PaymentStarted,
    SpeechError,
    TranscriptFinal,
    TranscriptPartial,
    utc_now_iso,
)
from models.speech import SpeechResult
from pipeline.pci.payment_guard import Decision, PaymentGuard, Window
from pipeline.privacy.redaction import (
    RedactionPolicy,
    RedactionResult,
    StickyValues,
    hold_back_unfinished,
)
from workers.resample import Resampler
from workers.stt.acs import AcsTranscriptionAdapter
from workers.stt.base import SpeechStream
from workers.vad import SegmentAudio, SegmentEnd, Segmenter, SegmentStart

if TYPE_CHECKING:
    from pipeline.service import Service

log = logging.getLogger(__name__)

VAD_FRAME_BYTES = frame_bytes(16000)
MIXED = "mixed"
# Largest AudioData payload accepted: ten 20 ms frames at 24 kHz. Anything bigger is not
# an ACS frame, and bounding it bounds the work one message can cause.
MAX_AUDIO_BYTES = 10 * frame_bytes(24000)
# In unmixed mode ACS streams only the dominant speakers, so a participant's frames can
# stop and resume later. A timestamp this far ahead of a channel's frame clock is a gap.
GAP_MS = 100
# How many earlier final utterances lend their words as context to the redactor ("and the
# expiry date?" makes the customer's bare "twelve twenty eight" an expiry date). Earlier
# on the call's timeline, not in the order they were recognized: when audio arrives
# faster than real time, a later turn can be recognized first.
CONTEXT_UTTERANCES = 2
MAX_SUMMARY_LINES = 2000  # redacted finals kept for the end-of-call summary
CONTEXT_KEPT = 8
_CONTEXT_WORD = re.compile(r"[a-z]+")
_TAG = re.compile(r"\[[A-Z0-9_]+\]")  # "[CARD_SECURITY_CODE]" must not read as "security code"
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


class Utterance:
    """An utterance in progress on a channel: its id and the engine stream fed its audio."""

    __slots__ = ("id", "start_ms", "stream")

    def __init__(self, uid: str, start_ms: int, stream: SpeechStream | None) -> None:
        self.id = uid
        self.start_ms = start_ms
        self.stream = stream


class Channel:
    """One participant's audio (or the mixed stream): resampler, segmenter, open utterance."""

    __slots__ = (
        "session", "participant", "role", "resampler", "segmenter", "buf", "utterance", "in_frame_bytes", "continuous",
        "engine_key",
    )  # fmt: skip

    def __init__(self, session: CallSession, participant: str, role: str, start_ms: int) -> None:
        s = session.service.settings
        self.session = session
        self.participant = participant
        self.role = role
        # Names this channel to the speech engine (which carries what it learned about the
        # line from one utterance to the next) without handing it the caller's number.
        self.engine_key = hashlib.blake2b(
            f"{session.call_id}/{participant}".encode(), digest_size=12
        ).hexdigest()
        rate = session.sample_rate or 16000
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
        # A continuous engine (Azure) hears the participant's whole audio, silence and all,
        # so that its offsets stay on the call's timeline; VAD still runs for the guard.
        self.continuous = session.open_continuous(self, start_ms)

    def audio(self, data: bytes) -> None:
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
        if self.continuous is not None:
            self.continuous.push(bytes(32 * step))  # silence for the gap keeps offsets true
        self.segmenter.clock_ms += step

    def _withheld(self) -> bool:
        """During a payment the customer's audio does not go to a remote speech engine."""
        s = self.session
        return s.payment_open and self.role != "agent" and s.withhold_audio

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
                if self.role != "agent":
                    self.session.guard.on_customer_speech(self.session.now_ms())
                self.utterance = self.session.open_utterance(self, ev.start_ms)
                if self.utterance.stream is not None and not self._withheld():
                    self.utterance.stream.push(ev.audio)
            elif kind is SegmentEnd:
                utt, self.utterance = self.utterance, None
                if utt is not None and utt.stream is not None:
                    if ev.audio and not self._withheld():
                        utt.stream.push(ev.audio)
                    # Before end(): an engine may deliver the final from within it.
                    self.session.audio_ended[utt.id] = time.monotonic()
                    utt.stream.end(ev.end_ms)


class CallSession:
    def __init__(self, call_id: str, service: Service) -> None:
        self.call_id = call_id
        self.service = service
        self.stats = service.stats
        self.sample_rate: int | None = None
        self.mode: str | None = None
        self.t0_wall_ms: float | None = (
            None  # ACS timestamp (or wall clock) of the first audio frame
        )
        self.t0_mono: float | None = None
        self.t0_from_acs = False  # offsets can follow ACS timestamps only if t0 was one
        self.channels: dict[str, Channel] = {}
        self.participants: dict[str, str] = {}  # participant -> role, for those announced
        self.seq = 0
        self.started = False
        self.resumed = False  # continues a stored call (after a restart): no second call.started
        self.reconnects = 0
        self._grace_task: asyncio.Task[None] | None = None
        self.ended = False
        # Set once the call is being ended (or has ended) while a media socket may still be
        # open (server shutdown, ACS CallDisconnected): later frames are dropped, counted.
        self.ending = False
        self.connections = 0
        self.malformed = 0
        self.utterance_counter = 0
        self.pending: set[str] = set()  # utterances whose final has not been published yet
        self._settled = asyncio.Event()
        self._settled.set()
        self.acs_adapter = AcsTranscriptionAdapter()
        self.dtmf_tones = 0
        self.payment_open = False  # the payment guard's window: every digit is redacted
        self.guard = PaymentGuard(service.guard_policy)
        self.withhold_audio = service.guard_policy.withhold_audio and getattr(
            service.engine, "remote", False
        )
        self._guard_timer: asyncio.TimerHandle | None = None
        self._policy_audited = False
        self._tasks: set[asyncio.Task] = set()
        self.redaction_counts: Counter[str] = Counter()
        self.rolling_sentiment: dict[str, float] = {}  # participant -> running score
        self.finals: list[tuple[str, str]] = []  # (role, redacted text), for the summary
        # Per open utterance; their contents are read and written on the redaction thread only.
        self.sticky: dict[str, StickyValues] = {}
        # Words of the last final utterances; appended and read on the redaction thread.
        self.context: deque[tuple[int, tuple[str, ...]]] = deque(
            maxlen=CONTEXT_KEPT
        )  # (endMs, words)
        self.close_task: asyncio.Task[None] | None = None
        # utterance id -> monotonic time its audio ended, for the speech-latency histogram
        self.audio_ended: dict[str, float] = {}
        self.continuous_engine = bool(getattr(service.engine, "continuous", False))

    # ----- lifecycle -------------------------------------------------------------------
    def attach(self) -> None:
        self.connections += 1
        if self._grace_task is not None:
            self.reconnects += 1
            self.audit("media.reconnected", {"reconnects": self.reconnects})
            log.info("call %s: media reconnected", self.call_id, extra={"callId": self.call_id})
            self._grace_task = None
        if self.close_task is not None and not self.close_task.done():
            self.close_task.cancel()
            self.close_task = None
            self.ending = False  # the call goes on

    def resume(self, last_seq: int) -> None:
        """This call is already in the store (its process restarted, or its media came back
        after it was closed): carry on its seq and its chain rather than start another."""
        self.seq = last_seq
        self.resumed = True

    def detach(self, reason: str, grace_s: float = 0.0) -> None:
        """The media websocket closed. ``grace_s`` > 0 (it dropped rather than closed): ACS
        may reconnect with the same call id, so the call waits that long before it ends, with
        its guard, its utterances and its seq intact."""
        self.connections -= 1
        # Not while the call is already being ended (end_now: ACS hung up, or a shutdown):
        # a second _finish would publish a second call.ended.
        finishing = self.close_task is not None and not self.close_task.done()
        if self.connections <= 0 and not self.ended and not finishing:
            if grace_s > 0:
                self._grace_task = asyncio.get_running_loop().create_task(
                    self._finish_after(grace_s, "media-lost")
                )
                self.close_task = self._grace_task
            else:
                self.close_task = asyncio.get_running_loop().create_task(self._finish(reason))

    async def _finish_after(self, grace_s: float, reason: str) -> None:
        await asyncio.sleep(grace_s)
        self._grace_task = None  # too late to reconnect: the call ends now
        await self._finish(reason)

    async def _quiesce(self, timeout_s: float) -> None:
        """Close open utterances and wait, at most ``timeout_s`` each step, for their finals
        to be redacted and published."""
        for ch in self.channels.values():
            ch.flush()
        closing = [
            ch.continuous.wait_closed()
            for ch in self.channels.values()
            if ch.continuous is not None
        ]
        if closing:  # a continuous engine's last finals come after its channel closes
            try:
                await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), timeout_s)
            except TimeoutError:
                log.warning(
                    "call %s: the speech engine did not finish in time",
                    self.call_id,
                    extra={"callId": self.call_id},
                )
        try:
            await asyncio.wait_for(self._settled.wait(), timeout_s)
        except TimeoutError:
            log.warning(
                "call %s: %d utterances had no final result in time", self.call_id, len(self.pending),
                extra={"callId": self.call_id},
            )  # fmt: skip
            for uid in list(self.pending):
                self.pending.discard(uid)
        await self.service.redaction.drain()

    async def _wind_down(self, timeout_s: float) -> None:
        """Stop the guard's timer and let this call's background tasks (recording requests,
        enrichment) finish, cancelling what is still running after ``timeout_s``."""
        if self._guard_timer is not None:
            self._guard_timer.cancel()
        if self._tasks:
            _, late = await asyncio.wait(list(self._tasks), timeout=timeout_s)
            for task in late:
                task.cancel()

    async def _finish(self, reason: str) -> None:
        """Close open utterances, wait (bounded) for their finals, then end the call."""
        await self._quiesce(self.service.final_timeout_s)
        self._apply(self.guard.call_ended(self.now_ms()), notify_acs=False)
        await self.service.enricher.drain()
        await self._wind_down(self.service.recording.timeout_s * 3 + 2)
        await self.service.enricher.summary(self)
        if self.redaction_counts or self.guard.windows:
            self.audit("redactions", {"counts": dict(sorted(self.redaction_counts.items()))})
        if self.started:
            self.emit(CallEnded(callId=self.call_id, reason=reason))
        self._fold_vad_counts()
        self.ending = True
        self.ended = True
        self.service.forget(self)

    def _fold_vad_counts(self) -> None:
        """Move the channels' VAD frame counts into the service totals as the call ends.

        Live channels are read at scrape time (metrics), so the per-frame path adds to
        nothing but the segmenter's own counters; this runs in the same loop step that
        removes the call from `service.calls`, so no frame is counted twice or lost.
        """
        stats = self.stats
        for ch in self.channels.values():
            stats.vad_frames += ch.segmenter.frames
            stats.vad_speech_frames += ch.segmenter.speech_frames

    def end_now(self, reason: str) -> None:
        """Server shutdown: finish without waiting for connections to close."""
        if self._grace_task is not None:  # waiting for a reconnect: end it now instead
            self._grace_task.cancel()
            self._grace_task = self.close_task = None
        if not self.ended and self.close_task is None:
            self.ending = True
            self.close_task = asyncio.get_running_loop().create_task(self._finish(reason))

    async def hand_over(self, timeout_s: float) -> dict[str, Any]:
        """ACS reconnected this call's media to another replica: finish what this one has
        in hand (open utterances, their finals, recording requests in flight), stop without
        a call.ended, and return what the new owner needs to go on as the same call."""
        if self._grace_task is not None:
            self._grace_task.cancel()
            self._grace_task = self.close_task = None
        self.ending = True  # the old socket, if it still sends, is dropped (counted)
        # ACS's own transcription in progress is finished by ACS on the new socket, under the
        # same utterance id (the adapter's state goes along): nothing to wait for here.
        self.pending.difference_update(self.acs_adapter.open_utterances())
        if not self.pending:
            self._settled.set()
        await self._quiesce(timeout_s)
        await self._wind_down(timeout_s)
        cc = self.service.recording.calls.get(self.call_id)
        state = {
            "lastSeq": self.seq, "started": self.started, "mode": self.mode,
            "sampleRate": self.sample_rate, "elapsedMs": self.now_ms() if self.t0_mono is not None else None,
            "t0WallMs": self.t0_wall_ms, "t0FromAcs": self.t0_from_acs, "participants": self.participants,
            "guard": self.guard.export(), "policyAudited": self._policy_audited,
            "redactionCounts": dict(self.redaction_counts), "reconnects": self.reconnects,
            "dtmfTones": self.dtmf_tones, "finals": self.finals, "acsTranscription": self.acs_adapter.export(),
            "recording": {"recordingId": cc.recording_id, "serverCallId": cc.server_call_id,
                          "recordingState": cc.recording_state} if cc else {},
        }  # fmt: skip
        self.audit("media.handed-over", {"lastSeq": self.seq, "paymentOpen": self.guard.is_open})
        self._fold_vad_counts()
        self.ended = True
        self.service.forget(self)
        log.info(
            "call %s: handed over to the replica ACS reconnected to",
            self.call_id,
            extra={"callId": self.call_id},
        )
        return state

    def adopt(self, state: dict[str, Any]) -> None:
        """Go on with a call another replica handed over (see `hand_over`): same seq, same
        timeline, same payment window, no second call.started or participant.joined."""
        self.seq = max(self.seq, int(state.get("lastSeq", 0)))
        self.resumed = True
        self.sample_rate = state.get("sampleRate") or self.sample_rate
        if state.get("elapsedMs") is not None:
            self.t0_mono = time.monotonic() - float(state["elapsedMs"]) / 1000.0
            self.t0_wall_ms = state.get("t0WallMs")
            self.t0_from_acs = bool(state.get("t0FromAcs"))
        self.participants.update(state.get("participants") or {})
        if state.get("started"):
            self.started = True
            self.mode = state.get("mode")
        self.guard.restore(state.get("guard") or {})
        self._policy_audited = bool(state.get("policyAudited"))
        self.redaction_counts.update(state.get("redactionCounts") or {})
        self.dtmf_tones = int(state.get("dtmfTones", 0))
        self.acs_adapter.restore(state.get("acsTranscription") or {})
        self.finals.extend((str(r), str(t)) for r, t in state.get("finals") or [])
        self.reconnects = int(state.get("reconnects", 0)) + 1
        rec = state.get("recording") or {}
        if rec.get("recordingId") or rec.get("serverCallId"):
            cc = self.service.recording.control(self.call_id)
            cc.recording_id = cc.recording_id or rec.get("recordingId")
            cc.server_call_id = cc.server_call_id or rec.get("serverCallId")
            if rec.get("recordingState"):
                self.service.recording.on_state(cc, rec["recordingState"])
        if self.guard.is_open:
            self.set_payment_window(True)
            self.service.cluster.note(self.call_id, payment="open")
            self._schedule_guard_timer()
        self.audit(
            "media.reconnected",
            {"reconnects": self.reconnects, "handedOver": True, "fromSeq": self.seq},
        )
        log.info(
            "call %s: media reconnected here; taken over from another replica",
            self.call_id,
            extra={"callId": self.call_id},
        )

    # ----- events ----------------------------------------------------------------------
    def emit(self, event: Event) -> None:
        self.seq += 1
        event.seq = self.seq
        event.time = utc_now_iso()
        self.service.journal.append(event)

    def now_ms(self) -> int:
        if self.t0_mono is None:
            return 0
        return int((time.monotonic() - self.t0_mono) * 1000)

    def _start(self, mode: str) -> None:
        self.started = True
        self.mode = mode
        if self.resumed:
            self.audit("call.resumed", {"fromSeq": self.seq})
            return
        self.emit(CallStarted(callId=self.call_id, mode=mode, sampleRate=self.sample_rate or 16000))

    def _participant(self, participant: str) -> str:
        role = self.participants.get(participant)
        if role is None:
            role = self.service.roles.role(None if participant == MIXED else participant)
            self.participants[participant] = role
            self.emit(ParticipantJoined(callId=self.call_id, participant=participant, role=role))
        return role

    # ----- the media path --------------------------------------------------------------
    def on_message(self, raw: bytes | str) -> None:
        self.stats.frames_received += 1
        if self.ending:
            # Its finals are being (or have been) published and call.ended follows: a frame
            # now would open an utterance after the end. Counted, never processed.
            self.stats.dropped_call_ended += 1
            return
        try:
            msg = decode_message(raw)
        except MalformedFrame as exc:
            self._malformed(str(exc), "dropped_invalid")
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
            self.dtmf_tones += 1
            self.stats.dtmf_tones += 1
            self._apply(self.guard.on_dtmf(self.now_ms()))
        elif kind is TranscriptionMetadata:
            if msg.transcriptionMetadata.locale:
                self.acs_adapter.set_locale(msg.transcriptionMetadata.locale)
        elif kind is UnknownKind:
            self.stats.frames_unknown += 1

    def _malformed(self, reason: str, counter: str) -> None:
        """Count and skip a bad frame. ``counter`` is the `Stats` field of its drop reason
        (a fixed name, see metrics.DROP_REASONS); ``reason`` is for the log only."""
        self.malformed += 1
        stats = self.stats
        stats.frames_malformed += 1
        setattr(stats, counter, getattr(stats, counter) + 1)
        # Rate-limited, and never the payload: the reason names a path and a rule only.
        if self.malformed <= 5 or self.malformed % 1000 == 0:
            log.warning(
                "call %s: malformed frame #%d skipped: %s", self.call_id, self.malformed, reason,
                extra={"callId": self.call_id},
            )  # fmt: skip

    def _on_metadata(self, msg: AudioMetadata) -> None:
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
            self._malformed(
                f"unsupported audio format ({encoding}, {meta.sampleRate} Hz, {meta.channels} ch)",
                "dropped_unsupported_format",
            )
            return
        if self.sample_rate is not None and self.sample_rate != meta.sampleRate and self.channels:
            self._malformed("sample rate changed mid-call", "dropped_unsupported_format")
            return
        self.sample_rate = meta.sampleRate

    def _on_audio(self, p: AudioDataPayload) -> None:
        if self.sample_rate is None:
            self._malformed("audio before AudioMetadata", "dropped_before_metadata")
            return
        n = len(p.data)
        if n == 0 or n & 1 or n > MAX_AUDIO_BYTES:
            self._malformed(
                f"audio payload of {n} bytes",
                "dropped_payload_too_large" if n > MAX_AUDIO_BYTES else "dropped_bad_size",
            )
            return
        participant = p.participantRawID or MIXED
        ch = self.channels.get(participant)
        if ch is None:
            ch = self._new_channel(participant, p.timestamp)
        elif self.t0_from_acs and p.timestamp is not None:
            ts = _parse_ts(p.timestamp)
            if ts is not None:
                ahead = int(ts - self.t0_wall_ms) - ch.segmenter.clock_ms  # type: ignore[operator]
                if ahead >= GAP_MS:
                    ch.skip(ahead)
        self.stats.frames_audio += 1
        if p.silent:
            self.stats.frames_silent += 1
            ch.silence(n)
        else:
            ch.audio(p.data)

    def _new_channel(self, participant: str, timestamp: str | None) -> Channel:
        ts = _parse_ts(timestamp)
        if self.t0_mono is None:
            self.t0_mono = time.monotonic()
            self.t0_wall_ms = ts if ts is not None else time.time() * 1000.0
            self.t0_from_acs = ts is not None
            start_ms = 0
        else:
            start_ms = (
                int(ts - self.t0_wall_ms) if ts is not None and self.t0_wall_ms else self.now_ms()
            )
            start_ms = max(0, start_ms - start_ms % 20)
        if not self.started:
            self._start(MIXED if participant == MIXED else "unmixed")
        role = self._participant(participant)
        ch = Channel(self, participant, role, start_ms)
        self.channels[participant] = ch
        return ch

    def _on_transcription(self, msg: TranscriptionData) -> None:
        p = msg.transcriptionData
        participant = p.participantRawID or MIXED
        if self.t0_mono is None:
            self.t0_mono = time.monotonic()
        if not self.started:
            self._start(MIXED if participant == MIXED else "unmixed")
        self._participant(participant)
        result = self.acs_adapter.on_transcription(p, participant, self.now_ms())
        self.pending.add(result.utterance_id)  # open until its Final is published
        self._settled.clear()
        self.on_result(participant, result)

    # ----- payment windows -------------------------------------------------------------
    def track(self, task: asyncio.Future) -> None:
        """Keep a background task of this call (recording requests, enrichment) until it is done."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def track_new(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self.track(task)
        return task

    def audit(self, kind: str, body: dict) -> None:
        self.service.journal.audit(self.call_id, kind, body)

    def audit_exposures(self, window: Window) -> None:
        for start, end in window.exposures[window.audited_exposures :]:
            self.audit(
                "exposure",
                {"window": window.number, "fromMs": start, "toMs": end, "durationMs": end - start,
                 "reason": "late trigger: digits before the window" if window.exposure_from_ms is not None
                 else "the customer spoke or keyed before ACS confirmed the pause"},
            )  # fmt: skip
        window.audited_exposures = len(window.exposures)

    def manual(self, action: str) -> Decision | None:
        """``POST /calls/{callId}/recording/pause|resume`` from the agent desktop."""
        decision = self.guard.manual(action, self.now_ms())
        self._apply(decision)
        return decision

    def _apply(
        self, decision: Decision | None, t0: float | None = None, notify_acs: bool = True
    ) -> None:
        if decision is None:
            return
        t0 = time.monotonic() if t0 is None else t0
        w = decision.window
        if decision.action == "open":
            self.set_payment_window(True)
            self.service.cluster.note(self.call_id, payment="open")
            self.stats.payment_windows += 1
            if not self._policy_audited:
                self._policy_audited = True
                policy = self.guard.policy
                self.audit("policy", {"version": policy.version, **policy.as_dict()})
            self.emit(
                PaymentStarted(callId=self.call_id, trigger=decision.trigger, startMs=w.start_ms)
            )
            self.audit(
                "window.opened",
                {
                    "window": w.number,
                    "trigger": decision.trigger,
                    "startMs": w.start_ms,
                    "exposureFromMs": w.exposure_from_ms,
                },
            )
            self.service.recording.window_opened(self, w, t0)
            self._schedule_guard_timer()
        else:
            self.set_payment_window(False)
            self.service.cluster.note(self.call_id, payment="closed")
            self.emit(
                PaymentEnded(callId=self.call_id, trigger=decision.trigger, startMs=w.end_ms or 0)
            )
            self.audit(
                "window.closed",
                {"window": w.number, "trigger": decision.trigger, "startMs": w.start_ms, "endMs": w.end_ms,
                 "pauseConfirmedMs": w.confirmed_ms, "callEnded": not notify_acs},
            )  # fmt: skip
            self.audit_exposures(w)
            if notify_acs:
                self.service.recording.window_closed(self, w, t0)

    def _schedule_guard_timer(self) -> None:
        if self._guard_timer is None or self._guard_timer.cancelled():
            self._guard_timer = asyncio.get_running_loop().call_later(1.0, self._guard_tick)

    def _guard_tick(self) -> None:
        self._guard_timer = None
        if self.ended:
            return
        self._apply(self.guard.check_timers(self.now_ms()))
        if self.guard.is_open:
            self._schedule_guard_timer()

    # ----- redaction policy ------------------------------------------------------------
    def set_payment_window(self, open_: bool) -> None:
        """The payment guard's hook: while open, every digit in transcripts is redacted."""
        self.payment_open = open_

    def redaction_policy(
        self, sticky: StickyValues | None = None, start_ms: int | None = None
    ) -> RedactionPolicy:
        """The policy for the next text; evaluated on the redaction thread (see runner)."""
        earlier = [
            words for end, words in self.context if start_ms is None or end <= start_ms + 500
        ]
        return RedactionPolicy(
            all_digits=self.payment_open,
            known=self.service.known.recognizer(self.call_id),
            sticky=sticky.recognizer if sticky is not None else None,
            context=tuple(w for words in earlier[-CONTEXT_UTTERANCES:] for w in words),
        )

    # ----- continuous engines (Azure) -------------------------------------------------
    def open_continuous(self, ch: Channel, start_ms: int):
        engine = self.service.engine
        if not getattr(engine, "continuous", False):
            return None
        participant = ch.participant

        def on_result(result: SpeechResult) -> None:
            if not result.is_final and result.utterance_id not in self.pending:
                self.pending.add(result.utterance_id)  # open until its final is published
                self._settled.clear()
            self.on_result(participant, result)

        def on_translation(
            uid: str, _channel: str, translations: dict[str, str], is_final: bool
        ) -> None:
            if is_final:
                for language, text in translations.items():
                    self.on_engine_translation(participant, uid, language, text)

        return engine.open_channel(
            participant, start_ms, on_result, on_translation,
            lambda error: self.on_engine_error(participant, error), self.service.settings.language,
        )  # fmt: skip

    def on_engine_error(self, participant: str, error: str) -> None:
        """A recognizer was canceled: an event and a metric; the call goes on."""
        self.stats.speech_errors += 1
        log.warning(
            "call %s: speech engine error for a participant: %s",
            self.call_id,
            error,
            extra={"callId": self.call_id},
        )
        if not self.ended:
            self.emit(SpeechError(callId=self.call_id, participant=participant, error=error))

    def on_engine_translation(self, participant: str, uid: str, language: str, text: str) -> None:
        """Live translation from the engine is raw speech too: redact it, then publish."""
        self.service.redaction.submit(
            text,
            lambda rr: self.service.enricher.translation_from_engine(
                self, participant, uid, language, rr.text
            ),
            lambda: self.redaction_policy(),
        )

    # ----- speech results --------------------------------------------------------------
    def open_utterance(self, ch: Channel, start_ms: int) -> Utterance:
        self.utterance_counter += 1
        uid = f"u{self.utterance_counter}"
        stream = None
        engine = self.service.engine
        if engine.source != "acs" and not getattr(engine, "continuous", False):
            stream = engine.open_stream(
                uid, start_ms, lambda r, p=ch.participant: self.on_result(p, r), self.service.settings.language,
                channel=ch.engine_key, digits=self.payment_open and ch.role == "customer",
            )  # fmt: skip
            self.pending.add(uid)
            self._settled.clear()
        self.stats.utterances += 1
        return Utterance(uid, start_ms, stream)

    def on_result(self, participant: str, result: SpeechResult) -> None:
        """Raw text arrives here and leaves only through the redaction runner.

        The payment guard reads it first, on the loop, so that a pause request leaves
        within milliseconds of the partial that carried the intent.
        """
        t0 = time.monotonic()
        if result.is_final:
            self._observe_final_latency(result, t0)
        role = self.participants.get(participant, "unknown")
        self._apply(self.guard.on_text(result.text, role, result.start_ms, self.now_ms()), t0)
        sticky = self.sticky.get(result.utterance_id)
        if sticky is None:
            sticky = self.sticky[result.utterance_id] = StickyValues()

        def after(rr: RedactionResult) -> None:  # on the redaction thread, in order
            sticky.remember(result.text, rr)
            if result.is_final:
                self.context.append(
                    (result.end_ms, tuple(_CONTEXT_WORD.findall(_TAG.sub(" ", rr.text).lower())))
                )

        self.service.redaction.submit(
            result.text,
            lambda rr: self._publish(participant, result, rr),
            lambda: self.redaction_policy(sticky, result.start_ms),
            after,
        )

    def _observe_final_latency(self, result: SpeechResult, now: float) -> None:
        """Speech-engine latency: end of the utterance's audio to its final result here.

        Segmented engines (local): exact, from the moment the segmenter ended the utterance.
        Continuous engines (Azure) segment for themselves, so the end of the audio is the
        final's `end_ms` on the call clock; that equals wall time since the first frame
        only while audio arrives in real time (as ACS streams it), and a negative value
        (a faster-than-real-time replay) is not observed. ACS passthrough: the result was
        made by ACS from audio we never had; nothing to measure.
        """
        ended = self.audio_ended.pop(result.utterance_id, None)
        if ended is not None:
            seconds = now - ended
        elif self.continuous_engine and result.source != "acs":
            seconds = (self.now_ms() - result.end_ms) / 1000.0
            if seconds < 0:
                return
        else:
            return
        self.service.metrics.observe_speech_final(result.source, seconds)

    def _publish(self, participant: str, result: SpeechResult, rr: RedactionResult) -> None:
        uid = result.utterance_id
        if result.is_final:
            self.sticky.pop(uid, None)
            self.pending.discard(uid)
            if not self.pending:
                self._settled.set()
            if not rr.text.strip():
                self.stats.empty_finals += 1
                return
            self.redaction_counts.update(r.type for r in rr.redactions)
        else:
            if uid not in self.pending:
                return  # a partial that lost the race with its final
            rr = hold_back_unfinished(rr)
            if not rr.text.strip():
                return
        cls = TranscriptFinal if result.is_final else TranscriptPartial
        self.emit(
            cls(
                callId=self.call_id,
                participant=participant,
                role=self.participants.get(participant, "unknown"),
                utteranceId=uid,
                startMs=result.start_ms,
                endMs=result.end_ms,
                text=rr.text,
                language=result.language,
                confidence=round(result.confidence, 3),
                source=result.source,
                redactions=rr.redactions,
            )
        )
        if result.is_final:
            role = self.participants.get(participant, "unknown")
            # Kept only for a summary, so only when a model will write one.
            if self.service.enricher.llm is not None and len(self.finals) < MAX_SUMMARY_LINES:
                self.finals.append((role, rr.text))
            self.service.enricher.on_final(self, participant, uid, rr.text)
