"""Sentiment of one redacted utterance, locally with VADER.

VADER is a lexicon and rules: no model to download, about a tenth of a millisecond per
utterance, good enough to tell an angry customer from a satisfied one. Redaction tags
("[CREDIT_CARD]") are not words it knows, so they do not sway the score.
"""

from __future__ import annotations

from typing import NamedTuple

from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

__all__ = ["Sentiment", "LocalSentiment", "label_for"]

# VADER's cost grows faster than the text (45 ms for 1,000 words, 0.5 ms for 80): an
# utterance is rated on its last this-many characters, where a turn's feeling usually ends.
MAX_CHARS = 600
# VADER's own recommended cut-offs on the compound score.
POSITIVE_AT = 0.05
NEGATIVE_AT = -0.05


class Sentiment(NamedTuple):
    label: str  # positive | neutral | negative
    score: float  # -1 .. 1


def label_for(score: float) -> str:
    if score >= POSITIVE_AT:
        return "positive"
    if score <= NEGATIVE_AT:
        return "negative"
    return "neutral"


class LocalSentiment:
    name = "local"

    def __init__(self) -> None:
        self._vader = SentimentIntensityAnalyzer()

    def score(self, text: str) -> Sentiment:
        if len(text) > MAX_CHARS:
            text = text[-MAX_CHARS:].split(" ", 1)[-1]
        compound = float(self._vader.polarity_scores(text)["compound"])
        return Sentiment(label_for(compound), round(compound, 3))
