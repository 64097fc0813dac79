"""One call's analytics: who spoke when (from its channels' VAD), how many words (from
redacted finals), how they felt (sentiment scores), and the category rules' matches.

The call feeds it at utterance boundaries, finals and sentiment, never per audio frame:
the cost on the media path is a few attribute reads per utterance. `snapshot` builds the
`analytics` event: the call publishes one every `analytics_interval_s` and a final one
before `call.ended`. Mixed audio cannot tell who speaks: it reports the call's silence
and says, in `unavailable`, which per-role figures it cannot give.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

from models.events import Alert, Analytics, ByRole, Event, SentimentTrend
from pipeline.analytics.alerts import CallRules, Match
from pipeline.analytics.rules import Rule
from pipeline.analytics.talk import ROLES, Talk, measure

PER_ROLE = (
    "talkMs",
    "overlapMs",
    "interruptions",
    "longestMonologueMs",
    "wordsPerMinute",
    "sentimentTrend",
)
QUARTERS = 4
# A channel in an utterance whose audio is this far behind the call's: it stopped sending.
STALE_MS = 2000


class TalkSource(Protocol):
    """A channel's VAD, as analytics reads it (workers.vad.Segmenter)."""

    last_voiced_end_ms: int
    clock_ms: int


class CallAnalytics:
    def __init__(
        self, call_id: str, rules: tuple[Rule, ...], emit: Callable[[Event], None]
    ) -> None:
        self.call_id = call_id
        self._emit = emit
        self.rules = CallRules(rules)
        self.talks: list[Talk] = []
        self._open: dict[int, tuple[str, int, TalkSource]] = {}  # channel -> role, onset, VAD
        self._last_end = 0  # the latest end of anyone's talk so far
        self.words: Counter[str] = Counter()
        self._starts: dict[str, int] = {}  # utterance id -> its start, for the trend
        self.scores: dict[str, list[tuple[int, float]]] = {r: [] for r in ROLES}
        self.mixed = False
        self.closed = False  # the final snapshot is out: nothing more is counted or said

    # ----- what the call reports -----------------------------------------------------------
    def talk_started(self, channel: object, role: str, onset_ms: int, vad: TalkSource) -> None:
        """An utterance began on a channel (its first voiced frame at ``onset_ms``)."""
        if not self._open:
            self._check_silence(onset_ms)
        self._open[id(channel)] = (role, onset_ms, vad)

    def talk_ended(self, channel: object, end_ms: int, keep: bool) -> None:
        """The channel's utterance ended, its last voiced frame ending at ``end_ms``;
        ``keep`` is False for a click or a breath too short to be speech."""
        opened = self._open.pop(id(channel), None)
        if opened is None or not keep or end_ms <= opened[1]:
            return
        self.talks.append(Talk(opened[0], opened[1], end_ms))
        self._last_end = max(self._last_end, end_ms)
        self._alert(self.rules.on_talk(self.talks, end_ms))

    def final(self, role: str, participant: str, uid: str, start_ms: int, text: str) -> None:
        """A redacted final was published (the only text analytics ever sees)."""
        if self.closed:
            return
        self.words[role] += len(text.split())
        self._starts[uid] = start_ms
        self._alert(self.rules.on_final(role, participant, uid, text))

    def sentiment(self, role: str, participant: str, uid: str, score: float) -> None:
        if role in self.scores:
            self.scores[role].append((self._starts.get(uid, self._last_end), score))
        self._alert(self.rules.on_sentiment(role, participant, uid, score))

    def tick(self, now_ms: int) -> None:
        """The call's clock (about once a second while it is live): dead air while it lasts.
        A channel whose audio stopped inside an utterance (a participant who left mid-word)
        speaks no more: it does not hold the silence rule off for the rest of the call."""
        if not any(vad.clock_ms >= now_ms - STALE_MS for _r, _o, vad in self._open.values()):
            self._check_silence(now_ms)

    def _check_silence(self, now_ms: int) -> None:
        self._alert(self.rules.on_silence(self._last_end, now_ms))

    def _alert(self, matches: list[Match]) -> None:
        if self.closed:  # (after the call's end: an alert would follow its call.ended)
            return
        for m in matches:
            self._emit(
                Alert(
                    callId=self.call_id, rule=m.rule.name, category=m.rule.category,
                    severity=m.rule.severity, participant=m.participant, utteranceId=m.utterance_id,
                )
            )  # fmt: skip

    @property
    def categories(self) -> dict[str, int]:
        """The categories the rules matched so far, by name: category -> count."""
        return dict(sorted(self.rules.categories.items()))

    # ----- the analytics event --------------------------------------------------------------
    def _talks_now(self) -> list[Talk]:
        """The closed intervals and, for utterances still open, what was voiced so far."""
        talks = list(self.talks)
        for role, onset, vad in self._open.values():
            if vad.last_voiced_end_ms > onset:
                talks.append(Talk(role, onset, vad.last_voiced_end_ms))
        return talks

    def _trend(self, duration_ms: int) -> SentimentTrend:
        out: dict[str, list[float | None]] = {}
        for role in ROLES:
            sums = [0.0] * QUARTERS
            counts = [0] * QUARTERS
            for start, score in self.scores[role]:
                q = min(QUARTERS - 1, max(0, start * QUARTERS // max(1, duration_ms)))
                sums[q] += score
                counts[q] += 1
            out[role] = [round(s / n, 3) if n else None for s, n in zip(sums, counts, strict=True)]
        return SentimentTrend(agent=out["agent"], customer=out["customer"])

    def snapshot(self, duration_ms: int, final: bool = False) -> Analytics:
        duration_ms = max(0, duration_ms)
        self.closed = self.closed or final
        fig = measure(self._talks_now(), duration_ms)
        categories = self.categories
        if self.mixed:
            return Analytics(
                callId=self.call_id, durationMs=duration_ms, talkMs=ByRole(), silenceMs=fig.silence_ms,
                overlapMs=None, interruptions=ByRole(), longestMonologueMs=ByRole(),
                wordsPerMinute=ByRole(), sentimentTrend=SentimentTrend(), final=final,
                categories=categories, unavailable=list(PER_ROLE),
            )  # fmt: skip
        wpm = {
            r: round(self.words[r] * 60_000 / fig.talk_ms[r], 1) if fig.talk_ms[r] else None
            for r in ROLES
        }
        return Analytics(
            callId=self.call_id, durationMs=duration_ms, talkMs=ByRole(**fig.talk_ms),
            silenceMs=fig.silence_ms, overlapMs=fig.overlap_ms,
            interruptions=ByRole(**fig.interruptions),
            longestMonologueMs=ByRole(**fig.longest_monologue_ms), wordsPerMinute=ByRole(**wpm),
            sentimentTrend=self._trend(duration_ms), final=final, categories=categories,
        )  # fmt: skip

    # ----- a call handed to another replica carries what it measured -------------------------
    def export(self) -> dict[str, Any]:
        return {
            "talks": [[t.role, t.start_ms, t.end_ms] for t in self._talks_now()],
            "words": dict(self.words),
            "scores": {r: [[s, v] for s, v in self.scores[r]] for r in ROLES},
            "rules": self.rules.export(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.talks.extend(Talk(str(r), int(s), int(e)) for r, s, e in state.get("talks", []))
        self._last_end = max((t.end_ms for t in self.talks), default=self._last_end)
        self.words.update(state.get("words", {}))
        for role, pairs in state.get("scores", {}).items():
            if role in self.scores:
                self.scores[role].extend((int(s), float(v)) for s, v in pairs)
        self.rules.restore(state.get("rules", {}))
