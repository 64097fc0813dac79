"""Card security codes (CVV, CVC, CID): a run of exactly three or four digits.

Three digits are everywhere (prices, rooms, times), so a match counts only with its
context: "security code", "CVV", "the three digit code on the back", in the same utterance or in
the question just asked.
"""

from __future__ import annotations

import re

from .base import SpeechRecognizer
from .digit_runs import find_runs, is_measure

__all__ = ["CardSecurityCodeRecognizer"]

# "back in 2019" is a year: a four-digit code that looks like one scores lower, but the
# context enhancer still lifts it over the threshold (0.1 + 0.35) when asked for.
_YEAR = re.compile(r"^(?:19|20)\d\d$")


class CardSecurityCodeRecognizer(SpeechRecognizer):
    ENTITY = "CARD_SECURITY_CODE"
    CONTEXT = ("security", "cvv", "cvc", "csc", "cid", "verification", "digit", "back")

    def find(self, text: str) -> list[tuple[int, int, float]]:
        return [
            (r.start, r.end, 0.1 if _YEAR.match(r.digits) else 0.3)
            for r in find_runs(text)
            if len(r.digits) in (3, 4) and not is_measure(text, r.start, r.end)
        ]
