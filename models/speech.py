"""The speech-to-text streaming contract shared by every engine.

An engine receives an utterance's audio as it is spoken and answers with partial
hypotheses while the utterance goes on and exactly one final result when it ends
(as in livekit's interim/final STT events). Offsets are milliseconds from the call's
first audio frame so results from different engines land on one timeline. Text here
is RAW: it must pass the Redactor before it reaches an event, the store or a log.
"""

from __future__ import annotations

import msgspec


class SpeechResult(msgspec.Struct, frozen=True):
    utterance_id: str
    is_final: bool
    text: str
    start_ms: int
    end_ms: int
    confidence: float = 0.0
    language: str = "en-US"
    source: str = "local"

    def __repr__(self) -> str:  # keep raw text out of tracebacks and logs
        return (
            f"SpeechResult(utterance_id={self.utterance_id!r}, is_final={self.is_final}, "
            f"chars={len(self.text)}, start_ms={self.start_ms}, end_ms={self.end_ms})"
        )

    __str__ = __repr__
