"""How `callstream demo` shows a call's events to a person: one readable line each, in the
call's time order whatever order they arrive in.

Events do not arrive in the call's time order: a payment window opens on a *partial*, so
its event comes before the final of the sentence that opened it, and at replay speeds
above real time two participants' finals are decoded in parallel and finish in any order.
`TimeOrderedView` holds each event back while an utterance that started before it is
still being decoded (a partial seen, its final not yet), and prints the rest sorted by
the call time they belong to. With ``live=False`` (replays faster than real time, where
an utterance may be decoded with no partial at all) everything is printed at the end of
the call, sorted.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

_REDACTION = re.compile(r"\[[A-Z_]+\]")


def clock(ms: int | float) -> str:
    secs = max(0.0, ms / 1000)
    return f"{int(secs // 60):02d}:{secs % 60:04.1f}"


@dataclass
class Styles:
    """ANSI emphasis on a terminal, nothing in a pipe or a file."""

    enabled: bool

    def _wrap(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.enabled else text

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)

    def redacted(self, text: str) -> str:
        return (
            _REDACTION.sub(lambda m: self._wrap("1;35", m.group(0)), text) if self.enabled else text
        )

    def alert(self, text: str) -> str:
        return self._wrap("1;33", text)


def _fields(ev: dict, skip: tuple[str, ...] = ("type", "callId", "seq", "time")) -> str:
    return ", ".join(
        f"{k}={json.dumps(v) if isinstance(v, dict | list) else v}"
        for k, v in ev.items()
        if k not in skip
    )


def describe(ev: dict, style: Styles, sentiment: dict | None = None) -> str | None:
    """One line for an event, or None for what a person need not see (partials). A final
    carries its utterance's ``sentiment`` at the end of its line."""
    t = ev["type"]
    if t == "transcript.final":
        label = "(nothing recognised)" if not ev["text"] else style.redacted(ev["text"])
        line = f"  {clock(ev['startMs'])}  {ev['role']:<8}  {label}"
        if sentiment is not None:
            line += style.dim(f"   ({sentiment['label']} {float(sentiment['score']):+.2f})")
        return line
    if t == "transcript.partial":
        return None
    if t == "sentiment":
        score = float(ev["score"])
        return style.dim(f"{'':18}sentiment: {ev['label']} ({score:+.2f})")
    if t == "translation":
        return style.dim(f"{'':18}{ev['language']}: ") + style.redacted(ev["text"])
    if t == "call.started":
        parties = (
            "each party on its own channel" if ev["mode"] == "unmixed" else "one mixed channel"
        )
        return style.bold(f"● call {ev['callId']} started ({parties}, {ev['sampleRate']} Hz)")
    if t == "participant.joined":
        return f"  + {ev['role']} joined as {ev['participant']}"
    if t == "payment.started":
        return style.alert(
            f"  ── {clock(ev['startMs'])}  payment window OPEN (trigger: {ev['trigger']}): every digit is "
            "redacted, the customer's audio is kept from remote engines, the recording is paused ──"
        )
    if t == "payment.ended":
        return style.alert(
            f"  ── {clock(ev['startMs'])}  payment window closed (trigger: {ev['trigger']}) ──"
        )
    if t in ("recording.paused", "recording.resumed"):
        latency = (
            f", {ev['latencyMs']:.0f} ms after the trigger"
            if ev.get("latencyMs") is not None
            else ""
        )
        return style.alert(
            f"  ── recording {t.split('.')[1]} (attempt {ev.get('attempt', 0)}{latency}) ──"
        )
    if t == "recording.error":
        return style.alert(
            f"  ── recording control failed (attempt {ev.get('attempt', 0)}): {ev.get('error')} ──"
        )
    if t == "alert":
        return style.alert(
            f"  ! alert {ev.get('category', '')} ({ev.get('severity', '')}): rule {ev.get('rule', '')}"
        )
    if t == "analytics":
        return _analytics_line(ev, style)
    if t == "summary":
        return style.bold("  summary: ") + ev["text"]
    if t == "call.ended":
        return style.bold(f"● call ended ({ev['reason']})")
    if t == "lagged":
        return style.dim(f"  (events {ev['missedFrom']}-{ev['missedTo']} were missed by this view)")
    return style.dim(f"  {t}: {_fields(ev)}")


def _seconds(ms: float | None) -> str:
    return "n/a" if ms is None else f"{ms / 1000:.1f} s"


def _analytics_line(ev: dict, style: Styles) -> str | None:
    """The call's final analytics in one line; the live ones every few seconds are for
    the wallboard, not for this view."""
    if not ev.get("final"):
        return None
    talk, cuts = ev.get("talkMs") or {}, ev.get("interruptions") or {}
    if ev.get("unavailable"):
        per_role = "who spoke when is not known on mixed audio"
    else:
        per_role = (
            f"talk agent {_seconds(talk.get('agent'))}, customer {_seconds(talk.get('customer'))}; "
            f"overlap {_seconds(ev.get('overlapMs'))}; interruptions agent {cuts.get('agent')}, "
            f"customer {cuts.get('customer')}"
        )
    categories = ", ".join(f"{k} x{v}" for k, v in (ev.get("categories") or {}).items())
    tail = f"; categories: {categories}" if categories else ""
    return (
        style.bold("  analytics: ") + f"{per_role}; silence {_seconds(ev.get('silenceMs'))}{tail}"
    )


@dataclass
class TimeOrderedView:
    """Prints events in the call's time order (see the module docstring)."""

    write: Callable[[str], None]
    style: Styles
    live: bool = True
    _held: list[tuple[float, int, dict]] = field(default_factory=list)
    _open: dict[str, int] = field(default_factory=dict)  # utteranceId -> startMs, partial seen
    _utterance_ms: dict[str, int] = field(
        default_factory=dict
    )  # utteranceId -> startMs, final seen
    _last_ms: float = 0.0
    # Finals waiting (until a wall-clock deadline) for their sentiment, which follows them.
    _awaiting_sentiment: dict[str, tuple[float, float]] = field(default_factory=dict)
    _sentiment: dict[str, dict] = field(default_factory=dict)
    _printed: set[str] = field(default_factory=set)  # utteranceIds whose final is printed
    sentiment_wait_s: float = 1.5

    def _key(self, ev: dict) -> float:
        t = ev["type"]
        if t in ("transcript.final", "transcript.partial"):
            return float(ev["startMs"])
        if t in ("payment.started", "payment.ended"):
            # After the sentence that opened (or closed) the window, before the next one.
            return float(ev["startMs"]) + 0.5
        if (
            t in ("sentiment", "translation", "alert")
            and ev.get("utteranceId") in self._utterance_ms
        ):
            return self._utterance_ms[ev["utteranceId"]] + 0.25
        if t in ("call.ended", "analytics"):  # (the one printed is the final one, the last)
            return float("inf")
        # Events with no call time of their own (call.started, recording.*): where the
        # call is now, so that they print after everything already shown.
        return self._last_ms + 0.75

    def add(self, ev: dict, now: float | None = None) -> None:
        t = ev["type"]
        now = time.monotonic() if now is None else now
        if t == "transcript.partial":
            self._open[ev["utteranceId"]] = ev["startMs"]
            return
        if t == "sentiment" and ev.get("utteranceId") not in self._printed:
            self._sentiment[ev["utteranceId"]] = ev
            self._awaiting_sentiment.pop(ev["utteranceId"], None)
            if self.live:
                self.flush(now)
            return
        if t == "transcript.final":
            self._open.pop(ev["utteranceId"], None)
            self._utterance_ms[ev["utteranceId"]] = ev["startMs"]
            self._last_ms = max(self._last_ms, float(ev["startMs"]))
            if ev["text"]:
                self._awaiting_sentiment[ev["utteranceId"]] = (
                    ev["startMs"],
                    now + self.sentiment_wait_s,
                )
        elif t in ("payment.started", "payment.ended"):
            self._last_ms = max(self._last_ms, float(ev["startMs"]))
        self._held.append((self._key(ev), ev.get("seq", 0), ev))
        if t == "call.ended":
            self._open.clear()
            self._awaiting_sentiment.clear()
            self.flush(now)
        elif self.live:
            self.flush(now)

    def tick(self, now: float | None = None) -> None:
        """Called while no event arrives: finals whose sentiment is late print without it."""
        if self.live:
            self.flush(time.monotonic() if now is None else now)

    def flush(self, now: float) -> None:
        """Print every held event that nothing still being decoded can precede."""
        for uid, (_, deadline) in list(self._awaiting_sentiment.items()):
            if deadline <= now:
                del self._awaiting_sentiment[uid]
        self._held.sort(key=lambda item: (item[0], item[1]))
        horizon = min(
            min(self._open.values(), default=float("inf")),
            min((ms for ms, _ in self._awaiting_sentiment.values()), default=float("inf")),
        )
        keep: list[tuple[float, int, dict]] = []
        for item in self._held:
            if item[0] >= horizon and item[0] != float("inf"):
                keep.append(item)
                continue
            ev = item[2]
            line = describe(
                ev,
                self.style,
                self._sentiment.pop(ev.get("utteranceId", ""), None)
                if ev["type"] == "transcript.final"
                else None,
            )
            if ev["type"] == "transcript.final":
                self._printed.add(ev["utteranceId"])
            if line is not None:
                self.write(line)
        self._held = keep
