"""Presidio on this machine: offline, on a blank spaCy pipeline, with quiet logs.

callstream must run without a network and without a model download: the public-suffix
list comes from tldextract's bundled snapshot, the NLP engine is `spacy.blank` (tokens
only), and Presidio's own logs, which can quote analyzed text, keep their templates but
lose their arguments. The Redactor (`redaction.py`) builds its engines from these.
"""

from __future__ import annotations

import logging

import spacy
import tldextract
import tldextract.tldextract
from presidio_analyzer import Pattern
from presidio_analyzer.nlp_engine import NlpArtifacts, SlimSpacyNlpEngine
from presidio_analyzer.predefined_recognizers import EmailRecognizer, UrlRecognizer
from spacy.attrs import IDX, LENGTH
from spacy.tokens import Doc

from pipeline.privacy import PRESIDIO_LOGGERS

# --------------------------------------------------------------------------- offline


def offline_tld_extractor() -> tldextract.TLDExtract:
    """A TLDExtract that can only read the public-suffix snapshot bundled in the wheel.

    No URLs means no HTTP; ``cache_dir=None`` means no disk cache either, so the
    behaviour does not depend on whatever a previous run left in ``~/.cache``.
    """
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)


TLD_EXTRACTOR = offline_tld_extractor()


def has_public_suffix(domain: str) -> bool:
    """True if ``domain`` ends in a real public suffix ("contoso.com", not "the.lobby")."""
    return TLD_EXTRACTOR(domain).suffix != "" and "." in domain.strip(".")


def make_tldextract_offline() -> None:
    """Point ``tldextract.extract`` (used by Presidio) at the offline extractor.

    ``tldextract.extract`` looks up the module global ``TLD_EXTRACTOR`` at call time,
    so replacing it covers Presidio recognizers we do not subclass (and any future one).
    """
    tldextract.tldextract.TLD_EXTRACTOR = TLD_EXTRACTOR


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail recognizer, validating domains against the bundled PSL snapshot."""

    def validate_result(self, pattern_text: str) -> bool:
        return TLD_EXTRACTOR(pattern_text).fqdn != ""


class BoundedUrlRecognizer(UrlRecognizer):
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


# Presidio's enhancer finds a context word inside a longer one ("call" in "caller"): a
# speaker's label ("Caller: the meter reading was 45271") is no cue for a phone number.
_NOT_CUE_LEMMAS = frozenset({"caller", "callers"})


def _lemma(token: str) -> str:
    low = token.lower()
    return "" if low in _NOT_CUE_LEMMAS else low


class BlankSpacyNlpEngine(SlimSpacyNlpEngine):
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
            lemmas=[_lemma(text[i : i + n]) for i, n in spans],
            nlp_engine=self,
            language=language,
            scores=[],
        )


# ------------------------------------------------------------------- presidio logs


class WithholdArgs(logging.Filter):
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


def quiet_presidio_logs() -> None:
    """Cap Presidio's loggers at WARNING and withhold arguments; idempotent.

    Presidio logs one INFO line per ``analyze`` call and one per recognizer at start-up,
    which floods a service running at INFO. Warnings and errors still come through.
    """
    for name in PRESIDIO_LOGGERS:
        lg = logging.getLogger(name)
        if lg.level < logging.WARNING:
            lg.setLevel(logging.WARNING)
        if not any(isinstance(f, WithholdArgs) for f in lg.filters):
            lg.addFilter(WithholdArgs())
