"""IBANs however they come: read out ("g b eight two w e s t one two ..."), written in
groups or compact, in any case ("gb82west12345698765432"), misheard or corrected.

After normalization a spoken IBAN is "g b 82 w e s t 1234 ...": letters and digit groups
with spaces anywhere. Presidio's stock recognizer knows only the written upper-case
shapes, so every shape is read here as a sequence of tokens from two letters and two
digits on: single letters, letter groups of up to four (a bank code), digit groups, a
compact run of both, and the words a recognizer writes for a digit ("for", "to", "ate",
"won"). Its country's IBAN length of them that passes the IBAN check (country format
and mod-97, Presidio's validator) is the IBAN; the checksum is what lets the ambiguous
readings be tried without fear:

- a repair ("1339 sorry 1332", "three seven sorry three one") is read as said, with the
  group before it dropped, and with the digits the restatement takes back dropped;
- a spelled letter "o" and an "oh" for zero are the same word: a zero where a bank code
  usually stands (characters 5-8) is also tried as the letter O.
"""

from __future__ import annotations

import itertools
import re

from presidio_analyzer.predefined_recognizers import IbanRecognizer

from .base import SpeechRecognizer
from .readings import HOMOPHONES

__all__ = ["IBAN_LENGTHS", "SpokenIbanRecognizer"]

_DIGITISH = r"(?:\d|for|to|too|ate|won)"
# The radio alphabet people read letters with: "india echo nine eight alpha india bravo kilo".
_NATO = {
    w: w[0].upper()
    for w in (
        "alpha alfa bravo charlie delta echo foxtrot golf hotel india juliet juliett kilo lima "
        "mike november oscar papa quebec romeo sierra tango uniform victor whiskey whisky xray "
        "yankee zulu"
    ).split()
}
_LETTER = rf"(?:[a-z]|{'|'.join(sorted(_NATO, key=len, reverse=True))})"
_START = re.compile(rf"(?i)(?<![a-z0-9])[a-z][ \-]?[a-z][ \-]?{_DIGITISH}")
# The same with radio-alphabet letters: a long alternation tried at every position, so
# only for texts that hold one of its words.
_START_RADIO = re.compile(rf"(?i)(?<![a-z0-9]){_LETTER}[ \-]?{_LETTER}[ \-]?{_DIGITISH}")
_RADIO_WORD = re.compile(rf"(?i)\b(?:{'|'.join(sorted(_NATO))})\b")
_FILLERS = frozenset("um uh er erm hmm".split())
_TOKEN = re.compile(r"(?i)[a-z0-9]+(?:'[a-z]+)?")
_SEP = re.compile(r"[ \t,.\-/:]{1,3}")
_REPAIR = frozenset({"sorry", "no", "wait"})
_MAX = 34
# IBAN length per country (SWIFT IBAN registry): one length to check, not twenty.
IBAN_LENGTHS = {
    c[:2]: int(c[2:])
    for c in (
        "AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BR29 BY28 CH21 CR22 CY28 CZ24 DE22 DK18 "
        "DO28 EE20 EG29 ES24 FI18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HR21 HU28 IE22 IL23 "
        "IQ23 IS26 IT27 JO30 KW30 KZ20 LB28 LC32 LI21 LT20 LU20 LV21 MC27 MD24 ME22 MK19 MR27 "
        "MT31 MU30 NL18 NO15 PK24 PL28 PS29 PT25 QA29 RO24 RS22 SA24 SC31 SE24 SI19 SK24 SM27 "
        "ST25 SV28 TL23 TN24 TR26 UA29 VA22 VG24 XK20"
    ).split()
}


def _token_chars(tok: str) -> str | None:
    """What a token adds to the IBAN ("" for a repair word), or None if it ends it."""
    low = tok.lower()
    if low in _REPAIR or low in _FILLERS:
        return ""
    if low in _NATO:
        return _NATO[low]
    if low in HOMOPHONES and low not in ("o", "oh"):
        return HOMOPHONES[low]
    if tok.isdigit() or len(tok) <= 4 or any(c.isdigit() for c in tok):
        return tok.upper()
    return None


def _candidate(text: str, pos: int) -> list[tuple[str, int, int]]:
    """Tokens from ``pos``: (characters, start, end); "" marks a repair."""
    out: list[tuple[str, int, int]] = []
    size = 0
    while size < _MAX + 12:
        m = _TOKEN.match(text, pos)
        if m is None:
            break
        chars = _token_chars(m.group())
        if chars is None:
            break
        out.append((chars, m.start(), m.end()))
        size += len(chars)
        sep = _SEP.match(text, m.end())
        if sep is None:
            break
        pos = sep.end()
    while out and not out[-1][0]:
        out.pop()
    return out


def _variants(tokens: list[tuple[str, int, int]]) -> list[list[tuple[str, int, int]]]:
    """The tokens as said, and with what each repair takes back dropped."""
    repairs = [i for i, t in enumerate(tokens) if not t[0]]
    if not repairs:
        return [tokens]
    out = [[t for t in tokens if t[0]]]
    for i in repairs:
        before, after = tokens[:i], tokens[i + 1 :]
        if before:
            out.append([t for t in before[:-1] + after if t[0]])  # the group before
        said = "".join(t[0] for t in before)
        again = "".join(t[0] for t in after)
        for k in range(1, min(len(said), 8) + 1):
            if again[: k - 1] == said[len(said) - k : -1]:
                out.append(_drop_chars(before, k) + [t for t in after if t[0]])
    if len(repairs) > 1:  # every repair at once: each took back the group before it
        groups = [t for i, t in enumerate(tokens) if t[0] and i + 1 not in repairs]
        out.append(groups)
    return out


def _drop_chars(tokens: list[tuple[str, int, int]], k: int) -> list[tuple[str, int, int]]:
    out = [t for t in tokens if t[0]]
    while k and out:
        chars, start, end = out.pop()
        if len(chars) > k:
            out.append((chars[:-k], start, end))
            k = 0
        else:
            k -= len(chars)
    return out


class SpokenIbanRecognizer(SpeechRecognizer):
    ENTITY = "IBAN_CODE"
    CONTEXT = ("iban", "bank", "account")

    def __init__(self, supported_language: str = "en") -> None:
        super().__init__(supported_language)
        self._validator = IbanRecognizer(supported_language=supported_language)

    def find(self, text: str) -> list[tuple[int, int, float]]:
        found: list[tuple[int, int, float]] = []
        pos = 0
        start = _START_RADIO if _RADIO_WORD.search(text) else _START
        while (m := start.search(text, pos)) is not None:
            hit = self._best(_candidate(text, m.start()))
            if hit is None:
                pos = m.start() + 1
                continue
            found.append((m.start(), hit, 0.9))
            pos = hit
        return found

    def _best(self, tokens: list[tuple[str, int, int]]) -> int | None:
        """The end of the longest valid IBAN any reading of ``tokens`` starts with."""
        best = None
        for variant in _variants(tokens):
            chars = [(c, end) for text, _, end in variant for c in text]
            compact = "".join(c for c, _ in chars)
            length = IBAN_LENGTHS.get(compact[:2])
            if length is not None and len(compact) >= length and self._valid(compact[:length]):
                end = chars[length - 1][1]
                best = end if best is None else max(best, end)
        return best

    def _valid(self, iban: str) -> bool:
        if not iban[2:4].isdigit():
            return False
        zeros = [i for i in range(4, 8) if iban[i] == "0"]
        for n in range(len(zeros) + 1):
            for combo in itertools.combinations(zeros, n):
                letters = "".join("O" if i in combo else c for i, c in enumerate(iban))
                # The checksum first: cheap, and it rules out almost every candidate.
                if _mod97(letters) and self._validator.validate_result(letters):
                    return True
        return False


def _mod97(iban: str) -> bool:
    """ISO 13616: the IBAN, its first four characters moved to the end, letters as 10-35."""
    moved = iban[4:] + iban[:4]
    try:
        return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1
    except ValueError:
        return False
