"""E-mail addresses as people say them: "john dot smith at contoso dot com".

Presidio's e-mail recognizer needs "@" and dots; a recognizer writes the words. The
local part is words joined by spoken or written separators (dot, underscore, dash),
or letters spelled one by one, plus at most one plain word before it ("john smith at
gmail dot com" is johnsmith@...). The domain must end in a real top-level domain
(checked against the bundled public-suffix list), so "meet me at the lobby" is not one.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .base import SpeechRecognizer

__all__ = ["SpokenEmailRecognizer"]

_SEP = r"(?:\s+(?:dot|period|point|underscore|dash|hyphen|minus)\s+|\s*[._\-]\s*)"
_WORD = r"[a-z0-9]+"
_SPELLED = r"(?:[a-z0-9]\s+){1,}[a-z0-9](?![a-z0-9])"
_LOCAL = rf"(?:{_SPELLED}|{_WORD})(?:{_SEP}(?:{_SPELLED}|{_WORD}))*"
# "bishop law dot com": a spoken domain label may come as two words.
_DOMAIN = rf"(?:{_WORD}\s+)?{_WORD}(?:(?:\s+(?:dot|period|point)\s+|\s*\.\s*){_WORD})+"
_EMAIL = re.compile(
    rf"(?i)(?<![a-z0-9'])(?P<lead>[a-z0-9]+\s+)?(?P<local>{_LOCAL}(?:\s+\d+)?)\s*(?:\bat(?:\s+(?:sign|symbol))?\b|@)\s*(?P<domain>{_DOMAIN})(?![a-z0-9])"
)
_GATE = re.compile(r"(?i)(?:\bat\b|@).*?(?:\b(?:dot|period|point)\b|\.\s*[a-z])")
_DOMAIN_SEP = re.compile(r"(?i)\s+(?:dot|period|point)\s+|\s*\.\s*")
# Words that can precede a local part but are not part of it.
_NOT_LOCAL = frozenset(
    "is it's its my email e-mail mail address at the to me was and or uh um yes yeah sure okay ok so "
    "sorry that's thats it send reach contact write on in of for by with from".split()
)


class SpokenEmailRecognizer(SpeechRecognizer):
    ENTITY = "EMAIL_ADDRESS"
    CONTEXT = ("email", "mail", "address")

    def __init__(
        self, has_public_suffix: Callable[[str], bool], supported_language: str = "en"
    ) -> None:
        self._has_suffix = has_public_suffix
        super().__init__(supported_language)

    def find(self, text: str) -> list[tuple[int, int, float]]:
        # Most utterances hold no "at"/"@" followed later by a dot: skip the big regex.
        if not _GATE.search(text):
            return []
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
            found.append((start, m.end(), 0.8))
            pos = m.end()
        return found
