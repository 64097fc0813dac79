"""E-mail addresses as people say them: "john dot smith at contoso dot com".

Presidio's e-mail recognizer needs "@" and dots; a recognizer writes the words. The
local part is words joined by spoken or written separators (dot, underscore, dash),
or letters spelled one by one, plus at most one plain word before it ("john smith at
gmail dot com" is johnsmith@...). The domain must end in a real top-level domain
(checked against the bundled public-suffix list), so "meet me at the lobby" is not one.

Recognizers mishear the one word that rule leans on: "at" comes out as "add", "that",
"hat", "better", "and", or not at all, and a "dot" goes missing ("gmail com"). So there
is a second rule that does not need them: an address is a spoken domain (labels joined
by "dot", or a label and a top-level domain that is no English word: "gmail com") at the
end of a run of name-like words (names, spelled letters, numbers, "dot"/"underscore"),
whatever single word stands where "at" should be. Alone that is only a guess (0.3): it
counts in an e-mail context ("email", "mail", "address" nearby or in the question just
asked), or when the domain is a mail provider's ("yahoo dot com"), or when the word in
the middle is "at" after all (a local part of three or more words).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .base import SpeechRecognizer

__all__ = ["EMAIL_CUES", "SpokenEmailRecognizer", "unfinished_address_start"]

#: Words that make an utterance (or the question before it) about an e-mail address.
EMAIL_CUES = ("email", "mail", "address", "send", "contact")

_SEP = r"(?:\s+(?:dot|period|point|underscore|dash|hyphen|minus)\s+|\s*[._\-]\s*)"
_WORD = r"[a-z0-9]+"
_SPELLED = r"(?:[a-z0-9]\s+){1,}[a-z0-9](?![a-z0-9])"
_LOCAL = rf"(?:{_SPELLED}|{_WORD})(?:{_SEP}(?:{_SPELLED}|{_WORD}))*"
# "bishop law dot com": a spoken domain label may come as two words.
# "kestrel dash insurance dot com": a label with a spoken hyphen.
_LABEL_WORDS = rf"{_WORD}(?:\s+(?:dash|hyphen)\s+{_WORD})*"
_DOMAIN = (
    rf"(?:{_WORD}\s+)?{_LABEL_WORDS}(?:(?:\s+(?:dot|period|point)\s+|\s*\.\s*){_LABEL_WORDS})+"
)
# "at", "at sign", "@"; "at the rate (of)" (Indian English for "@"); "at uh at" (said twice).
_AT = (
    r"(?:\bat\s+(?:(?:uh|um|er)\s+)?(?=at\b))?"
    r"(?:\bat(?:\s+(?:sign|symbol)|\s+the\s+rate(?:\s+of)?)?\b|@)"
)
_EMAIL = re.compile(
    rf"(?i)(?<![a-z0-9'])(?P<lead>[a-z0-9]+\s+)?(?P<local>{_LOCAL}(?:\s+(?:\d+|for|to|too|ate|won))?)[\s,]*(?:(?:um|uh|er)[\s,]+)?{_AT}\s*(?P<domain>{_DOMAIN})(?![a-z0-9])"
)
_GATE = re.compile(r"(?i)(?:\bat\b|@).*?(?:\b(?:dot|period|point)\b|\.\s*[a-z])")
_DOMAIN_GATE = re.compile(
    r"(?i)\b(?:dot|period|point|com|net|org|edu|gov|io|uk|de|fr|ca|info|biz)\b|[a-z0-9]\.[a-z]"
)
_DOMAIN_SEP = re.compile(r"(?i)\s+(?:dot|period|point)\s+|\s*\.\s*")
# Words that can precede a local part but are not part of it.
_NOT_LOCAL = frozenset(
    "is it's its my email e-mail mail address at the to me was and or uh um yes yeah sure okay ok so "
    "sorry that's thats it send reach contact write on in of for by with from".split()
)


# ---- the rule without "at" -------------------------------------------------------------
_LABEL = r"[a-z0-9]+(?:-[a-z0-9]+)*"
# A written dot only between two labels ("example.com"), never a full stop ("yet. It").
_DOT = r"(?:\s+(?:dot|period|point)\s+|\.(?=[a-z0-9]))"
# Top-level domains that are no English word, so "gmail com" can be a domain without its dot.
# Top-level domains said without their dot. Country codes ("de", "ca", "fr") are words of
# some language ("9 rue de la paix"): they count only where "at" was said.
_BARE_TLD = (
    r"(?:com|net|org|edu|gov|io|co\s+uk|org\s+uk|co\s+dot\s+uk|info|biz|uk|de|fr|ca|ie|es|it|nl)"
)
_COUNTRY_TLDS = frozenset("uk de fr ca ie es it nl".split())
# A mail provider's country domain whose "dot" went missing: "orange fr", "web de".
_PROVIDER_COUNTRY = (
    r"(?:orange|free|laposte|sfr|web|gmx|libero|virgilio|alice|telefonica|yahoo|hotmail"
    r"|outlook|live|btinternet|sky)\s+(?:fr|de|it|es|uk|nl|be|ch|at|ca|ie)"
)
# "outlook dot co uk": a country after "co" / "com" / "org" ... whose "dot" went missing.
_COUNTRY_AFTER = r"(?:\s+(?:uk|au|nz|za|jp|br|kr|il|sg|hk|tr|mx|ar|in|ie|id|my|th))?"
_SPOKEN_DOMAIN = re.compile(
    rf"(?i)(?<![a-z0-9'])(?:{_LABEL}(?:{_DOT}{_LABEL})+|{_LABEL}\s+{_BARE_TLD}|{_PROVIDER_COUNTRY})"
    rf"{_COUNTRY_AFTER}"
    r"(?![a-z0-9'])"
)
_DOMAIN_WORDS = re.compile(r"(?i)\s+(?:dot|period|point)\s+|\s*\.\s*|\s+")
_PROVIDERS = frozenset(
    "gmail googlemail yahoo ymail hotmail outlook live msn aol icloud me mac proton protonmail "
    "pm gmx zoho yandex comcast verizon att sbcglobal btinternet sky virginmedia orange web "
    "fastmail hey tutanota mail orange free laposte sfr libero virgilio alice".split()
)
_FULL_STOP = re.compile(r"[.!?]\s")
_NAME_TOKEN = re.compile(r"(?i)[a-z0-9]+(?:'[a-z]+)?|@")
_NAME_SEPARATORS = frozenset("dot underscore dash hyphen period point minus".split())
_NAME_FILLERS = frozenset("um uh er erm".split())
# Words that end a local part when walking back from the domain.
_STOPS = _NOT_LOCAL | frozenset(
    "visit go check see try use website site web page online our your their his her this "
    "there here please thanks thank you we us i i'm you're can could would should will just "
    "also new old same be been am are were has have had do does did not no yes name".split()
)
_MAX_NAME_TOKENS = 20
# What recognizers write for a misheard "at" (see the module docstring). Standing between
# a name and a domain, it is as good as "at" was: "lisa m hat example dot org".
_AT_HEARD = frozenset("add ad had hat better ate".split())
# Misheard "at"s that are common words in their own right: they need a local part that
# can only be an address's ("gary dot b and example dot com", "j smith 70 that ...").
_AT_HEARD_WEAK = frozenset("that and an".split())
_ADDRESS_LIKE = re.compile(
    r"(?i)(?<![a-z])(?:dot|underscore|dash|hyphen|period)(?![a-z])|[._\-]|\d|(?<![a-z'])[a-z](?![a-z'])"
)
# Words after which "at" is a place or a glance, not an address: "looking at acme dot com".
_NOT_BEFORE_AT = frozenset(
    "look looks looking looked stare staring glance glancing arrive arrives arrived "
    "stay staying stayed work works working worked live lives living based shop shopping "
    "shopped meet meeting bought ordered booked listed sold available online ate eat eating "
    "dined dining".split()
)
_LETTERS = re.compile(r"(?i)[a-z]+")


def _name_like(text: str, start: int, end: int) -> bool:
    """The local part holds a word that may be a name (not a stop word, not a letter)."""
    return any(
        len(w) > 1 and w.lower() not in _STOPS and w.lower() not in _NAME_SEPARATORS
        for w in _LETTERS.findall(text, start, end)
    )


def _address_like(text: str, start: int, end: int, slot: str) -> bool:
    """The local part (up to the slot word) has a separator, a digit or a spelled letter."""
    cut = text.lower().rfind(slot, start, end)
    return _ADDRESS_LIKE.search(text, start, cut if cut > start else end) is not None


def _place_not_address(text: str, start: int, end: int, slot: str = "") -> bool:
    """The local part (before ``slot``, the word where "at" stands) ends in a word like
    "looking" and holds nothing only an address has: "at" means somewhere."""
    words = [w.lower() for w in _LETTERS.findall(text, start, end)]
    if slot and words and words[-1] == slot:
        words.pop()
    return bool(words) and words[-1] in _NOT_BEFORE_AT and not _address_like(text, start, end, slot)


_DIGIT_HOMOPHONES = frozenset("for to too ate won".split())


def _digit_heard(toks: list[re.Match[str]], i: int) -> bool:
    """A digit misheard as a word, after a number: "smith seventy for at outlook"."""
    return toks[i].group().lower() in _DIGIT_HOMOPHONES and i > 0 and toks[i - 1].group().isdigit()


def _local_start(text: str, end: int) -> tuple[int, str] | None:
    """Where the local part before a domain starting at ``end`` begins, and the word that
    stands where "at" should be ("" if the local part runs straight into the domain)."""
    toks = list(_NAME_TOKEN.finditer(text, max(0, end - 200), end))
    if not toks or text[toks[-1].end() : end].strip():
        return None
    slot = toks[-1].group().lower()
    start = None
    for i in range(len(toks) - 2, max(-1, len(toks) - 2 - _MAX_NAME_TOKENS), -1):
        tok = toks[i]
        gap = text[tok.end() : toks[i + 1].start()]
        if gap.strip(" \t_.-") or _FULL_STOP.search(gap):
            break  # punctuation: the sentence before
        word = tok.group().lower()
        if word in _NAME_FILLERS or word in _NAME_SEPARATORS:
            continue
        if word in _STOPS and len(word) > 1 and not _digit_heard(toks, i):
            break  # but a single letter is spelled ("k i m"), "70 for" is 74
        start = tok.start()
    if start is None:
        if slot in _STOPS:
            return None
        return toks[-1].start(), ""  # "at" missing: the slot is the local part's last word
    return start, slot


def unfinished_address_start(text: str) -> int | None:
    """Where a spoken address still being said may start at the end of ``text`` (a
    partial): the trailing run of name-like words, spelled letters, numbers, separators
    and one word where "at" may stand. None if the text ends in no such word."""
    toks = list(_NAME_TOKEN.finditer(text, max(0, len(text) - 300)))
    start = None
    slot_used = False
    for i in range(len(toks) - 1, max(-1, len(toks) - 1 - _MAX_NAME_TOKENS), -1):
        tok = toks[i]
        after = text[tok.end() : toks[i + 1].start() if i + 1 < len(toks) else len(text)]
        if (after.strip(" \t_.-,") or _FULL_STOP.search(after)) and i + 1 < len(toks):
            break  # punctuation between: the sentence before
        if after.strip(" \t_.-,?!") and i + 1 == len(toks):
            return None  # the partial ends in something else ("... [EMAIL_ADDRESS]")
        word = tok.group().lower()
        if word in _NAME_FILLERS or word in _NAME_SEPARATORS:
            start = tok.start() if start is not None else start
            continue
        if word in _STOPS and len(word) > 1:
            if slot_used or start is None:
                break
            slot_used = True  # "john smith that gmail": "that" may be the misheard "at"
            continue
        start = tok.start()
    return start


class SpokenEmailRecognizer(SpeechRecognizer):
    ENTITY = "EMAIL_ADDRESS"
    CONTEXT = EMAIL_CUES

    def __init__(
        self, has_public_suffix: Callable[[str], bool], supported_language: str = "en"
    ) -> None:
        self._has_suffix = has_public_suffix
        super().__init__(supported_language)

    def find(self, text: str) -> list[tuple[int, int, float]]:
        # Most utterances hold no "at"/"@" followed later by a dot: skip the big regex.
        if not _GATE.search(text):
            return self._without_at(text) if _DOMAIN_GATE.search(text) else []
        found = []
        pos = 0
        while (m := _EMAIL.search(text, pos)) is not None:
            domain = _DOMAIN_SEP.sub(".", m.group("domain"))
            if not self._has_suffix(domain):
                pos = m.start("local") + 1
                continue
            start = m.start("local")
            lead = m.group("lead")
            if lead and lead.strip().lower() not in _NOT_LOCAL:
                start = m.start("lead")
            place = "@" not in m.group() and _place_not_address(text, start, m.end("local"))
            found.append((start, m.end(), 0.3 if place else 0.8))
            pos = m.end()
        best: dict[tuple[int, int], float] = {}
        for start, end, score in found + self._without_at(text):
            best[(start, end)] = max(score, best.get((start, end), 0.0))
        return [(start, end, score) for (start, end), score in best.items()]

    def _without_at(self, text: str) -> list[tuple[int, int, float]]:
        """The rule that needs neither "at" nor every "dot" (module docstring)."""
        found = []
        for m in _SPOKEN_DOMAIN.finditer(text):
            labels = [w for w in _DOMAIN_WORDS.split(m.group().lower()) if w]
            if not self._has_suffix(".".join(labels)):
                continue
            local = _local_start(text, m.start())
            if local is None:
                continue
            start, slot = local
            bare_country = (
                len(labels) == 2 and labels[1] in _COUNTRY_TLDS and "dot" not in m.group()
            )
            if bare_country and slot not in ("at", "@") and labels[0] not in _PROVIDERS:
                continue  # "9 rue de la paix": no address without "at" or a dot
            if (slot == "at" or slot in _AT_HEARD) and _place_not_address(
                text, start, m.start(), slot
            ):
                score = 0.3
            elif slot in ("at", "@"):
                score = 0.8
            elif (
                labels[0] in _PROVIDERS
                or (slot in _AT_HEARD and _name_like(text, start, m.start()))
                or (slot in _AT_HEARD_WEAK and _address_like(text, start, m.start(), slot))
            ):
                score = 0.6
            else:
                score = 0.3
            found.append((start, m.end(), score))
        return found
