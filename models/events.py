"""The agent-assist event envelope and its kinds (the fixed contract).

Every event is `{"type", "callId", "seq", "time", ...}`. Events are msgspec Structs
tagged on `type`, so one encoder writes the stream, the store and the JSONL export
byte-for-byte alike, and one decoder reads them back. Only redacted text may ever be
put into an event: that is the privacy boundary, enforced by the pipeline's Redactor.
"""

from __future__ import annotations

import datetime as _dt

import msgspec


class Redaction(msgspec.Struct, frozen=True):
    type: str
    start: int
    end: int


class Event(msgspec.Struct, tag_field="type", kw_only=True):
    """Base envelope. `seq` and `time` are stamped by the call that publishes it."""

    callId: str
    seq: int = 0
    time: str = ""


class CallStarted(Event, tag="call.started", kw_only=True):
    mode: str  # mixed | unmixed
    sampleRate: int


class ParticipantJoined(Event, tag="participant.joined", kw_only=True):
    participant: str
    role: str


class _Transcript(Event, kw_only=True):
    participant: str
    role: str
    utteranceId: str
    startMs: int
    endMs: int
    text: str
    language: str
    confidence: float
    source: str  # local | azure | acs
    redactions: list[Redaction] = []


class TranscriptPartial(_Transcript, tag="transcript.partial", kw_only=True):
    pass


class TranscriptFinal(_Transcript, tag="transcript.final", kw_only=True):
    pass


class Sentiment(Event, tag="sentiment", kw_only=True):
    participant: str
    utteranceId: str
    label: str
    score: float
    rollingScore: float | None = None  # the participant's running score (beyond the contract)


class Translation(Event, tag="translation", kw_only=True):
    participant: str
    utteranceId: str
    language: str
    text: str


class _Payment(Event, kw_only=True):
    trigger: str
    startMs: int


class PaymentStarted(_Payment, tag="payment.started", kw_only=True):
    pass


class PaymentEnded(_Payment, tag="payment.ended", kw_only=True):
    pass


class _Recording(Event, kw_only=True):
    recordingId: str | None = None
    latencyMs: float | None = None
    attempt: int = 0
    error: str | None = None


class RecordingPaused(_Recording, tag="recording.paused", kw_only=True):
    pass


class RecordingResumed(_Recording, tag="recording.resumed", kw_only=True):
    pass


class RecordingError(_Recording, tag="recording.error", kw_only=True):
    pass


class SpeechError(Event, tag="speech.error", kw_only=True):
    """The speech engine failed for a participant (beyond the contract; the call goes on)."""

    participant: str
    error: str


class Summary(Event, tag="summary", kw_only=True):
    text: str
    # The call's categories by then (rule category -> count; beyond the contract): what the
    # rules said beside what the model wrote.
    categories: dict[str, int] = {}


class ByRole(msgspec.Struct, kw_only=True, omit_defaults=False):
    """A figure per role. None where the call's audio cannot tell (mixed audio)."""

    agent: int | float | None = None
    customer: int | float | None = None


class SentimentTrend(msgspec.Struct, kw_only=True):
    """Mean sentiment score per quarter of the call so far (None: nobody of that role spoke
    in that quarter)."""

    agent: list[float | None] = []
    customer: list[float | None] = []


class Analytics(Event, tag="analytics", kw_only=True):
    """Call analytics (pipeline/analytics): every `analytics_interval_s` while the call is
    live, and a final one just before `call.ended`. Times are ms of the call's timeline."""

    durationMs: int  # the call's audio so far (beyond the contract)
    talkMs: ByRole
    silenceMs: int
    overlapMs: int | None
    interruptions: ByRole
    longestMonologueMs: ByRole
    wordsPerMinute: ByRole
    sentimentTrend: SentimentTrend
    final: bool = False
    # Beyond the contract: matched categories (rule category -> count), and what this call's
    # audio cannot tell (mixed audio: nothing per role), by field name.
    categories: dict[str, int] = {}
    unavailable: list[str] = []


class Alert(Event, tag="alert", kw_only=True):
    """A category rule matched (pipeline/analytics/rules.py)."""

    rule: str
    category: str
    severity: str
    participant: str | None = None
    utteranceId: str | None = None


class _Consult(Event, kw_only=True):
    teamsUserId: str
    displayName: str
    error: str | None = None


class ConsultRequested(_Consult, tag="consult.requested", kw_only=True):
    pass


class ConsultAdded(_Consult, tag="consult.added", kw_only=True):
    pass


class ConsultFailed(_Consult, tag="consult.failed", kw_only=True):
    pass


class CallEnded(Event, tag="call.ended", kw_only=True):
    reason: str


class Lagged(Event, tag="lagged", kw_only=True):
    missedFrom: int
    missedTo: int


AnyEvent = (
    CallStarted
    | ParticipantJoined
    | TranscriptPartial
    | TranscriptFinal
    | Sentiment
    | Translation
    | PaymentStarted
    | PaymentEnded
    | RecordingPaused
    | RecordingResumed
    | RecordingError
    | Summary
    | Analytics
    | Alert
    | ConsultRequested
    | ConsultAdded
    | ConsultFailed
    | CallEnded
    | Lagged
)

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AnyEvent)


def encode_event(event: Event) -> bytes:
    return _encoder.encode(event)


def decode_event(raw: bytes | str) -> AnyEvent:
    return _decoder.decode(raw)


def event_type(event: Event) -> str:
    return type(event).__struct_config__.tag  # type: ignore[return-value]


def utc_now_iso() -> str:
    """Wall clock for the `time` field: ISO 8601, UTC, millisecond precision."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
