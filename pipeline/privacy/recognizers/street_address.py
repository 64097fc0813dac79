"""Street addresses: a house number, up to three name words and a street type.

"42 elm street", "one two three main street apartment four" (normalized to
"123 main street apartment 4"), "1600 Pennsylvania Avenue, Suite 300". The name words
may not be little words, so "3 items on the way" is not an address.
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
_UNIT = r"(?:,?\s*(?:apartment|apt|unit|suite|ste|flat|number|no|#)\.?\s*(?:[a-z]\s?)?\d+(?:\s?[a-z]\b)?)"
_ADDRESS = re.compile(
    rf"(?i)(?<![\w])\d{{1,6}}(?:\s\d{{1,3}}){{0,2}}(?:\s?[a-z])?\s+(?:(?:north|south|east|west|n|s|e|w)\.?\s+)?"
    rf"(?:(?:{_ORDINAL}|{_NAME_WORD})\s+){{1,3}}(?:{_TYPES})\b\.?{_UNIT}?"
)


class StreetAddressRecognizer(SpeechRecognizer):
    ENTITY = "STREET_ADDRESS"
    CONTEXT = ("live", "address", "street", "send", "ship", "deliver", "mail", "move", "moved")

    def find(self, text: str) -> list[tuple[int, int, float]]:
        return [(m.start(), m.end(), 0.6) for m in _ADDRESS.finditer(text)]
