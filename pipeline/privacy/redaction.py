"""The privacy boundary: Presidio on a blank spaCy pipeline, fully offline.

Raw transcript text exists only in memory between the speech worker and this module
(README, Architecture: invariant 1). Everything downstream (events, store, exports, logs,
LLM prompts) sees ``RedactionResult.text`` only.

Design choices, and why:

- **Blank spaCy pipeline.** There is no spaCy model on this machine's package mirror and
  nothing may be downloaded at run time, so Presidio's default engine (``en_core_web_lg``,
  auto-downloaded) is unusable. ``BlankSpacyNlpEngine`` gives Presidio a
  ``spacy.blank(lang)`` tokenizer. NER recognizers (PERSON, LOCATION, ...) therefore
  cannot work and are not registered; a deployment that ships a model can add them.
  A blank pipeline has no lemmatizer, so every ``token.lemma_`` is empty and Presidio's
  context enhancer (which compares *lemmas* with words like "phone", "card", "ssn")
  silently never fired; we fall back to the lower-cased token so context words work.
- **Only pattern/checksum recognizers** (see ``ENTITY_TYPES``). Recognizers whose base
  score is tiny and that depend on context (US bank account, passport, driver licence)
  are left out: on spoken transcripts they mostly produce false positives.
- **Offline tldextract.** Presidio's e-mail recognizer validates the domain with
  ``tldextract.extract``, whose module-level extractor fetches the public-suffix list
  from GitHub on first use (the first call stalls for the DNS/connect timeout, then falls
  back). We validate with our own ``TLDExtract(suffix_list_urls=(), cache_dir=None)``
  that reads only the bundled snapshot, and also replace tldextract's module-level
  extractor so that no other code path in the process can reach for the network.
- **URL matches are word-bounded.** The stock URL patterns have no boundaries:
  "thanks.bye" matched "thanks.by" (.by is a TLD) and came out as "[URL]e".
- **Normalised first** (``pipeline.privacy.normalize``): recognizers read a copy in which
  every digit is ASCII, look-alikes are NFKC'd and invisible characters are gone, and the
  published text is the normalised text with its entities replaced, so a zero-width space
  between a card's digits neither hides the card nor survives into the output.
- **"[ENTITY_TYPE]" tags**, not Presidio's default "<ENTITY_TYPE>": angle brackets
  collide with WebVTT markup in the export.
- **Overlaps are merged before anonymizing** into one span (union, labelled by the
  highest-scoring entity). Presidio's anonymizer drops *contained* results but keeps
  partial overlaps (e.g. URL "john.do" inside an e-mail with a ".do" TLD), which could
  leave a fragment of PII visible; the union never does.
- **Presidio's own logs** are capped at WARNING and stripped of their arguments: its IBAN
  recognizer logs ``"Failed to validate text %s"`` with the candidate text at ERROR level,
  which would put raw PII in our logs. The message template (and so the fact of the
  error) is kept; the argument is not.

Measured on the dev container (2 vCPU, Python 3.11, presidio-analyzer 2.2.366), three
runs each; utterances are call-centre English with a phone number (and, at 80 words, a
second phone number and an e-mail address):

- importing this module (spaCy + Presidio): 1.4-1.9 s; ``Redactor()``: 0.45-0.7 s,
  including a warm-up call that moves ~150 ms of lazy loading (phonenumbers metadata,
  PSL snapshot) off the first real utterance. Hence ``get_redactor()``, one instance
  per process, built by the service in a thread at start-up.
- ``redact`` per call, median / p95 over 300 runs:
  10 words 1.1-1.3 / 1.3-2.0 ms, 30 words 1.2-1.5 / 1.4-2.2 ms,
  80 words 2.9-3.2 / 4.3-5.6 ms; PII-free 10-30 words ~0.3-0.7 ms.
  Phone-number matching (python-phonenumbers over eight regions) is ~75% of it.

Thread-safety: ``redact`` keeps no per-call state on the instance; spaCy's tokenizer and
Presidio's recognizers are read-only after construction, so one instance may be shared
(the service calls it from a single-thread executor anyway, to keep order).
"""

from __future__ import annotations

import logging
import re
import threading
from typing import NamedTuple

from presidio_analyzer import AnalyzerEngine, RecognizerRegistry, RecognizerResult
from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer
from presidio_analyzer.predefined_recognizers import (
    CryptoRecognizer,
    IbanRecognizer,
    IpRecognizer,
    UkNinoRecognizer,
    UsItinRecognizer,
)
from presidio_anonymizer import AnonymizerEngine
from presidio_anonymizer.entities import ConflictResolutionStrategy, OperatorConfig

from models.events import Redaction
from pipeline.privacy.normalize import normalize_text
from pipeline.privacy.presidio_setup import (
    BlankSpacyNlpEngine,
    BoundedUrlRecognizer,
    OfflineEmailRecognizer,
    has_public_suffix,
    make_tldextract_offline,
    quiet_presidio_logs,
)
from pipeline.privacy.recognizers import (
    KnownValuesRecognizer,
    PaymentDigitsRecognizer,
    speech_recognizers,
)
from pipeline.privacy.recognizers.said_numbers import NUMBER_TYPES, SaidNumbersRecognizer
from pipeline.privacy.spoken_numbers import normalize

__all__ = [
    "ENTITY_TYPES",
    "FAILED_PLACEHOLDER",
    "Entity",
    "RedactionPolicy",
    "RedactionResult",
    "Redactor",
    "get_redactor",
]

logger = logging.getLogger(__name__)

#: What ``redact_safe`` publishes instead of the text when redaction fails.
FAILED_PLACEHOLDER = "[REDACTION_FAILED]"

#: Entity types the Redactor detects without per-call help (no NER on a blank pipeline).
ENTITY_TYPES: tuple[str, ...] = (
    "CARD_EXPIRY",
    "CARD_SECURITY_CODE",
    "CREDIT_CARD",
    "CRYPTO",
    "EMAIL_ADDRESS",
    "IBAN_CODE",
    "IP_ADDRESS",
    "PERSON",
    "PHONE_NUMBER",
    "STREET_ADDRESS",
    "UK_NINO",
    "URL",
    "US_ITIN",
    "US_SSN",
)


class RedactionPolicy(NamedTuple):
    """What one utterance's redaction must take into account beyond the text itself.

    - ``all_digits``: a payment window is open; every digit goes.
    - ``known``: the call's known values (``POST /calls/{callId}/known-entities``).
    - ``sticky``: values an earlier partial of the same utterance redacted; they stay
      redacted in later partials and the final even if the recognizers change their mind.
    - ``context``: words of the previous utterances ("and the expiry date?"), which
      lift ambiguous matches (a bare "12 28") over the threshold.
    - ``said``: numbers redacted earlier in the call; a piece of one said again (read
      back, repeated) is that secret again.
    """

    all_digits: bool = False
    known: KnownValuesRecognizer | None = None
    sticky: KnownValuesRecognizer | None = None
    context: tuple[str, ...] = ()
    said: SaidNumbersRecognizer | None = None


_NO_POLICY = RedactionPolicy()


class Entity(NamedTuple):
    """A detected entity; ``start``/``end`` index the *input* text (never published)."""

    type: str
    start: int
    end: int
    score: float


class RedactionResult(NamedTuple):
    """Redacted ``text``; ``redactions`` index ``text``, ``entities`` index the input.

    ``text`` is the *normalised* input (``pipeline.privacy.normalize``: NFKC, invisible
    characters removed) with its entities replaced, so no zero-width character or
    fullwidth look-alike survives into what is published; an entity's input span covers
    the characters the normalisation removed inside it.
    """

    text: str
    redactions: list[Redaction]
    entities: list[Entity]


# ------------------------------------------------------------------------- redactor


_DIGITS = re.compile(r"\d")


def _said_again(text: str, found: list[RecognizerResult]) -> list[RecognizerResult]:
    """Pieces of a number this text already holds, said again in it ("it's 054 26 1114 ...
    so oh five four, two six, one one one four?"): that number again."""
    said = [
        (r.entity_type, "".join(_DIGITS.findall(text[r.start : r.end])))
        for r in found
        if r.entity_type in NUMBER_TYPES
    ]
    recognizer = SaidNumbersRecognizer(said)
    if not recognizer:
        return []
    return [
        r
        for r in recognizer.analyze(text)
        if not any(f.start < r.end and r.start < f.end for f in found)
    ]


def _merge_overlaps(results: list[RecognizerResult]) -> list[RecognizerResult]:
    """Merge overlapping results into their union, labelled by the best-scoring one.

    Privacy first: a partial overlap resolved by trimming could leave part of an
    entity in the clear; the union cannot. Sorted by start, no two results overlap.
    """
    merged: list[RecognizerResult] = []
    for r in sorted(results, key=lambda r: (r.start, -r.end)):
        if merged and r.start < merged[-1].end:
            last = merged[-1]
            best = last if (last.score, last.end - last.start) >= (r.score, r.end - r.start) else r
            merged[-1] = RecognizerResult(
                entity_type=best.entity_type,
                start=last.start,
                end=max(last.end, r.end),
                score=max(last.score, r.score),
            )
        else:
            merged.append(RecognizerResult(r.entity_type, r.start, r.end, r.score))
    return merged


_WARM_UP_TEXT = (
    "call 212 555 0123 or +44 20 7946 0958, card 4111 1111 1111 1111, mail a.b@example.com,"
    " see www.example.com, IBAN GB82 WEST 1234 5698 7654 32, ssn 536-22-8726 from 10.0.0.1"
)


class Redactor:
    """Detects PII with Presidio and replaces each entity with ``[ENTITY_TYPE]``.

    Construction is slow (about half a second after a ~2 s import), so build one per
    process (``get_redactor()``) and reuse it.
    """

    def __init__(self, language: str = "en", score_threshold: float = 0.4) -> None:
        make_tldextract_offline()
        quiet_presidio_logs()
        self.language = language
        self.score_threshold = score_threshold

        # Presidio's stock pattern recognizers for the written shapes they know; cards,
        # SSNs and phone numbers are handled by the speech recognizers (written or
        # spoken), which replace the stock ones, the stock phone matcher (75% of the
        # time) and the UK NHS checksum (which typed US phone numbers as NHS numbers).
        recognizers = [
            CryptoRecognizer(supported_language=language),
            OfflineEmailRecognizer(supported_language=language),
            IbanRecognizer(supported_language=language),
            IpRecognizer(supported_language=language),
            UkNinoRecognizer(supported_language=language),
            BoundedUrlRecognizer(supported_language=language),
            UsItinRecognizer(supported_language=language),
            *speech_recognizers(has_public_suffix, language),
        ]
        registry = RecognizerRegistry(recognizers=recognizers, supported_languages=[language])
        self._analyzer = AnalyzerEngine(
            registry=registry,
            nlp_engine=BlankSpacyNlpEngine(language),
            supported_languages=[language],
            default_score_threshold=score_threshold,
            # Spoken numbers are long: look eight words back ("the three digit code on the
            # back is ...") and three ahead ("... is my card number").
            context_aware_enhancer=LemmaContextAwareEnhancer(
                context_prefix_count=8, context_suffix_count=3
            ),
        )
        self._payment_digits = PaymentDigitsRecognizer(language)
        self._anonymizer = AnonymizerEngine()
        self._operators: dict[str, OperatorConfig] = {}
        # Pay the lazy costs (PSL snapshot, phonenumbers metadata, regex compilation:
        # ~150 ms) now, not on the first utterance of the first call.
        self.redact(_WARM_UP_TEXT)

    @property
    def entity_types(self) -> list[str]:
        """The entity types this instance can detect."""
        return sorted(self._analyzer.get_supported_entities(self.language))

    def _operator(self, entity_type: str) -> OperatorConfig:
        op = self._operators.get(entity_type)
        if op is None:
            op = self._operators[entity_type] = OperatorConfig(
                "replace", {"new_value": f"[{entity_type}]"}
            )
        return op

    def analyze(self, text: str, policy: RedactionPolicy = _NO_POLICY) -> list[RecognizerResult]:
        """Entities in ``text`` (spans of ``text``), merged so that no two overlap."""
        norm = normalize_text(text)
        found = self._analyze(norm.analysis, policy)
        return [
            RecognizerResult(r.entity_type, *norm.to_original(r.start, r.end), r.score)
            for r in found
        ]

    def _analyze(self, text: str, policy: RedactionPolicy) -> list[RecognizerResult]:
        """Entities in normalised ``text`` (its analysis form; ``pipeline.privacy.normalize``)."""
        norm = normalize(text)
        ad_hoc = [r for r in (policy.known, policy.sticky, policy.said) if r]
        if policy.all_digits:
            ad_hoc.append(self._payment_digits)
        found = self._analyzer.analyze(
            text=norm.text,
            language=self.language,
            score_threshold=self.score_threshold,
            ad_hoc_recognizers=ad_hoc or None,
            context=list(policy.context) or None,
        )
        found += _said_again(norm.text, found)
        mapped = []
        for r in found:
            start, end = norm.to_original(r.start, r.end)
            if end > start:
                mapped.append(RecognizerResult(r.entity_type, start, end, r.score))
        return _merge_overlaps(mapped)

    def redact(self, text: str, policy: RedactionPolicy = _NO_POLICY) -> RedactionResult:
        """Redact ``text``; raises on failure (use ``redact_safe`` at the boundary)."""
        if not isinstance(text, str):
            raise TypeError("text must be str")
        if not text:
            return RedactionResult("", [], [])
        if not text.isascii():
            # A lone surrogate (undecodable input read with surrogateescape, `callstream
            # redact`) would make spaCy raise and the whole text a placeholder. Each is one
            # character and so is U+FFFD: every offset stays where it was.
            text = _SURROGATE.sub("\ufffd", text)
        # The privacy boundary reads and publishes the normalised text: no invisible
        # character between a card's digits, no fullwidth "＠" (module docstring).
        norm = normalize_text(text)
        results = self._analyze(norm.analysis, policy)
        if not results:
            return RedactionResult(norm.text, [], [])
        out = self._anonymizer.anonymize(
            text=norm.text,
            analyzer_results=results,
            operators={r.entity_type: self._operator(r.entity_type) for r in results},
            conflict_resolution=ConflictResolutionStrategy.MERGE_SIMILAR_OR_CONTAINED,
            # Keep entities and redactions one-to-one (no merging of "[X] [X]").
            merge_entities_with_spaces=False,
        )
        items = sorted(out.items, key=lambda i: i.start)
        if len(items) != len(results):
            raise RuntimeError("anonymizer output does not match analyzer results")
        redactions: list[Redaction] = []
        entities: list[Entity] = []
        for item, r in zip(items, results, strict=True):
            if out.text[item.start : item.end] != item.text or item.entity_type != r.entity_type:
                raise RuntimeError("redaction span does not point at its tag")
            redactions.append(Redaction(r.entity_type, item.start, item.end))
            start, end = norm.to_original(r.start, r.end)
            entities.append(Entity(r.entity_type, start, end, float(r.score)))
        return RedactionResult(out.text, redactions, entities)

    def redact_safe(self, text: str, policy: RedactionPolicy = _NO_POLICY) -> RedactionResult:
        """Redact, never raising: on any error publish a placeholder, never the raw text.

        Only the exception *type* is logged: messages and tracebacks of failures inside
        the analyzer can carry fragments of the text being analyzed.
        """
        try:
            return self.redact(text, policy)
        except Exception as exc:  # the privacy boundary must not raise
            logger.error("redaction failed (%s); publishing placeholder", type(exc).__name__)
            return RedactionResult(
                FAILED_PLACEHOLDER,
                [Redaction("REDACTION_FAILED", 0, len(FAILED_PLACEHOLDER))],
                [],
            )


_REDACTOR: Redactor | None = None
_REDACTOR_LOCK = threading.Lock()


def get_redactor() -> Redactor:
    """The process-wide default Redactor, built once (construction takes ~0.5 s).

    A lock, not ``functools.cache``: two threads asking at start-up would otherwise
    both build one.
    """
    global _REDACTOR
    if _REDACTOR is None:
        with _REDACTOR_LOCK:
            if _REDACTOR is None:
                _REDACTOR = Redactor()
    return _REDACTOR


_SURROGATE = re.compile("[\ud800-\udfff]")
