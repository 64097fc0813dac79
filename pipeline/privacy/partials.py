"""Partials: what a recognizer's revisions of one utterance must not undo or expose early.

A partial is a guess that grows. Its end may be the start of an entity no recognizer can
judge yet (a card number's first digits, an e-mail without its domain): held back until
a later partial or the final. And a value redacted once must stay redacted when a later
revision no longer looks like one ("four one one one" becomes "for one").
"""

from __future__ import annotations

import re

from pipeline.privacy.recognizers import KnownValuesRecognizer
from pipeline.privacy.redaction import RedactionResult
from pipeline.privacy.spoken_numbers import trailing_run_start

# The spoken e-mail recognizer cannot judge "john dot smith at contoso" until the domain
# ends; a trailing chain of words joined by spoken separators is held back in partials.
_TRAILING_SPOKEN_CHAIN = re.compile(
    r"(?i)(?<![a-z0-9'])(?:(?!(?:is|it's|its|my|email|mail|address|at|the|to|me|was|and|or|uh|um)\b)[a-z0-9]+\s+)?[a-z0-9]+(?:\s+(?:dot|at|underscore|dash|hyphen)\s+[a-z0-9]+)*"
    r"\s+(?:dot|at|underscore|dash|hyphen)(?:\s+[a-z0-9]+)?[\s.,]*$"
)


def hold_back_unfinished(result: RedactionResult) -> RedactionResult:
    """For partials: cut an entity that may still be growing off the end of the text.

    A number run ("4111 1111 1111", "four one one") may be the start of a card number
    that no recognizer can judge yet; a spoken e-mail may lack its domain. The held-back
    words reappear, judged, in a later partial or the final. Cutting only at the end
    keeps every earlier redaction span valid.
    """
    text = result.text
    cut = trailing_run_start(text)
    m = _TRAILING_SPOKEN_CHAIN.search(text)
    if m is not None and (cut is None or m.start() < cut):
        cut = m.start()
    if cut is None:
        return result
    return RedactionResult(
        text[:cut].rstrip(),
        [r for r in result.redactions if r.end <= cut],
        result.entities,
    )


class StickyValues:
    """Values one utterance's partials have redacted, to keep redacted until its final.

    Recognizers judge each partial afresh, and a revised partial can stop looking like
    a card ("four one one one ..." becomes "for one ..."); what was redacted once must
    stay redacted. Raw values live here, in memory, for the utterance's lifetime only,
    and are touched only on the redaction thread (the runner is first-in first-out).
    """

    __slots__ = ("_values", "recognizer")

    # An utterance whose partials never end (a client that never sends its final) would
    # grow this, and rebuild its recognizer, forever. Past this many values nothing more
    # is remembered: every partial is still redacted afresh, only the stickiness stops.
    MAX_VALUES = 64

    def __init__(self) -> None:
        self._values: set[tuple[str, str]] = set()
        self.recognizer: KnownValuesRecognizer | None = None

    def __len__(self) -> int:
        return len(self._values)

    def remember(self, text: str, result: RedactionResult) -> None:
        new = {(e.type, text[e.start : e.end]) for e in result.entities} - self._values
        room = self.MAX_VALUES - len(self._values)
        if len(new) > room:
            new = set(sorted(new)[: max(0, room)])
        if new:
            self._values |= new
            # Above the threshold, below any fresh finding: a partial's guess never
            # overrides the type a later, longer text earns ("555" then a phone number).
            self.recognizer = KnownValuesRecognizer(sorted(self._values), score=0.5) or None
