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
import unicodedata
from collections.abc import Iterable
from functools import cache

from pipeline.privacy.common_words import COMMON_WORDS
from pipeline.privacy.recognizers.base import SpeechRecognizer
from pipeline.privacy.recognizers.digit_runs import DigitRun, is_measure, result
from pipeline.privacy.recognizers.readings import readings
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


def _mark_class() -> str:
    """A regex class of every combining mark (Mn, Mc, Me): Python's ``\\w`` has none of
    them, yet in Devanagari, Thai or pointed Hebrew they are inside every other word."""
    ranges: list[list[int]] = []
    for cp in range(0x0300, 0x20000):
        if unicodedata.category(chr(cp)) in ("Mn", "Mc", "Me"):
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1][1] = cp
            else:
                ranges.append([cp, cp])
    return "[" + "".join(f"\\U{a:08x}-\\U{b:08x}" for a, b in ranges) + "]"


_WORD = rf"(?:[^\W_]|{_mark_class()})"  # a letter, digit or mark of any script


# Latin letters with a stroke, which Unicode does not decompose, read as their base letter.
_STROKED = str.maketrans("øØđĐłŁħĦŧŦı", "oOdDlLhHtTi")


def _base(ch: str) -> str:
    """The letter a Latin letter with diacritics is written on ("ą" -> "a"), else itself."""
    return (unicodedata.normalize("NFD", ch)[:1] or ch).translate(_STROKED)


@cache
def _variants() -> dict[str, str]:
    """Each ASCII letter and the precomposed Latin letters written on it ("o": "òóôõöøō...")."""
    out: dict[str, set[str]] = {}
    for cp in (*range(0x00C0, 0x0250), *range(0x1E00, 0x1F00)):  # Latin-1 to Extended Additional
        ch = chr(cp)
        base = _base(ch).lower()
        if ch.isalpha() and base.isascii() and base.isalpha():
            out.setdefault(base, {base}).add(ch.lower())
    return {b: "".join(sorted(v)) for b, v in out.items()}


def _letters(word: str) -> str:
    """A word as a pattern that matches it with or without its diacritics: a CRM says
    "José Núñez" and the recognizer "jose nunez", or the other way round."""
    variants = _variants()
    out = []
    for ch in word:
        base = _base(ch).lower()
        if base in variants:  # (the letter itself too: a letter with two marks is no variant)
            out.append("[" + re.escape("".join(sorted(set(variants[base] + ch.lower())))) + "]")
        else:
            out.append(re.escape(ch))
    return "".join(out)


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
    words = re.findall(_WORD + r"+|[.@_\-]", unicodedata.normalize("NFC", value))
    body = ""
    for prev, w in zip([None, *words], words, strict=False):
        if w in _SPOKEN_SEPARATORS:
            body += _SPOKEN_SEPARATORS[w]
        else:
            if prev is not None and prev not in _SPOKEN_SEPARATORS:
                body += r"[\s,.\-]+"
            body += _letters(w)
    if not body:
        return []
    out = [body]
    if entity_type == "PERSON":
        # A part that is a common word ("Will", "the") is matched only within the whole name.
        parts = [
            w
            for w in words
            if len(w) >= 3 and w not in _SPOKEN_SEPARATORS and w.casefold() not in COMMON_WORDS
        ]
        out += [_letters(w) for w in parts]
        # Spelled out: "T-O-M-A-S-Z", "k o w a l s k i".
        out += [r"[\s\-.,]{1,3}".join(map(_letters, w)) for w in parts]
    return [rf"(?<!{_WORD})" + p + rf"(?!{_WORD})" for p in out]


# Words an utterance may open with before the rest of a number ("um", "and then", "sorry").
_LEAD_IN = re.compile(
    r"(?i)^[\s,.\-]*(?:(?:um+|uh+|er|erm|hmm|and|then|so|sorry|okay|ok|yeah|yes|it's|its|is|"
    r"the|rest|continuing|slash|dash|of|for|to|too|ate|won|oh|o)[\s,.\-]+){0,4}$"
)
_CHAIN_GAP = re.compile(r"^[\s,.;:\-–]*(?:[A-Za-z']+[\s,.;:\-–]+){0,2}$")


_TAIL_END = re.compile(r"(?i)^(?:[\s,.;:!?\-]|\b(?:um+|uh+|er|erm|hmm|and|so|then)\b)*$")
_IBAN_GROUPS = re.compile(r"(?:[ \-]?[A-Za-z0-9]{1,4}(?![A-Za-z0-9]))*")
_SPELLED = re.compile(r"(?i)^[\s,.\-]*(?:[a-z]{1,4}[\s,.\-]+){1,4}$")
_SEPARATOR_BEFORE = re.compile(r"(?i)\b(?:slash|dash|of)\s+$")


def _cut_off(text: str, run: DigitRun, value: str) -> bool:
    """The first digits of ``value`` ending the utterance, or its last digits opening one:
    a known number the recognizer split in two ("account 5519" | "0322, it's ...")."""
    d = run.digits
    if len(d) < MIN_DIGITS or len(d) >= len(value):
        return False
    if value.startswith(d) and _TAIL_END.match(text[run.end :]):
        return True
    return value.endswith(d) and _LEAD_IN.match(text[: run.start]) is not None


_LEADING_HOMOPHONE = re.compile(r"(?i)^\W*(?:for|to|too|ate|won|oh|o|tree|fife|nein)(?![\w'])")


def _leading_number(
    text: str, year_too: bool = False, letters: bool = False
) -> tuple[int, int] | None:
    """The number an utterance opens with, with the numbers a word or two after it
    (``letters``: an IBAN's, which may open with the letters of its bank code)."""
    best = None
    for runs in readings(text):
        lead = text[: runs[0].start] if runs else ""
        if not runs or not (_LEAD_IN.match(lead) or (letters and _SPELLED.match(lead))):
            continue
        j = 0
        while j + 1 < len(runs) and _CHAIN_GAP.match(text[runs[j].end : runs[j + 1].start]):
            j += 1
        span = (runs[0].start, runs[j].end)
        if is_measure(text, *span) and not year_too:
            continue  # "2 items please" goes on with nothing (but an expiry "of 2027")
        sep = _SEPARATOR_BEFORE.search(text, 0, span[0])  # "slash two seven": its separator too
        if sep is not None:
            span = (sep.start(), span[1])
        if letters and _SPELLED.match(text[: span[0]]):
            span = (len(text[: span[0]]) - len(text[: span[0]].lstrip(" ,.-")), span[1])
        if best is None or span[1] - span[0] > best[1] - best[0]:
            best = span
    if best is not None:
        # "to and then 2378 ...": a digit heard as a word, opening the rest of the number.
        first = _LEADING_HOMOPHONE.match(text)
        if first is not None and _CHAIN_GAP.match(text[first.end() : best[0]]):
            best = (first.start(), best[1])
    return best


class KnownValuesRecognizer(SpeechRecognizer):
    """Matches given (type, value) pairs; build one per call and keep it while values hold."""

    ENTITY = "KNOWN_ENTITY"

    def __init__(
        self,
        values: Iterable[tuple[str, str]],
        supported_language: str = "en",
        score: float = 1.0,
        continues: str | None = None,
    ) -> None:
        self.score = score
        # The type of a number the previous utterance left open: this text's leading
        # number is the rest of it ("... double oh oh seven" | "double seven three five").
        self.continues = clean_type(continues) if continues else None
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
        if self.continues:
            types.add(self.continues)
        super().__init__(supported_language)
        self.supported_entities = sorted(types) or [self.ENTITY]

    def __bool__(self) -> bool:
        return bool(self._patterns or self._numbers or self.continues)

    def _matches(self, text: str) -> list[tuple[str, int, int]]:
        found = [(t, m.start(), m.end()) for t, p in self._patterns for m in p.finditer(text)]
        if self._numbers:
            for run in {r for runs in readings(text) for r in runs}:
                d = run.digits
                for t, value in self._numbers:
                    if (
                        value in d
                        or (len(d) >= min(MIN_PARTIAL_DIGITS, len(value)) and d in value)
                        or _cut_off(text, run, value)
                    ):
                        found.append((t, run.start, run.end))
                        break
        if self.continues:
            span = _leading_number(
                text,
                year_too=self.continues == "CARD_EXPIRY",
                letters=self.continues == "IBAN_CODE",
            )
            if span is not None:
                if self.continues == "IBAN_CODE":  # "0505 0001 3M02 606": letters too
                    span = (span[0], _IBAN_GROUPS.match(text, span[1]).end())
                found.append((self.continues, *span))
        return found

    def analyze(self, text, entities=None, nlp_artifacts=None):
        return [result(self, t, s, e, self.score) for t, s, e in self._matches(text)]

    def find(self, text: str) -> list[tuple[int, int, float]]:
        return [(s, e, self.score) for _, s, e in self._matches(text)]
