"""The privacy boundary: Presidio on a blank spaCy pipeline, fully offline.

Raw transcript text exists only in memory between the speech worker and this module
(ARCHITECTURE.md, invariant 1). Everything downstream (events, store, exports, logs,
LLM prompts) sees ``RedactionResult.text`` only.

Design choices, and why:

- **Blank spaCy pipeline.** There is no spaCy model on this machine's package mirror and
  nothing may be downloaded at run time, so Presidio's default engine (``en_core_web_lg``,
  auto-downloaded) is unusable. ``_BlankSpacyNlpEngine`` gives Presidio a
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

_PRESIDIO_LOGGERS = ("presidio-analyzer", "presidio-anonymizer", "decision_process")

# Before Presidio is imported: its import logs an INFO line ("Using device of type").
for _name in _PRESIDIO_LOGGERS:
    if logging.getLogger(_name).level < logging.WARNING:
        logging.getLogger(_name).setLevel(logging.WARNING)

import spacy  # noqa: E402
import tldextract  # noqa: E402
import tldextract.tldextract  # noqa: E402
from presidio_analyzer import AnalyzerEngine, Pattern, RecognizerRegistry, RecognizerResult  # noqa: E402
from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer  # noqa: E402
from presidio_analyzer.nlp_engine import NlpArtifacts, SlimSpacyNlpEngine  # noqa: E402
from presidio_analyzer.predefined_recognizers import (  # noqa: E402
    CryptoRecognizer,
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    UkNinoRecognizer,
    UrlRecognizer,
    UsItinRecognizer,
)
from presidio_anonymizer import AnonymizerEngine  # noqa: E402
from presidio_anonymizer.entities import ConflictResolutionStrategy, OperatorConfig  # noqa: E402
from spacy.attrs import IDX, LENGTH  # noqa: E402
from spacy.tokens import Doc  # noqa: E402

from models.events import Redaction  # noqa: E402
from pipeline.privacy.recognizers import (  # noqa: E402
    KnownValuesRecognizer,
    PaymentDigitsRecognizer,
    speech_recognizers,
)
from pipeline.privacy.spoken_numbers import normalize, trailing_run_start  # noqa: E402

__all__ = [
    "ENTITY_TYPES",
    "FAILED_PLACEHOLDER",
    "Entity",
    "RedactionPolicy",
    "RedactionResult",
    "Redactor",
    "StickyValues",
    "get_redactor",
    "hold_back_unfinished",
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
    """

    all_digits: bool = False
    known: KnownValuesRecognizer | None = None
    sticky: KnownValuesRecognizer | None = None
    context: tuple[str, ...] = ()


_NO_POLICY = RedactionPolicy()


class Entity(NamedTuple):
    """A detected entity; ``start``/``end`` index the *input* text (never published)."""

    type: str
    start: int
    end: int
    score: float


class RedactionResult(NamedTuple):
    """Redacted ``text``; ``redactions`` index ``text``, ``entities`` index the input."""

    text: str
    redactions: list[Redaction]
    entities: list[Entity]


# --------------------------------------------------------------------------- offline


def _offline_tld_extractor() -> tldextract.TLDExtract:
    """A TLDExtract that can only read the public-suffix snapshot bundled in the wheel.

    No URLs means no HTTP; ``cache_dir=None`` means no disk cache either, so the
    behaviour does not depend on whatever a previous run left in ``~/.cache``.
    """
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)


_TLD_EXTRACTOR = _offline_tld_extractor()


def _has_public_suffix(domain: str) -> bool:
    """True if ``domain`` ends in a real public suffix ("contoso.com", not "the.lobby")."""
    return _TLD_EXTRACTOR(domain).suffix != "" and "." in domain.strip(".")


def _make_tldextract_offline() -> None:
    """Point ``tldextract.extract`` (used by Presidio) at the offline extractor.

    ``tldextract.extract`` looks up the module global ``TLD_EXTRACTOR`` at call time,
    so replacing it covers Presidio recognizers we do not subclass (and any future one).
    """
    tldextract.tldextract.TLD_EXTRACTOR = _TLD_EXTRACTOR


class _OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail recognizer, validating domains against the bundled PSL snapshot."""

    def validate_result(self, pattern_text: str) -> bool:
        return _TLD_EXTRACTOR(pattern_text).fqdn != ""


class _BoundedUrlRecognizer(UrlRecognizer):
    """Presidio's URL recognizer, but a match must start and end on a word boundary.

    The stock patterns have no boundaries, so "thanks.bye" matched "thanks.by" (.by is
    a TLD) and the redacted text read "[URL]e"; a URL must not begin or end mid-word.
    The quoted variants are already delimited by their quotes and are kept as they are.
    """

    PATTERNS = [
        Pattern(p.name, r"(?i)(?<![\w.-])" + p.regex.removeprefix("(?i)") + r"(?![\w@-])", p.score)
        if p.name in ("Standard Url", "Non schema URL")
        else p
        for p in UrlRecognizer.PATTERNS
    ]


# ------------------------------------------------------------------------ nlp engine


class _BlankSpacyNlpEngine(SlimSpacyNlpEngine):
    """Presidio NLP engine on ``spacy.blank(lang)``: tokens only, never a download.

    ``SlimSpacyNlpEngine`` already produces artifacts without NER; we only replace
    ``load`` (it would ``spacy.load``/download ``en_core_web_sm``) and substitute the
    lower-cased token where the blank pipeline has no lemma, so that the context
    enhancer can still match words such as "phone" or "card".
    """

    def __init__(self, language: str) -> None:
        super().__init__(
            models=[{"lang_code": language, "model_name": "blank"}], auto_download=False
        )
        self._language = language

    def load(self) -> None:
        self.nlp = {self._language: spacy.blank(self._language)}

    def _doc_to_nlp_artifact(self, doc: Doc, language: str) -> NlpArtifacts:
        # Offsets straight from the doc's arrays, not Token objects (this runs per
        # utterance); a blank pipeline never has lemmas, so the lower-cased token text
        # stands in for every one of them.
        text = doc.text
        spans = doc.to_array([IDX, LENGTH]).tolist() if len(doc) else []
        return NlpArtifacts(
            entities=[],
            tokens=doc,
            tokens_indices=[i for i, _ in spans],
            lemmas=[text[i : i + n].lower() for i, n in spans],
            nlp_engine=self,
            language=language,
            scores=[],
        )


# ------------------------------------------------------------------- presidio logs


class _WithholdArgs(logging.Filter):
    """Keep Presidio's log templates but drop their arguments and exception text.

    Presidio interpolates analyzed text into some messages (IBAN validation errors);
    the template says what went wrong without saying what the customer said.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = f"{record.msg} [args withheld]"
            record.args = None
        if record.exc_info and record.exc_info[0] is not None:
            record.msg = f"{record.msg} [{record.exc_info[0].__name__}]"
        record.exc_info = None
        record.exc_text = None
        return True


def _quiet_presidio_logs() -> None:
    """Cap Presidio's loggers at WARNING and withhold arguments; idempotent.

    Presidio logs one INFO line per ``analyze`` call and one per recognizer at start-up,
    which floods a service running at INFO. Warnings and errors still come through.
    """
    for name in _PRESIDIO_LOGGERS:
        lg = logging.getLogger(name)
        if lg.level < logging.WARNING:
            lg.setLevel(logging.WARNING)
        if not any(isinstance(f, _WithholdArgs) for f in lg.filters):
            lg.addFilter(_WithholdArgs())


# ------------------------------------------------------------------------- redactor


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
        _make_tldextract_offline()
        _quiet_presidio_logs()
        self.language = language
        self.score_threshold = score_threshold

        # Presidio's stock pattern recognizers for the written shapes they know; cards,
        # SSNs and phone numbers are handled by the speech recognizers (written or
        # spoken), which replace the stock ones, the stock phone matcher (75% of the
        # time) and the UK NHS checksum (which typed US phone numbers as NHS numbers).
        recognizers = [
            CryptoRecognizer(supported_language=language),
            _OfflineEmailRecognizer(supported_language=language),
            IbanRecognizer(supported_language=language),
            IpRecognizer(supported_language=language),
            UkNinoRecognizer(supported_language=language),
            _BoundedUrlRecognizer(supported_language=language),
            UsItinRecognizer(supported_language=language),
            *speech_recognizers(_has_public_suffix, language),
        ]
        registry = RecognizerRegistry(recognizers=recognizers, supported_languages=[language])
        self._analyzer = AnalyzerEngine(
            registry=registry,
            nlp_engine=_BlankSpacyNlpEngine(language),
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
        norm = normalize(text)
        ad_hoc = [r for r in (policy.known, policy.sticky) if r]
        if policy.all_digits:
            ad_hoc.append(self._payment_digits)
        found = self._analyzer.analyze(
            text=norm.text,
            language=self.language,
            score_threshold=self.score_threshold,
            ad_hoc_recognizers=ad_hoc or None,
            context=list(policy.context) or None,
        )
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
        results = self.analyze(text, policy)
        if not results:
            return RedactionResult(text, [], [])
        out = self._anonymizer.anonymize(
            text=text,
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
            entities.append(Entity(r.entity_type, r.start, r.end, float(r.score)))
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

# The spoken e-mail recognizer cannot judge "john dot smith at contoso" until the domain
# ends; a trailing chain of words joined by spoken separators is held back in partials.
_TRAILING_SPOKEN_CHAIN = re.compile(
    r"(?i)(?<![a-z0-9'])(?:(?!(?:is|it's|its|my|email|mail|address|at|the|to|me|was|and|or|uh|um)\b)[a-z0-9]+\s+)?[a-z0-9]+(?:\s+(?:dot|at|underscore|dash|hyphen)\s+[a-z0-9]+)*"
    r"\s+(?:dot|at|underscore|dash|hyphen)(?:\s+[a-z0-9]+)?[\s.,]*$"
)


def hold_back_unfinished(result: RedactionResult) -> RedactionResult:
    """For partials: cut an entity that may still be growing off the end of the text.

    A number run ("4111 1111 1111", "four one one") may be the start of a card number
    that no recognizer can judge yet; a spoken e-mail may lack its domain. The held-back
    words reappear, judged, in a later partial or the final. Cutting only at the end
    keeps every earlier redaction span valid.
    """
    text = result.text
    cut = trailing_run_start(text)
    m = _TRAILING_SPOKEN_CHAIN.search(text)
    if m is not None and (cut is None or m.start() < cut):
        cut = m.start()
    if cut is None:
        return result
    return RedactionResult(
        text[:cut].rstrip(),
        [r for r in result.redactions if r.end <= cut],
        result.entities,
    )


class StickyValues:
    """Values one utterance's partials have redacted, to keep redacted until its final.

    Recognizers judge each partial afresh, and a revised partial can stop looking like
    a card ("four one one one ..." becomes "for one ..."); what was redacted once must
    stay redacted. Raw values live here, in memory, for the utterance's lifetime only,
    and are touched only on the redaction thread (the runner is first-in first-out).
    """

    __slots__ = ("_values", "recognizer")

    # An utterance whose partials never end (a client that never sends its final) would
    # grow this, and rebuild its recognizer, forever. Past this many values nothing more
    # is remembered: every partial is still redacted afresh, only the stickiness stops.
    MAX_VALUES = 64

    def __init__(self) -> None:
        self._values: set[tuple[str, str]] = set()
        self.recognizer: KnownValuesRecognizer | None = None

    def __len__(self) -> int:
        return len(self._values)

    def remember(self, text: str, result: RedactionResult) -> None:
        new = {(e.type, text[e.start : e.end]) for e in result.entities} - self._values
        room = self.MAX_VALUES - len(self._values)
        if len(new) > room:
            new = set(sorted(new)[: max(0, room)])
        if new:
            self._values |= new
            # Above the threshold, below any fresh finding: a partial's guess never
            # overrides the type a later, longer text earns ("555" then a phone number).
            self.recognizer = KnownValuesRecognizer(sorted(self._values), score=0.5) or None
