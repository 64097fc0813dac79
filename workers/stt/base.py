"""The speech-to-text contract every engine implements, with declared capabilities.

WHY this shape (as livekit agents' STT): engines differ in how they want audio, and
the caller must know that from what the engine declares, never by probing attributes
or checking its name. `Capabilities` says:

- `audio_input`: the engine needs the call's raw audio. ACS transcription (passthrough)
  does not: ACS sends finished text in TranscriptionData frames instead.
- `continuous`: the engine hears a participant's whole audio, silence and all, and
  segments it itself (Azure): the caller opens one `open_channel` per participant.
  Otherwise the caller's VAD segments, and each utterance is one `open_stream`.
- `interim_results`: partial results come before the final.
- `remote`: audio leaves this machine, so a payment window withholds the customer's.

Either way the media path pushes audio while it is spoken and never waits on
recognition: `push` only buffers; results (interim partials, then exactly one final per
utterance) come back through a callback on the event loop thread of whoever called
`start()`, so the pipeline touches its own state without locks. Engines that decode on
other threads or processes hop back with `loop.call_soon_threadsafe`.

Result text is RAW transcript text: it must go to the Redactor and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from models.speech import SpeechResult

ResultCallback = Callable[[SpeechResult], None]
# (utterance id, channel id, {language: text}, is_final): live translation, raw text too.
TranslationCallback = Callable[[str, str, dict[str, str], bool], None]
ErrorCallback = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Capabilities:
    audio_input: bool
    continuous: bool
    interim_results: bool
    remote: bool


@runtime_checkable
class SpeechStream(Protocol):
    """One utterance being recognized (segmented engines)."""

    def push(self, pcm16k: bytes) -> None:
        """Add PCM16 LE mono 16 kHz audio. Never blocks, never awaits; may batch."""
        ...

    def end(self, end_ms: int) -> None:
        """No more audio. Exactly one final SpeechResult follows (its text may be "")."""
        ...

    def cancel(self) -> None:
        """Drop the utterance: no further results are delivered."""
        ...


@runtime_checkable
class SpeechChannel(Protocol):
    """One participant's whole audio being recognized (continuous engines)."""

    def push(self, pcm16k: bytes) -> None:
        """Add PCM16 LE mono 16 kHz audio, silence included. Never blocks."""
        ...

    def close(self) -> None:
        """No more audio: the engine delivers its last finals, then stops."""
        ...

    async def wait_closed(self) -> None:
        """Returns once the last final of this channel has been delivered."""
        ...


@runtime_checkable
class SpeechEngine(Protocol):
    """A speech recognizer shared by all calls of the process."""

    source: str  # "local" | "azure" | "acs": the `source` of its results
    capabilities: Capabilities

    async def start(self) -> None:
        """Acquire resources; remembers the running loop for callbacks."""
        ...

    async def aclose(self) -> None:
        """Release resources; open streams get no further results."""
        ...

    def open_stream(
        self,
        utterance_id: str,
        start_ms: int,
        on_result: ResultCallback,
        language: str = "en-US",
        channel: str | None = None,
        digits: bool = False,
    ) -> SpeechStream:
        """Begin an utterance that starts at `start_ms` on the call clock (segmented
        engines: `audio_input` and not `continuous`).

        Hints an engine may use or ignore: `channel` names whose audio this is (one
        participant of one call), so an engine can carry what it learned about the line
        (the local engine: its cepstral mean) from one utterance to the next; `digits`
        says a payment window is open and this is the customer's own audio, so digits are
        what to expect."""
        ...

    def open_channel(
        self,
        channel_id: str,
        start_ms: int,
        on_result: ResultCallback,
        on_translation: TranslationCallback | None,
        on_error: ErrorCallback,
        language: str | None = None,
    ) -> SpeechChannel:
        """Begin recognizing a participant whose audio starts at `start_ms` (continuous
        engines)."""
        ...


class UnsupportedMode(RuntimeError):
    """A caller asked an engine for a mode its capabilities do not declare."""


class SegmentedOnly:
    """For engines that recognize VAD utterances only: `open_channel` is refused."""

    source: str

    def open_channel(self, channel_id: str, start_ms: int, *args: object, **kw: object):
        raise UnsupportedMode(f"the {self.source} engine is not continuous: use open_stream")


class ContinuousOnly:
    """For engines that segment for themselves: `open_stream` is refused."""

    source: str

    def open_stream(self, utterance_id: str, start_ms: int, *args: object, **kw: object):
        raise UnsupportedMode(f"the {self.source} engine is continuous: use open_channel")
