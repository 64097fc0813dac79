"""Inside a payment window every digit is card data, whatever the other recognizers think.

The session adds this recognizer to an utterance's analysis while the payment guard's
window is open: a misheard card digit, a partial expiry, a security code with no context
word: all of it goes.
"""

from __future__ import annotations

from .base import SpeechRecognizer
from .digit_runs import find_runs

__all__ = ["PaymentDigitsRecognizer"]


class PaymentDigitsRecognizer(SpeechRecognizer):
    ENTITY = "DIGITS"

    def find(self, text: str) -> list[tuple[int, int, float]]:
        return [(r.start, r.end, 0.95) for r in find_runs(text)]
