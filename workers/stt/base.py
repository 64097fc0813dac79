"""The streaming speech-to-text contract every engine implements.

WHY this shape (as livekit agents' STT streams): the media path pushes an utterance's
audio while it is being spoken and must never wait on recognition, so `push` only
buffers; results (interim partials, then exactly one final) come back through a callback
that runs on the event loop thread of whoever called `start()`, so the pipeline can touch
its own state without locks. Engines that decode on other threads or processes hop back
with `loop.call_soon_threadsafe`.

Result text is RAW transcript text: it must go to the Redactor and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from models.speech import SpeechResult

ResultCallback = Callable[[SpeechResult], None]


@runtime_checkable
class SpeechStream(Protocol):
    """One utterance being recognized."""

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
class SpeechEngine(Protocol):
    """A speech recognizer shared by all calls of the process."""

    source: str  # "local" | "azure" | "acs"
    # True if audio leaves this machine (a cloud recognizer): the payment guard then keeps
    # the customer's audio from it while a card payment is taken.
    remote: bool

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
        """Begin an utterance that starts at `start_ms` on the call clock.

        Hints an engine may use or ignore: `channel` names whose audio this is (one
        participant of one call), so an engine can carry what it learned about the line
        (the local engine: its cepstral mean) from one utterance to the next; `digits`
        says a payment window is open and this is the customer's own audio, so digits are
        what to expect."""
        ...
