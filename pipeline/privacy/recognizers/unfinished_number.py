"""A secret number cut off by the end of the utterance: "my social is six oh five" ...

Recognizers end an utterance where the speaker pauses, and people pause inside long
numbers: "the card is four double five six double oh oh seven" | "double seven three
five ...". The first half is published the moment its final comes, before anything can
know a second half follows, and alone it is no card (ten digits, no Luhn). So a number
at the very end of an utterance, asked for by the words just before it or by the last
turn ("and your social?"), is redacted as the start of the secret it was asked for; the
call's redaction then carries that type into the next utterance, whose leading number
completes it (``KnownValuesRecognizer(continues=...)``).

One recognizer per secret, each with its own cue words: a match alone scores 0.1 and
only Presidio's context enhancer (a cue among the eight words before, or in the last
turns) lifts it over the threshold. Shapes the secret could not start with are left
alone: a card needs four digits, a phone or a social three, an expiry is a month (1-12),
an IBAN its two letters. Amounts, times, quantities and reference numbers never match.
Eight digits or more that open like a card number need no cue: half a card is a secret
whatever was said before it.
"""

from __future__ import annotations

import re

from presidio_analyzer import RecognizerResult

from .base import NOT_CUES, SpeechRecognizer
from .credit_card import known_card_prefix
from .digit_runs import (
    NOT_SECRET_CUES,
    DigitRun,
    breaks_chain,
    is_date_or_price,
    is_measure,
    unit_after,
    words_before,
)
from .readings import judge_readings
from .spoken_iban import IBAN_LENGTHS

__all__ = ["unfinished_number_recognizers"]

# After the number, nothing but punctuation and a filler or two; the first word of the
# next digits may be said already ("... double" | "eight double eight ...").
_OPENING = re.compile(
    r"(?i)(?:[\s,]+(?:(?:um|uh|er|sorry)[\s,]+)*(?:double|triple|oh|o|for|to|too|ate|won)(?![a-z']))+"
)
_TAIL = re.compile(
    r"(?i)^(?:[\s,.;:!?\-–/)]|\b(?:um+|uh+|er|erm|hmm|and|so|then|sorry|slash|stroke|dash)\b)*$"
)
# A month alone ending the utterance, the year to come: "it's valid through november" | ...
_MONTH = re.compile(
    r"(?i)\b(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)(?:\s+of)?[\s.,]*$"
)
# A spoken or written IBAN from its first letters to where the utterance stops.
_IBAN_SO_FAR = re.compile(
    r"(?i)(?<![a-z0-9'])[a-z][ \-]?[a-z][ \-]?(?:\d+|for|to|too|ate|won)(?![a-z'])"
    r"(?:[ \-,.]{1,3}(?:[a-z]{1,4}|\d+|sorry)(?![a-z0-9']))*[ \-,.]*$"
)
_GAP = re.compile(r"^[\s,.;:\-–]*(?:[A-Za-z']+[\s,.;:\-–]+){0,2}$")

_CARD_CUES = (
    "card", "visa", "mastercard", "amex", "american", "express", "discover", "diners",
    "jcb", "unionpay", "debit", "credit", "pay", "paid",
)  # fmt: skip
# "my number is ...": one's own number is a phone number (in the words just before only:
# in the last turns, "what's the order number?" asks for a reference).
_MY_NUMBER = re.compile(
    r"(?i)\b(?:my|your|the|best|contact|home|work|cell|mobile|phone|callback)\s+number"
    r"\s*(?:is|'s|it's|:)?\s*(?:(?:um|uh|it's)\s+)?\+?$|\+$"  # "+1 415": international
)
# (entity, cue words, fewest digits, most digits, must open like a card, cue just before)
_SECRETS = (
    ("CREDIT_CARD", _CARD_CUES, 4, 18, False, None),
    # "the number is four seven one two one one": "number" alone is a weak cue (order
    # numbers, tickets), so the digits must be many and open like a card's.
    # Only in the words just before: "what's the order number?" is no cue for a card.
    ("CREDIT_CARD", (), 6, 18, True, re.compile(r"(?i)\b(?:number|digits|half)\b.{0,40}$")),
    ("US_SSN", ("social", "ssn"), 3, 8, False, None),
    (
        "PHONE_NUMBER",
        ("phone", "mobile", "cell", "landline", "reach", "call", "contact", "ring", "text"),
        3,
        9,
        False,
        _MY_NUMBER,
    ),
    ("CARD_EXPIRY", ("expir", "exp", "valid", "thru"), 1, 2, False, None),
    ("IBAN_CODE", ("iban", "bank"), 2, 32, False, None),
)
# Eight digits or more that open like a card's, ending the utterance: half a card, whatever
# was said before them ("yeah it's 4050 3492," | "5680 9411").
_BARE_CARD_DIGITS = 7
_YEAR = re.compile(r"^(?:19|20)\d\d$")
_BARE_SCORE = 0.4
_TRUNK_START = re.compile(r"0[1-9]\d")
_AMOUNT_BEFORE = re.compile(r"[$£€]\s*$")
# The start of an IBAN ending the utterance, written in capitals ("... is NL91 ABNA") or
# spelled ("it's n l 91 a b n a").
_WRITTEN_IBAN_START = re.compile(
    r"(?<![A-Za-z0-9])([A-Z]{2})\s?(\d{2})((?:[ \-]?[A-Z0-9]{1,4})*)[\s,.]*$"
    r"|(?i:(?<![a-z0-9'])([a-z]\s[a-z])\s(\d{2})((?:\s(?:[a-z]|\d+)(?![a-z0-9']))*)[\s,.]*$)"
)


class UnfinishedNumberRecognizer(SpeechRecognizer):
    def __init__(
        self,
        entity: str,
        cues: tuple[str, ...],
        fewest: int,
        most: int,
        card_prefix: bool = False,
        lead: re.Pattern[str] | None = None,
        language: str = "en",
    ) -> None:
        self.ENTITY = entity
        self.CONTEXT = cues
        self._fewest, self._most = fewest, most
        self._card_prefix = card_prefix
        self._lead = lead
        super().__init__(language)
        self.name = f"Unfinished{entity.title().replace('_', '')}Recognizer"

    def analyze(self, text, entities=None, nlp_artifacts=None) -> list[RecognizerResult]:
        found = super().analyze(text, entities, nlp_artifacts)
        for r in found:
            if r.score >= _BARE_SCORE:
                # Nothing lifts it further: it stays below any complete finding (a social
                # security number's nine digits are an SSN, not half a card).
                r.recognition_metadata[RecognizerResult.IS_SCORE_ENHANCED_BY_CONTEXT_KEY] = True
        return found

    def find(self, text: str) -> list[tuple[int, int, float]]:
        found = judge_readings(text, lambda runs: self._last(text, runs))
        if self.ENTITY == "IBAN_CODE":
            m = _WRITTEN_IBAN_START.search(text)
            if m is not None:
                country = (m.group(1) or m.group(4)).replace(" ", "").upper()
                if country in IBAN_LENGTHS:
                    found.append((m.start(), m.end(3) if m.group(1) else m.end(6), _BARE_SCORE))
        elif self.ENTITY == "CARD_EXPIRY":
            m = _MONTH.search(text)
            if m is not None:
                found.append((m.start(), m.end(), self._score(text, m.start(), False)))
        return found

    def _score(self, text: str, start: int, bare: bool) -> float:
        # A cue just before: judged here, since Presidio's enhancer skips the words spaCy
        # calls stop words ("call", "number"); a cue in the last turns is the enhancer's.
        words = words_before(text, start, 8)
        cued = any(w.startswith(c) for w in words if w not in NOT_CUES for c in self.CONTEXT)
        if self._lead is not None and self._lead.search(text, max(0, start - 40), start):
            cued = True
        return _BARE_SCORE if bare or cued else 0.1

    def _last(self, text: str, runs: tuple[DigitRun, ...]) -> list[tuple[int, int, float]]:
        if not runs or is_date_or_price(text, runs[-1]):
            return []  # "born on 05/11/1987.": whole as written
        opening = _OPENING.match(text, runs[-1].end)
        tail_from = opening.end() if opening is not None else runs[-1].end
        if not _TAIL.match(text[tail_from:]):
            return []
        i = len(runs) - 1
        while (
            i > 0
            and _GAP.match(text[runs[i - 1].end : runs[i].start])
            and not breaks_chain(text, runs[i - 1], runs[i])
            # "300 dollars with 6011 4", "charged 49 99 on 5307 4010"
            and not is_measure(text, runs[i - 1].start, runs[i - 1].end)
        ):
            i -= 1
        chain = runs[i:]
        digits = "".join(r.digits for r in chain)
        start, end = chain[0].start, tail_from
        # "the ticket number is ...", whichever part of it is judged; but in "order 55512
        # was charged to 5299 ..." the order number is the other one.
        since = runs[i - 1].end if i > 0 else 0
        if NOT_SECRET_CUES.intersection(words_before(text[since:start], start - since, 4)):
            return []
        if not self._fewest <= len(digits) <= self._most:
            return []
        if self.ENTITY == "CARD_EXPIRY" and not 1 <= int(digits) <= 12:
            return []
        if self.ENTITY == "CREDIT_CARD":
            # From the group that opens like a card ("a long one, 4741 5762": not the 1).
            start, digits = _card_start(chain, start, digits)
        if len(digits) < self._fewest or (self._card_prefix and not known_card_prefix(digits)):
            return []
        if self.ENTITY == "IBAN_CODE":
            so_far = _IBAN_SO_FAR.search(text, max(0, start - 120), end)
            if so_far is None or so_far.start() > start:
                return []
            start = so_far.start()
            if re.sub(r"[\s\-]", "", text[start : start + 3])[:2].upper() not in IBAN_LENGTHS:
                return []
        # "at ten fifteen" is a time, but "reach me at 512 55" is no measure: only numbers
        # a time could be are judged by the word before them. A year is no secret's start.
        if _YEAR.match(digits):
            return []
        measure = is_measure(text, start, end) if len(digits) <= 4 else unit_after(text, end)
        if measure or _AMOUNT_BEFORE.search(text, 0, start):
            return []
        bare = (
            self.ENTITY == "CREDIT_CARD"
            and len(digits) >= _BARE_CARD_DIGITS
            and known_card_prefix(digits)
        ) or (
            # "it's 0161" | "496 0053": a trunk zero and an area code open a phone number.
            self.ENTITY == "PHONE_NUMBER" and len(digits) >= 4 and _TRUNK_START.match(digits)
        )
        return [(start, end, self._score(text, start, bare))]


def _card_start(chain: tuple[DigitRun, ...], start: int, digits: str) -> tuple[int, str]:
    """The first group of the chain (a boundary in the text) that opens like a card."""
    if known_card_prefix(digits):
        return start, digits
    pos = [p for run in chain for p in run.positions]
    for a in range(1, len(digits) - 3):
        if pos[a] - pos[a - 1] > 1 and known_card_prefix(digits[a:]):
            return pos[a], digits[a:]
    return start, digits


def unfinished_number_recognizers(language: str = "en") -> list[UnfinishedNumberRecognizer]:
    return [UnfinishedNumberRecognizer(*secret, language=language) for secret in _SECRETS]
