"""Values the deployment knows are secret for one call: the caller's name, account number.

Supplied through ``POST /calls/{callId}/known-entities``, and used inside one utterance
to keep a value redacted once a partial redacted it. Numbers match in any spoken or
written grouping (the text is normalized), and so does any run of six or more of their
digits in order: a revised partial that lost one digit of a card still shows fifteen of
them. Names match each part on its own too ("it's marta") and spelled out
("k o w a l s k i"); e-mail addresses match their spoken form.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pipeline.privacy.recognizers.base import SpeechRecognizer
from pipeline.privacy.recognizers.digit_runs import find_runs, result
from pipeline.privacy.spoken_numbers import normalize

__all__ = ["KnownValuesRecognizer", "clean_type"]

_TYPE = re.compile(r"[^A-Z0-9_]")
_SPOKEN_SEPARATORS = {
    ".": r"(?:\s*\.\s*|\s+(?:dot|period|point)\s+)",
    "@": r"(?:\s*@\s*|\s+at\s+)",
    "_": r"(?:\s*_\s*|\s+underscore\s+)",
    "-": r"(?:\s*-\s*|\s+(?:dash|hyphen)\s+|\s+)",
}
MIN_DIGITS = 3
MIN_PARTIAL_DIGITS = 6


def clean_type(entity_type: str | None) -> str:
    """An entity type fit for a "[TYPE]" tag: upper case, letters, digits and "_"."""
    t = _TYPE.sub("_", (entity_type or "").strip().upper())[:40].strip("_")
    return t or "KNOWN_ENTITY"


def _number(value: str) -> str | None:
    """The digits of a value that is a number, written or spoken ("twelve twenty eight")."""
    text = normalize(value).text
    digits = re.sub(r"\D", "", text)
    if len(digits) >= MIN_DIGITS and len(digits) >= sum(c.isalpha() for c in text):
        return digits
    return None


def _word_patterns(entity_type: str, value: str) -> list[str]:
    words = re.findall(r"[A-Za-z0-9]+|[.@_\-]", value)
    body = ""
    for prev, w in zip([None, *words], words, strict=False):
        if w in _SPOKEN_SEPARATORS:
            body += _SPOKEN_SEPARATORS[w]
        else:
            if prev is not None and prev not in _SPOKEN_SEPARATORS:
                body += r"[\s,.\-]+"
            body += re.escape(w)
    if not body:
        return []
    out = [body]
    if entity_type == "PERSON":
        parts = [w for w in words if len(w) >= 3 and w not in _SPOKEN_SEPARATORS]
        out += [re.escape(w) for w in parts]
        # Spelled out: "T-O-M-A-S-Z", "k o w a l s k i".
        out += [r"[\s\-.,]{1,3}".join(map(re.escape, w)) for w in parts]
    return [r"(?<![A-Za-z0-9])" + p + r"(?![A-Za-z0-9])" for p in out]


class KnownValuesRecognizer(SpeechRecognizer):
    """Matches given (type, value) pairs; build one per call and keep it while values hold."""

    ENTITY = "KNOWN_ENTITY"

    def __init__(
        self, values: Iterable[tuple[str, str]], supported_language: str = "en", score: float = 1.0
    ) -> None:
        self.score = score
        self._numbers: list[tuple[str, str]] = []
        self._patterns: list[tuple[str, re.Pattern[str]]] = []
        types = set()
        for entity_type, value in values:
            t = clean_type(entity_type)
            types.add(t)
            digits = _number(value)
            if digits is not None:
                self._numbers.append((t, digits))
            else:
                self._patterns += [
                    (t, re.compile(p, re.IGNORECASE)) for p in _word_patterns(t, value.strip())
                ]
        super().__init__(supported_language)
        self.supported_entities = sorted(types) or [self.ENTITY]

    def __bool__(self) -> bool:
        return bool(self._patterns or self._numbers)

    def _matches(self, text: str) -> list[tuple[str, int, int]]:
        found = [(t, m.start(), m.end()) for t, p in self._patterns for m in p.finditer(text)]
        if self._numbers:
            for run in find_runs(text):
                d = run.digits
                for t, value in self._numbers:
                    if value in d or (len(d) >= min(MIN_PARTIAL_DIGITS, len(value)) and d in value):
                        found.append((t, run.start, run.end))
                        break
        return found

    def analyze(self, text, entities=None, nlp_artifacts=None):
        return [result(self, t, s, e, self.score) for t, s, e in self._matches(text)]

    def find(self, text: str) -> list[tuple[int, int, float]]:
        return [(s, e, self.score) for _, s, e in self._matches(text)]
