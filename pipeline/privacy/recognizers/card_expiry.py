"""Card expiry dates: "04/27", "oh four twenty seven", "twelve twenty eight", "march 2027".

Dates are not expiries: "14/03/2025" and "2027-04-15" are kept whole (a slashed month
and year is taken only where no day stands before it).

A bare "12 28" is just two numbers, so every match scores below the threshold and is
redacted only with expiry words near it or in the previous utterance ("and the expiry
date?"), through Presidio's context enhancer.
"""

from __future__ import annotations

import re

from .base import SpeechRecognizer
from .digit_runs import is_measure
from .readings import judge_readings

__all__ = ["CardExpiryRecognizer"]

_MONTHS = (
    r"jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?"
)
# "month is 02 and then the year is 29", "the end of 27" (a card runs to a month's end)
_NUMERIC_MONTH_YEAR = re.compile(
    r"(?i)\bmonth\s+(?:is\s+|'s\s+)?(?:0?[1-9]|1[0-2])\s+(?:and\s+)?(?:then\s+)?(?:the\s+)?"
    r"year\s+(?:is\s+|'s\s+)?(?:20\s?)?[2-4]\d(?!\d)"
)
_END_OF_YEAR = re.compile(r"(?i)\bend\s+of\s+(?:20\s?)?[2-4]\d(?![\d/:])")
# "march 2027", "march of 27", "september and the year is 26"
_MONTH_YEAR = re.compile(
    rf"(?i)\b(?:end\s+of\s+)?(?:{_MONTHS})\.?,?\s+(?:(?:um|uh|er),?\s+)?"
    r"(?:of\s+|(?:and\s+)?(?:the\s+)?year\s+(?:is\s+|'s\s+)?)?"
    r"(?:20\s?[2-4]\d|[2-4]\d)(?!\d)"
)
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
# "04/27", "0 4/27" ("o4/27": the normalizer's zero, apart), "04/2027"; never part of a
# date ("14/03/2025", "03/04/2027"): no digit and slash before it, no slash after.
_SLASHED = re.compile(
    r"(?<![\d/.\-])(?<![\d.\-]\s)(?<!\d/\s)(?:0\s)?(?:0?[1-9]|1[0-2])\s?/\s?(?:20)?[2-4]\d(?![\d/])"
)


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
    # "it runs out in", "good until", "good till": how people say expires ("until" alone is
    # a time: "open eight till eight").
    CONTEXT = ("expir", "exp", "valid", "thru", "card", "runs", "good")

    def find(self, text: str) -> list[tuple[int, int, float]]:
        if not _DIGIT.search(text):
            return []
        lower = text.lower()
        found = []
        if any(m in lower for m in _MONTH_PREFIXES):
            found += [(m.start(), m.end(), 0.3) for m in _MONTH_YEAR.finditer(text)]
        found += [(m.start(), m.end(), 0.6) for m in _NUMERIC_MONTH_YEAR.finditer(text)]
        found += [(m.start(), m.end(), 0.3) for m in _END_OF_YEAR.finditer(text)]
        # "04/27" is the shape printed on cards: enough on its own.
        found += [(m.start(), m.end(), 0.45) for m in _SLASHED.finditer(text)]
        found += judge_readings(
            text,
            lambda runs: [
                (run.start, run.end, 0.25 if len(run.digits) == 3 else 0.3)
                for run in runs
                if _month_year(run.digits) and not is_measure(text, run.start, run.end)
            ],
        )
        best: dict[tuple[int, int], float] = {}
        for start, end, score in found:  # "04/27" is both slashed and a month and year
            best[(start, end)] = max(score, best.get((start, end), 0.0))
        return [(start, end, score) for (start, end), score in best.items()]
