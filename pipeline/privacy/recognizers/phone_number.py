"""Phone numbers, written or spoken: "(212) 555-0123", "five five five, oh one two ...".

Presidio's stock recognizer runs python-phonenumbers' matcher over the whole text for
eight regions (three quarters of its redaction time) and cannot see spoken digits. Here
only digit runs are candidates: a run after "+" is parsed as an international number;
ten digits (or eleven starting with 1) are a North American number; seven digits are a
local number only with phone words near; other lengths are tried as national numbers of
a few regions and kept when python-phonenumbers says they are valid. A run right after
a reference word ("order number", "ticket") is a reference, not a phone number.
"""

from __future__ import annotations

import functools
import re

import phonenumbers

from .base import SpeechRecognizer
from .digit_runs import NOT_SECRET_CUES, DigitRun, breaks_chain, unit_after, words_before
from .readings import judge_readings

__all__ = ["PhoneSpeechRecognizer"]

# Dates and the SSN shape are not phone numbers in any region.
_DATE = re.compile(
    r"^(?:\d{3}-\d{2}-\d{4}|\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[/.]\d{1,2}[/.]\d{2,4}|\d{1,2}-\d{1,2}-\d{4})$"
)
_GAP = re.compile(r"^[\s,.;:\-–]*(?:[A-Za-z']+[\s,.;:\-–]+){0,2}$")
_REGIONS = ("GB", "IE", "DE", "FR", "ES", "IT", "NL", "AU", "IN")
_TRUNK = re.compile(r"^0[1-9]\d{8,9}$")
_EXTENSION = re.compile(r"(?i),?\s+(?:extension|ext\.?|x)\s*\d{1,5}(?:\s+sorry\s+\d{1,5})?\b")
_UK_TRUNK = re.compile(r"^0[1-9]\d{9}$")
_SAID_PLUS = re.compile(r"(?i)(?<![A-Za-z'])plus[ \t]+$")


@functools.lru_cache(maxsize=1024)
def _valid(number: str, region: str | None) -> bool:
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(number, region))
    except phonenumbers.NumberParseException:
        return False


@functools.lru_cache(maxsize=1024)
def _possible(number: str) -> bool:
    try:
        return phonenumbers.is_possible_number(phonenumbers.parse(number, None))
    except phonenumbers.NumberParseException:
        return False


# "my number is", "the office number is", "mine is": a number of one's own, not a reference.
_OWN_NUMBER = re.compile(
    r"(?i)(?:\b(?:my|his|her|your|their|our|the|work|home|office|mobile|cell|best|contact|landline"
    r"|direct|daytime|evening)\s+number|\bmine)\s*(?:is|'s|:)?\s*(?:(?:um|uh|it's)\s+)?$"
)


def _lift_own_number(text: str, found: tuple[int, int, float]) -> tuple[int, int, float]:
    """A plausible number (0.3) said as one's own number is a phone number (0.5), unless
    a reference word stands near it ("the ticket number is ...")."""
    start, end, score = found
    if (
        score < 0.4
        and _OWN_NUMBER.search(text, max(0, start - 40), start)
        and not NOT_SECRET_CUES.intersection(words_before(text, start, 6))
    ):
        return start, end, 0.5
    return found


class PhoneSpeechRecognizer(SpeechRecognizer):
    ENTITY = "PHONE_NUMBER"
    CONTEXT = (
        "phone",
        "call",
        "area",
        "cell",
        "mobile",
        "reach",
        "contact",
        "landline",
        "telephone",
        "text",
        "ring",
    )

    def find(self, text: str) -> list[tuple[int, int, float]]:
        return judge_readings(text, lambda runs: self._find_in(text, runs))

    def _find_in(self, text: str, runs: tuple[DigitRun, ...]) -> list[tuple[int, int, float]]:
        found = []
        for run in runs:
            d = run.digits
            if not 7 <= len(d) <= 15:
                continue
            start, end = run.start, run.end
            said_plus = _SAID_PLUS.search(text, max(0, start - 6), start)
            plus = said_plus is not None or text[max(0, start - 2) : start].strip().endswith("+")
            if said_plus is not None:
                start = said_plus.start()  # "plus four four ...": the word is part of it
            elif plus:
                start = text.rindex("+", 0, start)
            elif text[max(0, start - 1) : start] == "(":
                start -= 1
            if (
                NOT_SECRET_CUES.intersection(words_before(text, start, 3))
                or _DATE.match(text[run.start : run.end])
                or unit_after(text, run.end)  # "2000 142 dollars" is an amount
            ):
                continue
            if plus:
                if _valid("+" + d, None):
                    found.append((start, end, 0.85))
                elif _possible("+" + d):
                    # A country code and the right length, in a range no operator was
                    # given ("+44 7700 900456", the UK's drama numbers): still a number.
                    found.append((start, end, 0.6))
            elif (
                len(d) == 10
                and d[0] in "23456789"
                or len(d) == 11
                and d[0] == "1"
                and d[1] in "23456789"
            ):
                found.append((start, end, 0.6))
            elif len(d) == 7 and d[0] in "23456789":
                found.append((start, end, 0.3))
            elif _UK_TRUNK.match(d):
                # Eleven digits from a trunk zero: the shape of every UK number (mobile
                # "07700 900 123", geographic "0161 496 0753"), valid or a drama range;
                # no reference or account number people read out looks like it.
                found.append((start, end, 0.6))
            elif any(_valid(d, region) for region in _REGIONS) or _TRUNK.match(d):
                # A national number of another country: plausible, not proof. So is one
                # written with a trunk zero, even in a range no operator was given.
                found.append((start, end, 0.3))
        found = [_lift_own_number(text, f) for f in found]
        found.extend(self._split_numbers(text, runs, found))
        # "0161 496 0753 extension 204": the extension is part of the number.
        return [
            (s, ext.end() if (ext := _EXTENSION.match(text, e)) else e, score)
            for s, e, score in found
        ]

    @staticmethod
    def _split_numbers(
        text: str, runs: tuple[DigitRun, ...], found: list
    ) -> list[tuple[int, int, float]]:
        """ "area code nine one seven then four four two ...": a North American number
        read in two or three parts with a word or two between them (needs phone words)."""
        taken = {(s, e) for s, e, _ in found}
        out = []
        for i in range(len(runs)):
            digits = ""
            for j in range(i, min(i + 3, len(runs))):
                if j > i and (
                    not _GAP.match(text[runs[j - 1].end : runs[j].start])
                    or breaks_chain(text, runs[j - 1], runs[j])
                ):
                    break
                if unit_after(text, runs[j].end):
                    break  # "... after 5 pm": a time is no part of the number
                digits += runs[j].digits
                if j > i and len(digits) == 10 and digits[0] in "23456789":
                    if (runs[i].start, runs[j].end) not in taken:
                        out.append((runs[i].start, runs[j].end, 0.3))
                    break
                if len(digits) >= 10:
                    break
        return out
