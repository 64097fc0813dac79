"""A call's redaction: one object per call that knows what its texts' redaction depends on.

Each recognized text becomes one job on the redaction queue and comes back as one
result. What the job's policy is made of lives here: whether a payment window is open
(every digit goes), the call's known values, the values earlier partials of the same
utterance redacted (sticky), the words of the last turns as context ("and the expiry
date?"), and a number the last final left open at its end ("my social is six oh five" |
"one one four eight seven three"): the next utterance's leading number is its rest.
Sticky values, context and the open number are read and written on the redaction thread
only, in submission order, so a fast burst of partials sees exactly what came before it.
Partials leave it held back, with the call's context, whatever may still be growing at
their end (``hold_back_unfinished``).
"""

from __future__ import annotations

import re
from collections import Counter, deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from pipeline.privacy.normalize import analysis_form
from pipeline.privacy.partials import StickyValues, hold_back_unfinished
from pipeline.privacy.recognizers.base import NOT_CUES
from pipeline.privacy.recognizers.said_numbers import NUMBER_TYPES, SaidNumbersRecognizer
from pipeline.privacy.redaction import RedactionPolicy, RedactionResult
from pipeline.privacy.spoken_numbers import normalize

if TYPE_CHECKING:
    from models.speech import SpeechResult
    from pipeline.ingest.ports import KnownValues, RedactionQueue

# How many earlier final utterances lend their words as context to the redactor ("and the
# expiry date?" makes the customer's bare "twelve twenty eight" an expiry date). Earlier
# on the call's timeline, not in the order they were recognized: when audio arrives
# faster than real time, a later turn can be recognized first.
CONTEXT_UTTERANCES = 2
CONTEXT_KEPT = 8
_CONTEXT_WORD = re.compile(r"[a-z]+")
_TAG = re.compile(r"\[[A-Z0-9_]+\]")  # "[CARD_SECURITY_CODE]" must not read as "security code"
# How long after an utterance that ended inside a number the next may go on with it.
CONTINUATION_MS = 10_000
# How many numbers a call remembers having redacted (the oldest are forgotten first).
SAID_KEPT = 32
_NOT_DIGIT = re.compile(r"\D")
# What may follow a number at an utterance's end for it to count as cut off there.
_OPEN_TAIL = re.compile(r"(?i)^(?:[\s,.;:!?\-–]|\b(?:um+|uh+|er|erm|hmm|and|so|then|sorry)\b)*$")


def open_number(text: str, rr: RedactionResult) -> str | None:
    """The type of the redacted number ``text`` ends in, if it ends in one."""
    if not rr.entities:
        return None
    last = max(rr.entities, key=lambda e: e.end)
    if not _OPEN_TAIL.match(text[last.end :]):
        return None
    if last.type != "CARD_EXPIRY" and not normalize(text[last.start : last.end]).runs:
        return None  # a name or an address at the end is no number ("november" is)
    return last.type


class CallRedaction:
    def __init__(self, call_id: str, queue: RedactionQueue, known: KnownValues) -> None:
        self.call_id = call_id
        self._queue = queue
        self._known = known
        self.all_digits = False  # a payment window is open
        # Per open utterance; their contents are read and written on the redaction thread.
        self.sticky: dict[str, StickyValues] = {}
        # (endMs, words) of the last final utterances; on the redaction thread only.
        self.context: deque[tuple[int, tuple[str, ...]]] = deque(maxlen=CONTEXT_KEPT)
        self.counts: Counter[str] = Counter()  # redacted entity types, for the audit
        # (type, endMs) of the number the last final ended in; on the redaction thread only.
        self.open_number: tuple[str, int] | None = None
        # Numbers the call's finals had redacted (raw digits, in memory, on the redaction
        # thread only): a piece of one read back later is that secret again.
        self._said: dict[tuple[str, str], None] = {}
        self._said_recognizer: SaidNumbersRecognizer | None = None

    def continuation(self, sticky: StickyValues, start_ms: int) -> None:
        """Let an utterance that starts soon after one that ended inside a number go on
        with it; on the redaction thread, before the utterance's text is analyzed."""
        if sticky.continues is None and self.open_number is not None:
            entity_type, end_ms = self.open_number
            if end_ms - 1000 <= start_ms <= end_ms + CONTINUATION_MS:
                sticky.continue_number(entity_type)

    def finished(self, result: SpeechResult, text: str, rr: RedactionResult) -> None:
        """A final was redacted: remember the numbers it held and the one it left open."""
        new = {
            (e.type, _NOT_DIGIT.sub("", normalize(analysis_form(text[e.start : e.end])).text)): None
            for e in rr.entities
            if e.type in NUMBER_TYPES
        }
        if new.keys() - self._said.keys():
            self._said.update(new)
            while len(self._said) > SAID_KEPT:
                del self._said[next(iter(self._said))]
            self._said_recognizer = SaidNumbersRecognizer(self._said) or None
        if self.open_number is not None and result.start_ms >= self.open_number[1] - 1000:
            self.open_number = None  # its next utterance has come: the chance has passed
        entity_type = open_number(text, rr)
        if entity_type is not None:
            self.open_number = (entity_type, result.end_ms)

    def policy(self, sticky: StickyValues | None = None, start_ms: int | None = None):
        """The policy for the next text; evaluated on the redaction thread."""
        earlier = [
            words for end, words in self.context if start_ms is None or end <= start_ms + 500
        ]
        return RedactionPolicy(
            all_digits=self.all_digits,
            known=self._known.recognizer(self.call_id),
            sticky=sticky.recognizer if sticky is not None else None,
            context=tuple(w for words in earlier[-CONTEXT_UTTERANCES:] for w in words),
            said=self._said_recognizer,
        )

    def result(
        self, result: SpeechResult, deliver: Callable[[SpeechResult, RedactionResult], None]
    ) -> None:
        """Redact a recognized text; ``deliver`` gets it, redacted, on the event loop."""
        sticky = self.sticky.get(result.utterance_id)
        if sticky is None:
            sticky = self.sticky[result.utterance_id] = StickyValues()
        self._queue.submit(_ResultJob(self, result, sticky, deliver))

    def translation(self, text: str, deliver: Callable[[str], None]) -> None:
        """Live translation from the engine is raw speech too: redacted like the rest."""
        self._queue.submit(_TextJob(self, text, deliver))


class _ResultJob:
    __slots__ = ("_call", "_result", "_sticky", "_deliver", "_context", "text")

    def __init__(
        self,
        call: CallRedaction,
        result: SpeechResult,
        sticky: StickyValues,
        deliver: Callable[[SpeechResult, RedactionResult], None],
    ) -> None:
        self._call = call
        self._result = result
        self._sticky = sticky
        self._deliver = deliver
        self._context: tuple[str, ...] = ()
        self.text = result.text

    def policy(self) -> RedactionPolicy:
        self._call.continuation(self._sticky, self._result.start_ms)
        policy = self._call.policy(self._sticky, self._result.start_ms)
        self._context = policy.context
        return policy

    def redacted(self, rr: RedactionResult) -> None:
        self._sticky.remember(self.text, rr)
        if self._result.is_final:
            words = tuple(
                w
                for w in _CONTEXT_WORD.findall(_TAG.sub(" ", rr.text).lower())
                if w not in NOT_CUES
            )
            self._call.context.append((self._result.end_ms, words))
            self._call.finished(self._result, self.text, rr)

    def deliver(self, rr: RedactionResult) -> None:
        if not self._result.is_final:
            rr = hold_back_unfinished(rr, self._context)
        self._deliver(self._result, rr)


class _TextJob:
    __slots__ = ("_call", "_deliver", "text")

    def __init__(self, call: CallRedaction, text: str, deliver: Callable[[str], None]) -> None:
        self._call = call
        self._deliver = deliver
        self.text = text

    def policy(self) -> RedactionPolicy:
        return self._call.policy()

    def redacted(self, rr: RedactionResult) -> None:
        pass

    def deliver(self, rr: RedactionResult) -> None:
        self._deliver(rr.text)
