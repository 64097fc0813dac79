"""ACS transcription passthrough: ACS does the speech-to-text, we map its results.

WHY: with `CALLSTREAM_STT=acs` the call's own ACS transcription (TranscriptionData frames
on the transcription websocket) is the source of text, so no audio is decoded here.
`AcsTranscriptionAdapter` turns each TranscriptionData payload into a SpeechResult on the
call clock; `AcsPassthroughEngine` fills the SpeechEngine slot of the pipeline so that the
audio path (VAD, segmenting) runs unchanged, but its streams ignore audio.

Offsets: ACS gives `offset`/`duration` in 100-ns ticks. Small offsets (< 1 day of ticks)
are relative to the start of the stream, i.e. already on the call clock. Large ones are
absolute (ticks since year 1, as seen on the wire), so they are rebased on the first
offset seen, anchored at the call clock when that first result arrived (`now_ms`) minus
its duration (the result describes speech that has just ended).

Utterance ids: one per participant, kept across Intermediate results until the Final,
then a new one. The number comes from one counter per adapter (one adapter per call), so
ids are unique within the call: f"{participant_short}-{n}".
"""

from __future__ import annotations

from models.acs import ResultStatus, TranscriptionDataPayload, ticks_to_ms
from models.speech import SpeechResult
from workers.stt.base import Capabilities, UnsupportedMode

SOURCE = "acs"
DEFAULT_LANGUAGE = "en-US"
RELATIVE_LIMIT_TICKS = 24 * 3600 * 10_000_000  # one day in 100-ns ticks


def normalize_locale(locale: str) -> str:
    """'en-us' -> 'en-US' (ACS sends lower case; BCP 47 style elsewhere)."""
    lang, sep, region = locale.strip().partition("-")
    if not sep:
        return lang.lower()
    return f"{lang.lower()}-{region.upper() if len(region) == 2 else region}"


def participant_short(participant: str) -> str:
    """A short, id-safe tag for a participant ('4:+15550100' -> '550100')."""
    tail = "".join(c for c in participant.rpartition(":")[2] if c.isalnum())
    return tail[-6:] or "p"


class AcsTranscriptionAdapter:
    """Maps one call's TranscriptionData payloads to SpeechResults. Not thread-safe."""

    def __init__(self, language: str = DEFAULT_LANGUAGE) -> None:
        self.language = language
        self._counter = 0
        self._current: dict[str, str] = {}  # participant -> open utterance id
        self._base_ticks: int | None = None
        self._base_ms = 0

    def set_locale(self, locale: str | None) -> None:
        """From TranscriptionMetadata.locale; applies to the results that follow."""
        if locale:
            self.language = normalize_locale(locale)

    def open_utterances(self) -> list[str]:
        """Utterances with partials and no final yet: ACS finishes them, wherever it reconnects."""
        return list(self._current.values())

    def export(self) -> dict:
        """For the replica that takes the call over: its finals keep these utterances' ids."""
        return {"counter": self._counter, "current": dict(self._current), "baseTicks": self._base_ticks,
                "baseMs": self._base_ms, "language": self.language}  # fmt: skip

    def restore(self, state: dict) -> None:
        self._counter = int(state.get("counter", 0))
        self._current = {str(k): str(v) for k, v in (state.get("current") or {}).items()}
        self._base_ticks = state.get("baseTicks")
        self._base_ms = int(state.get("baseMs", 0))
        self.language = state.get("language") or self.language

    def on_transcription(
        self, payload: TranscriptionDataPayload, participant: str, now_ms: int
    ) -> SpeechResult:
        is_final = payload.resultStatus == ResultStatus.FINAL
        utterance_id = self._current.get(participant)
        if utterance_id is None:
            self._counter += 1
            utterance_id = f"{participant_short(participant)}-{self._counter}"
            self._current[participant] = utterance_id
        if is_final:
            del self._current[participant]

        duration_ms = ticks_to_ms(max(0, payload.duration))
        offset = max(0, payload.offset)
        if offset < RELATIVE_LIMIT_TICKS:
            start_ms = ticks_to_ms(offset)
        else:
            if self._base_ticks is None:
                self._base_ticks = offset
                self._base_ms = max(0, now_ms - duration_ms)
            start_ms = max(0, self._base_ms + ticks_to_ms(offset - self._base_ticks))
        return SpeechResult(
            utterance_id=utterance_id,
            is_final=is_final,
            text=payload.text,
            start_ms=start_ms,
            end_ms=start_ms + duration_ms,
            confidence=max(0.0, min(1.0, float(payload.confidence))),
            language=self.language,
            source=SOURCE,
        )


class _NullStream:
    """Accepts and drops audio; never produces a result."""

    __slots__ = ()

    def push(self, pcm16k: bytes) -> None:
        return None

    def end(self, end_ms: int) -> None:
        return None

    def cancel(self) -> None:
        return None


_NULL_STREAM = _NullStream()


class AcsPassthroughEngine:
    """SpeechEngine for `CALLSTREAM_STT=acs`: transcripts come from TranscriptionData.

    It takes no audio at all (`audio_input` is False): the text of the call arrives in
    ACS's own TranscriptionData frames and goes through `AcsTranscriptionAdapter`, so a
    caller reading its capabilities opens neither streams nor channels on it. A stream
    opened anyway drops its audio and never emits (nothing is ever sent to ACS).
    """

    source = SOURCE
    # ACS transcribes on its side; callstream sends it nothing.
    capabilities = Capabilities(
        audio_input=False, continuous=False, interim_results=True, remote=False
    )

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    def open_stream(self, utterance_id: str, start_ms: int, *args: object, **kw: object):
        return _NULL_STREAM

    def open_channel(self, channel_id: str, start_ms: int, *args: object, **kw: object):
        raise UnsupportedMode("ACS transcription takes no audio: its text comes in frames")
