"""Digit runs in (normalized) text: the raw material of every number recognizer.

After ``spoken_numbers.normalize`` a spoken card number is numerals, but its grouping is
whatever the caller and the recognizer made of it: "4111, 11 111111 ..." as often as
"4111 1111 1111 1111". Recognizers therefore look at a run's digits as one sequence,
whatever separates them, and keep each digit's position to map a sub-window back.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from presidio_analyzer import AnalysisExplanation, RecognizerResult

__all__ = [
    "DigitRun",
    "find_runs",
    "is_measure",
    "unit_after",
    "luhn_ok",
    "words_before",
    "result",
    "NOT_SECRET_CUES",
    "breaks_chain",
    "reference_before",
    "is_date_or_price",
]

# A digit, then more digits each optionally preceded by spaces and one separator, or by
# the repair word the normalizer keeps inside a run ("45 sorry 46": one run, read both ways).
_RUN = re.compile(
    r"(?<![A-Za-z\d])\d(?:(?:[ \t]{0,2}[,.\-–()/]?[ \t]{0,2}|[ \t]+(?i:sorry)[ \t]+)\d)*(?!\d)"
)
_DIGIT = re.compile(r"\d")
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")

#: Words after which a number is a reference, not a secret ("order number 1234 5678").
NOT_SECRET_CUES = frozenset({
    "order", "ticket", "case", "reference", "ref", "confirmation", "tracking", "invoice",
    "booking", "claim", "incident", "flight", "room", "model", "serial", "version",
    "item", "sku", "extension", "ext", "page", "step", "chapter", "table",
    "reservation", "shipment", "package", "parcel", "request",
})  # fmt: skip


# A number that is an amount, a time or a quantity, by the words around it.
_UNIT_AFTER = re.compile(
    r"(?i)\s*(?:%|percent|dollars?|bucks|cents?|pounds?|euros?|quid|am\b|pm\b|a\.m\.|p\.m\.|o'clock|"
    r"seconds?|secs?|minutes?|mins?|hours?|hrs?|days?|weeks?|months?|years?|items?|people|units?|times|miles|"
    r"boxes|pieces|gb|mb|kg|lbs?)"
)
_UNIT_BEFORE = re.compile(
    r"(?i)(?:[$£€]|\b(?:at|around|about|by|until|till|since|from|to|of|over|under|than"
    r"|charged|costs?|priced|owe|owed))\s*$"  # "i was charged forty nine ninety nine"
)


# A date or a price written out is whole in itself, never a group of a longer number:
# "unit price 3.40, delivery 2025-06-18" is no card.
_WHOLE = re.compile(
    r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[/.]\d{1,2}[/.]\d{2,4}|\d{1,2}-\d{1,2}-\d{4}|\d+\.\d\d"
)


_REFERENCE_BEFORE = re.compile(
    rf"(?i)\b(?:{'|'.join(sorted(NOT_SECRET_CUES))})\s*(?:number|no\.?|num|#|id|code)?\s*"
    r"(?:is|was|'s|:)?\s*$"
)


def reference_before(text: str, start: int) -> bool:
    """A reference word names the number at ``start``: "order number is 4471 ...",
    "ticket #", "ref:" (not "Order form | Card: 4487 ...")."""
    return _REFERENCE_BEFORE.search(text, max(0, start - 40), start) is not None


def is_date_or_price(text: str, run: DigitRun) -> bool:
    """The run is a date or a price as written ("05/11/1987", "2025-06-18", "3.40")."""
    return _WHOLE.fullmatch(text, run.start, run.end) is not None


def breaks_chain(text: str, before: DigitRun, after: DigitRun, references: bool = True) -> bool:
    """True if two runs cannot be groups of one number: either is a date or a price as
    written, or (``references``) a reference word stands between them ("0161 496 0753
    extension 204")."""
    if is_date_or_price(text, before) or is_date_or_price(text, after):
        return True
    return references and reference_between(text, before, after)


def reference_between(text: str, before: DigitRun, after: DigitRun) -> bool:
    gap = {w.lower() for w in _WORD.findall(text, before.end, after.start)}
    return bool(NOT_SECRET_CUES.intersection(gap))


def unit_after(text: str, end: int) -> bool:
    """True if a unit follows the number ending at ``end`` ("30 dollars", "5 pm")."""
    return _UNIT_AFTER.match(text, end) is not None


def is_measure(text: str, start: int, end: int) -> bool:
    """True if the number at [start, end) reads as an amount, a time or a quantity."""
    return bool(
        _UNIT_AFTER.match(text, end) or _UNIT_BEFORE.search(text, max(0, start - 12), start)
    )


@dataclass(slots=True, frozen=True)
class DigitRun:
    start: int
    end: int
    digits: str
    positions: tuple[int, ...]  # text index of each digit
    # Where each digit's text ends, when not one character after it (a word read as a
    # digit: "for" in another reading of the text, see ``readings``).
    ends: tuple[int, ...] | None = None

    def span(self, a: int, b: int) -> tuple[int, int]:
        """The text span of digits [a, b) of this run."""
        end = self.ends[b - 1] if self.ends is not None else self.positions[b - 1] + 1
        return self.positions[a], end


@functools.lru_cache(maxsize=16)
def find_runs(text: str) -> tuple[DigitRun, ...]:
    """Digit runs of ``text``; cached, since five recognizers ask about the same text."""
    runs = []
    for m in _RUN.finditer(text):
        positions = tuple(m.start() + d.start() for d in _DIGIT.finditer(m.group()))
        count = _COUNT.match(text, m.start(), m.end())
        if (
            count is not None
            and len(positions) - 1 == int(count.group(1))  # "the next 6 325991", as announced
            and _COUNT_BEFORE.search(text, max(0, m.start() - 10), m.start())
        ):
            # "the next 6 325991": the count stands apart from the digits it announces.
            n = len(count.group(1))
            runs.append(
                DigitRun(
                    m.start(), positions[n - 1] + 1, text[m.start() : m.start() + n], positions[:n]
                )
            )
            positions = positions[n:]
        digits = "".join(text[p] for p in positions)
        runs.append(DigitRun(positions[0], m.end(), digits, positions))
    return tuple(runs)


_COUNT = re.compile(r"([2-9])[ \t]+\d")  # "the next 6 325991", never "next 31 71"
_COUNT_BEFORE = re.compile(r"(?i)\b(?:first|next|last|middle|final)\s+$")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i & 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def words_before(text: str, pos: int, n: int) -> list[str]:
    """The last ``n`` words before ``pos``, lower-cased."""
    window = text[max(0, pos - 12 * n) : pos]
    return [w.lower() for w in _WORD.findall(window)[-n:]]


def result(recognizer, entity: str, start: int, end: int, score: float) -> RecognizerResult:
    """A RecognizerResult that names its recognizer (the context enhancer needs that)."""
    return RecognizerResult(
        entity_type=entity,
        start=start,
        end=end,
        score=score,
        # The context enhancer records its reasons here and fails without one.
        analysis_explanation=AnalysisExplanation(recognizer=recognizer.name, original_score=score),
        recognition_metadata={
            RecognizerResult.RECOGNIZER_NAME_KEY: recognizer.name,
            RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: recognizer.id,
        },
    )
