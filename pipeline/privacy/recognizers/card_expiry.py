"""Card expiry dates: "04/27", "oh four twenty seven", "twelve twenty eight", "march 2027".

A bare "12 28" is just two numbers, so every match scores below the threshold and is
redacted only with expiry words near it or in the previous utterance ("and the expiry
date?"), through Presidio's context enhancer.
"""

from __future__ import annotations

import re

from .base import SpeechRecognizer
from .digit_runs import find_runs, is_measure

__all__ = ["CardExpiryRecognizer"]

_MONTHS = (
    r"jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?"
)
_MONTH_YEAR = re.compile(rf"(?i)\b(?:{_MONTHS})\.?\s+(?:of\s+)?(?:20\s?[2-4]\d|[2-4]\d)(?!\d)")
_DIGIT = re.compile(r"\d")
_MONTH_PREFIXES = (
    "jan",
    "feb",
    "mar",
    "apr",
    "may",
    "jun",
    "jul",
    "aug",
    "sep",
    "oct",
    "nov",
    "dec",
)
_SLASHED = re.compile(r"(?<!\d)(?:0?[1-9]|1[0-2])\s?/\s?(?:20)?[2-4]\d(?!\d)")


def _month_year(digits: str) -> bool:
    """MYY, MMYY or MMYYYY with a plausible month and year."""
    if len(digits) == 3:
        return digits[0] != "0" and "20" <= digits[1:] <= "49"
    if len(digits) == 4:
        return "01" <= digits[:2] <= "12" and "20" <= digits[2:] <= "49"
    if len(digits) == 6:
        return "01" <= digits[:2] <= "12" and "2020" <= digits[2:] <= "2049"
    return False


class CardExpiryRecognizer(SpeechRecognizer):
    ENTITY = "CARD_EXPIRY"
    CONTEXT = ("expir", "exp", "valid", "thru", "card")

    def find(self, text: str) -> list[tuple[int, int, float]]:
        if not _DIGIT.search(text):
            return []
        lower = text.lower()
        found = []
        if any(m in lower for m in _MONTH_PREFIXES):
            found += [(m.start(), m.end(), 0.3) for m in _MONTH_YEAR.finditer(text)]
        # "04/27" is the shape printed on cards: enough on its own.
        found += [(m.start(), m.end(), 0.45) for m in _SLASHED.finditer(text)]
        for run in find_runs(text):
            if _month_year(run.digits) and not is_measure(text, run.start, run.end):
                found.append((run.start, run.end, 0.25 if len(run.digits) == 3 else 0.3))
        return found
