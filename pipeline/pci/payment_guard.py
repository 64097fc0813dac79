"""The payment guard: one small state machine per call, closed or open.

It reads raw transcripts (partials included, so it fires as early as possible), keypad
tones and manual commands, and decides when a card payment starts and ends. It does no
I/O: the session turns its decisions into events, the redaction hook and recording
pause/resume requests. Raw text never leaves this module; only triggers and offsets do.

Opening: an intent phrase ("card number", "take a payment") from either participant; a
run of spoken or written digits that looks like a card (a *late* trigger: the digits
before it may already be on the recording, so the window records an exposure from the
start of that utterance); a DTMF tone (late too); or the manual API.
Closing: a closing phrase ("payment has gone through"), a quiet period after the last
digit, a maximum window length, or the manual API. Text from an utterance that began
before the last window closed cannot reopen it (the partials of the closing sentence
keep arriving after it closed).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field

from pipeline.privacy.normalize import analysis_form
from pipeline.privacy.recognizers.credit_card import known_card_prefix
from pipeline.privacy.recognizers.digit_runs import NOT_SECRET_CUES, luhn_ok, words_before
from pipeline.privacy.spoken_numbers import Run, normalize

__all__ = ["GuardPolicy", "PaymentGuard", "Window"]

# A digit run this long is a card being read out, whatever was said before it.
CARD_RUN_DIGITS = 12
# ... or this long if it starts like a card (4..., 51..., 37...).
CARD_PREFIX_RUN_DIGITS = 8
# A card read in two utterances: the second began at most this long after the first's
# last words (a breath, "hang on", a recognizer's endpoint inside the number).
SPLIT_CARD_GAP_MS = 8000
# ... in at most this many utterances ("4929" | "1278" | "9012" | "3459").
SPLIT_CARD_PARTS = 4

_PUNCT = re.compile(r"[^\w\s']+")
_SPACES = re.compile(r"\s+")


def _digit_runs(text: str) -> list[Run]:
    """Digit runs, spoken or written, in any script: "٤١١١", "⁴¹¹¹", "4\u200b1" are digits
    to the Redactor (``pipeline.privacy.normalize``), so they are here too."""
    return normalize(analysis_form(text)).runs


def _phrases(spec: str) -> tuple[str, ...]:
    return tuple(p.strip().lower() for p in spec.split("|") if p.strip())


def _matcher(phrases: tuple[str, ...]) -> re.Pattern[str] | None:
    if not phrases:
        return None
    alts = "|".join(
        r"\s+".join(map(re.escape, p.split())) for p in sorted(phrases, key=len, reverse=True)
    )
    return re.compile(rf"(?<![\w'])(?:{alts})(?![\w'])")


@dataclass(frozen=True)
class GuardPolicy:
    intent: tuple[str, ...]
    closing: tuple[str, ...]
    quiet_ms: int
    max_ms: int
    withhold_audio: bool

    @classmethod
    def from_settings(cls, settings) -> GuardPolicy:
        return cls(
            intent=_phrases(settings.payment_intent_phrases),
            closing=_phrases(settings.payment_closing_phrases),
            quiet_ms=int(settings.payment_quiet_s * 1000),
            max_ms=int(settings.payment_max_s * 1000),
            withhold_audio=bool(settings.payment_withhold_audio),
        )

    def as_dict(self) -> dict:
        return {
            "intentPhrases": list(self.intent),
            "closingPhrases": list(self.closing),
            "quietMs": self.quiet_ms,
            "maxMs": self.max_ms,
            "withholdAudio": self.withhold_audio,
            "cardRunDigits": CARD_RUN_DIGITS,
            "cardPrefixRunDigits": CARD_PREFIX_RUN_DIGITS,
        }

    @property
    def version(self) -> str:
        """A short hash of everything that decides when a window opens and closes."""
        blob = json.dumps(self.as_dict(), sort_keys=True).encode()
        return "sha256:" + hashlib.sha256(blob).hexdigest()[:16]


@dataclass
class Window:
    """One payment window, on the call's timeline (ms from the first audio frame)."""

    number: int
    trigger: str
    start_ms: int
    exposure_from_ms: int | None = None  # a late trigger: digits may precede the window
    last_digit_ms: int = 0
    end_ms: int | None = None
    end_trigger: str | None = None
    confirmed_ms: int | None = None  # when ACS confirmed the pause
    customer_activity_ms: int | None = None  # first customer speech or tone before that
    exposures: list[tuple[int, int]] = field(default_factory=list)
    audited_exposures: int = 0  # how many of ``exposures`` are on record already

    @property
    def open(self) -> bool:
        return self.end_ms is None


@dataclass(frozen=True)
class Decision:
    action: str  # "open" | "close"
    trigger: str  # intent | digits | dtmf | manual | phrase | timeout
    window: Window


class PaymentGuard:
    def __init__(self, policy: GuardPolicy) -> None:
        self.policy = policy
        self._intent = _matcher(policy.intent)
        self._closing = _matcher(policy.closing)
        self.window: Window | None = None
        self.windows: list[Window] = []
        self.closed_at_ms = -1
        self._closed_by_utterance: int | None = None  # start of the line that last closed one
        # Per role, its last few utterances (start, when its text last came, the text), to
        # see a card read in parts. Raw text: in memory only, the last four utterances,
        # dropped when a window opens or closes (never exported at a hand-over).
        self._recent: dict[str, list[tuple[int, int, str]]] = {}

    @property
    def is_open(self) -> bool:
        return self.window is not None

    # ----- inputs ------------------------------------------------------------------------
    def on_text(
        self, text: str, role: str, utterance_start_ms: int, now_ms: int
    ) -> Decision | None:
        """A raw partial or final transcript. Returns what changed, if anything."""
        # As the recognizers read it: a fullwidth "ｃａｒｄ ｎｕｍｂｅｒ", or one with invisible
        # characters inside its words, is the phrase.
        flat = _SPACES.sub(" ", _PUNCT.sub(" ", analysis_form(text).lower()))
        self._remember(role, utterance_start_ms, now_ms, text)
        w = self.window
        if w is not None:
            if role != "agent":
                self._customer_activity(now_ms)
            if any(r.digits for r in _digit_runs(text)):
                w.last_digit_ms = max(w.last_digit_ms, now_ms)
            # A closing line closes one window: its later partials and final, arriving after
            # a new window opened (a manual pause), are the same sentence said once.
            spent = utterance_start_ms == self._closed_by_utterance
            if self._closing is not None and not spent and self._closing.search(flat):
                self._closed_by_utterance = utterance_start_ms
                return self._close("phrase", now_ms)
            return None
        if utterance_start_ms < self.closed_at_ms:
            return None  # still the utterance that was spoken while the last window closed
        if self._intent is not None and self._intent.search(flat):
            return self._open("intent", now_ms)
        whole = self._looks_like_card(text)
        earlier = self._card_begun_before(role, utterance_start_ms, text, whole)
        if whole or earlier is not None:
            # The digits began with the utterance, or with the one before it when the card
            # was read in two ("... it's 4111" | "1111 1111 1111"), at the latest now
            # (offsets reported by a remote recognizer can run ahead of our clock).
            began = utterance_start_ms if earlier is None else earlier
            return self._open("digits", now_ms, exposure_from_ms=min(began, now_ms))
        return None

    def on_dtmf(self, now_ms: int) -> Decision | None:
        if self.window is not None:
            self.window.last_digit_ms = now_ms
            self._customer_activity(now_ms)
            return None
        return self._open("dtmf", now_ms, exposure_from_ms=now_ms)

    def on_customer_speech(self, now_ms: int, onset_ms: int | None = None) -> Window | None:
        """The customer's channel started an utterance (VAD): audio the recording may hold.

        The VAD says so 140-200 ms after the first voiced frame (``onset_ms``, on the audio
        timeline; the earlier of the two counts). Speech that began before ACS confirmed
        the pause but was detected after it is an exposure all the same: the window is
        returned when that adds one after the confirmation, for its audit.
        """
        w = self.window
        if w is None:
            return None
        began = now_ms if onset_ms is None else min(onset_ms, now_ms)
        if w.confirmed_ms is None:
            self._customer_activity(began)
            return None
        if (
            began < w.confirmed_ms
            and w.customer_activity_ms is None
            and w.exposure_from_ms is None
            and not w.exposures
        ):
            w.customer_activity_ms = began
            w.exposures.append((w.start_ms, w.confirmed_ms))
            return w
        return None

    def manual(self, action: str, now_ms: int) -> Decision | None:
        if action == "pause" and self.window is None:
            return self._open("manual", now_ms)
        if action == "resume" and self.window is not None:
            return self._close("manual", now_ms)
        return None

    def call_ended(self, now_ms: int) -> Decision | None:
        """The call is over with the window still open: close it (as a timeout)."""
        return self._close("timeout", now_ms) if self.window is not None else None

    def check_timers(self, now_ms: int) -> Decision | None:
        w = self.window
        if w is None:
            return None
        if (
            now_ms - w.start_ms >= self.policy.max_ms
            or now_ms - w.last_digit_ms >= self.policy.quiet_ms
        ):
            return self._close("timeout", now_ms)
        return None

    def confirmed(self, now_ms: int) -> None:
        """ACS confirmed the pause: from here on, nothing said is on the recording."""
        w = self.window
        if w is not None and w.confirmed_ms is None:
            w.confirmed_ms = now_ms
            self._settle_exposure(w, now_ms)

    # ----- hand-over between replicas ----------------------------------------------------
    def export(self) -> dict:
        """The windows so far (the last one may be open), for the replica taking the call."""
        return {"windows": [asdict(w) for w in self.windows], "closedAtMs": self.closed_at_ms}

    def restore(self, state: dict) -> None:
        self.windows = [
            Window(**{**w, "exposures": [tuple(e) for e in w.get("exposures", [])]})
            for w in state.get("windows", [])
        ]
        self.window = self.windows[-1] if self.windows and self.windows[-1].open else None
        self.closed_at_ms = int(state.get("closedAtMs", -1))

    # ----- internals ---------------------------------------------------------------------
    def _remember(self, role: str, start_ms: int, now_ms: int, text: str) -> None:
        recent = self._recent.setdefault(role, [])
        if recent and recent[-1][0] == start_ms:
            recent[-1] = (start_ms, now_ms, text)  # a later partial, or the final
        else:
            recent.append((start_ms, now_ms, text))
            del recent[:-SPLIT_CARD_PARTS]

    def _card_begun_before(self, role: str, start_ms: int, text: str, whole: bool) -> int | None:
        """The start of an earlier utterance of this role whose trailing digits this one
        goes on with: into a card (read together, they look like one: "4929" | "1278" |
        "9012 3459"), or into the card this one reads (``whole``)."""
        recent = self._recent.get(role, [])[:-1]
        # The utterances before this one, each begun soon after the last one's words.
        chain: list[tuple[int, int, str]] = []
        later = start_ms
        for u in reversed(recent):
            if later - u[1] > SPLIT_CARD_GAP_MS or u[0] < self.closed_at_ms:
                break
            chain.insert(0, u)
            later = u[0]
        if not chain or not _digit_runs(text):
            return None
        # From the earliest utterance on, then from each later one: the card may begin in
        # any of them ("in 2019" | "4929 127" | "8901 2345 9" begins in the second).
        for k, first in enumerate(chain):
            joined = " ".join(u[2] for u in chain[k:]) + " "
            head, boundary = len(first[2]), len(joined)
            joined += text
            said = analysis_form(joined)
            for run in _digit_runs(joined):
                # A run that begins in this earlier utterance and goes on into this one.
                if not (run.start < head and boundary < run.end):
                    continue
                if NOT_SECRET_CUES.intersection(words_before(said, run.start, 3)):
                    continue  # "my order is 1234" | "4111 ...": a reference, then the card
                d = run.digits
                # A phone number and a word of digits after it is no card: the joined
                # digits must open like a card and pass Luhn, or be too many for anything else.
                if (
                    whole
                    or known_card_prefix(d)
                    and (
                        any(luhn_ok(d[:n]) for n in range(13, min(19, len(d)) + 1)) or len(d) >= 15
                    )
                ):
                    return first[0]
        return None

    def _customer_activity(self, now_ms: int) -> None:
        w = self.window
        if w is not None and w.confirmed_ms is None and w.customer_activity_ms is None:
            w.customer_activity_ms = now_ms

    @staticmethod
    def _looks_like_card(text: str) -> bool:
        for run in _digit_runs(text):
            d = run.digits
            if len(d) >= CARD_RUN_DIGITS or (
                len(d) >= CARD_PREFIX_RUN_DIGITS and known_card_prefix(d)
            ):
                return True
        return False

    def _open(self, trigger: str, now_ms: int, exposure_from_ms: int | None = None) -> Decision:
        self._recent.clear()
        w = Window(len(self.windows) + 1, trigger, now_ms, exposure_from_ms, last_digit_ms=now_ms)
        self.window = w
        self.windows.append(w)
        return Decision("open", trigger, w)

    def _close(self, trigger: str, now_ms: int) -> Decision:
        self._recent.clear()
        w = self.window
        assert w is not None
        w.end_ms = now_ms
        w.end_trigger = trigger
        if w.confirmed_ms is None:
            self._settle_exposure(w, now_ms)
        self.window = None
        self.closed_at_ms = now_ms
        return Decision("close", trigger, w)

    @staticmethod
    def _settle_exposure(w: Window, until_ms: int) -> None:
        """Audio that may be on the recording: a late trigger's digits, or the customer
        speaking (or keying) before ACS confirmed the pause, from the window's start."""
        if w.exposure_from_ms is not None:
            w.exposures.append((w.exposure_from_ms, until_ms))
        elif w.customer_activity_ms is not None:
            w.exposures.append((w.start_ms, until_ms))
