"""One call's category rules at work: which rule matched, for whom, and when to say so.

Phrase rules read each redacted final once. Metric rules keep a little state each:
`silence` fires once per stretch of nobody speaking (checked when someone starts again and
on the call's clock tick, so that a supervisor hears of dead air while it lasts);
`sentiment` counts a participant's finals in a row below the threshold and fires at the
count, then counts again; `interruptions` fires when the last minute of the call holds
more than the limit, at most once a minute. What fired is counted per category.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from pipeline.analytics.rules import Rule, normalize
from pipeline.analytics.talk import Talk, interruptions

MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True)
class Match:
    rule: Rule
    participant: str | None = None
    utterance_id: str | None = None


class CallRules:
    """The rules' state for one call. Returns what matched; the call publishes it."""

    def __init__(self, rules: tuple[Rule, ...]) -> None:
        self.rules = rules
        self._phrases = [r for r in rules if r.metric is None]
        self._silence = [r for r in rules if r.metric == "silence"]
        self._sentiment = [r for r in rules if r.metric == "sentiment"]
        self._interruptions = [r for r in rules if r.metric == "interruptions"]
        self.categories: Counter[str] = Counter()
        self._silence_fired: dict[str, int] = {}  # rule -> the stretch (its start) it fired for
        self._low_run: Counter[tuple[str, str]] = Counter()  # (rule, participant) -> finals
        self._interruptions_fired: dict[str, int] = {}  # rule -> when it last fired (call ms)

    def _matched(self, rule: Rule, participant: str | None = None, uid: str | None = None) -> Match:
        self.categories[rule.category] += 1
        return Match(rule, participant, uid)

    def on_final(self, role: str, participant: str, uid: str, text: str) -> list[Match]:
        if not self._phrases:
            return []
        said = normalize(text)
        return [
            self._matched(r, participant, uid)
            for r in self._phrases
            if r.applies_to(role) and r.pattern is not None and r.pattern.search(said)
        ]

    def on_sentiment(self, role: str, participant: str, uid: str, score: float) -> list[Match]:
        out = []
        for r in self._sentiment:
            if not r.applies_to(role):
                continue
            key = (r.name, participant)
            if score >= r.below:
                self._low_run.pop(key, None)
                continue
            self._low_run[key] += 1
            if self._low_run[key] >= r.utterances:
                del self._low_run[key]
                out.append(self._matched(r, participant, uid))
        return out

    def on_silence(self, since_ms: int, now_ms: int) -> list[Match]:
        """Nobody has spoken from ``since_ms`` to ``now_ms`` (the stretch may go on)."""
        out = []
        for r in self._silence:
            if (
                now_ms - since_ms >= r.seconds * 1000
                and self._silence_fired.get(r.name) != since_ms
            ):
                self._silence_fired[r.name] = since_ms
                out.append(self._matched(r))
        return out

    def on_talk(self, talks: list[Talk], now_ms: int) -> list[Match]:
        """An utterance ended: interruptions in the last minute, against each limit."""
        if not self._interruptions or not talks:
            return []
        # Intervals are appended as they close, so the recent ones are at the end: walk
        # back until well past the minute (utterances close at most 15 s out of order).
        closed = talks[-1]
        recent, overlapped = [], False
        for t in reversed(talks):
            if t.end_ms < now_ms - 2 * MINUTE_MS:
                break
            if t.end_ms >= now_ms - MINUTE_MS:
                recent.append(t)
            overlapped = overlapped or (
                t.role != closed.role and t.start_ms < closed.end_ms and closed.start_ms < t.end_ms
            )
        if not overlapped:  # no new interruption (most utterances): nothing to count
            return []
        counts = interruptions(recent)
        out = []
        for r in self._interruptions:
            n = sum(counts.values()) if r.role == "any" else counts.get(r.role, 0)
            last = self._interruptions_fired.get(r.name)
            if n > r.per_minute and (last is None or now_ms - last >= MINUTE_MS):
                self._interruptions_fired[r.name] = now_ms
                out.append(self._matched(r))
        return out

    # ----- a call handed to another replica carries its counts --------------------------
    def export(self) -> dict:
        return {
            "categories": dict(self.categories),
            "silenceFired": dict(self._silence_fired),
            "lowRun": [[r, p, n] for (r, p), n in self._low_run.items()],
            "interruptionsFired": dict(self._interruptions_fired),
        }

    def restore(self, state: dict) -> None:
        """What the rules knew on the old replica: a stretch of dead air that already
        fired there does not fire again here, a run of low finals goes on counting."""
        self.categories.update(state.get("categories") or {})
        self._silence_fired.update(state.get("silenceFired") or {})
        for rule, participant, n in state.get("lowRun") or []:
            self._low_run[(str(rule), str(participant))] = int(n)
        self._interruptions_fired.update(state.get("interruptionsFired") or {})
