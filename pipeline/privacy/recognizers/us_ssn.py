"""US social security numbers, written or spoken: nine digits in any grouping.

"536-22-8726" is strong on its own; nine spoken digits need "social" or "SSN" near
them (or in the question just asked) because a nine-digit number is also an order,
an account or a zip+4. Numbers the SSA never issues (area 000, 666 or 9xx, group 00,
serial 0000) are not SSNs.
"""

from __future__ import annotations

import re

from .base import SpeechRecognizer
from .readings import judge_readings

__all__ = ["UsSsnSpeechRecognizer"]

_DASHED = re.compile(r"^\d{3}[- ]\d{2}[- ]\d{4}$")


def _issuable(d: str) -> bool:
    return not (d[:3] in ("000", "666") or d[0] == "9" or d[3:5] == "00" or d[5:] == "0000")


class UsSsnSpeechRecognizer(SpeechRecognizer):
    ENTITY = "US_SSN"
    CONTEXT = ("social", "ssn", "ss", "security", "tax")

    def find(self, text: str) -> list[tuple[int, int, float]]:
        def judge(runs):
            for run in runs:
                if len(run.digits) == 9 and _issuable(run.digits):
                    pos = run.positions  # "601-72-558 won": dashed, the last digit misheard
                    written = _DASHED.match(text[run.start : run.end]) is not None or (
                        "-" in text[pos[2] : pos[3]] and "-" in text[pos[4] : pos[5]]
                    )
                    yield run.start, run.end, 0.5 if written else 0.3

        return judge_readings(text, judge)
