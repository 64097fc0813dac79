"""Street addresses: a house number, up to three name words and a street type.

"42 elm street", "one two three main street apartment four" (normalized to
"123 main street apartment 4"), "1600 Pennsylvania Avenue, Suite 300". The name words
may not be little words, so "3 items on the way" is not an address. A digit misheard as
a word in the house or unit number ("won 23 main street", "90 to maple drive", "suite
won 100", "send it to to 21 baker street") and a corrected unit ("unit 201 sorry 204") belong to the address.
"""

from __future__ import annotations

import re

from .base import SpeechRecognizer

__all__ = ["StreetAddressRecognizer"]

_TYPES = (
    "street|st|avenue|ave|road|rd|boulevard|blvd|lane|ln|drive|dr|court|ct|way|place|pl|terrace"
    "|circle|cir|parkway|pkwy|highway|hwy|square|sq|trail|crescent|close|row|alley|plaza|walk|grove"
)
_LITTLE = r"(?:on|the|in|at|of|to|a|an|my|your|and|is|are|was|for|by|with|from|more|days|weeks|items|boxes|minutes|hours|people|times)\b"
_NAME_WORD = rf"(?!{_LITTLE})[a-z][a-z'.\-]*"
_ORDINAL = r"\d+(?:st|nd|rd|th|\s+(?:first|second|third|fourth|fifth|sixth|seventh|eighth|ninth))"
# A digit the recognizer wrote as a word ("won two three main street", "suite won 100").
_HOMOPHONE = r"(?:for|to|too|ate|won)"
_UNIT = rf"(?:,?\s*(?:apartment|apt|unit|suite|ste|flat|number|no|#)\.?\s*(?:[a-z]\s?)?(?:(?:{_HOMOPHONE}\s)?\d+|{_HOMOPHONE}\b)(?:\s?[a-z]\b)?(?:\s+sorry\s+\d+)?)"
# The town and the post code after the street, when a post code ends them: "..., Springfield,
# IL 62704", "springfield illinois 62704", "London NW1 6XE". (A town alone is a guess.)
_POSTCODE = r"(?:\d{5}(?:-\d{4})?|[a-z]{1,2}\d[a-z\d]?\s?\d[a-z]{2})\b"
_TOWN = rf"(?:,?\s+(?:{_NAME_WORD},?\s+){{0,3}}{_POSTCODE})"
_ADDRESS = re.compile(
    rf"(?i)(?<![\w])(?:(?:for|too|ate|won)\s(?:{_HOMOPHONE}\s)?|(?<=\b(?:to|at|on|in)\s)(?:to|for)\s)?(?:\d{{1,6}}\s+sorry\s+)?\d{{1,6}}(?:\s(?:\d{{1,3}}|{_HOMOPHONE}(?=\s\d))){{0,2}}(?:\s{_HOMOPHONE}(?=\s[a-z]))?(?:\s?[a-z])?\s+(?:(?:north|south|east|west|n|s|e|w)\.?\s+)?"
    rf"(?:(?:{_ORDINAL}|{_NAME_WORD})\s+){{1,3}}(?:{_TYPES})\b\.?{_UNIT}?{_TOWN}?"
)


class StreetAddressRecognizer(SpeechRecognizer):
    ENTITY = "STREET_ADDRESS"
    CONTEXT = ("live", "address", "street", "send", "ship", "deliver", "mail", "move", "moved")

    def find(self, text: str) -> list[tuple[int, int, float]]:
        return [(m.start(), m.end(), 0.6) for m in _ADDRESS.finditer(text)]
