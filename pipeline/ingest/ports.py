"""The narrow collaborators a call needs, as small Protocols: the session's whole world.

A `CallSession` never sees the service. It gets a `CallPorts`, built by the service once
it has started: where events and audit records go, the redaction queue, the recording
driver, callstream's own recorder, enrichment, the registry's notes, the call's known
values, and a few values.
Each port is what one job of the session needs and nothing more, so a session can be
built in a test from exactly the parts it exercises, and nothing here imports back the
service that wires it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from models.events import Event
    from models.settings import Settings
    from pipeline.analytics.rules import Rule
    from pipeline.ingest.participants import RoleMap
    from pipeline.observability.stats import Stats
    from pipeline.pci.payment_guard import GuardPolicy, Window
    from pipeline.privacy.recognizers import KnownValuesRecognizer
    from pipeline.privacy.redaction_runner import RedactionJob
    from workers.stt.base import SpeechEngine


class EventLog(Protocol):
    """The journal: an event is stored, then published; an audit record is stored."""

    def append(self, event: Event) -> None: ...
    def audit(self, call_id: str, kind: str, body: dict) -> None: ...


class RedactionQueue(Protocol):
    """The privacy boundary's queue: one job in, one result back on the loop."""

    def submit(self, job: RedactionJob) -> None: ...
    async def drain(self) -> None: ...


class RecordingDriver(Protocol):
    """Pause and resume the call's recording for a payment window (PCI)."""

    timeout_s: float

    def window_opened(self, call: object, window: Window, t0: float) -> None: ...
    def window_closed(self, call: object, window: Window, t0: float) -> None: ...


class Enrichment(Protocol):
    """Sentiment, translation and the summary, on redacted text only."""

    wants_finals: bool  # a model will write a summary: keep the redacted finals

    def on_final(self, call: object, participant: str, utterance_id: str, text: str) -> None: ...
    def translation_from_engine(
        self, call: object, participant: str, uid: str, language: str, redacted: str
    ) -> None: ...
    async def drain(self) -> None: ...
    async def summary(self, call: object) -> None: ...


class CallRecorder(Protocol):
    """callstream's own recording of the call (CALLSTREAM_RECORDER=local), or none: each
    channel appends its frames to the tape `track` returns (None: nothing is recorded);
    payment windows are cut out before anything is written."""

    def track(self, channel: Any, start_ms: int, sample_rate: int) -> list | None: ...
    def windows_changed(self) -> None: ...
    async def close(self, reason: str) -> None: ...


class CallNotes(Protocol):
    """The call registry: what other replicas should know of the call."""

    def note(self, call_id: str, **fields: str | None) -> None: ...


class KnownValues(Protocol):
    """Values registered for the call (CRM data): always redacted."""

    def recognizer(self, call_id: str) -> KnownValuesRecognizer | None: ...


@dataclass(frozen=True, slots=True)
class CallPorts:
    settings: Settings
    stats: Stats
    engine: SpeechEngine
    guard_policy: GuardPolicy
    roles: RoleMap
    events: EventLog
    redaction: RedactionQueue
    recording: RecordingDriver
    enrichment: Enrichment
    notes: CallNotes
    known: KnownValues
    # (source, seconds): end of an utterance's audio to its final.
    observe_speech_final: Callable[[str, float], None]
    # The call has ended (or was handed over): the service forgets it.
    ended: Callable[[object], None]
    final_timeout_s: float
    # (raw id, role) -> the id the participant is published as: a customer's phone number
    # becomes its keyed pseudonym (privacy/pseudonyms.py), every other id stays itself.
    published: Callable[[str, str], str]
    # The call -> its recorder (pipeline/recorder/recorders.py; a no-op when it is off).
    recorder: Callable[[Any], CallRecorder]
    # The category rules every call's analytics checks (pipeline/analytics/rules.py).
    rules: tuple[Rule, ...] = ()
