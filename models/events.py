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
