"""Other readings of a text's digits: what a misheard or corrected number may have been.

The normalizer renders what it can be sure of. Two things it cannot judge alone:

- a homophone at the *edge* of a digit run ("for 111111111111111": "four" misheard, or
  "waiting for"?; "... 555 0123 to": "two", or "to confirm"?), or between two short runs
  ("1 to 3": "one two three", or a range?), and an "oh" the normalizer found too lonely
  to be a zero ("oh for 7");
- a repair: "45 sorry 46" (the normalizer keeps "sorry" inside the run), or two runs
  with "no wait" / "i mean" between them: the digits as said, or with the corrected part
  dropped ("46")? And how much did the speaker take back?

So the number recognizers judge every reading: the literal one first (the runs as
written), then each alternative, alone and all together. The union of what they find is
redacted; a checksum (Luhn, mod-97) or a shape (ten digits for a phone) tells which
reading was meant, and the span always covers everything that was said, abandoned digits
included. Texts without homophones or repairs next to digits have one reading, the
literal one, at no extra cost.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from .digit_runs import DigitRun, find_runs

__all__ = ["readings", "judge_readings"]

# Words that may be a digit. "oh"/"o" too: the normalizer drops an "oh" with too few
# digits beside it ("oh for 7" reads as an interjection), a reading keeps it.
HOMOPHONES = {
    "for": "4", "to": "2", "too": "2", "ate": "8", "won": "1", "oh": "0", "o": "0",
    "tree": "3", "fife": "5", "nein": "9", "sicks": "6", "null": "0",
}  # fmt: skip
_HOMOPHONE = re.compile(
    r"(?i)(?<![A-Za-z'])(?:for|to|too|ate|won|oh|o|tree|fife|nein|sicks|null)(?![A-Za-z'])"
)
# Next to each other: a comma, a spoken mark or a filler or two between ("oh to uh 29").
_ADJACENT = re.compile(
    r"(?i)[ \t]*(?:,|slash|dash|stroke)?[ \t]*(?:(?:um+|uh+|er|erm|hmm)[ \t,]+){0,2}[ \t]*"
)
_REPAIR_WORDS = r"(?:sorry|no|wait|i\s+mean|actually|or\s+rather|i'm\s+sorry|scratch\s+that)"
_REPAIR_GAP = re.compile(
    rf"(?i)[\s,.;:\-–]*(?:(?<![A-Za-z']){_REPAIR_WORDS}(?![A-Za-z'])[\s,.;:\-–]*){{1,3}}"
)
_INNER_REPAIR = re.compile(r"(?i)[ \t]+sorry[ \t]+")
_MAX_REPAIR = 8  # digits a speaker takes back at most


@dataclass(frozen=True, slots=True)
class _Piece:
    start: int
    end: int
    digits: str
    positions: tuple[int, ...]
    ends: tuple[int, ...]
    homophone: bool


def _pieces(text: str) -> list[tuple[_Piece, str]]:
    """Runs (split at inner repairs) and homophone words, each with its link to the next:
    "adjacent", "repair" or "break"."""
    items: list[_Piece] = []
    inner: set[int] = set()  # indexes of pieces followed by an inner "sorry"
    for run in find_runs(text):
        cuts = [m for m in _INNER_REPAIR.finditer(text, run.start, run.end)]
        bounds = [run.start] + [x for m in cuts for x in (m.start(), m.end())] + [run.end]
        for a, b in zip(bounds[::2], bounds[1::2], strict=True):
            idx = [i for i, p in enumerate(run.positions) if a <= p < b]
            pos = tuple(run.positions[i] for i in idx)
            items.append(
                _Piece(
                    a, b, "".join(run.digits[i] for i in idx), pos, tuple(p + 1 for p in pos), False
                )
            )
            inner.add(len(items) - 1)
        inner.discard(len(items) - 1)
    taken = [(p.start, p.end) for p in items]
    for m in _HOMOPHONE.finditer(text):
        if not any(a < m.end() and m.start() < b for a, b in taken):
            d = HOMOPHONES[m.group().lower()]
            items.append(_Piece(m.start(), m.end(), d, (m.start(),), (m.end(),), True))
    order = sorted(range(len(items)), key=lambda i: items[i].start)
    out: list[tuple[_Piece, str]] = []
    for n, i in enumerate(order):
        p = items[i]
        link = "break"
        if n + 1 < len(order):
            q = items[order[n + 1]]
            gap = text[p.end : q.start]
            if i in inner:
                link = "repair"
            elif _ADJACENT.fullmatch(gap):
                link = "adjacent"
            elif not q.homophone and _REPAIR_GAP.fullmatch(gap):
                link = "repair"  # "for sorry 485": "four", taken back
        out.append((p, link))
    return out


def _clusters(items: list[tuple[_Piece, str]]) -> list[list[tuple[_Piece, str]]]:
    """Chains of linked pieces that allow another reading (a homophone or a repair)."""
    found, cur = [], []
    for piece, link in items:
        cur.append((piece, link))
        if link == "break":
            if any(p.homophone for p, _ in cur) or any(lk == "repair" for _, lk in cur[:-1]):
                # A run, or two words or more that may all be digits ("oh for", "ate oh to").
                if len(cur) > 1 or any(not p.homophone for p, _ in cur):
                    found.append(cur)
            cur = []
    return found


def _take_back(before: str, after: str) -> int:
    """How many digits a repair most likely takes back: the most whose restatement
    ``after`` begins with (all but the last, which was the mistake)."""
    for k in range(min(len(before), len(after), _MAX_REPAIR), 0, -1):
        if after[: k - 1] == before[len(before) - k : -1]:
            return k
    return 1


def _last_group(piece: _Piece) -> int:
    """How many digits the piece ends with that were written or said together ("8855")."""
    pos = piece.positions
    n = 1
    while n < len(pos) and pos[-n] - pos[-n - 1] == 1:
        n += 1
    return n


def _merge(cluster: list[tuple[_Piece, str]], repairs: dict[int, int | None]) -> DigitRun:
    """One reading of a cluster: ``repairs[i]`` digits taken back at repair link i (None:
    the likeliest number, 0: none)."""
    digits, pos, ends = "", [], []
    for i, (p, link) in enumerate(cluster):
        digits += p.digits
        pos += p.positions
        ends += p.ends
        if link == "repair" and i + 1 < len(cluster):
            k = repairs.get(i, None)
            if k is None:
                k = _take_back(digits, cluster[i + 1][0].digits)
            k = min(k, len(digits))
            if k:
                digits, pos, ends = digits[:-k], pos[:-k], ends[:-k]
    return DigitRun(cluster[0][0].start, cluster[-1][0].end, digits, tuple(pos), tuple(ends))


def _variants(cluster: list[tuple[_Piece, str]]) -> list[DigitRun]:
    runs = [i for i, (p, _) in enumerate(cluster) if not p.homophone] or [0, len(cluster) - 1]
    first, last = runs[0], runs[-1]
    heads = sorted({0, first})
    tails = sorted({last, len(cluster) - 1})
    out = []
    for a in heads:
        for b in tails:
            part = [(p, lk if i < b else "break") for i, (p, lk) in enumerate(cluster)][a : b + 1]
            links = [i for i, (_, lk) in enumerate(part[:-1]) if lk == "repair"]
            choices: list[dict[int, int | None]] = [{}, dict.fromkeys(links, 0)]
            for i in links:
                back = len("".join(p.digits for p, _ in part[: i + 1]))
                for k in {1, 2, 3, 4, _last_group(part[i][0])}:
                    if k <= back:
                        choices.append({i: k})
            out += [_merge(part, c) for c in choices]
    return out


@functools.lru_cache(maxsize=16)
def readings(text: str) -> tuple[tuple[DigitRun, ...], ...]:
    """The digit runs of ``text``: the literal reading first, then the others.

    Each reading is a sequence of runs in text order. Besides the literal one: every
    cluster with all its homophones and its likeliest repairs at once, and each
    alternative of one cluster alone (the rest literal).
    """
    literal = find_runs(text)
    if not _HOMOPHONE.search(text) and not _REPAIR_GAP.search(text):
        return (literal,)
    clusters = _clusters(_pieces(text))
    if not clusters:
        return (literal,)
    out: dict[tuple[tuple[int, int, str], ...], tuple[DigitRun, ...]] = {}

    def add(runs: tuple[DigitRun, ...]) -> None:
        out.setdefault(tuple((r.start, r.end, r.digits) for r in runs), runs)

    add(literal)

    def replaced(runs: Iterable[DigitRun], alt: list[DigitRun]) -> tuple[DigitRun, ...]:
        keep = [r for r in runs if not any(a.start < r.end and r.start < a.end for a in alt)]
        return tuple(sorted([*keep, *alt], key=lambda r: r.start))

    add(replaced(literal, [_merge(c, {}) for c in clusters]))
    for cluster in clusters:
        for alt in _variants(cluster):
            add(replaced(literal, [alt]))
    return tuple(out.values())


def judge_readings(
    text: str, judge: Callable[[tuple[DigitRun, ...]], Iterable[tuple[int, int, float]]]
) -> list[tuple[int, int, float]]:
    """What ``judge`` finds in any reading of ``text``'s digits; one score per span."""
    best: dict[tuple[int, int], float] = {}
    for runs in readings(text):
        for start, end, score in judge(runs):
            if score > best.get((start, end), -1.0):
                best[(start, end)] = score
    return [(s, e, score) for (s, e), score in best.items()]
