"""Card security codes (CVV, CVC, CID): a run of exactly three or four digits.

Three digits are everywhere (prices, rooms, times), so a match counts only with its
context: "security code", "CVV", "the three digit code on the back", in the same utterance or in
the question just asked.
"""

from __future__ import annotations

import re

from .base import SpeechRecognizer
from .digit_runs import is_measure, words_before
from .readings import judge_readings

__all__ = ["CardSecurityCodeRecognizer"]

# "back in 2019" is a year: a four-digit code that looks like one scores lower, but the
# context enhancer still lifts it over the threshold (0.1 + 0.35) when asked for.
_YEAR = re.compile(r"^(?:19|20)\d\d$")
# "code" is a cue, but these codes are not the card's: "area code 212", "zip code".
_OTHER_CODES = frozenset(
    "area zip postal post promo promotional discount coupon access country door gate "
    "confirmation tracking booking reference voucher gift error fault status".split()
)


class CardSecurityCodeRecognizer(SpeechRecognizer):
    ENTITY = "CARD_SECURITY_CODE"
    CONTEXT = (
        "security",
        "cvv",
        "cvc",
        "csc",
        "cid",
        "verification",
        "digit",
        "back",
        "code",
        "signature",  # "the last three on the signature strip"
        "reverse",
    )

    def find(self, text: str) -> list[tuple[int, int, float]]:
        return judge_readings(
            text,
            lambda runs: [
                (r.start, r.end, 0.1 if _YEAR.match(r.digits) else 0.3)
                for r in runs
                if len(r.digits) in (3, 4)
                and not is_measure(text, r.start, r.end)
                and not _OTHER_CODES.intersection(words_before(text, r.start, 4))
            ],
        )
