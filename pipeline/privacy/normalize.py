"""Unicode normalisation at the privacy boundary: what a reader sees is what is checked.

Every recognizer is a pattern over ASCII digits, letters and punctuation, and text can
say the same thing in many other code points: a zero-width space between two digits of
a card, a combining accent or a variation selector on a digit, a fullwidth "５" or "＠",
a superscript "¹" or a circled "①". The reader of a transcript sees a card number; the
recognizers saw no digit run and the card was published (issue 18). So the Redactor
analyses and publishes a *normalised* copy of each text, made here, with a map back to
the input.

What normalising does, and why:

- **NFKC per cluster** (a base character and the marks attached to it): fullwidth,
  superscript, circled and mathematical forms become the ASCII they stand for
  ("５５５−０１００" -> "555−0100", "＠" -> "@", "¹²³" -> "123"). Per cluster, not over
  the whole text, so that each output character knows which input characters it came from.
- **Invisible characters are removed**: every format character (category Cf: zero-width
  space, word joiner, soft hyphen, bidi controls, BOM, tags) and the default-ignorable
  fillers. A reader sees none of them, so removing them changes nothing a reader sees and
  rejoins what they split. One exception: ZWJ/ZWNJ between two non-ASCII, non-digit
  characters (emoji sequences, Indic and Persian words) are kept, since there they shape
  what is displayed.
- **Marks stay only on letters and symbols outside ASCII** ("é", Devanagari vowel signs,
  an emoji's variation selector). On a digit, punctuation or a space, in any script, the
  combining marks, enclosing keycaps and variation selectors are removed: "4" + U+0301 is
  a 4. On an ASCII letter they are composed when Unicode has the letter ("o" + U+0301 ->
  "ó") and removed when not; in the *analysis* copy (below) the letter stays the bare
  ASCII letter, so "jo" + U+0301 + "hn@example.com" and "fou" + U+0301 + "r one one ..."
  are still an e-mail address and spoken digits. These rules hold everywhere, so the
  inside of an e-mail address needs no rule of its own.
- **Every digit is a digit**: characters with a Unicode digit value that NFKC leaves alone
  (dingbat and double-circled digits: "❶", "⓵", "⓿") are published as ASCII digits.
  Decimal digits of other scripts ("٤١١١", "४१११") are published as written and read
  as ASCII (below), so the recognizers, a payment window's ``[DIGITS]``, the payment
  guard (``analysis_form``) and a partial's held-back number all count them.

Two texts come out, of the same length and aligned character by character:

- ``text``, what is published (after the Redactor replaces entities in it);
- ``analysis``, what the recognizers read: ``text`` with every digit as ASCII, every
  dash (Pd, U+2212 minus) as "-", every space separator as " ", and ASCII letters that
  carried marks bare. One to one, so a span of one is the same span of the other.

The map: output character ``k`` came from one input character (ASCII, copied) or from a
whole cluster (several output characters share it when NFKC expands, "⑩" -> "10").
Removed characters belong to no output character; a span of the output maps to the input
from its first character's cluster to its last's, so anything removed *inside* it (the
zero-width spaces between a card's digits) is inside the mapped span too.

Cost (2 vCPU dev container, shared and busy; CPU time per text of ~210 characters): ASCII
text, most transcripts, is returned as it is after one ``str.isascii`` (under 1 µs). Text
in NFKC whose every non-ASCII character is kept as it is (curly quotes, kana, Cyrillic) is
checked without a loop (~10-20 µs). Other text costs a loop over its non-ASCII characters
only, ASCII stretches copied whole, per-character facts cached: ~15 µs with a few dashes,
~30-50 µs with a zero-width space after every digit, ~0.2 ms if every character is
fullwidth; Devanagari ~1.3 µs per character. A redaction takes 1-3 ms.
"""

from __future__ import annotations

import bisect
import functools
import re
import unicodedata
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["NormalizedText", "analysis_form", "normalize_text"]

_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f]+")
_ZW_JOINERS = frozenset("\u200c\u200d")
_MINUS = "\u2212"
# Default-ignorable code points that are not format characters (Cf) or marks: Hangul
# fillers. Invisible, so removed like the format characters.
_FILLERS = frozenset("\u115f\u1160\u3164\uffa0")
# Characters that are not marks but that NFKC composes with the letter before them:
# Hangul vowel and final jamo after Hangul, half-width voicing marks after kana.
_CONJOINING = re.compile(r"[\u1160-\u11ff\ud7b0-\ud7ff\uff9e\uff9f]")
_HANGUL = re.compile(r"[\u1100-\u11ff\ua960-\ua97f\uac00-\ud7ff]")
_KANA = re.compile(r"[\u3040-\u30ff]")


def _conjoins(base: str, ch: str) -> bool:
    """True if NFKC may compose ``ch`` with a cluster whose base normalises to ``base``."""
    if not _CONJOINING.match(ch) or not base:
        return False
    return bool((_KANA if ch in "\uff9e\uff9f" else _HANGUL).match(base[-1]))


# Kinds of character, by what normalising does with one (see ``_info``).
_IGNORABLE = 0  # removed (a format character or a filler)
_MARK = 1  # joins the cluster before it
_BARE = 2  # a digit, punctuation or a space (after NFKC): its marks go
_LETTER = 3  # ASCII letters after NFKC: marks composed where Unicode can, else removed
_OTHER = 4  # a non-ASCII letter or symbol: NFKC of its cluster, marks and all


@dataclass(frozen=True, slots=True)
class _Info:
    kind: int
    text: str  # the character alone, normalised
    analysis: str  # and as the recognizers read it (same length)
    plain: bool = False  # published and read as it is (not a mark, not removed)


@functools.lru_cache(maxsize=8192)
def _fold(ch: str) -> str:
    """One character of published text as the recognizers read it (always one character)."""
    if ch < "\x80":
        return ch
    digit = unicodedata.digit(ch, None)
    if digit is not None:
        return str(digit)
    cat = unicodedata.category(ch)
    if cat == "Pd" or ch == _MINUS:
        return "-"
    if cat == "Zs":
        return " "
    return ch


@functools.lru_cache(maxsize=8192)
def _info(ch: str) -> _Info:
    cat = unicodedata.category(ch)
    if cat == "Cf" or ch in _FILLERS:
        return _Info(_IGNORABLE, "", "")
    if cat[0] == "M":
        return _Info(_MARK, "", "")
    norm = unicodedata.normalize("NFKC", ch)
    if _stray_mark(norm):
        norm = ch  # "ﾞ" -> U+3099 alone: a mark the next pass would drop; keep it as written
    elif norm == ch and unicodedata.digit(ch, None) is not None and cat != "Nd":
        norm = str(unicodedata.digit(ch))  # "❶", "⓵": digits NFKC leaves as they are
    analysis = "".join(_fold(c) for c in norm)
    if norm.isascii():
        kind = _LETTER if any(c.isalpha() for c in norm) else _BARE
    else:  # marks shape letters (and emoji); on digits, punctuation or spaces they hide
        kind = _OTHER if cat[0] == "L" or cat == "So" else _BARE
    return _Info(kind, norm, analysis, norm == ch == analysis)


def _stray_mark(text: str) -> bool:
    """True if a mark in ``text`` has no letter or symbol to sit on."""
    prev = ""
    for c in text:
        cat = unicodedata.category(c)
        if cat[0] == "M" and not (prev and (prev[0] == "L" or prev == "So")):
            return True
        if cat[0] != "M":
            prev = cat
    return False


class NormalizedText(NamedTuple):
    """``text`` (published), ``analysis`` (read by recognizers) and the map to ``original``.

    The map is a list of segments, in order: output ``offsets[k]`` onwards came from input
    ``sources[k] = (start, end, copied)``: a stretch copied as it was (``copied``: one
    output character per input character) or one cluster (every output character made
    from all of ``start:end``). None when ``text`` is ``original`` (``analysis`` may still
    differ: "٤١١١" is published as written and read as "4111").
    """

    original: str
    text: str
    analysis: str
    offsets: list[int] | None = None
    sources: list[tuple[int, int, bool]] | None = None

    @property
    def changed(self) -> bool:
        return self.offsets is not None

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """The span of ``original`` that ``text[start:end]`` was made from."""
        offsets, sources = self.offsets, self.sources
        if offsets is None or sources is None:
            return start, end
        if start >= len(self.text):
            return len(self.original), len(self.original)
        first = _source(offsets, sources, start)[0]
        if end <= start:
            return first, first
        return first, _source(offsets, sources, end - 1)[1]


def _source(offsets: list[int], sources: list[tuple[int, int, bool]], k: int) -> tuple[int, int]:
    """The input span output character ``k`` came from."""
    seg = bisect.bisect_right(offsets, k) - 1
    start, end, copied = sources[seg]
    if copied:
        pos = start + k - offsets[seg]
        return pos, pos + 1
    return start, end


def analysis_form(text: str) -> str:
    """``text`` as the recognizers read it: what the payment guard and sticky values use."""
    return text if text.isascii() else normalize_text(text).analysis


def normalize_text(text: str) -> NormalizedText:
    """Normalise ``text`` for the privacy boundary (module docstring); never raises."""
    if text.isascii() or _unchanged(text):
        return NormalizedText(text, text, text)
    out = _Output()
    i = 0
    for m in _NON_ASCII_RUN.finditer(text):
        a, b = m.span()
        if a > i and _info(text[a]).kind == _MARK:
            a -= 1  # a mark belongs to the ASCII character before it: a cluster of its own
        if a > i:  # ASCII is copied as it is
            out.add(text[i:a], text[i:a], i, a, True)
        i = a
        while i < b:  # what joins a cluster is never ASCII: clusters end inside the run
            info = _info(text[i])
            if info.kind >= _BARE and (i + 1 == b or _info(text[i + 1]).kind >= _BARE):
                if not (info.kind == _OTHER and _conjoins(info.text, text[i + 1 : i + 2])):
                    out.add(info.text, info.analysis, i, i + 1, len(info.text) == 1)
                    i += 1
                    continue  # a cluster of one character: the common case, made short
            i = _cluster(text, i, b, out)
    if i < len(text):
        out.add(text[i:], text[i:], i, len(text), True)
    published = "".join(out.text)
    if published == text:
        return NormalizedText(text, text, "".join(out.analysis))  # only the analysis differs
    return NormalizedText(text, published, "".join(out.analysis), out.offsets, out.sources)


def _unchanged(text: str) -> bool:
    """True if no character of ``text`` is changed by normalising: most text in a script
    other than Latin (kana, Hangul syllables, Cyrillic) is checked without a loop."""
    return unicodedata.is_normalized("NFKC", text) and all(
        _info(c).plain for c in set(text) if c > "\x7f"
    )


class _Output:
    """The normalised text as it is built, and its map (``NormalizedText``)."""

    __slots__ = ("analysis", "length", "offsets", "sources", "text")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.analysis: list[str] = []
        self.offsets: list[int] = []
        self.sources: list[tuple[int, int, bool]] = []
        self.length = 0

    def add(self, piece: str, analysis: str, start: int, end: int, copied: bool) -> None:
        """``piece`` made from ``start:end``; ``copied``: one character from each character."""
        self.text.append(piece)
        self.analysis.append(analysis)
        sources = self.sources
        if copied and sources and sources[-1][2] and sources[-1][1] == start:
            sources[-1] = (sources[-1][0], end, True)  # "ｊｏｈｎ" -> "john": one segment
        else:
            self.offsets.append(self.length)
            sources.append((start, end, copied))
        self.length += len(piece)

    def last_char(self) -> str:
        return self.text[-1][-1:] if self.text else ""


def _cluster(text: str, i: int, b: int, out: _Output) -> int:
    """Normalise the cluster at ``text[i]`` (its run of non-ASCII characters ends at ``b``)
    into ``out``; return where the next cluster begins."""
    base = _info(text[i])
    kind = base.kind
    j = i + 1
    skipped: list[tuple[int, int]] = []  # invisible characters inside the cluster, removed
    while j < b:
        nxt = text[j]
        nk = _info(nxt).kind
        if nk == _MARK:
            j += 1
        elif kind != _OTHER:
            break
        elif _conjoins(base.text, nxt):
            j += 1
        elif nk == _IGNORABLE and (k := _conjoins_after_invisible(text, j, b, base.text)):
            skipped.append((j, k))  # removing "\u200b" from "ｶ\u200bﾞ" must not leave "ｶﾞ"
            j = k
        else:
            break
    if kind == _MARK:
        return j  # a mark with no base: nothing a reader sees
    if kind == _IGNORABLE:
        if text[i] in _ZW_JOINERS and _joins(out.last_char(), _next_visible(text, j)):
            piece = analysis = text[i:j]
        else:
            return j
    elif j == i + 1 or kind == _BARE:  # alone, or a digit or punctuation: its marks go
        piece, analysis = base.text, base.analysis
    elif kind == _LETTER:
        composed = unicodedata.normalize("NFKC", base.text + text[i + 1 : j])
        piece = "".join(c for c in composed if _info(c).kind != _MARK)
        analysis = base.analysis
        if len(piece) != len(analysis):
            piece = base.text
    else:
        chars, pos = [], i
        for a, z in skipped:
            chars.append(text[pos:a])
            pos = z
        chars.append(text[pos:j])
        piece, analysis = _letter_cluster("".join(chars))
    if piece:
        out.add(piece, analysis, i, j, len(piece) == 1 and j == i + 1)
    return j


@functools.lru_cache(maxsize=8192)
def _letter_cluster(chars: str) -> tuple[str, str]:
    """A non-ASCII letter or symbol with its marks, normalised and as read; cached, since
    the syllables of a script with marks (Devanagari, Arabic) repeat."""
    piece = unicodedata.normalize("NFKC", chars)
    if _stray_mark(piece):
        piece = _info(chars[0]).text  # "ﾞ" + a selector: NFKC makes the base a mark
    return piece, "".join(_fold(c) for c in piece)


def _conjoins_after_invisible(text: str, j: int, b: int, base: str) -> int:
    """If removed characters at ``j`` (invisible ones and their marks) hide one that
    conjoins with ``base``, where it is."""
    k = j
    while k < b and text[k] not in _ZW_JOINERS and _info(text[k]).kind in (_IGNORABLE, _MARK):
        k += 1
    return k if j < k < b and _conjoins(base, text[k]) else 0


def _next_visible(text: str, j: int) -> str:
    """The first character from ``j`` on that is neither removed nor a mark, normalised."""
    for ch in text[j : j + 16]:
        info = _info(ch)
        if info.kind not in (_IGNORABLE, _MARK):
            return info.text[:1]
    return ""


def _joins(before: str, after: str) -> bool:
    """A ZWJ/ZWNJ shapes what is displayed between two non-ASCII, non-digit characters."""
    return all(
        c and not c.isascii() and not c.isspace() and unicodedata.digit(c, None) is None
        for c in (before, after)
    )
