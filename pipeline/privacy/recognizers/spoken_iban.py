"""IBANs read out character by character: "g b eight two w e s t one two three ...".

After normalization that is "g b 82 w e s t 1234 ...": letters and digit groups with
spaces anywhere. Candidates start with two letters and two digits; the longest prefix
that passes the IBAN check (country format and mod-97, Presidio's own validator) wins.
"""

from __future__ import annotations

import re

from presidio_analyzer.predefined_recognizers import IbanRecognizer

from .base import SpeechRecognizer

__all__ = ["SpokenIbanRecognizer"]

# Two single letters, two digits, then single letters and digit groups: what is left of
# a spelled-out IBAN after normalization. (Written IBANs are Presidio's stock recognizer's.)
_CANDIDATE = re.compile(
    r"(?i)(?<![a-z0-9])[a-z] [a-z] ?\d(?: ?\d)+(?:[ ,.]{1,2}(?:[a-z](?![a-z0-9])|\d+))*"
)
_ALNUM = re.compile(r"[A-Za-z0-9]")


class SpokenIbanRecognizer(SpeechRecognizer):
    ENTITY = "IBAN_CODE"
    CONTEXT = ("iban", "bank", "account")

    def __init__(self, supported_language: str = "en") -> None:
        super().__init__(supported_language)
        self._validator = IbanRecognizer(supported_language=supported_language)

    def find(self, text: str) -> list[tuple[int, int, float]]:
        found = []
        for m in _CANDIDATE.finditer(text):
            chars = [(c.start() + m.start(), c.group().upper()) for c in _ALNUM.finditer(m.group())]
            compact = "".join(c for _, c in chars)
            for length in range(min(34, len(compact)), 14, -1):
                if self._validator.validate_result(compact[:length]):
                    found.append((chars[0][0], chars[length - 1][0] + 1, 0.9))
                    break
        return found
