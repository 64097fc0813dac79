"""Numbers said again: a card, a social or a phone number read back, or a group of it.

Agents read numbers back to confirm them ("so that's four one one one, one one one one
...?", "the second group, was it eight one six four?"), and callers repeat a group they
were asked about. The repetition is often a piece too short, or too far from any cue, to
be judged on its own. So the numbers already redacted, in this text or earlier in the
call, are remembered (in memory, on the redaction thread, for the call's lifetime) and
any run of four digits or more inside one of them is that secret again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from presidio_analyzer import RecognizerResult

from .base import SpeechRecognizer
from .digit_runs import is_date_or_price, is_measure, reference_before, result
from .readings import readings

__all__ = ["NUMBER_TYPES", "SaidNumbersRecognizer"]

#: Secrets long enough that four of their digits in a row are no coincidence.
# DIGITS: what a payment window redacts (every digit), a card as often as not.
NUMBER_TYPES = frozenset({"CREDIT_CARD", "US_SSN", "PHONE_NUMBER", "IBAN_CODE", "DIGITS"})
MIN_SAID = 7  # digits a remembered number has at least
MIN_PIECE = 4  # digits a repeated piece has at least
_YEAR = re.compile(r"(?:19|20)\d\d")


class SaidNumbersRecognizer(SpeechRecognizer):
    ENTITY = "SAID_NUMBER"

    def __init__(self, said: Iterable[tuple[str, str]] = (), language: str = "en") -> None:
        self._said = [(t, d) for t, d in said if t in NUMBER_TYPES and len(d) >= MIN_SAID]
        super().__init__(language)
        self.supported_entities = sorted({t for t, _ in self._said}) or [self.ENTITY]

    def __bool__(self) -> bool:
        return bool(self._said)

    def analyze(self, text, entities=None, nlp_artifacts=None) -> list[RecognizerResult]:
        found: dict[tuple[int, int], str] = {}
        for runs in readings(text):
            for run in runs:
                d = run.digits
                if (
                    len(d) < MIN_PIECE
                    or _YEAR.fullmatch(d)
                    or is_measure(text, run.start, run.end)
                    or is_date_or_price(text, run)
                    or reference_before(text, run.start)
                ):
                    continue  # "back in 2024", "9020 pounds", "the booking ref is 3459"
                for entity_type, said in self._said:
                    if d in said or said in d:
                        found.setdefault((run.start, run.end), entity_type)
                        break
        return [result(self, t, s, e, 0.6) for (s, e), t in found.items()]

    def find(self, text: str) -> list[tuple[int, int, float]]:
        return [(r.start, r.end, r.score) for r in self.analyze(text)]
