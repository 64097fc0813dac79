"""Partials: what a recognizer's revisions of one utterance must not undo or expose early.

A partial is a guess that grows. Its end may be the start of an entity no recognizer can
judge yet (a card number's first digits, an e-mail without its domain): held back until
a later partial or the final. And a value redacted once must stay redacted when a later
revision no longer looks like one ("four one one one" becomes "for one").
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pipeline.privacy.normalize import analysis_form
from pipeline.privacy.recognizers import KnownValuesRecognizer
from pipeline.privacy.recognizers.spoken_email import unfinished_address_start
from pipeline.privacy.redaction import RedactionResult
from pipeline.privacy.spoken_numbers import normalize

# The spoken e-mail recognizer cannot judge "john dot smith at contoso" until the domain
# ends; a trailing chain of words joined by spoken separators is held back in partials.
_TRAILING_SPOKEN_CHAIN = re.compile(
    r"(?i)(?<![a-z0-9'])(?:[a-z0-9]\s+)*(?:(?!(?:is|it's|its|my|email|mail|address|at|the|to|me|was|and|or|uh|um)\b)[a-z0-9]+\s+){0,2}[a-z0-9]+"
    r"(?:\s+(?:dot|at|underscore|dash|hyphen)(?:\s+(?:uh|um|er))?\s+[a-z0-9]+)*"
    r"\s+(?:dot|at|underscore|dash|hyphen)(?:\s+[a-z0-9]+)?[\s.,]*$"
)
# A name and a word where "at" may have been misheard, ending a partial: "kelly brennan add"
# (the domain comes next), in any context.
_MISHEARD_AT_END = re.compile(
    r"(?i)(?<![a-z0-9'])(?:(?!(?:is|it's|its|my|the|to|me|was|and|or|uh|um|so|that's)\b)[a-z0-9]+\s+){1,3}"
    r"(?:add|ad|had|hat|better)[\s.,]*$"
)


# A number at a partial's end: its digits (or a token holding one, "GB66"), then at most
# this many words a recognizer wrote after it.
_WORDS_AFTER = 3
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
_WITH_DIGIT = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]*\d[A-Za-z0-9]*")
_CHAIN_GAP = re.compile(r"^[\s,.;:\-–]*(?:[A-Za-z']+[\s,.;:\-–]+){0,2}$")
# What may stand just before a number and belong to it: "(212", "+1", "for 1111" (four),
# "oh 4", the letters of a spoken IBAN ("n l 05").
_LEAD = re.compile(r"(?i)(?:(?<![a-z'])(?:for|to|too|ate|won|oh|o|[a-z])\s+)+$|[(+]\s*$")
_MONTH = re.compile(
    r"(?i)\b(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)(?:\s+(?:of|the))?[\s.,]*$"
)
_EXPIRY_CUES = ("expir", "exp", "valid", "thru", "through", "card")
# The first word of a number still being said: "the expiry date is oh", "cvv is double".
_NUMBER_OPENING = re.compile(
    r"(?i)(?<![a-z'])(?:oh|o|double|triple|for|to|too|ate|won|unit|apartment|apt|suite|flat)"
    r"[\s.,]*$|(?<![a-z'])(?:[a-z]\s+){0,4}[a-z][\s.,]*$"  # or letters being spelled
)
_TAIL_CHARS = 400
_EMAIL_CUE = re.compile(r"(?i)\b(?:e-?mail|mail|address|send|contact)")


def unfinished_number_start(text: str) -> int | None:
    """Where a number that may still be growing starts at the end of ``text``, if any.

    Any number, however short ("it's 3" may be a security code's first digit), with the
    numbers before it that a word or two apart may belong to it ("4111 and then 1111"),
    and what may lead it ("(", "+", a homophone, spelled letters).
    """
    spans = sorted(
        {(r.start, r.end) for r in normalize(text).runs}
        | {(m.start(), m.end()) for m in _WITH_DIGIT.finditer(text)}
    )
    if not spans or len(_WORD.findall(text, spans[-1][1])) > _WORDS_AFTER:
        return None
    start = spans[-1][0]
    for a, b in reversed(spans[:-1]):
        if b > start:
            start = min(start, a)
        elif _CHAIN_GAP.match(text[b:start]):
            start = a
        else:
            break
    lead = _LEAD.search(text, max(0, start - 40), start)
    return lead.start() if lead is not None else start


def hold_back_unfinished(result: RedactionResult, context: Iterable[str] = ()) -> RedactionResult:
    """For partials: cut an entity that may still be growing off the end of the text.

    A number ("4111 1111 1111", "four one one", "it's 3") may be the start of a card
    number or a code that no recognizer can judge yet; a spoken e-mail may lack its
    domain (in an e-mail context, the trailing run of name-like words: "the address is
    john galt smith better"); an expiry its year ("it expires in june"). The held-back
    words reappear, judged, in a later partial or the final. Cutting only at the end
    keeps every earlier redaction span valid. ``context``: words of the last turns.
    """
    text = result.text
    # Read as the recognizers read it ("555−01" is a run of five digits): same offsets.
    form = analysis_form(text)
    cuts = [unfinished_number_start(form)]
    # What may still be growing is at the end: a long partial is searched there only
    # (these patterns backtrack over long runs of letters and separators).
    tail = max(0, len(text) - _TAIL_CHARS)
    for pattern in (_TRAILING_SPOKEN_CHAIN, _NUMBER_OPENING, _MISHEARD_AT_END):
        m = pattern.search(text, tail)
        cuts.append(m.start() if m is not None else None)
    said = " ".join((text.lower(), *context))
    if _EMAIL_CUE.search(said):
        cuts.append(unfinished_address_start(text))
    if any(cue in said for cue in _EXPIRY_CUES):
        m = _MONTH.search(text)
        cuts.append(m.start() if m is not None else None)
    found = [c for c in cuts if c is not None]
    if not found:
        return result
    cut = min(found)
    return RedactionResult(
        text[:cut].rstrip(),
        [r for r in result.redactions if r.end <= cut],
        result.entities,
    )


class StickyValues:
    """Values one utterance's partials have redacted, to keep redacted until its final.

    Recognizers judge each partial afresh, and a revised partial can stop looking like
    a card ("four one one one ..." becomes "for one ..."); what was redacted once must
    stay redacted. Raw values live here, in memory, for the utterance's lifetime only,
    and are touched only on the redaction thread (the runner is first-in first-out).
    """

    __slots__ = ("_values", "continues", "recognizer")

    # An utterance whose partials never end (a client that never sends its final) would
    # grow this, and rebuild its recognizer, forever. Past this many values nothing more
    # is remembered: every partial is still redacted afresh, only the stickiness stops.
    MAX_VALUES = 64

    def __init__(self) -> None:
        self._values: set[tuple[str, str]] = set()
        self.recognizer: KnownValuesRecognizer | None = None
        # The type of the number the previous utterance left open, if this one goes on
        # with it: its leading number is redacted as that type (``continue_number``).
        self.continues: str | None = None

    def __len__(self) -> int:
        return len(self._values)

    def continue_number(self, entity_type: str) -> None:
        """This utterance may open with the rest of a number the last one cut off."""
        self.continues = entity_type
        self._rebuild()

    def _rebuild(self) -> None:
        # Above the threshold, below any fresh finding: a partial's guess never overrides
        # the type a later, longer text earns ("555" then a phone number).
        self.recognizer = (
            KnownValuesRecognizer(sorted(self._values), score=0.5, continues=self.continues) or None
        )

    def remember(self, text: str, result: RedactionResult) -> None:
        # Values as the recognizers read them (ASCII digits, no invisible characters), or a
        # card written "４１１１ ..." or "4\u200b1..." would never match a later partial.
        new = {
            (e.type, analysis_form(text[e.start : e.end])) for e in result.entities
        } - self._values
        room = self.MAX_VALUES - len(self._values)
        if len(new) > room:
            new = set(sorted(new)[: max(0, room)])
        if new:
            self._values |= new
            self._rebuild()


_RUN_WORD = re.compile(r"[A-Za-z']+")


def trailing_run_start(text: str, min_digits: int = 3, max_words_after: int = 2) -> int | None:
    """Where an unfinished number run near the end of ``text`` starts, if there is one.

    For partial results: "my card is four one one" may be the start of a card number
    that nothing can judge yet, so it is held back until a later partial or the final.
    A recognizer's partial often ends in a word or two of noise after the digits ("...
    one one one will"), so a run followed by up to ``max_words_after`` words counts too.
    """
    if not text.strip():
        return None
    norm = normalize(text)
    if not norm.runs:
        return None
    last = norm.runs[-1]
    if len(last.digits) < min_digits:
        return None
    if len(_RUN_WORD.findall(text, last.end)) > max_words_after:
        return None
    return last.start
