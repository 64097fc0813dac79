"""Card numbers, 13 to 19 digits with a valid Luhn check, however they were grouped.

A spoken card number arrives in pieces: "four one one one, one one one one and then one
one one one ..." normalizes to two or three digit runs, separated by a word or two. So
runs that follow each other with at most two words between them are tried together
(up to six, "sorry what was that", when the whole opens like a card and passes Luhn);
any run or chain of runs holding 13-19 digits that passes Luhn is a card, and so is a
13-19 digit window with a known card prefix inside a longer run (a card read out
straight after another number). A 13-19 digit run that fails Luhn (one misheard digit)
is still a card when card words are near: leaking fifteen of sixteen digits is a leak.
"""

from __future__ import annotations

import re

from .base import SpeechRecognizer
from .digit_runs import (
    DigitRun,
    breaks_chain,
    is_date_or_price,
    is_measure,
    luhn_ok,
    reference_before,
    reference_between,
)
from .readings import judge_readings

__all__ = ["CreditCardSpeechRecognizer", "known_card_prefix"]

_GAP = re.compile(r"^[\s,.;:\-–]*(?:[A-Za-z']+[\s,.;:\-–?!]+){0,2}$")
# A longer remark between groups ("sorry what was that", "hold on let me check"): the
# chain holds only if the whole number opens like a card and passes Luhn.
_LONG_GAP = re.compile(r"^[\s,.;:\-–]*(?:[A-Za-z']+[\s,.;:\-–?!]+){0,8}$")

# Issuer prefixes (IIN ranges) of the networks a contact center takes.
_PREFIX = re.compile(
    r"^(?:4"  # Visa (13, 16, 19)
    r"|5[1-5]|2(?:22[1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)"  # Mastercard, incl. 2-series
    r"|3[47]"  # Amex (15)
    r"|6011|64[4-9]|65|62"  # Discover, UnionPay
    r"|3(?:0[0-5]|09|6|8|9)"  # Diners (14)
    r"|35(?:2[89]|[3-8]\d))"  # JCB
)


# "the first 4 are", "then the next 6", "and the last 5": how many digits come next.
_COUNT_BEFORE = re.compile(r"(?i)\b(?:first|next|last|middle|final|other)\s+$")
# "... 5 are", "... 4 digits of my card are", "... 5 i think are"
_COUNT_AFTER = re.compile(r"(?i)\s+(?:[a-z']+\s+){0,5}?(?:are|is|were|being)?\s*$")


def _announces(text: str, runs: tuple[DigitRun, ...], i: int) -> bool:
    """runs[i] is the count of the group that follows ("the next 6 are 325991")."""
    run = runs[i]
    if len(run.digits) > 2 or i + 1 >= len(runs):
        return False
    after = text[run.end : runs[i + 1].start]
    return bool(
        _COUNT_BEFORE.search(text, max(0, run.start - 12), run.start) and _COUNT_AFTER.match(after)
    )


def _abandoned_starts(
    runs: tuple[DigitRun, ...], found: list[tuple[int, int, float]]
) -> list[tuple[int, int, float]]:
    """ "3714 89 ... I've lost my place, once more, 3714 8938 ...": digits a speaker began
    with and read again, or a group repeated to confirm it, are the card's too."""
    cards = [
        "".join(r.digits for r in runs if s <= r.start and r.end <= e)
        for s, e, sc in found
        if sc >= 0.8
    ]
    out = []
    for run in runs:
        if len(run.digits) >= 4 and not any(s <= run.start < e for s, e, _ in found):
            d = run.digits
            # Its start said again, or a group of it repeated ("was it eight or six?" |
            # "eight one six four"): four digits in a row of the card's are the card's.
            if any(d[k : k + 4] in c for c in cards for k in range(len(d) - 3)):
                out.append((run.start, run.end, 0.6))
    return out


def known_card_prefix(digits: str) -> bool:
    return _PREFIX.match(digits) is not None


class CreditCardSpeechRecognizer(SpeechRecognizer):
    ENTITY = "CREDIT_CARD"
    CONTEXT = ("card", "credit", "debit", "visa", "mastercard", "amex", "discover", "front")

    def find(self, text: str) -> list[tuple[int, int, float]]:
        return judge_readings(text, lambda runs: self._find_in(text, runs))

    def _find_in(self, text: str, runs: tuple[DigitRun, ...]) -> list[tuple[int, int, float]]:
        found: list[tuple[int, int, float]] = []
        i = 0
        while i < len(runs):
            if _announces(text, runs, i):
                i += 1  # "the first 4 are": a count, not the card's digits
                continue
            hit = self._chain_from(text, runs, i)
            if hit is not None:
                start, end, score, last = hit
                found.append((start, end, score))
                i = last + 1
                continue
            windows = self._windows(runs[i])  # a prefix and Luhn: a card whatever named it
            if windows or not reference_before(text, runs[i].start):
                found.extend(windows or self._unchecked(runs[i]))
            i += 1
        found += _abandoned_starts(runs, found)
        for i in range(len(runs) - 1):
            # "... 7576 0 and the last 4 are 4485": groups of one card, announced.
            if not _announces(text, runs, i):
                continue
            before, after = runs[i - 1] if i else None, runs[i + 1]
            cardlike = bool(found) or known_card_prefix((before or after).digits)
            for run in (before, after) if before else (after,):
                if (
                    len(run.digits) >= 4
                    and not is_measure(text, run.start, run.end)
                    and not is_date_or_price(text, run)  # "the last 3 were 45.50 each"
                ):
                    found.append((run.start, run.end, 0.6 if cardlike else 0.3))
        return found

    def _chain_from(
        self, text: str, runs: tuple[DigitRun, ...], i: int
    ) -> tuple[int, int, float, int] | None:
        """The longest chain of runs from runs[i] that reads as a card number."""
        best = None
        digits = ""
        # A long remark was crossed, or a reference word names the number ("the order
        # 4471 2209 8818"): only a whole card (its prefix and Luhn) counts.
        strict = reference_before(text, runs[i].start)
        prev = i
        for j in range(i, len(runs)):
            if j > i:
                if _announces(text, runs, j):
                    continue  # "... then the next 6 ...": the count is no digit of it
                gap = text[runs[prev].end : runs[j].start]
                if prev != j - 1:  # a count was skipped: its digits are words here
                    gap = re.sub(r"\d+", "n", gap)
                if breaks_chain(text, runs[prev], runs[j], references=False):
                    break
                if reference_between(text, runs[prev], runs[j]):
                    # "4532 015 sorry is this for the order 1128 ...": only a whole card
                    # (its prefix and Luhn) carries across a reference word.
                    strict = True
                if not _GAP.match(gap):
                    if not _LONG_GAP.match(gap):
                        break
                    strict = True
            if is_measure(text, runs[j].start, runs[j].end):
                break  # "300 dollars with 6011 ...": an amount is no part of a card
            digits += runs[j].digits
            if len(digits) > 19:
                break
            prev = j
            if len(digits) >= 13 and luhn_ok(digits):
                known = known_card_prefix(digits)
                if known or not strict:
                    best = (runs[i].start, runs[j].end, 1.0 if known else 0.8, j)
        return best

    @staticmethod
    def _unchecked(run: DigitRun) -> list[tuple[int, int, float]]:
        """13-19 digits that fail Luhn (a misheard digit): a card only with card words
        near, through the context enhancer."""
        return [(run.start, run.end, 0.3)] if 13 <= len(run.digits) <= 19 else []

    @staticmethod
    def _windows(run: DigitRun) -> list[tuple[int, int, float]]:
        """A card inside a longer run ("ref 99 4111 ..."): needs a card prefix and Luhn."""
        d = run.digits
        if len(d) <= 13:
            return []
        for a in range(len(d) - 12):
            for length in range(min(19, len(d) - a), 12, -1):
                w = d[a : a + length]
                if known_card_prefix(w) and luhn_ok(w):
                    return [(*run.span(a, a + length), 0.9)]
        return []
