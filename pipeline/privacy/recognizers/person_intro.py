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
    usually always never sometimes often normally please whoever someone somebody anyone
    anybody everyone re regarding concerning earlier later advice reception accounts sales
    technical enquiries inquiries complaints genuine she's he's that's there's they're we're you're i've
    i'd i'll she'd he'd we've they've isn't wasn't can't won't don't didn't doesn't
    today tomorrow yesterday tonight case reference ref ticket access only early nearly really
    basically literally totally honestly obviously probably definitely certainly exactly likely
    currently recently finally apparently unfortunately hopefully
    """.split()
)
# Words that end a name once it has begun ("ahmed said", "maria can"), but may be a first
# name themselves right after a strong cue ("my name is Will Smith", "May Chen speaking").
_SOFT_STOP = frozenset(
    "can could would should will shall may might must has have had does did says said wants "
    "wanted needs needed".split()
)
#: Words no name or town is made of (the public name of ``_STOP``).
NOT_NAME_WORDS = _STOP | _SOFT_STOP
_FILLERS = frozenset("um uh er erm ah".split())
_PARTICLES = frozenset("o mc mac".split())
# After a weak cue, a first word like these is a verb or an adjective ("this is closed").
_NOT_NAME_SUFFIX = re.compile(r"(?:ing|ed|ous|ful|ble|ive|ment|ness|tion|sion)$")
# Never a name, after any cue: "calling for clarification", "verified as a precaution".
_ABSTRACT = re.compile(r"(?:tion|sion|ness|ance|ence)$")
# Days and months end a name under a weak cue ("it's Tuesday the third") but may be
# names after a strong one ("the name on the card is June Whitfield", "Peter March").
_CALENDAR = frozenset(
    "monday tuesday wednesday thursday friday saturday sunday january february march april "
    "june july august september october november december".split()
)
# Any script's letters: "Bjørn", "Wiśniewska", "Nguyễn" are names whole.
# Combining marks (Devanagari vowel signs and virama, Thai vowels, Vietnamese tones) are
# part of the word they sit in, though Python's \w does not count them.
_MARKS = (
    "\u0300-\u036f\u0483-\u0489\u0591-\u05c7\u0610-\u061a\u064b-\u065f\u0670\u0900-\u0903"
    "\u093a-\u094f\u0951-\u0957\u0962\u0963\u0981-\u0983\u09bc-\u09d7\u0a01-\u0a51"
    "\u0a81-\u0acd\u0b01-\u0b57\u0b82-\u0bd7\u0c00-\u0c56\u0c81-\u0cd6\u0d00-\u0d57"
    "\u0e31\u0e34-\u0e3a\u0e47-\u0e4e\u0eb1\u0eb4-\u0ebc\u0ec8-\u0ecd\u1ab0-\u1aff"
    "\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f"
)
_LETTER = rf"(?:[^\W\d_]|[{_MARKS}])"
_WORD = rf"[^\W\d_]{_LETTER}*(?:['\-][^\W\d_]{_LETTER}*)*"
_FILL = r"(?:(?:um|uh|er|erm|ah|so)\W+)?"
_NAME_PART = rf"[^\W\d_]\.|{_WORD}"
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
    rf"|identified\s+as|on\s+behalf\s+of|c/o|care\s+of)\W+{_FILL}{_RELATION}{_TITLE}"
    rf"({_WORD}(?:\s+{_FILL}{_WORD}){{0,3}})"
)
# "mr oyelaran", "Mrs. Okafor": a title says a name follows, wherever it stands.
_TITLED = re.compile(
    rf"(?i)\b(?:mister|mr|mrs|missus|dr|ms(?=\.|(?-i:\s+[A-Z])))\.?\s+((?:[^\W\d_]\.\s*)?{_WORD}(?:\s+{_WORD})?)"
)
# "m as in mike, e as in echo": a word spelled with the radio alphabet (a name, an e-mail).
_AS_IN = re.compile(
    r"(?i)(?<!press\s)(?<!option\s)(?<!choose\s)(?<!select\s)(?<![\w'])[a-z]\s+(?:as|is|for)\s+(?:in\s+)?[a-z]+(?:[,\s]+(?:and\s+)?(?:dot\s*,?\s+)?"
    r"[a-z]\s+(?:as|is|for)\s+(?:in\s+|and\s+)?[a-z]+)+"
)
# "can i speak to yousef haddad", "could i talk with shivon".
_ASK_FOR = re.compile(
    rf"(?i)\b(?:(?:can|could|may)\s+i\s+(?:speak|talk)\s+(?:to|with)|(?:calling|ringing|phoning)"
    rf"\s+for|spoke\s+(?:w/|with|to)|verified\s+as)\s+{_RELATION}{_TITLE}({_WORD}(?:\s+{_WORD}){{0,2}})"
)
# "... ahmed speaking" anywhere: one word, which must not be a common one.
_NAME_SPEAKING = re.compile(rf"(?i)\b({_WORD})\s*,?\s+speaking\b")
# "this is X [Y] from/speaking/calling/here", "I'm X from ...".
_WITH_TRAILER = re.compile(
    rf"(?i)\b(?:this\s+is|it's|it\s+is|i'm|i\s+am)\s+({_WORD}(?:\s+{_WORD}){{0,2}})\s*,?\s+"
    r"(?:from|speaking|calling|ringing|phoning|here|with|at)\b"
)
# "X [Y] speaking" / "X here" at the start of an utterance (after a greeting).
# A line may open with its speaker's label ("Caller:", "[customer]", "Customer (chat):").
_LABEL = r"(?:\[?(?:caller|customer|cust|client|agent|rep|chat)\]?\s*(?:\([^)]{0,20}\))?\s*:?\s+)?"
_GREETING = rf"{_LABEL}(?:(?:hi|hello|hey|yes|yeah|good\s+(?:morning|afternoon|evening)|um|uh|oh|there)\W+)*"
_SPEAKING = re.compile(rf"(?i)^\W*{_GREETING}({_WORD}(?:\s+{_WORD})?)\s*,?\s+(?:speaking|here)\b")
# "yeah this is X Y." at the start of an utterance, the name ending the clause.
# "you're speaking with X", "you've reached X".
_REACHED = re.compile(
    rf"(?i)\b(?:speaking\s+(?:with|to)|you've\s+reached|you\s+have\s+reached|you're\s+through\s+to"
    rf"|you\s+are\s+through\s+to)\s+{_FILL}({_WORD}(?:\s+{_WORD})?)"
)
# "hi its anna from the dentist" ("its" as recognizers write "it's"): only with a trailer
# that says an introduction ("its cheaper from them" is none).
_ITS_TRAILER = re.compile(
    rf"(?i)\bits\s+({_WORD}(?:\s+{_WORD})?)\s*,?\s+(?:speaking|calling|ringing|phoning|here|from\s+the)\b"
)
_THIS_IS_START = re.compile(
    rf"(?i)^\W*{_GREETING}(?:this\s+is|it's|its)\s+({_WORD}(?:\s+{_WORD}){{0,2}})\s*"
    r"(?:[.,!?]|$|\s+(?:and|calling|again|i'm|i\s+am|ringing|phoning)\b)"
)


# "the name on the card is X", "first name X", "surname's X", "account holder is X".
_NAMED = re.compile(
    rf"(?i)\b(?:(?:first|last|full|given|family|middle|maiden|sur)\s*name|name\s+on\s+(?:the\s+)?"
    rf"(?:card|account|reservation|booking|policy|order|ticket|bill)"
    rf"|(?:card|account|policy|bill)\s*holder(?:'s)?(?:\s+name)?|patient(?:'s)?\s+name)"
    rf"(?:'s|\s+is|\s+it's|\s*:|\s+would\s+be|\s+should\s+be)?\W+{_FILL}{_RELATION}"
    rf"({_WORD}(?:\s+{_WORD}){{0,3}})"
)
# "it's under the name (of) X", "the booking is under X".
_UNDER = re.compile(
    rf"(?i)\b(?:(?:under|in)\s+the\s+name\s+(?:of\s+)?|(?:account|booking|reservation|order)"
    rf"\s*(?:is\s+|was\s+|'s\s+)?under\s+|it(?:'s|\s+is|\s+was)?\s+under\s+)"
    rf"{_FILL}({_WORD}(?:\s+{_WORD}){{0,2}})"
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
    (_MY_NAME, 0.85, True, ("name", "identified", "behalf", "c/o", "care")),
    (_WITH_TRAILER, 0.8, False, ("this", "it's", "its", "it is", "i'm", "i am")),
    (_SPEAKING, 0.7, True, ("speaking", "here")),
    (_NAME_SPEAKING, 0.6, True, ("speaking",)),
    (_REACHED, 0.7, False, ("speaking", "reached", "through")),
    (_THIS_IS_START, 0.6, False, ("this", "it's", "its")),
    (_TITLED, 0.7, True, ("m", "dr")),
    # Departments and errands follow these words too ("speak to accounts", "calling for
    # advice"): they are stop words, and abstract nouns are never names.
    (_ASK_FOR, 0.7, True, ("speak", "talk", "for", "spoke", "verified")),
    (_ITS_TRAILER, 0.7, False, ("its",)),
)


def _name_words(span_text: str, span_start: int, strong: bool) -> tuple[int, int] | None:
    """Trim a candidate to its leading name words; None if the first word is not one.

    After a weak cue ("this is ...") a word that looks like a verb or an adjective
    ("closed", "confusing") ends the name; after a strong one ("my name is", "...
    speaking") it does not, or Ahmed and Fred would never be redacted.
    """
    end = None
    for m in re.finditer(_NAME_PART, span_text):
        w = m.group().lower()
        if len(w) == 2 and w.endswith("."):
            continue  # an initial ("A. Patel") belongs to the name that follows
        if w in _FILLERS and end is not None:
            continue  # "james um patterson": one name
        if w in _PARTICLES and end is not None:
            continue  # "dara o riordan": part of the name if a name word follows
        if w in _STOP or len(w) < 2 or _ABSTRACT.search(w):
            break
        if end is None and not strong and (_NOT_NAME_SUFFIX.search(w) or w in _CALENDAR):
            break  # "this is closed", "it's tuesday": the cue was no introduction
        if w in _SOFT_STOP and (end is not None or not strong):
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
        if " as in " in low or " for " in low or " is in " in low:
            for m in _AS_IN.finditer(text):
                best[m.span()] = max(0.6, best.get(m.span(), 0.0))
        lower = text.lower()
        for pattern, score, strong, needs in _CUES:
            if not any(w in lower for w in needs):
                continue
            pos = 0
            # Not finditer: a match's trailing words may hold the next cue ("first name
            # jennifer last name walsh"), so the search goes on from its name's start.
            while (m := pattern.search(text, pos)) is not None:
                span = _name_words(m.group(1), m.start(1), strong)
                if pattern is _THIS_IS_START and span is not None and span[1] != m.end(1):
                    span = None  # "its cheaper from them": the name must end the clause
                if span is not None:
                    best[span] = max(score, best.get(span, 0.0))
                pos = m.start(1) + 1
        return [(s, e, score) for (s, e), score in best.items()]
