"""The call's analytics in its exports: the last `analytics` event on record (the final
one, once the call has ended) as lines a person reads (TXT, WebVTT's NOTE) and as the
`metric,value` rows of the CSV export's side file (`<out>.analytics.csv`); JSONL carries
the events themselves. Alerts are lines of their own in TXT, where they happened.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

_MARK = b'{"type":"analytics"'
ROLES = ("agent", "customer")
PER_ROLE = ("talkMs", "interruptions", "longestMonologueMs", "wordsPerMinute")


RECENT_EVENTS = 1000  # read first: an interval's worth of events of a busy call, many times


def last_analytics(store: Any, call_id: str) -> bytes | None:
    """The last `analytics` event of a stored call, as stored (the final one once ended).
    The call's last events are read first, the whole call only if they hold none."""
    record = store.get_call(call_id)
    if record is None:
        return None
    recent_from = max(0, record.last_seq - RECENT_EVENTS)
    for since in dict.fromkeys((recent_from, 0)):
        last = None
        for _seq, body in store.read(call_id, since):
            if body.startswith(_MARK):
                last = body
        if last is not None:
            return last
    return None


def _value(v: Any) -> str:
    return "n/a" if v is None else str(v)


def metric_rows(ev: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(metric, value) pairs, flat: ``talkMs.agent``, ``sentimentTrend.customer.q2``, ..."""
    yield "final", str(bool(ev.get("final"))).lower()
    yield "durationMs", _value(ev.get("durationMs"))
    for field in PER_ROLE:
        per = ev.get(field) or {}
        for role in ROLES:
            yield f"{field}.{role}", _value(per.get(role))
    yield "silenceMs", _value(ev.get("silenceMs"))
    yield "overlapMs", _value(ev.get("overlapMs"))
    trend = ev.get("sentimentTrend") or {}
    for role in ROLES:
        for q, score in enumerate(trend.get(role) or [], start=1):
            yield f"sentimentTrend.{role}.q{q}", _value(score)
    for category, count in sorted((ev.get("categories") or {}).items()):
        yield f"category.{category}", str(count)
    if ev.get("unavailable"):
        yield "unavailable", " ".join(ev["unavailable"])


def summary_lines(ev: dict[str, Any]) -> list[str]:
    """The analytics as a few lines of text (no line breaks inside one)."""

    def s(ms: Any) -> str:
        return "n/a" if ms is None else f"{int(ms) / 1000:.1f} s"

    talk, cuts = ev.get("talkMs") or {}, ev.get("interruptions") or {}
    mono, wpm = ev.get("longestMonologueMs") or {}, ev.get("wordsPerMinute") or {}
    lines = [
        f"Analytics ({'final' if ev.get('final') else 'so far'}, {s(ev.get('durationMs'))} of audio):",
        f"  talk: agent {s(talk.get('agent'))}, customer {s(talk.get('customer'))}; "
        f"silence {s(ev.get('silenceMs'))}; overlap {s(ev.get('overlapMs'))}",
        f"  interruptions: agent {_value(cuts.get('agent'))}, customer {_value(cuts.get('customer'))}; "
        f"longest monologue: agent {s(mono.get('agent'))}, customer {s(mono.get('customer'))}",
        f"  words per minute: agent {_value(wpm.get('agent'))}, customer {_value(wpm.get('customer'))}",
    ]
    trend = ev.get("sentimentTrend") or {}
    for role in ROLES:
        if trend.get(role):
            lines.append(f"  sentiment by quarter, {role}: " + ", ".join(map(_value, trend[role])))
    categories = ev.get("categories") or {}
    lines.append(
        "  categories: "
        + (", ".join(f"{k} ({v})" for k, v in sorted(categories.items())) or "none")
    )
    if ev.get("unavailable"):
        lines.append("  not available on mixed audio: " + ", ".join(ev["unavailable"]))
    return [" ".join(line.splitlines()) for line in lines]


def alert_line(ev: dict[str, Any]) -> str:
    said = f", utterance {ev['utteranceId']}" if ev.get("utteranceId") else ""
    text = f"--- alert: {ev.get('category', '')} ({ev.get('severity', '')}, rule {ev.get('rule', '')}{said}) ---"
    return " ".join(text.splitlines())


def side_file(ev: dict[str, Any] | None) -> bytes:
    """The CSV export's `<out>.analytics.csv`: a header and one row per metric."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["metric", "value"])
    if ev is not None:
        w.writerows(metric_rows(ev))
    return buf.getvalue().encode()


def side_file_of(store: Any, call_id: str) -> bytes:
    body = last_analytics(store, call_id)
    return side_file(None if body is None else json.loads(body))
