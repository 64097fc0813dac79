"""Inverse text normalization for digits, with a map back to what was said.

Speech recognizers write a card number as "four one one one, double one ...", as
"4111 1111 ...", or as any mix, with fillers in the middle. Pattern recognizers (ours
and Presidio's) only understand numerals, so the Redactor analyzes a *normalized* copy
of the utterance in which every spoken number run is rewritten as numerals, and maps
each detected span back to the words that were spoken: the redaction lands on
"four one one one um one one one one", not on characters that happen to sit at the same
offsets.

What counts as a number run: number tokens (numerals, digit words, "oh"/"o" for zero
next to other digits, teens, tens with an optional unit, "hundred"/"thousand" after a
number, "double"/"triple" before a digit) separated only by whitespace, light
punctuation (``, . - ( )``), spoken separators ("dash", "hyphen") or up to two fillers
("um", "uh", "sorry", ...). A run is rewritten only if it contains a spoken word or a
filler; runs of plain numerals ("536-22-8726", "192.168.1.1") are left exactly as
written so that Presidio's own recognizers still see their usual shapes.

A word misheard for a digit ("for", "to", "ate", "won") counts only inside a run of
spoken digits (``number_words``, where the vocabulary lives).

Rendering: adjacent single-digit words join ("four one one one" -> "4111"); other
number words stand apart ("twelve twenty eight" -> "12 28"); every recognizer reads a
run's digits as one sequence whatever the spacing. A repair inside a run stays ("four
five sorry four six" -> "45 sorry 46"), so the recognizers can also try the reading
the speaker meant ("46").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline.privacy import number_words as nw
from pipeline.privacy.number_runs import Element, Normalized, Run
from pipeline.privacy.number_words import (
    CANDIDATE,
    FILLERS,
    HOMOPHONES,
    MAX_GAP_FILLERS,
    REPAIRS,
    REPEATS,
    SCALES,
    TEENS,
    TENS,
    UNITS,
    ZERO_LETTERS,
    digit_value,
    homophone_digits,
)  # fmt: skip

__all__ = [
    "FILLERS", "HOMOPHONES", "REPAIRS", "REPEATS", "SCALES", "TEENS", "TENS", "UNITS",
    "ZERO_LETTERS", "Normalized", "Run", "normalize",
]  # fmt: skip

_SEPARATORS = frozenset(",.-–—()")

_TOKEN = re.compile(r"\d+|[A-Za-z]+(?:'[A-Za-z]+)?|[^\sA-Za-z\d]")

# Token kinds.
_NUMERAL, _UNIT, _ZERO_LETTER, _TEEN, _TENS, _SCALE, _REPEAT = range(7)
_FILLER, _SEP, _OTHER, _HOMOPHONE, _JOINED = range(7, 12)


def _kind(tok: str) -> int:
    if tok[0].isdigit():
        return _NUMERAL
    low = tok.lower()
    if low in UNITS:
        return _UNIT
    if low in ZERO_LETTERS:
        return _ZERO_LETTER
    if low in TEENS:
        return _TEEN
    if low in TENS:
        return _TENS
    if low in SCALES:
        return _SCALE
    if low in REPEATS:
        return _REPEAT
    if low in FILLERS:
        return _FILLER
    if low in HOMOPHONES:
        return _HOMOPHONE
    if len(tok) == 1 and tok in _SEPARATORS:
        return _SEP
    if nw.joined_digits(tok) is not None:
        return _JOINED  # "fouroneone"
    return _OTHER


_NUMBERISH = (_NUMERAL, _UNIT, _ZERO_LETTER, _TEEN, _TENS, _SCALE, _REPEAT, _JOINED)
_SPOKEN = (_UNIT, _ZERO_LETTER, _TEEN, _TENS, _SCALE, _REPEAT, _JOINED)


@dataclass(slots=True)
class _Tok:
    text: str
    start: int
    end: int
    kind: int


def _tokens(text: str, pos: int = 0, endpos: int | None = None) -> list[_Tok]:
    it = _TOKEN.finditer(text, pos, len(text) if endpos is None else endpos)
    return [_Tok(m.group(), m.start(), m.end(), _kind(m.group())) for m in it]


_DIGIT_WORD_KINDS = (_UNIT, _ZERO_LETTER, _HOMOPHONE, _REPEAT, _TENS, _TEEN, _JOINED)


def _resolve_homophones(toks: list[_Tok]) -> None:
    """Turn the homophones inside a run of spoken digits into digits (in place), as
    ``number_words.homophone_digits`` rules: each sequence of digit words, with only
    fillers and light punctuation between them, is judged as a whole."""
    seq: list[int] = []
    for i in range(len(toks) + 1):
        kind = toks[i].kind if i < len(toks) else _OTHER
        if kind in _DIGIT_WORD_KINDS:
            seq.append(i)
        elif kind not in (_FILLER, _SEP):
            words = [toks[j].text for j in seq]
            after = toks[seq[-1] + 1].text if seq and seq[-1] + 1 < len(toks) else ""
            for n in homophone_digits(words, after):
                toks[seq[n]].kind = _UNIT
            seq = []


def _digits_after(toks: list[_Tok], j: int) -> int:
    """How many single digits are said in a row from toks[j] ("the next 6: 3 2 5 9 9 1")."""
    n = 0
    while j < len(toks) and toks[j].kind in (_UNIT, _ZERO_LETTER, _HOMOPHONE, _SEP):
        n += toks[j].kind != _SEP
        j += 1
    return n


def _find_runs(toks: list[_Tok], text: str = "") -> list[tuple[int, int]]:
    """Index ranges [i, j) of tokens that form number runs (edges are number tokens)."""
    runs: list[tuple[int, int]] = []
    n = len(toks)
    i = 0
    while i < n:
        if toks[i].kind not in _NUMBERISH:
            i += 1
            continue
        if (
            toks[i].text.lower() == "one"
            and (i + 1 == n or toks[i + 1].kind not in (*_NUMBERISH, _HOMOPHONE))
            and nw.PRONOUN_BEFORE.search(text, max(0, toks[i].start - 10), toks[i].start)
        ):
            i += 1  # "that one", "a new one": a pronoun ("... on that one ten 28")
            continue
        if (
            toks[i].kind == _UNIT
            and _digits_after(toks, i + 1) == digit_value(toks[i].text.lower())
            and nw.COUNT_BEFORE.search(text, max(0, toks[i].start - 10), toks[i].start)
        ):
            # "the next six three two five ...": a count, then the digits it announces.
            runs.append((i, i + 1))
            i += 1
            continue
        j = i + 1
        last_num = i
        fillers = 0
        while j < n:
            k = toks[j].kind
            if k in _NUMBERISH:
                last_num = j
                fillers = 0
            elif k == _FILLER:
                fillers += 1
                if fillers > MAX_GAP_FILLERS:
                    break
            elif k == _SEP:
                # "4111." at a sentence end: the period ends the run unless a number follows.
                pass
            elif (
                toks[j].text.lower() in nw.SCALE_JOINERS
                and toks[j - 1].kind == _SCALE
                and j + 1 < n
                and toks[j + 1].kind in (_UNIT, _TEEN, _TENS)
            ):
                pass  # "three hundred and nine": one number
            else:
                break
            j += 1
        runs.append((i, last_num + 1))
        i = last_num + 1
    return runs


def _elements(toks: list[_Tok]) -> list[Element]:
    """Render the number tokens of one run (fillers and separators skipped)."""
    nums = [t for t in toks if t.kind in _NUMBERISH]
    out: list[Element] = []
    i = 0
    n = len(nums)
    while i < n:
        t = nums[i]
        k = t.kind
        low = t.text.lower()
        nxt = nums[i + 1] if i + 1 < n else None
        if k == _NUMERAL:
            out.append(Element(t.text, t.start, t.end, False))
            i += 1
        elif k == _JOINED:
            out.append(Element(nw.joined_digits(t.text) or "", t.start, t.end, True))
            i += 1
        elif k in (_UNIT, _ZERO_LETTER):
            value = digit_value(low)
            if nxt is not None and nxt.kind == _SCALE:
                el, i = _scaled(nums, i, value)
                out.append(el)
            else:
                out.append(Element(str(value), t.start, t.end, True))
                i += 1
        elif k == _TEEN:
            if nxt is not None and nxt.kind == _SCALE:
                el, i = _scaled(nums, i, TEENS[low])
                out.append(el)
            else:
                out.append(Element(str(TEENS[low]), t.start, t.end, False))
                i += 1
        elif k == _TENS:
            value, end = TENS[low], t.end
            i += 1
            if nxt is not None and nxt.kind == _UNIT and digit_value(nxt.text.lower()) > 0:
                value += digit_value(nxt.text.lower())
                end = nxt.end
                i += 1
            if i < n and nums[i].kind == _SCALE:
                el, i = _scaled(nums, i - 1, value, start=t.start)
                out.append(el)
            else:
                out.append(Element(str(value), t.start, end, False))
        elif k == _REPEAT:
            if nxt is not None and (
                nxt.kind in (_UNIT, _ZERO_LETTER) or (nxt.kind == _NUMERAL and len(nxt.text) == 1)
            ):
                digit = nxt.text if nxt.kind == _NUMERAL else str(digit_value(nxt.text.lower()))
                out.append(Element(digit * REPEATS[low], t.start, nxt.end, True))
                i += 2
            else:
                i += 1  # "double" with nothing to double: not a number
        elif k == _SCALE:
            out.append(Element(str(SCALES[low]), t.start, t.end, False))
            i += 1
    return out


def _scaled(nums: list[_Tok], i: int, value: int, start: int | None = None) -> tuple[Element, int]:
    """``value`` at nums[i] (or ending there) followed by a scale word at nums[i + 1].

    "eight hundred" -> 800, "four hundred fifty" -> 450, "two thousand" -> 2000.
    A following unit joins only when it ends the run ("four hundred five" -> 405), so that
    "one eight hundred five five five ..." still reads as 1 800 555...
    """
    first = nums[i]
    scale = nums[i + 1]
    total = value * SCALES[scale.text.lower()]
    end = scale.end
    j = i + 2
    n = len(nums)
    if j < n:
        t = nums[j]
        low = t.text.lower()
        if t.kind == _TEEN:
            total += TEENS[low]
            end = t.end
            j += 1
        elif t.kind == _TENS:
            total += TENS[low]
            end = t.end
            j += 1
            if j < n and nums[j].kind == _UNIT and digit_value(nums[j].text.lower()) > 0:
                total += digit_value(nums[j].text.lower())
                end = nums[j].end
                j += 1
        elif t.kind == _UNIT and j == n - 1:
            total += digit_value(low)
            end = t.end
            j += 1
    return Element(str(total), first.start if start is None else start, end, False), j


def _holds_a_number(toks: list[_Tok], i: int, j: int) -> bool:
    """A run must hold a real number: "oh" alone ("oh I see") is an interjection."""
    no_number = (_ZERO_LETTER, _REPEAT, _SCALE)
    return any(t.kind in _NUMBERISH and t.kind not in no_number for t in toks[i:j])


def _collect_runs(text: str, toks: list[_Tok], found: list[Run]) -> None:
    for i, j in _find_runs(toks, text):
        while j > i and toks[j - 1].kind == _REPEAT:
            j -= 1  # "... one double": nothing doubled yet, the word stays a word
        if j == i or not _holds_a_number(toks, i, j):
            continue
        part = toks[i:j]
        elements = _elements(part)
        if not elements:
            continue
        rewritten = any(t.kind in _SPOKEN or t.kind == _FILLER for t in part)
        found.append(Run(part[0].start, part[-1].end, elements, rewritten))


def normalize(text: str) -> Normalized:
    """Rewrite spoken number runs as numerals; keep a per-character map to ``text``."""
    found: list[Run] = []
    for m in CANDIDATE.finditer(text):
        toks = _tokens(text, m.start(), m.end())
        _resolve_homophones(toks)
        _collect_runs(text, toks, found)
    if not any(r.rewritten for r in found):
        return Normalized(text, text, [], [], found)

    pieces: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    pos = 0
    for run in found:
        if not run.rewritten:
            continue
        _copy(text, pos, run.start, pieces, starts, ends)
        prev: Element | None = None
        for el in run.elements:
            repair = _REPAIR.search(text, prev.end, el.start) if prev is not None else None
            if repair is not None:  # " sorry ", the word copied as it was written
                pieces.append(" ")
                starts.append(prev.end)
                ends.append(repair.start())
                _copy(text, repair.start(), repair.end(), pieces, starts, ends)
                pieces.append(" ")
                starts.append(repair.end())
                ends.append(el.start)
            elif prev is not None and (mark := nw.SPOKEN_MARK.search(text, prev.end, el.start)):
                # "six oh one dash seven two": the shape as said ("601-72"), as written.
                pieces.append(nw.MARKS[mark.group().lower()])
                starts.append(prev.end)
                ends.append(el.start)
            elif prev is not None and not (prev.single and el.single):
                pieces.append(" ")
                starts.append(prev.end)
                ends.append(el.start)
            pieces.append(el.digits)
            starts.extend([el.start] * len(el.digits))
            ends.extend([el.end] * len(el.digits))
            prev = el
        pos = run.end
    _copy(text, pos, len(text), pieces, starts, ends)
    return Normalized(text, "".join(pieces), starts, ends, found)


_REPAIR = re.compile(rf"(?i)(?<![A-Za-z'])(?:{'|'.join(sorted(REPAIRS))})(?![A-Za-z'])")


def _copy(text: str, a: int, b: int, pieces: list[str], starts: list[int], ends: list[int]) -> None:
    if b > a:
        pieces.append(text[a:b])
        starts.extend(range(a, b))
        ends.extend(range(a + 1, b + 1))
