"""A call's speech: engine streams opened as the engine declares, results to events.

Raw text arrives here from the engine and leaves only through the call's redaction:
the payment guard reads it first, on the loop, so that a pause request leaves within
milliseconds of the partial that carried the intent; then it is redacted, and only the
redacted text becomes a `transcript.partial` or `transcript.final`. The local engine
looks at its hypothesis far more often than a partial is worth publishing (so that the
guard sees an intent phrase within a batch of its words, `workers.stt.local`): the guard
reads each of its partials, the call publishes one per `stt_partial_interval_ms` of an
utterance's audio, so the redaction queue and subscribers carry what they did before.
How audio reaches the engine follows its declared capabilities
(`workers.stt.base.Capabilities`): one stream per VAD utterance, one channel per
participant for an engine that segments for itself, or nothing at all when ACS sends
the text.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Protocol

from models.events import SpeechError, TranscriptFinal, TranscriptPartial
from pipeline.ingest.channel import Utterance
from pipeline.privacy.partials import hold_back_unfinished
from pipeline.privacy.redaction import RedactionResult

if TYPE_CHECKING:
    from models.events import Event
    from models.speech import SpeechResult
    from pipeline.analytics.call_analytics import CallAnalytics
    from pipeline.ingest.call_redaction import CallRedaction
    from pipeline.ingest.channel import Channel
    from pipeline.ingest.payment_window import PaymentWindows
    from pipeline.ingest.ports import CallPorts
    from workers.stt.base import SpeechChannel

log = logging.getLogger(__name__)

MAX_SUMMARY_LINES = 2000  # redacted finals kept for the end-of-call summary


class TranscriptCall(Protocol):
    call_id: str
    ended: bool
    participants: dict[str, str]  # participant -> role
    payment_open: bool
    finals: list[tuple[str, str]]
    analytics: CallAnalytics

    def now_ms(self) -> int: ...
    def emit(self, event: Event) -> None: ...


class Transcripts:
    def __init__(
        self,
        call: TranscriptCall,
        ports: CallPorts,
        redaction: CallRedaction,
        payment: PaymentWindows,
    ) -> None:
        self.call = call
        self._ports = ports
        self._redaction = redaction
        self._payment = payment
        caps = ports.engine.capabilities
        self._streams = caps.audio_input and not caps.continuous
        self._continuous = caps.audio_input and caps.continuous
        # An engine decoding here sends partials faster than they are published (above).
        local = caps.audio_input and not caps.remote and not caps.continuous
        self._publish_every_ms = ports.settings.stt_partial_interval_ms if local else 0
        self._published_end: dict[str, int] = {}  # utterance -> end_ms of its last partial out
        self.utterance_counter = 0
        self.pending: set[str] = set()  # utterances whose final has not been published yet
        self.settled = asyncio.Event()
        self.settled.set()
        # utterance id -> monotonic time its audio ended, for the speech-latency histogram
        self.audio_ended: dict[str, float] = {}

    def expect(self, utterance_id: str) -> None:
        """An utterance is open: the call does not end before its final is published."""
        if utterance_id not in self.pending:
            self.pending.add(utterance_id)
            self.settled.clear()

    # ----- engines ---------------------------------------------------------------------
    def open_utterance(self, ch: Channel, start_ms: int) -> Utterance:
        self.utterance_counter += 1
        uid = f"u{self.utterance_counter}"
        stream = None
        if self._streams:
            stream = self._ports.engine.open_stream(
                uid, start_ms, lambda r, p=ch.participant: self.on_result(p, r), self._ports.settings.language,
                channel=ch.engine_key, digits=self.call.payment_open and ch.role == "customer",
            )  # fmt: skip
            self.expect(uid)
        self._ports.stats.utterances += 1
        return Utterance(uid, start_ms, stream)

    def open_continuous(self, ch: Channel, start_ms: int) -> SpeechChannel | None:
        if not self._continuous:
            return None
        participant = ch.participant

        def on_result(result: SpeechResult) -> None:
            if not result.is_final:
                self.expect(result.utterance_id)  # open until its final is published
            self.on_result(participant, result)

        def on_translation(
            uid: str, _channel: str, translations: dict[str, str], is_final: bool
        ) -> None:
            if is_final:
                for language, text in translations.items():
                    self.on_engine_translation(participant, uid, language, text)

        return self._ports.engine.open_channel(
            participant, start_ms, on_result, on_translation,
            lambda error: self.on_engine_error(participant, error), self._ports.settings.language,
        )  # fmt: skip

    def on_engine_error(self, participant: str, error: str) -> None:
        """A recognizer was canceled: an event and a metric; the call goes on."""
        call = self.call
        self._ports.stats.speech_errors += 1
        log.warning(
            "call %s: speech engine error for a participant: %s", call.call_id, error,
            extra={"callId": call.call_id},
        )  # fmt: skip
        if not call.ended:
            call.emit(SpeechError(callId=call.call_id, participant=participant, error=error))

    def on_engine_translation(self, participant: str, uid: str, language: str, text: str) -> None:
        """Live translation from the engine is raw speech too: redact it, then publish."""
        self._redaction.translation(
            text,
            lambda redacted: self._ports.enrichment.translation_from_engine(
                self.call, participant, uid, language, redacted
            ),
        )

    # ----- results ---------------------------------------------------------------------
    def on_result(self, participant: str, result: SpeechResult) -> None:
        """Raw text arrives here and leaves only through the call's redaction."""
        t0 = time.monotonic()
        if result.is_final:
            self._observe_final_latency(result, t0)
        role = self.call.participants.get(participant, "unknown")
        guard = self._payment.guard
        self._payment.apply(
            guard.on_text(result.text, role, result.start_ms, self.call.now_ms()), t0
        )
        if not self._to_publish(result):
            return  # read by the guard, not published: the next one is due soon
        self._redaction.result(result, lambda r, rr: self._publish(participant, r, rr))

    def _to_publish(self, result: SpeechResult) -> bool:
        """Every final; a partial if its utterance had none published in the last
        `stt_partial_interval_ms` of audio (for an engine that sends them faster)."""
        uid = result.utterance_id
        if result.is_final:
            self._published_end.pop(uid, None)
            return True
        if not self._publish_every_ms:
            return True
        if uid not in self.pending:
            return False  # its final is out: `_publish` would drop it
        last = self._published_end.get(uid)
        if last is not None and result.end_ms - last < self._publish_every_ms:
            return False
        self._published_end[uid] = result.end_ms
        return True

    def _observe_final_latency(self, result: SpeechResult, now: float) -> None:
        """Speech-engine latency: end of the utterance's audio to its final result here.

        Segmented engines (local): exact, from the moment the segmenter ended the utterance.
        Continuous engines (Azure) segment for themselves, so the end of the audio is the
        final's `end_ms` on the call clock; that equals wall time since the first frame
        only while audio arrives in real time (as ACS streams it), and a negative value
        (a faster-than-real-time replay) is not observed. Transcription from ACS was made
        from audio we never had; nothing to measure.
        """
        ended = self.audio_ended.pop(result.utterance_id, None)
        if ended is not None:
            seconds = now - ended
        elif self._continuous and result.source == self._ports.engine.source:
            seconds = (self.call.now_ms() - result.end_ms) / 1000.0
            if seconds < 0:
                return
        else:
            return
        self._ports.observe_speech_final(result.source, seconds)

    def _publish(self, participant: str, result: SpeechResult, rr: RedactionResult) -> None:
        call = self.call
        uid = result.utterance_id
        if result.is_final:
            self._redaction.sticky.pop(uid, None)
            self.pending.discard(uid)
            if not self.pending:
                self.settled.set()
            if not rr.text.strip():
                self._ports.stats.empty_finals += 1
                return
            self._redaction.counts.update(r.type for r in rr.redactions)
        else:
            if uid not in self.pending:
                return  # a partial that lost the race with its final
            rr = hold_back_unfinished(rr)
            if not rr.text.strip():
                return
        role = call.participants.get(participant, "unknown")
        cls = TranscriptFinal if result.is_final else TranscriptPartial
        call.emit(
            cls(
                callId=call.call_id, participant=participant, role=role, utteranceId=uid,
                startMs=result.start_ms, endMs=result.end_ms, text=rr.text, language=result.language,
                confidence=round(result.confidence, 3), source=result.source, redactions=rr.redactions,
            )
        )  # fmt: skip
        if result.is_final:
            call.analytics.final(role, participant, uid, result.start_ms, rr.text)
            enrichment = self._ports.enrichment
            # Kept only for a summary, so only when a model will write one.
            if enrichment.wants_finals and len(call.finals) < MAX_SUMMARY_LINES:
                call.finals.append((role, rr.text))
            enrichment.on_final(call, participant, uid, rr.text)
