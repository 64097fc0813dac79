"""One call: its lifecycle, its media frames, and the parts that do each job.

A `CallSession` owns what one call is: its seq counter and timeline, its participants,
its channels (`channel.py`: resample, VAD, utterances), and one of each job's parts:
`Transcripts` (engine results to redacted events), `CallRedaction` (what redaction
depends on), `PaymentWindows` (guard decisions to events, audit and pauses). It reaches
the rest of the service only through `CallPorts` (`ports.py`).

The per-frame hot path reads top to bottom in `FrameDispatch.on_message` (frames.py)
and `Channel.audio` (channel.py):
parse, dispatch by kind, bounded non-blocking work, audio handed to the engine, which
decodes elsewhere. A call may have several websockets at once (ACS opens one for audio
and one for its own transcription); it ends when the last one closes and every pending
final has been published.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from typing import TYPE_CHECKING

from models.events import CallEnded, CallStarted, Event, ParticipantJoined, utc_now_iso
from pipeline.analytics.call_analytics import CallAnalytics
from pipeline.analytics.clock import AnalyticsClock
from pipeline.ingest.call_redaction import CallRedaction
from pipeline.ingest.channel import Channel, Utterance
from pipeline.ingest.frames import MIXED, FrameDispatch
from pipeline.ingest.handover import HandOverState
from pipeline.ingest.payment_window import PaymentWindows
from pipeline.ingest.transcripts import Transcripts
from pipeline.pci.payment_guard import Decision, PaymentGuard, Window
from workers.stt.acs import AcsTranscriptionAdapter

if TYPE_CHECKING:
    from models.speech import SpeechResult
    from pipeline.ingest.ports import CallPorts
    from pipeline.privacy.partials import StickyValues
    from workers.stt.base import SpeechChannel

log = logging.getLogger(__name__)


class CallSession:
    def __init__(self, call_id: str, ports: CallPorts) -> None:
        self.call_id = call_id
        self.ports = ports
        self.stats = ports.stats
        self.sample_rate: int | None = None
        self.mode: str | None = None
        # ACS timestamp (or wall clock) of the first audio frame
        self.t0_wall_ms: float | None = None
        self.t0_mono: float | None = None
        self.t0_from_acs = False  # offsets can follow ACS timestamps only if t0 was one
        self.channels: dict[str, Channel] = {}
        self.participants: dict[str, str] = {}  # published id -> role, for those announced
        self._ids: dict[str, tuple[str, str]] = {}  # raw id -> (published id, role)
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
        self.acs_adapter = AcsTranscriptionAdapter()
        self.dtmf_tones = 0
        self.payment_open = False  # the payment guard's window: every digit is redacted
        self.guard = PaymentGuard(ports.guard_policy)
        # A remote engine hears none of the customer's audio while a window is open.
        self.withhold_audio = ports.guard_policy.withhold_audio and ports.engine.capabilities.remote
        self._tasks: set[asyncio.Future] = set()
        self.rolling_sentiment: dict[str, float] = {}  # participant -> running score
        self.finals: list[tuple[str, str]] = []  # (role, redacted text), for the summary
        self.close_task: asyncio.Task[None] | None = None
        self.redaction = CallRedaction(call_id, ports.redaction, ports.known)
        # Who spoke when, words, sentiment, category rules: the `analytics` and `alert`
        # events (pipeline/analytics), published on the call's own clock.
        self.analytics = CallAnalytics(call_id, ports.rules, self.emit)
        self.analytics_clock = AnalyticsClock(self, ports.settings.analytics_interval_s)
        self.recorder = ports.recorder(self)  # callstream's own recording (a no-op when off)
        self.payment = PaymentWindows(
            self, self.guard, ports.recording, ports.notes, ports.stats, self.recorder
        )
        self.transcripts = Transcripts(self, ports, self.redaction, self.payment)
        self.frames = FrameDispatch(self)
        # Every media message of the call: the hot path starts here (frames.py).
        self.on_message = self.frames.on_message

    # ----- views of the parts' state, kept by the names tests read ---------------------
    @property
    def sticky(self) -> dict[str, StickyValues]:
        return self.redaction.sticky

    @property
    def context(self) -> deque[tuple[int, tuple[str, ...]]]:
        return self.redaction.context

    @property
    def redaction_counts(self) -> Counter[str]:
        return self.redaction.counts

    @property
    def pending(self) -> set[str]:
        return self.transcripts.pending

    @property
    def audio_ended(self) -> dict[str, float]:
        return self.transcripts.audio_ended

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
            if self.started:
                self.analytics_clock.start()  # (it stops once the call is ending)

    def resume(self, last_seq: int) -> None:
        """This call is already in the store (its process restarted, or its media came back
        after it was closed): carry on its seq and its chain rather than start another."""
        self.seq = last_seq
        self.resumed = True

    def detach(self, reason: str, grace_s: float = 0.0) -> None:
        """The media websocket closed. ``grace_s`` > 0 (it dropped): ACS may reconnect with
        the same call id, so the call waits that long, its guard, utterances and seq intact."""
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
        """Close open utterances; wait (``timeout_s`` a step) for their finals to be published."""
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
            await asyncio.wait_for(self.transcripts.settled.wait(), timeout_s)
        except TimeoutError:
            log.warning(
                "call %s: %d utterances had no final result in time", self.call_id, len(self.pending),
                extra={"callId": self.call_id},
            )  # fmt: skip
            for uid in list(self.pending):
                self.pending.discard(uid)
        await self.ports.redaction.drain()

    async def _wind_down(self, timeout_s: float) -> None:
        """Stop the guard's timer and let this call's background tasks (recording requests,
        enrichment) finish, cancelling what is still running after ``timeout_s``."""
        self.payment.stop()
        if self._tasks:
            _, late = await asyncio.wait(list(self._tasks), timeout=timeout_s)
            for task in late:
                task.cancel()

    async def _finish(self, reason: str) -> None:
        """Close open utterances, wait (bounded) for their finals, then end the call."""
        await self._quiesce(self.ports.final_timeout_s)
        self.payment.apply(self.guard.call_ended(self.now_ms()), notify_acs=False)
        await self.ports.enrichment.drain()
        await self._wind_down(self.ports.recording.timeout_s * 3 + 2)
        await self.ports.enrichment.summary(self)
        await self.recorder.close(reason)
        if self.redaction_counts or self.guard.windows:
            self.audit("redactions", {"counts": dict(sorted(self.redaction_counts.items()))})
        self.analytics_clock.stop()
        if self.started:
            self.emit(self.analytics.snapshot(self.audio_ms(), final=True))
            self.emit(CallEnded(callId=self.call_id, reason=reason))
        self._fold_vad_counts()
        self.ending = True
        self.ended = True
        self.ports.ended(self)

    def _fold_vad_counts(self) -> None:
        """Move the channels' VAD frame counts into the service totals as the call ends
        (live channels are read at scrape time), in the loop step that removes the call
        from `service.calls`: no frame is counted twice or lost."""
        for ch in self.channels.values():
            self.stats.vad_frames += ch.segmenter.frames
            self.stats.vad_speech_frames += ch.segmenter.speech_frames

    def end_now(self, reason: str) -> None:
        """Server shutdown: finish without waiting for connections to close."""
        if self._grace_task is not None:  # waiting for a reconnect: end it now instead
            self._grace_task.cancel()
            self._grace_task = self.close_task = None
        if not self.ended and self.close_task is None:
            self.ending = True
            self.close_task = asyncio.get_running_loop().create_task(self._finish(reason))

    async def hand_over(self, timeout_s: float) -> HandOverState:
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
            self.transcripts.settled.set()
        await self._quiesce(timeout_s)
        await self._wind_down(timeout_s)
        await self.recorder.close("handed-over")
        self.analytics_clock.stop()
        state = HandOverState(
            last_seq=self.seq, started=self.started, mode=self.mode, sample_rate=self.sample_rate,
            elapsed_ms=self.now_ms() if self.t0_mono is not None else None,
            t0_wall_ms=self.t0_wall_ms, t0_from_acs=self.t0_from_acs,
            participants=dict(self.participants), guard=self.guard.export(),
            policy_audited=self.payment.policy_audited, redaction_counts=dict(self.redaction_counts),
            reconnects=self.reconnects, dtmf_tones=self.dtmf_tones, finals=list(self.finals),
            acs_transcription=self.acs_adapter.export(), analytics=self.analytics.export(),
        )  # fmt: skip
        self.audit("media.handed-over", {"lastSeq": self.seq, "paymentOpen": self.guard.is_open})
        self._fold_vad_counts()
        self.ended = True
        self.ports.ended(self)
        log.info(
            "call %s: handed over to the replica ACS reconnected to",
            self.call_id,
            extra={"callId": self.call_id},
        )
        return state

    def adopt(self, state: HandOverState) -> None:
        """Go on with a call another replica handed over (see `hand_over`): same seq, same
        timeline, same payment window, no second call.started or participant.joined. (The
        call's recording is the service's to take over: `Service.adopt`.)"""
        self.seq = max(self.seq, state.last_seq)
        self.resumed = True
        self.sample_rate = state.sample_rate or self.sample_rate
        if state.elapsed_ms is not None:
            self.t0_mono = time.monotonic() - state.elapsed_ms / 1000.0
            self.t0_wall_ms = state.t0_wall_ms
            self.t0_from_acs = state.t0_from_acs
        self.participants.update(state.participants)
        if state.started:
            self.started = True
            self.mode = state.mode
            self.analytics.mixed = state.mode == MIXED
            self.analytics_clock.start()
        self.analytics.restore(state.analytics)
        self.guard.restore(state.guard)
        self.payment.policy_audited = state.policy_audited
        self.redaction_counts.update(state.redaction_counts)
        self.dtmf_tones = state.dtmf_tones
        self.acs_adapter.restore(state.acs_transcription)
        self.finals.extend((str(r), str(t)) for r, t in state.finals)
        self.reconnects = state.reconnects + 1
        if self.guard.is_open:
            self.set_payment_window(True)
            self.ports.notes.note(self.call_id, payment="open")
            self.payment.schedule_timer()
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
        self.ports.events.append(event)

    def now_ms(self) -> int:
        if self.t0_mono is None:
            return 0
        return int((time.monotonic() - self.t0_mono) * 1000)

    def audio_ms(self) -> int:
        """How far the call's audio has come on its timeline: the analytics' clock."""
        return max((ch.segmenter.clock_ms for ch in self.channels.values()), default=self.now_ms())

    def start(self, mode: str) -> None:
        """The call's first frame: `call.started` (or, continuing a stored call, an audit)."""
        self.started = True
        self.mode = mode
        self.analytics.mixed = mode == MIXED
        self.analytics_clock.start()
        if self.resumed:
            self.audit("call.resumed", {"fromSeq": self.seq})
            return
        self.emit(CallStarted(callId=self.call_id, mode=mode, sampleRate=self.sample_rate or 16000))

    def join(self, raw: str) -> tuple[str, str]:
        """A participant's frame: (the id the call knows it by, its role); `participant.joined`
        once. The one place a raw ACS id enters the call: a customer's phone number becomes
        its pseudonym here (privacy/pseudonyms.py), so events, utterance ids, enrichment and
        the hand-over state only ever hold the published id. The role is the raw id's."""
        known = self._ids.get(raw)
        if known is None:
            role = self.ports.roles.role(None if raw == MIXED else raw)
            known = self._ids[raw] = (self.ports.published(raw, role), role)
        if known[0] not in self.participants:  # (a handed-over call knows it already)
            self.participants[known[0]] = known[1]
            self.emit(ParticipantJoined(callId=self.call_id, participant=known[0], role=known[1]))
        return known

    def rated(self, participant: str, utterance_id: str, score: float) -> None:
        """A final's sentiment (enrichment): the trend and the sentiment rules."""
        self.analytics.sentiment(
            self.participants.get(participant, "unknown"), participant, utterance_id, score
        )

    # ----- what the call's parts and the control plane use ------------------------------
    def track(self, task: asyncio.Future) -> None:
        """Keep a background task of this call (recording requests, enrichment) until it is
        done; the call waits for them (bounded) before its call.ended."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def track_new(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self.track(task)
        return task

    def audit(self, kind: str, body: dict) -> None:
        self.ports.events.audit(self.call_id, kind, body)

    def audit_exposures(self, window: Window) -> None:
        self.payment.audit_exposures(window)

    def manual(self, action: str) -> Decision | None:
        """``POST /calls/{callId}/recording/pause|resume`` from the agent desktop."""
        decision = self.guard.manual(action, self.now_ms())
        self.payment.apply(decision)
        return decision

    def set_payment_window(self, open_: bool) -> None:
        """The payment guard's hook: while open, every digit in transcripts is redacted."""
        self.payment_open = open_
        self.redaction.all_digits = open_

    def customer_speech(self, onset_ms: int) -> None:
        """The customer began to speak: an exposure if before ACS confirmed a pause."""
        if (window := self.guard.on_customer_speech(self.now_ms(), onset_ms)) is not None:
            self.payment.audit_exposures(window)

    def withholds(self, role: str) -> bool:
        """During a payment the customer's audio does not go to a remote speech engine."""
        return self.payment_open and role != "agent" and self.withhold_audio

    def open_utterance(self, channel: Channel, start_ms: int) -> Utterance:
        return self.transcripts.open_utterance(channel, start_ms)

    def open_continuous(self, channel: Channel, start_ms: int) -> SpeechChannel | None:
        return self.transcripts.open_continuous(channel, start_ms)

    def on_result(self, participant: str, result: SpeechResult) -> None:
        self.transcripts.on_result(participant, result)
