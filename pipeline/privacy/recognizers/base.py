"""The base of callstream's recognizers: Presidio ``EntityRecognizer`` with no model.

Each recognizer finds one entity type in the *normalized* text (numerals, not digit
words; see ``pipeline.privacy.spoken_numbers``) and can be tested alone with
``recognizer.analyze(text, entities=None, nlp_artifacts=None)``. Ambiguous matches get a
score below the Redactor's threshold and rely on Presidio's context enhancer (words near
the match, or words the session passes from the previous utterances) to be redacted.
"""

from __future__ import annotations

import re

from presidio_analyzer import EntityRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

from .digit_runs import result, words_before

# Lift a guess (a score from 0.2 up to the threshold) by its context words, as Presidio's
# enhancer would: +0.35, at least the threshold. 0.1 marks a match that needs more than
# a word nearby (a year as a security code), and is left to the enhancer.
_LIFTABLE, _LIFT_BELOW, _LIFT = 0.2, 0.4, 0.35
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")
#: Words that start like a cue but are none: "Caller:" labels a speaker.
NOT_CUES = frozenset({"caller", "callers"})
_LETTER_NAMES = {"see": "c", "vee": "v", "ess": "s", "en": "n", "dee": "d", "aye": "a"}
_LETTER_NAME = re.compile(r"(?i)\b(?:see|vee|ess|en|dee|aye)\b")
_SPELLED = re.compile(r"(?<![A-Za-z'])[A-Za-z](?: [A-Za-z]){1,3}(?![A-Za-z'])")

__all__ = ["SpeechRecognizer"]


class SpeechRecognizer(EntityRecognizer):
    ENTITY: str = ""
    CONTEXT: tuple[str, ...] = ()

    def __init__(self, supported_language: str = "en") -> None:
        super().__init__(
            supported_entities=[self.ENTITY],
            name=type(self).__name__,
            supported_language=supported_language,
            context=list(self.CONTEXT),
        )

    def load(self) -> None:  # nothing to load: patterns and checksums only
        pass

    def analyze(
        self,
        text: str,
        entities: list[str] | None = None,
        nlp_artifacts: NlpArtifacts | None = None,
    ) -> list[RecognizerResult]:
        found = [result(self, self.ENTITY, s, e, score) for s, e, score in self.find(text)]
        if self.CONTEXT:
            for r in found:
                if _LIFTABLE <= r.score < _LIFT_BELOW and self._cued(text, r.start, r.end):
                    r.score = max(r.score + _LIFT, _LIFT_BELOW)
                    r.recognition_metadata[RecognizerResult.IS_SCORE_ENHANCED_BY_CONTEXT_KEY] = True
        return found

    def _cued(self, text: str, start: int, end: int) -> bool:
        """A context word among the four words before the match or the six after it.

        Presidio's context enhancer does this too, but skips the words spaCy calls stop
        words, and some of ours are: "call" (me back on ...), "the code on the *back*",
        "valid *thru*", "the number on the *front*". So the words in the text are judged
        here; the enhancer still adds the words of the last turns.
        """
        near = words_before(text, start, 4) + [w.lower() for w in _WORD.findall(text, end)[:6]]
        # A cue spelled out letter by letter counts as the word: "c v v", "see vee vee".
        before = _LETTER_NAME.sub(
            lambda m: _LETTER_NAMES[m.group().lower()], text[max(0, start - 30) : start]
        )
        spelled = _SPELLED.findall(before)
        near += [s.replace(" ", "").lower() for s in spelled]
        # Words that start with a cue ("expires", "digits"), not words that hold one
        # ("cancelled" is no "cell").
        return any(w.startswith(c) for w in near if w not in NOT_CUES for c in self.CONTEXT)

    def find(self, text: str) -> list[tuple[int, int, float]]:
        """Spans (start, end, score) of this entity in ``text``."""
        raise NotImplementedError
