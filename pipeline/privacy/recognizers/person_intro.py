"""A person's name where people give it: "my name is ...", "this is ... from", "... speaking".

There is no NER model on a blank spaCy pipeline, and lexical transcripts have no
capitals, so names are taken only after a self-introduction, and only words that cannot
be anything else: "my name is on the account" and "this is ridiculous" keep their words.
Up to three name words, stopping at a common word. Also after the forms that ask for
one ("the name on the card is", "last name", "account holder", "under the name of") and
spelled out after "spelled" / "that's" ("s m i t h").
"""

from __future__ import annotations

import re

from .base import SpeechRecognizer

__all__ = ["NOT_NAME_WORDS", "PersonIntroRecognizer"]

# Words that end a name (or show there was none).
_STOP = frozenset(
    """
    a an the and or but so if then than that this these those there here it it's its is are was were be been
    am i i'm im me my mine you your yours we our us he she they them his her their him who what when where why
    how which from to for of on in at by with about as into onto over under after before up down out off
    calling call called speaking talking phoning ringing here please thanks thank hi hello hey yes yeah yep no
    not okay ok sure right well just also really very actually um uh er erm ah oh hmm sorry again still
    going trying looking wanting hoping wondering having getting doing being following calling
    ridiculous great good fine bad terrible awful amazing correct wrong true false urgent important
    unacceptable frustrating annoying confusing interesting weird strange crazy silly insane
    all any some none everything nothing something anything one two three four five six seven eight nine ten
    account card number name phone email address order issue problem question bill billing payment
    customer service services support team department company manager agent help
    english spanish french german chinese portuguese who whom publicly generally
    my mister mr mrs ms miss dr doctor
    first last middle full given family maiden surname holder same spelled spell
    american express visa mastercard amex discover
    can could would should will shall may might must has have had does did says said wants wanted
    needs needed usually always never sometimes often normally please whoever someone somebody anyone
    anybody everyone re regarding concerning she's he's that's there's they're we're you're i've
    i'd i'll she'd he'd we've they've isn't wasn't can't won't don't didn't doesn't
    """.split()
)
#: Words no name or town is made of (the public name of ``_STOP``).
NOT_NAME_WORDS = _STOP
_FILLERS = frozenset("um uh er erm ah".split())
_PARTICLES = frozenset("o mc mac".split())
_NOT_NAME_SUFFIX = re.compile(r"(?:ing|ed|ly|ous|ful|ble|ive|ment|ness|tion|sion)$")
# Any script's letters: "Bjørn", "Wiśniewska", "Nguyễn" are names whole.
_WORD = r"[^\W\d_][^\W\d_'\-]*(?:['\-][^\W\d_]+)*"
_FILL = r"(?:(?:um|uh|er|erm|ah|so)\W+)?"
# "my wife astrid", "my mother margaret flanagan": a relation before the name.
_RELATION = (
    r"(?:(?:my|his|her|their|our|your)\s+(?:wife|husband|partner|mother|mum|mom|father|dad|son"
    r"|daughter|brother|sister|friend|colleague|boss|client|grandmother|grandfather|gran|nan"
    r"|aunt|uncle|niece|nephew|fianc[ée]e?)\s+)?"
)
_TITLE = r"(?:(?:mister|mr|mrs|ms|missus|dr)\.?\s+)?"

# "my name is X [Y [Z]]": the strongest cue.
_MY_NAME = re.compile(
    rf"(?i)\b(?:my\s+name\s+is|my\s+name's|name\s+(?:is|was)|the\s+name's"
    # "in my husband's name michael o'neill", "her name was priya"
    rf"|(?:my|his|her|their|\w+'s)\s+name(?:\s+(?:is|was)|'s)?"
    rf"|(?:identified|verified)\s+as|on\s+behalf\s+of|(?:calling|ringing|phoning)\s+for"
    rf"|spoke\s+(?:w/|with|to))\W+{_FILL}{_RELATION}{_TITLE}"
    rf"({_WORD}(?:\s+{_FILL}{_WORD}){{0,3}})"
)
# "mr oyelaran", "Mrs. Okafor": a title says a name follows, wherever it stands.
_TITLED = re.compile(rf"(?i)\b(?:mister|mr|mrs|ms|missus|dr)\.?\s+({_WORD}(?:\s+{_WORD})?)")
# "can i speak to yousef haddad", "could i talk with shivon".
_ASK_FOR = re.compile(
    rf"(?i)\b(?:can|could|may)\s+i\s+(?:speak|talk)\s+(?:to|with)\s+{_TITLE}({_WORD}(?:\s+{_WORD}){{0,2}})"
)
# "... ahmed speaking" anywhere: one word, which must not be a common one.
_NAME_SPEAKING = re.compile(rf"(?i)\b({_WORD})\s*,?\s+speaking\b")
# "this is X [Y] from/speaking/calling/here", "I'm X from ...".
_WITH_TRAILER = re.compile(
    rf"(?i)\b(?:this\s+is|it's|its|it\s+is|i'm|i\s+am)\s+({_WORD}(?:\s+{_WORD}){{0,2}})\s*,?\s+"
    r"(?:from|speaking|calling|ringing|phoning|here|with|at)\b"
)
# "X [Y] speaking" / "X here" at the start of an utterance (after a greeting).
_GREETING = r"(?:(?:hi|hello|hey|yes|yeah|good\s+(?:morning|afternoon|evening)|um|uh|oh|there)\W+)*"
_SPEAKING = re.compile(rf"(?i)^\W*{_GREETING}({_WORD}(?:\s+{_WORD})?)\s*,?\s+(?:speaking|here)\b")
# "yeah this is X Y." at the start of an utterance, the name ending the clause.
# "you're speaking with X", "you've reached X".
_REACHED = re.compile(
    rf"(?i)\b(?:speaking\s+(?:with|to)|you've\s+reached|you\s+have\s+reached|you're\s+through\s+to"
    rf"|you\s+are\s+through\s+to)\s+{_FILL}({_WORD}(?:\s+{_WORD})?)"
)
_THIS_IS_START = re.compile(
    rf"(?i)^\W*{_GREETING}(?:this\s+is|it's|its)\s+({_WORD}(?:\s+{_WORD}){{0,2}})\s*"
    r"(?:[.,!?]|$|\s+(?:and|calling|again|i'm|i\s+am|ringing|phoning)\b)"
)


# "the name on the card is X", "first name X", "surname's X", "account holder is X".
_NAMED = re.compile(
    rf"(?i)\b(?:(?:first|last|full|given|family|middle|maiden|sur)\s*name|name\s+on\s+the\s+"
    rf"(?:card|account|reservation|booking|policy|order|ticket|bill)"
    rf"|(?:card|account|policy|bill)\s*holder(?:'s)?(?:\s+name)?|patient(?:'s)?\s+name)"
    rf"(?:'s|\s+is|\s+it's|\s*:|\s+would\s+be|\s+should\s+be)?\W+{_FILL}{_RELATION}"
    rf"({_WORD}(?:\s+{_WORD}){{0,3}})"
)
# "it's under the name (of) X", "the booking is under X".
_UNDER = re.compile(
    rf"(?i)\b(?:(?:under|in)\s+the\s+name\s+(?:of\s+)?|(?:account|booking|reservation|order|it)"
    rf"\s*(?:is\s+|was\s+|'s\s+)?under\s+){_FILL}({_WORD}(?:\s+{_WORD}){{0,2}})"
)
# A name spelled out: "that's s m i t h", "spelled k o w a l s k i".
# The words right after the letters are often the name again, and the rest of it
# ("h a l v o r s e n halvorsen ingrid halvorsen").
_SPELLED = re.compile(
    r"(?i)\b(?:spell(?:ed|s|ing)?(?:\s+it)?|that's|(?:name|surname)\s+is|yeah|yes)\s+"
    r"((?:[a-z](?:\s+apostrophe|\s+hyphen)?[\s\-.]{1,2}){2,}[a-z])\b"
    rf"((?:\s+{_WORD}){{0,3}})"
)
# Five letters or more spelled one by one, wherever: a name (or an address) spelled out.
_LETTERS = re.compile(r"(?i)(?<![\w'])(?:[a-z](?:\s+apostrophe)?\s+){4,}[a-z](?![\w'])")


# (pattern, score, strong cue, words one of which the text must hold for it to match)
_CUES = (
    (_NAMED, 0.85, True, ("name", "holder")),
    (_UNDER, 0.7, False, ("under", "name")),
    (_MY_NAME, 0.85, True, ("name", "identified", "verified", "behalf", "for", "spoke")),
    (_WITH_TRAILER, 0.8, False, ("this", "it's", "its", "it is", "i'm", "i am")),
    (_SPEAKING, 0.7, True, ("speaking", "here")),
    (_NAME_SPEAKING, 0.6, True, ("speaking",)),
    (_REACHED, 0.7, False, ("speaking", "reached", "through")),
    (_THIS_IS_START, 0.6, False, ("this", "it's", "its")),
    (_TITLED, 0.7, True, ("m", "dr")),
    (_ASK_FOR, 0.7, True, ("speak", "talk")),
)


def _name_words(span_text: str, span_start: int, strong: bool) -> tuple[int, int] | None:
    """Trim a candidate to its leading name words; None if the first word is not one.

    After a weak cue ("this is ...") a word that looks like a verb or an adjective
    ("closed", "confusing") ends the name; after a strong one ("my name is", "...
    speaking") it does not, or Ahmed and Fred would never be redacted.
    """
    end = None
    for m in re.finditer(_WORD, span_text):
        w = m.group().lower()
        if w in _FILLERS and end is not None:
            continue  # "james um patterson": one name
        if w in _PARTICLES and end is not None:
            continue  # "dara o riordan": part of the name if a name word follows
        if w in _STOP or len(w) < 2 or (not strong and _NOT_NAME_SUFFIX.search(w)):
            break
        end = m.end()
    if end is None:
        return None
    return span_start, span_start + end


class PersonIntroRecognizer(SpeechRecognizer):
    ENTITY = "PERSON"

    def find(self, text: str) -> list[tuple[int, int, float]]:
        best: dict[tuple[int, int], float] = {}
        low = text.lower()
        if any(w in low for w in ("spell", "that's", "name", "yeah", "yes")):
            for m in _SPELLED.finditer(text):
                after = _name_words(m.group(2), m.start(2), False) if m.group(2) else None
                best[(m.start(1), after[1] if after else m.end(1))] = 0.6
        for m in _LETTERS.finditer(text):
            best[m.span()] = max(0.5, best.get(m.span(), 0.0))
        lower = text.lower()
        for pattern, score, strong, needs in _CUES:
            if not any(w in lower for w in needs):
                continue
            pos = 0
            # Not finditer: a match's trailing words may hold the next cue ("first name
            # jennifer last name walsh"), so the search goes on from its name's start.
            while (m := pattern.search(text, pos)) is not None:
                span = _name_words(m.group(1), m.start(1), strong)
                if span is not None:
                    best[span] = max(score, best.get(span, 0.0))
                pos = m.start(1) + 1
        return [(s, e, score) for (s, e), score in best.items()]
