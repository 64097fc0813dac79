"""The words of spoken numbers, where runs of them can be, and which misheard words count.

The vocabulary of ``spoken_numbers``: digit words, "oh", teens, tens, scales, repeats,
the fillers that may sit inside a run, and the homophones a recognizer writes for a
digit it misheard: "for" (four), "to"/"too" (two), "ate" (eight), "won" (one).

A homophone is a digit only where nothing else makes sense (``homophone_digits``):
inside a sequence of spoken digits that holds at least three real ones ("one one won
one"; two will do for "for", "ate" and "won", which join no range: "oh ate slash 29"), right after "double"/"triple" ("double ate"), "ate"/"won" after a tens word
("twenty ate"), and before "hundred"/"thousand" ("won hundred"). "Three to five days"
and "waiting for two" keep their words. One at the *edge* of a sequence ("for one one
one ...") stays a word: the recognizers judge both readings
(``recognizers.readings``).
"""

from __future__ import annotations

import re

__all__ = [
    "CANDIDATE",
    "COUNT_BEFORE",
    "PRONOUN_BEFORE",
    "MARKS",
    "SPOKEN_MARK",
    "FILLERS",
    "HOMOPHONES",
    "MAX_GAP_FILLERS",
    "REPAIRS",
    "REPEATS",
    "SCALES",
    "TEENS",
    "TENS",
    "UNITS",
    "ZERO_LETTERS",
    "digit_value",
    "homophone_digits",
    "joined_digits",
]

UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4,
    "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "nought": 0, "naught": 0, "niner": 9,  # British zero, the radio nine
}  # fmt: skip
ZERO_LETTERS = {"oh", "o"}
TEENS = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}  # fmt: skip
TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90,
}  # fmt: skip
SCALES = {"hundred": 100, "thousand": 1000}
REPEATS = {"double": 2, "triple": 3, "treble": 3}
#: Said punctuation inside a number, rendered as written: "six oh one dash seven two".
MARKS = {"dash": "-", "hyphen": "-", "slash": "/", "stroke": "/", "-": "-", "/": "/"}
SPOKEN_MARK = re.compile(r"(?i)\b(?:dash|hyphen|slash|stroke)\b|[-/]")  # or written
#: Words before a count of the digits that follow: "the next six: 3 2 5 ...".
COUNT_BEFORE = re.compile(r"(?i)\b(?:first|next|last|middle|final)\s+$")
#: Words after which "one" is a pronoun, not a digit: "that one", "a new one".
PRONOUN_BEFORE = re.compile(
    r"(?i)\b(?:that|this|which|each|every|any|no|other|another|new|old|right|wrong|same|"
    r"last|first|next|only|the|a)\s+$"
)
#: The word that may join a scale to the rest of its number: "three hundred and nine".
SCALE_JOINERS = frozenset({"and"})
#: Words that may sit inside a run without ending it (at most two in a row).
FILLERS = frozenset({
    "um", "umm", "uh", "uhh", "uhm", "er", "erm", "ah", "eh", "hmm", "hm", "mm", "mhm",
    "sorry", "dash", "hyphen", "slash", "stroke",
})  # fmt: skip
#: Fillers that say the speaker is correcting what came just before ("four five sorry
#: four six"): rendered, not dropped, so that the recognizers can try the corrected reading.
REPAIRS = frozenset({"sorry"})
#: Words a recognizer writes for a digit it misheard; digits only inside a run.
HOMOPHONES = {
    "for": 4, "to": 2, "too": 2, "ate": 8, "won": 1,
    "tree": 3, "fife": 5, "nein": 9, "sex": 6, "sicks": 6, "null": 0,  # accents, German
}  # fmt: skip
MAX_GAP_FILLERS = 2
_MIN_REAL_DIGITS = 3  # real digit words a sequence needs before a homophone inside counts
# Homophones no sentence puts after "twenty" ... "ninety": "twenty ate" is 28.
_AFTER_TENS = frozenset({"ate", "won"})


# Digit words a recognizer (or a chat) ran together: "fouroneoneone", "fourone". Made
# only of them, so no English word is one ("often" is no "oh" + "ften").
_JOINABLE = "zero|three|seven|eight|four|five|nine|one|two|six|oh"
_JOINED = re.compile(rf"(?i)(?:{_JOINABLE}){{2,}}")
_JOINED_PART = re.compile(rf"(?i){_JOINABLE}")


def joined_digits(word: str) -> str | None:
    """The digits of a word made only of digit words ("fouroneone" -> "411"), else None."""
    if len(word) < 5 or _JOINED.fullmatch(word) is None:
        return None
    return "".join(str(UNITS.get(p.lower(), 0)) for p in _JOINED_PART.findall(word))


def digit_value(low: str) -> int:
    """The value of a single-digit word: a digit word, a homophone taken as one, or "oh"."""
    return UNITS[low] if low in UNITS else HOMOPHONES.get(low, 0)


def homophone_digits(words: list[str], after: str = "") -> list[int]:
    """Which of ``words`` are homophones to read as digits (indexes).

    ``words``: one sequence of digit words, "oh", repeats, teens, tens and homophones,
    in order (the fillers between them left out); ``after``: the token after it.
    """
    low = [w.lower() for w in words]
    real = sum(w in UNITS or w in ZERO_LETTERS for w in low)
    found = []
    for n, w in enumerate(low):
        if w not in HOMOPHONES:
            continue
        before = low[n - 1] if n > 0 else ""
        nxt = low[n + 1] if n + 1 < len(low) else after.lower()
        # "to" joins two numbers in a range ("three to five"): it needs more digits round
        # it than "for", "ate" or "won" ("oh ate slash twenty nine").
        enough = _MIN_REAL_DIGITS if w in ("to", "too") else _MIN_REAL_DIGITS - 1
        if (
            before in REPEATS
            or (before in TENS and w in _AFTER_TENS)
            or nxt in SCALES  # "won hundred"
            or (0 < n < len(low) - 1 and real >= enough)
        ):
            found.append(n)
    return found


# Where runs can be: number tokens joined by what may sit between them in a run. Found by
# one regex scan in C, so text without numbers costs almost nothing; tokenizing and the
# run rules then apply inside these spans only.
_NUM_ALT = "|".join(
    sorted({*UNITS, *ZERO_LETTERS, *TEENS, *TENS, *SCALES, *REPEATS}, key=len, reverse=True)
)
_NUM_TOKEN = (
    rf"(?:\d+|(?<![A-Za-z'])(?:{_NUM_ALT})(?![A-Za-z'])"
    rf"|(?<![A-Za-z'])(?:{_JOINABLE}){{2,}}(?![A-Za-z']))"
)
_GAP_WORDS = "|".join(sorted({*FILLERS, *HOMOPHONES, *SCALE_JOINERS}))
_GAP = rf"(?:[\s,.\-–—()]*(?:(?<![A-Za-z'])(?:{_GAP_WORDS})(?![A-Za-z'])[\s,.\-–—()]*){{0,{MAX_GAP_FILLERS + 2}}})"
_HOMOPHONE = "|".join(sorted(HOMOPHONES))
# A homophone just before or after may belong to the run ("won hundred", "double ate").
_HOMOPHONE_BEFORE = rf"(?:(?<![A-Za-z'])(?:{_HOMOPHONE})[\s,]+)?"
_HOMOPHONE_AFTER = rf"(?:[\s,]+(?<![A-Za-z'])(?:{_HOMOPHONE})(?![A-Za-z']))?"
CANDIDATE = re.compile(
    rf"(?i){_HOMOPHONE_BEFORE}{_NUM_TOKEN}(?:{_GAP}{_NUM_TOKEN})*{_HOMOPHONE_AFTER}"
)
