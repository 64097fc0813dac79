"""Street addresses: a house number, up to three name words and a street type.

"42 elm street", "one two three main street apartment four" (normalized to
"123 main street apartment 4"), "1600 Pennsylvania Avenue, Suite 300", "flat 7 29 harbour
road", and the street type first as in French, Spanish or Italian ("9 rue de la paix").
A town after the street is part of it when the utterance ends there or a post code
follows (written "M14 4BT" or spelled "m one four four b t"); a post code on its own
after "postcode" / "zip code" is one too. The name words
may not be little words, so "3 items on the way" is not an address. A digit misheard as
a word in the house or unit number ("won 23 main street", "90 to maple drive", "suite
won 100", "send it to to 21 baker street") and a corrected unit ("unit 201 sorry 204") belong to the address.
"""

from __future__ import annotations

import re

from .base import SpeechRecognizer
from .person_intro import NOT_NAME_WORDS

__all__ = ["StreetAddressRecognizer"]

_TYPES = (
    "street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl|terrace"
    "|circle|cir|parkway|pkwy|highway|hwy|square|sq|trail|crescent|close|row|alley|plaza|walk|grove"
    "|view|park|gardens|gdns|mews|hill|rise|green|quay|wharf|heights|meadows|vale|villas|gate|grange"
)
_LITTLE = r"(?:on|the|in|at|of|to|a|an|my|your|and|is|are|was|for|by|with|from|more|days|weeks|items|boxes|minutes|hours|people|times)\b"
_NAME_WORD = rf"(?!{_LITTLE})[a-z][a-z'.\-]*"
_ORDINAL = r"\d+(?:st|nd|rd|th|\s+(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth))"
# A digit the recognizer wrote as a word ("won two three main street", "suite won 100").
_HOMOPHONE = r"(?:for|to|too|ate|won|tree|fife)"
_UNIT = rf"(?:,?\s*(?:apartment|apt|unit|suite|ste|flat|floor|number|no|#)\.?\s*(?:[a-z]\s?)?(?:(?:{_HOMOPHONE}\s)?\d+(?:\s\d{{1,2}}\b)?|{_HOMOPHONE}\b)(?:\s?[a-z]\b)?(?:\s+sorry\s+\d+)?)"
# The town and the post code after the street, when a post code ends them: "..., Springfield,
# IL 62704", "springfield illinois 62704", "London NW1 6XE". (A town alone is a guess.)
_POSTCODE = (
    r"(?:\d{5}(?:-\d{4})?|[a-z]{1,2}\d[a-z\d]?\s?\d[a-z]{2}"
    # spelled: "s w 1 a 2 a a", "m 14 4 b t"
    r"|[a-z](?:\s[a-z])?\s\d{1,2}(?:\s?[a-z])?(?:\s?\d)?\s[a-z]\s[a-z])\b"
)
_TOWN = rf"(?:,?\s+(?:{_NAME_WORD},?\s+){{0,3}}{_POSTCODE})"
# "flat 7", "apartment 4b" before the house number.
_UNIT_FIRST = rf"(?:(?:flat|apartment|apt|unit|suite)\.?\s+(?:(?:{_HOMOPHONE}\s)?(?:\d+|[a-z])\s?[a-z]?|{_HOMOPHONE}),?\s+)?"
# Street types that come before the name, and the name's little words ("de la").
_TYPE_FIRST = re.compile(
    r"(?i)(?<![\w])\d{1,5}(?:\s?(?:bis|ter|[a-z]))?,?\s+"
    r"(?:rue|avenue|av|boulevard|bd|place|all[ée]e|chemin|quai|impasse|calle|avenida|via|viale"
    r"|piazza|corso|largo|rua)\s+(?:(?:de|du|des|la|le|les|del|della|di|da|dos|das|l')\s*)*"
    r"[a-z\u00c0-\u024f][\w'\-]*(?:\s+(?!\d)[a-z\u00c0-\u024f][\w'\-]*){0,3}?"
    r"(?:,?\s+\d{4,5}(?:\s+[a-z\u00c0-\u024f][\w'\-]*)?)?(?![\w'])"
)
# Post codes after a town: written (UK, Irish Eircode, Canadian, US ZIP, Australian four
# digits after a state) or said a letter and a number at a time ("m 5 h 1 j 8", "h g 11 e zed").
_CODE_AFTER_TOWN = re.compile(
    r"(?i),?\s+(?:(?:[a-z]{1,2}\d[a-z\d]?\s?\d[a-z]{2}|[a-z]\d{2}\s?[a-z\d]{4}|[a-z]\d[a-z]\s?\d[a-z]\d"
    r"|\d{4,5}(?:-\d{4}|\s(?:for|to|too|ate|won))?|\d{1,2}|too|won|ate)(?![\w'])"  # "dublin too": district 2
    r"|(?:[a-z]|zed|\d{1,2})(?:[,\s]+(?:(?:um|uh|er)[,\s]+)?(?:[a-z]|zed|\d{1,2}|for|won|to|too|ate|tree|fife)(?![\w'])){3,7})"
)
_POSTCODE_ALONE = re.compile(
    r"(?i)\b(?:post\s?code|zip(?:\s?code)?|postal\s+code|eircode)(?:\s+is|'s|\s*:)?\s+"
    r"((?:[a-z]|zed|\d{1,5})(?:\s+(?:[a-z]|zed|\d{1,3})(?![\w'])){2,7}|[a-z]{1,2}\d[a-z\d]?\s?\d[a-z]{2}"
    r"|[a-z]\d{2}\s?[a-z\d]{4}|\d{5}(?:-\d{4})?)"
)
_PO_BOX = re.compile(r"(?i)\bp\.?\s?o\.?\s+box\s+\d+")
_NOT_TOWN = NOT_NAME_WORDS | frozenset(
    "tomorrow today tonight yesterday now later soon instead though too either near next "
    "opposite behind beside across between until till because since unless every twice "
    "during while whereas although".split()
)
_TOWN_WORD = re.compile(r"(?i),?\s+(co\.|[a-z][a-z'\-]+)(?![\w'])")
_MAX_TOWN_WORDS = 4
_TOWN_ENDS = re.compile(r"\s*(?:[.,!?;:|)]|$)")
# The house number: digits (a digit misheard as a word may lead: "won 23", "90 to"), or
# a misheard digit alone after "is"/"at"/"to" ("my address is ate harcourt terrace").
_NUMBER = (
    rf"(?:(?:(?:for|too|ate|won)\s(?:{_HOMOPHONE}\s)?|(?<=\b(?:to|at|on|in)\s)(?:to|for)\s)?"
    rf"(?:\d{{1,6}}\s+sorry\s+)?\d{{1,6}}(?:\s(?:\d{{1,3}}|{_HOMOPHONE}(?=\s\d))){{0,2}}"
    rf"(?:\s{_HOMOPHONE}(?=\s[a-z]))?(?:\s?[a-z])?"
    rf"|(?<=\b(?:is|at|to)\s)(?:ate|won|for|too|tree|fife))"
)
_ADDRESS = re.compile(
    rf"(?i)(?<![\w])(?<!\ba\s)(?<!\ban\s){_UNIT_FIRST}{_NUMBER}\s+(?:(?:north|south|east|west|n|s|e|w)\.?\s+)?"
    rf"(?:(?:{_ORDINAL}|{_NAME_WORD})\s+){{1,3}}(?:{_TYPES})\b\.?{_UNIT}?{_TOWN}?"
)


def _town_end(text: str, end: int) -> int:
    """Where the town, county, state and post code after a street end: up to four words
    that are not common ones ("howth dublin", "new south wales", "Co. Wicklow"), taken
    only where a post code, a district number, a comma or full stop, or the end of the
    utterance follows them ("42 elm street until friday" keeps "until")."""
    pos = end
    for _ in range(_MAX_TOWN_WORDS):
        town = _TOWN_WORD.match(text, pos)
        if town is None or town.group(1).lower() in _NOT_TOWN:
            break
        pos = town.end()
    code = _CODE_AFTER_TOWN.match(text, pos)
    if code is not None:
        return code.end()
    after = _TOWN_WORD.match(text, pos)
    # The town words end where the sentence does, or where a common word takes over
    # ("... howth dublin thanks", "... london on friday"); not at an ordinary word.
    if _TOWN_ENDS.match(text, pos) or (
        after is not None and after.group(1).lower() in NOT_NAME_WORDS
    ):
        return pos
    return end


class StreetAddressRecognizer(SpeechRecognizer):
    ENTITY = "STREET_ADDRESS"
    CONTEXT = ("live", "address", "street", "send", "ship", "deliver", "mail", "move", "moved")

    def find(self, text: str) -> list[tuple[int, int, float]]:
        found = []
        for m in _ADDRESS.finditer(text):
            found.append((m.start(), _town_end(text, m.end()), 0.6))
        for m in _PO_BOX.finditer(text):
            found.append((m.start(), _town_end(text, m.end()), 0.6))
        found += [(m.start(), m.end(), 0.6) for m in _TYPE_FIRST.finditer(text)]
        found += [(*m.span(1), 0.6) for m in _POSTCODE_ALONE.finditer(text)]
        return found
