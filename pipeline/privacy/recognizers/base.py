"""The base of callstream's recognizers: Presidio ``EntityRecognizer`` with no model.

Each recognizer finds one entity type in the *normalized* text (numerals, not digit
words; see ``pipeline.privacy.spoken_numbers``) and can be tested alone with
``recognizer.analyze(text, entities=None, nlp_artifacts=None)``. Ambiguous matches get a
score below the Redactor's threshold and rely on Presidio's context enhancer (words near
the match, or words the session passes from the previous utterances) to be redacted.
"""

from __future__ import annotations

from presidio_analyzer import EntityRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

from .digit_runs import result

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
        return [result(self, self.ENTITY, s, e, score) for s, e, score in self.find(text)]

    def find(self, text: str) -> list[tuple[int, int, float]]:
        """Spans (start, end, score) of this entity in ``text``."""
        raise NotImplementedError
