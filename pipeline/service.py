"""The service container: settings, engines, store, bus, journal and live calls, wired once.

The ASGI app, the CLI and the tests all build a `Service`; nothing else creates
engines or stores, so a test runs exactly what production runs.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

import msgspec

from models.events import Analytics, CallEnded, utc_now_iso
from models.settings import Settings
from pipeline.analytics.rules import load_rules
from pipeline.compliance.export_analytics import last_analytics
from pipeline.compliance.journal import Journal
from pipeline.compliance.store import CallRecord, EventStore
from pipeline.compliance.stores import open_store
from pipeline.consult.controller import OPS as CONSULT_OPS
from pipeline.consult.controller import ConsultController
from pipeline.delivery.backends import make_bus, make_cluster
from pipeline.delivery.cluster import HANDOVER_WAIT_S, CallRegistry
from pipeline.enrichment import Enricher
from pipeline.ingest.handover import from_wire, to_wire
from pipeline.ingest.media_owner import HANDOVER_REFUSED, SECOND_SOCKET, MediaOwners
from pipeline.ingest.participants import RoleMap
from pipeline.ingest.ports import CallPorts
from pipeline.ingest.session import CallSession
from pipeline.observability.gc_pauses import GcPauseObserver
from pipeline.observability.metrics import ServiceMetrics
from pipeline.observability.stats import Stats
from pipeline.pci.payment_guard import GuardPolicy
from pipeline.pci.recording import RecordingController
from pipeline.privacy.known_entities import KnownEntities
from pipeline.privacy.pseudonyms import Pseudonyms
from pipeline.privacy.redaction import Redactor, get_redactor
from pipeline.privacy.redaction_runner import RedactionRunner
from pipeline.recorder.recorders import Recorder
from pipeline.tasks import TaskSet
from workers.stt.base import SpeechEngine

log = logging.getLogger(__name__)


def make_engine(settings: Settings) -> SpeechEngine:
    if settings.stt == "local":
        from workers.stt.local import LocalSpeechEngine

        return LocalSpeechEngine(
            workers=settings.stt_worker_count, partial_interval_ms=settings.stt_partial_interval_ms
        )
    if settings.stt == "azure":
        from urllib.parse import urlsplit

        from workers.stt.azure import AzureSpeechEngine

        translate_to = [t.strip() for t in settings.translate_to.split(",") if t.strip()]
        kwargs: dict = {}
        endpoint = settings.speech_endpoint
        if endpoint and urlsplit(endpoint).path in ("", "/"):
            kwargs["host"] = endpoint.rstrip("/")  # a bare host (a container, or a test's fake)
        elif endpoint:
            kwargs["endpoint"] = endpoint
        else:
            kwargs["region"] = settings.speech_region
        return AzureSpeechEngine(
            key=settings.speech_key,
            language=settings.language,
            translate_to=translate_to if settings.translator == "azure" else None,
            **kwargs,
        )
    if settings.stt == "acs":
        from workers.stt.acs import AcsPassthroughEngine

        return AcsPassthroughEngine()
    raise ValueError(f"CALLSTREAM_STT={settings.stt!r} is not available (use local, azure or acs)")


ORPHAN_REASON = "server-crashed"
# At stop, after the calls have drained: how long work in flight (an incoming call being
# answered) may take to finish before it is cancelled.
SHUTDOWN_GRACE_S = 5.0


class Service:
    def __init__(
        self,
        settings: Settings,
        engine: SpeechEngine | None = None,
        redactor: Redactor | None = None,
        store: EventStore | None = None,
    ) -> None:
        self.settings = settings
        # Put into the callback URLs handed to ACS and checked on /acs/*. Always read it
        # from here (it may come to be shared between replicas), never from settings.
        self.callback_secret: str = settings.callback_secret or secrets.token_urlsafe(32)
        self.final_timeout_s = 60.0  # longest wait for pending finals when a call ends
        self.stats = Stats()
        self.metrics = ServiceMetrics(
            self
        )  # its own registry: several services may share a process
        self.roles = RoleMap(settings.agent_prefixes, settings.customer_prefixes)
        self.pseudonyms: Pseudonyms  # keyed in start(): the key may be a file in the data dir
        self.engine = engine or make_engine(settings)
        self._redactor = redactor
        self._store = store
        self.store: EventStore
        self.bus = make_bus(settings.bus, settings.subscriber_queue)
        self.cluster: CallRegistry = make_cluster(self, settings.bus)
        self.journal: Journal
        self.redaction: RedactionRunner
        self.calls: dict[str, CallSession] = {}
        # The one socket that streams each live call (two with ACS's own transcription: its
        # audio and its text each come on a socket of their own): media_owner.py.
        self.media_owners = MediaOwners(per_stream=self.engine.source == "acs")
        self.known = KnownEntities()
        self.guard_policy = GuardPolicy.from_settings(settings)
        self.recording = RecordingController(settings, self.metrics.pause_latency.observe)
        self.recording.refresh = self.cluster.refresh
        self.enricher = Enricher(settings)
        # Category rules for call analytics: a bad file stops serve at its start-up check.
        self.category_rules = load_rules(settings.categories_file)
        self.recorder = Recorder(settings)  # CALLSTREAM_RECORDER=local: callstream's own
        # Teams experts asked into a call (pipeline/consult): a bad CALLSTREAM_EXPERTS
        # stops serve at its start-up check.
        self.consult = ConsultController(settings, self.recording, self.cluster)
        self.ready = False
        self.draining = False
        self.started_at = time.time()
        # Work started off the request path (answering an incoming call, cluster commands,
        # retention): owned here and cancelled by stop().
        self.tasks = TaskSet("service")
        # Calls being handed to another replica -> the consults that go with them.
        self._handing_over: dict[str, list[dict[str, Any]]] = {}
        self._retention: asyncio.Task | None = None
        self._gc_observer = GcPauseObserver(self.metrics.observe_gc)

    async def start(self) -> None:
        t0 = time.perf_counter()
        self.pseudonyms = Pseudonyms.from_settings(self.settings)  # a bad key: before anything
        self._gc_observer.install()
        self.store = self._store or open_store(self.settings.store_url)
        redactor = self._redactor or await asyncio.to_thread(get_redactor)
        self.redaction = RedactionRunner(
            redactor, observe_latency=self.metrics.redaction_latency.observe
        )
        self.journal = Journal(
            self.store, self.bus, observe_write=self.metrics.store_write_latency.observe,
            max_pending=self.settings.store_buffer_events,
        )  # fmt: skip
        await self.bus.start()
        await self.cluster.start()
        if not self.settings.callback_secret:
            # A generated secret must be the same on every replica behind the balancer.
            self.callback_secret = await self.cluster.shared_secret(self.callback_secret)
        self.journal.start()
        await self._close_orphans()
        await self.engine.start()
        if self.settings.retention_days is not None:
            self._retention = self.tasks.spawn(
                self._retention_loop(self.settings.retention_days), "retention"
            )
        self.ready = True
        log.info(
            "service ready in %.1f s (speech engine: %s)",
            time.perf_counter() - t0,
            self.engine.source,
        )

    async def _close_orphans(self) -> None:
        """End the calls a process left open when it died (kill -9, a lost node).

        Their events up to the crash are stored (store, then publish: a subscriber never saw
        more); a `call.ended` with reason ``server-crashed`` closes each one, chained after
        its last event, so exports verify and the compliance record says what happened. A
        call still live on another replica (the registry knows) is left alone, and the
        Redis lock makes sure only one starting replica closes a given orphan.
        """
        orphans = await asyncio.to_thread(self.store.unfinished_calls)
        for rec in orphans:
            if await self.cluster.is_live(rec.call_id) or not await self.cluster.lock_orphan(
                rec.call_id
            ):
                continue
            seq = rec.last_seq
            # Its analytics as last measured become its final ones (before its call.ended,
            # as for any call): the wallboard and the read API see that it has ended.
            last = await asyncio.to_thread(last_analytics, self.store, rec.call_id)
            if last is not None:
                seq += 1
                final = msgspec.json.decode(last, type=Analytics)
                final.seq, final.time, final.final = seq, utc_now_iso(), True
                self.journal.append(final)
            self.journal.append(
                CallEnded(callId=rec.call_id, seq=seq + 1, time=utc_now_iso(), reason=ORPHAN_REASON)
            )
            self.journal.audit(
                rec.call_id, "call.recovered", {"reason": ORPHAN_REASON, "lastSeq": rec.last_seq}
            )
            log.warning(
                "call %s was left open by a process that stopped; ended as %s",
                rec.call_id,
                ORPHAN_REASON,
            )
        if orphans:
            await self.journal.flush()

    async def _retention_loop(self, days: float) -> None:
        """Purge calls past the retention period now and then every hour (holds are kept)."""
        from pipeline.compliance.retention import purge_now

        while True:
            try:
                purged = await asyncio.to_thread(
                    purge_now, self.store, days, "schedule", self.settings.data_dir
                )
                if purged:
                    log.info("retention: purged %d calls older than %g days", len(purged), days)
            except Exception as exc:
                log.error("retention purge failed (%s)", type(exc).__name__)
            await asyncio.sleep(self.settings.retention_interval_s)

    async def stop(self) -> None:
        """Drain: end every live call (publishing its finals), flush the store, stop engines."""
        self.ready = False
        if self._retention is not None:
            self._retention.cancel()  # no purge competes with the calls' last writes
        self.draining = True
        for session in list(self.calls.values()):
            session.end_now("server-shutdown")
        pending = [s.close_task for s in self.calls.values() if s.close_task is not None]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        await self.tasks.aclose(grace_s=SHUTDOWN_GRACE_S)
        await self.recorder.aclose()  # the calls' files are written: stop its thread
        await self.journal.flush()
        await self.journal.aclose()
        await self.bus.aclose()
        await self.cluster.aclose()
        await self.engine.aclose()
        self.recording.close()
        self.consult.close()
        await self.enricher.aclose()
        self.redaction.close()
        self.store.close()
        self._gc_observer.remove()

    async def run_command(
        self, call_id: str, op: str, body: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Carry out a cluster command ``op`` for a call this replica owns (the registry
        routes it here). None: the call is not live here."""
        rec = self.recording
        if op == "recording":  # the control plane learnt the recording (CallConnected elsewhere)
            cc = rec.control(call_id)
            cc.recording_id = body.get("recordingId") or cc.recording_id
            cc.server_call_id = body.get("serverCallId") or cc.server_call_id
            if body.get("recordingState"):
                rec.on_state(cc, body["recordingState"])
            return {}
        if op == "recording-state":
            cc = rec.control(call_id)
            cc.recording_id = cc.recording_id or body.get("recordingId")
            rec.on_state(cc, str(body.get("state", "")))
            return {}
        if op == "known":
            count = self.known.add(call_id, [(t, v) for t, v in body.get("values", [])])
            return {"knownValues": count}
        session = self.calls.get(call_id)
        if session is None or session.ended:
            return None
        if op in CONSULT_OPS:  # a Teams expert asked into the call (pipeline/consult)
            return self.consult.command(session, op, body)
        if op == "handover":  # ACS reconnected the call's media to the replica asking
            if await self.media_owners.streaming(call_id):
                # Its socket here still streams: the asker's socket is a second one, not a
                # reconnect (media_owner.py). The asker refuses it; the call stays here.
                log.warning("call %r: hand-over refused, its media still streams here", call_id)
                return {HANDOVER_REFUSED: SECOND_SOCKET}
            known = self.known.values(call_id)  # dropped here with the session
            self._handing_over[call_id] = []
            try:
                state = await session.hand_over(HANDOVER_WAIT_S)
            finally:
                state_consults = self._handing_over.pop(call_id, [])
            state.consults = state_consults  # (forget() kept them: see there)
            state.recording = self.recording.export(call_id)
            state.known_values = len(known)
            await self.journal.flush()  # the new owner reads on from the store
            # and its events are on the firehose before the new owner's: readers skip repeats
            await self.bus.flush(HANDOVER_WAIT_S)
            await self.cluster.settled()  # and this replica's registry writes are in
            if known and body.get("replica"):
                # Sent as a command (pub/sub: never stored in Redis), before this answer.
                await self.cluster.tell(str(body["replica"]), call_id, "known", {"values": known})
            return to_wire(state)
        if op == "manual":
            decision = session.manual(str(body.get("action")))
            cc = rec.calls.get(call_id)
            return {
                "payment": "open" if session.guard.is_open else "closed",
                "changed": decision is not None,
                "recordingId": cc.recording_id if cc else None,
            }
        if op == "end":
            session.end_now(str(body.get("reason") or "call-disconnected"))
            return {}
        raise ValueError(f"unknown command {op!r}")

    def session(self, call_id: str, stored: CallRecord | None = None) -> CallSession:
        """The call's live session, or a new one (continuing ``stored``, the call's record
        if the store already has it)."""
        s = self.calls.get(call_id)
        if s is None or s.ended:
            s = CallSession(call_id, self._call_ports())
            if stored is not None:
                s.resume(stored.last_seq)
            self.calls[call_id] = s
            self.known.claim(call_id)
            self.stats.calls_started += 1
            self.cluster.claim(call_id)
        return s

    def _call_ports(self) -> CallPorts:
        """What a call may use of the service (ports.py): built per call, after start()."""
        return CallPorts(
            settings=self.settings,
            stats=self.stats,
            engine=self.engine,
            guard_policy=self.guard_policy,
            roles=self.roles,
            events=self.journal,
            redaction=self.redaction,
            recording=self.recording,
            enrichment=self.enricher,
            notes=self.cluster,
            known=self.known,
            observe_speech_final=self.metrics.observe_speech_final,
            ended=self.forget,
            final_timeout_s=self.final_timeout_s,
            published=self.pseudonyms.published,
            recorder=self.recorder.for_call,
            rules=self.category_rules,
        )

    def adopt(self, session: CallSession, handed: dict[str, Any]) -> None:
        """Go on with a call another replica handed over: its session state, and the
        recording it was driving."""
        try:
            state = from_wire(handed)
        except msgspec.ValidationError as exc:
            # A replica of another version: the call goes on from the store as a resumed
            # call (same seq, no second call.started), without the handed-over state.
            log.error(
                "call %s: the hand-over state was not understood (%s); resumed from the store",
                session.call_id,
                exc,
            )
            return
        session.adopt(state)
        self.recording.restore(session.call_id, state.recording)
        self.consult.restore(session, state.consults)

    def forget(self, session: CallSession) -> None:
        if self.calls.get(session.call_id) is session:
            del self.calls[session.call_id]
            self.known.drop(session.call_id)
            waiting = self.consult.forget(session)
            if session.call_id in self._handing_over:  # they go with the call
                self._handing_over[session.call_id] = waiting
            self.stats.calls_ended += 1
            self.cluster.release(session.call_id)
