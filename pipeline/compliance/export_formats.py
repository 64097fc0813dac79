"""WebVTT, TXT and CSV exports of a stored call, written while the store is read.

Each writer is a generator of UTF-8 bytes, one record at a time (a cue, a row, a line
with the lines under it), made from the stored events, so an export holds the same
redacted text that was published. Only `transcript.final` events are transcript lines;
partials are ignored.

Memory stays flat however long the call:

- `vtt` reads the events once and keeps nothing between cues.
- `txt` and `csv` put each utterance's sentiment and translations next to it, and those
  events come after its final (a model may answer after the next finals). Both read the
  store twice. The first pass keeps only, for each utterance that has enrichment, the
  seq of its last sentiment or translation event (two ints each), plus the set of
  translation languages and the last seq. The second pass holds an utterance's line
  until that seq is reached, and holds whatever comes after it so the order is kept. So
  what is held is the span between a final and its last enrichment, not the whole call.
  The second pass stops at the first pass's last seq, so the export of a live call is a
  consistent snapshot: every row has a column for each of its translations.

Order: cues, lines and rows are in the order the finals were published (seq order), which
is the order the agent saw them. The participants' finals interleave, so a start time
can be earlier than the one before it. WebVTT allows that (players sort the cues).
"""

from __future__ import annotations

import csv
import io
from collections import deque
from collections.abc import Iterator
from typing import Any

import msgspec

from pipeline.compliance.export_analytics import alert_line, summary_lines
from pipeline.compliance.store import EventStore

FINAL = "transcript.final"
SENTIMENT = "sentiment"
TRANSLATION = "translation"
ANALYTICS = "analytics"

ROLE_LABELS = {"agent": "Agent", "customer": "Customer", "unknown": "Unknown"}

CSV_COLUMNS = (
    "utteranceId",
    "startMs",
    "endMs",
    "role",
    "participant",
    "text",
    "sentiment_label",
    "sentiment_score",
)

TXT_INDENT = " " * len("[00:00:00] ")

_decode = msgspec.json.Decoder().decode

Key = tuple[str, str]  # (participant, utteranceId)


# ----- helpers ----------------------------------------------------------------------------


def _events(
    store: EventStore, call_id: str, upto: int | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    for seq, body in store.read(call_id):
        if upto is not None and seq > upto:
            return
        event = _decode(body)
        if isinstance(event, dict):
            yield seq, event


def _key(event: dict[str, Any]) -> Key:
    return (str(event.get("participant", "")), str(event.get("utteranceId", "")))


def _ms(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def _one_line(text: Any) -> str:
    """No line breaks: a blank line would end a WebVTT cue, and a TXT line must stay one."""
    return " ".join(str(text).splitlines())


def _role_label(role: Any) -> str:
    return ROLE_LABELS.get(str(role), "Unknown")


def vtt_timestamp(ms: int) -> str:
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}"


def txt_timestamp(ms: int) -> str:
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}"


def vtt_escape(text: str) -> str:
    """Cue text: "&", "<" and ">" as references. Redaction tags ("[CREDIT_CARD]") are kept."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _vtt_safe(text: Any) -> str:
    """For a cue identifier or a NOTE: one line and never "-->"."""
    return _one_line(text).replace("-->", "- ->")


class _Plan:
    """The first pass: the seq of each utterance's last enrichment event, and the languages."""

    def __init__(self) -> None:
        # hash(key) -> seq: ints only. Two keys with one hash share the later seq, which
        # only holds a line a little longer.
        self.done_at: dict[int, int] = {}
        self.languages: set[str] = set()
        self.last_seq = 0


def _plan(store: EventStore, call_id: str, kinds: tuple[str, ...]) -> _Plan:
    plan = _Plan()
    needles = tuple(f'"{k}"'.encode() for k in kinds)
    for seq, body in store.read(call_id):
        plan.last_seq = seq
        if not any(n in body for n in needles):  # cheap: most events are transcripts
            continue
        event = _decode(body)
        if not isinstance(event, dict) or event.get("type") not in kinds:
            continue
        plan.done_at[hash(_key(event))] = seq  # seqs increase: the later one wins
        if event["type"] == TRANSLATION:
            plan.languages.add(str(event.get("language", "")))
    return plan


class _Held:
    """One output record waiting for its utterance's enrichment (or ready: key None)."""

    __slots__ = ("key", "final", "label", "score", "translations", "text")

    def __init__(
        self, key: Key | None, final: dict[str, Any] | None = None, text: str = ""
    ) -> None:
        self.key = key
        self.final = final
        self.label: Any = None
        self.score: Any = None
        self.translations: list[tuple[str, str]] = []
        self.text = text

    def enrich(self, event: dict[str, Any]) -> None:
        if event["type"] == SENTIMENT:
            self.label, self.score = event.get("label"), event.get("score")
        else:
            self.translations.append((str(event.get("language", "")), str(event.get("text", ""))))


class _Queue:
    """Records in event order; the head goes out once its enrichment has all been read."""

    def __init__(self, plan: _Plan) -> None:
        self.plan = plan
        self.queue: deque[_Held] = deque()
        self.by_key: dict[Key, _Held] = {}
        self.early: dict[Key, list[dict[str, Any]]] = {}  # enrichment read before its final

    def final(self, event: dict[str, Any]) -> None:
        key = _key(event)
        held = _Held(key, event)
        for e in self.early.pop(key, ()):
            held.enrich(e)
        self.queue.append(held)
        self.by_key[key] = held

    def enrichment(self, event: dict[str, Any]) -> None:
        key = _key(event)
        held = self.by_key.get(key)
        if held is not None:
            held.enrich(event)
        else:
            self.early.setdefault(key, []).append(event)

    def ready(self, text: str) -> None:
        self.queue.append(_Held(None, text=text))

    def pop_ready(self, seq: int) -> Iterator[_Held]:
        while self.queue:
            head = self.queue[0]
            if head.key is not None and self.plan.done_at.get(hash(head.key), 0) > seq:
                return
            self.queue.popleft()
            if head.key is not None and self.by_key.get(head.key) is head:
                del self.by_key[head.key]
            yield head

    def pop_all(self) -> Iterator[_Held]:
        yield from self.pop_ready(self.plan.last_seq)
        while self.queue:  # nothing is held past the snapshot; defensive
            yield self.queue.popleft()
        self.by_key.clear()
        self.early.clear()  # enrichment of an utterance with no final has no line


# ----- WebVTT -----------------------------------------------------------------------------


def vtt_lines(store: EventStore, call_id: str) -> Iterator[bytes]:
    yield b"WEBVTT\n\n"
    yield f"NOTE call {_vtt_safe(call_id)}\n\n".encode()
    analytics: dict[str, Any] | None = None
    for _seq, event in _events(store, call_id):
        if event.get("type") == ANALYTICS:
            analytics = event
        if event.get("type") != FINAL:
            continue
        start = _ms(event.get("startMs"))
        end = _ms(event.get("endMs"))
        if end <= start:
            end = start + 1
        ident = _vtt_safe(event.get("utteranceId", ""))
        text = vtt_escape(_one_line(event.get("text", "")))
        cue = f"{vtt_timestamp(start)} --> {vtt_timestamp(end)}\n<v {_role_label(event.get('role'))}>{text}</v>\n\n"
        yield ((f"{ident}\n" if ident.strip() else "") + cue).encode()
    if analytics is not None:
        yield ("NOTE\n" + "\n".join(map(_vtt_safe, summary_lines(analytics))) + "\n\n").encode()


# ----- TXT --------------------------------------------------------------------------------


def txt_lines(store: EventStore, call_id: str) -> Iterator[bytes]:
    yield f"Call {_one_line(call_id)}\n".encode()
    plan = _plan(store, call_id, (TRANSLATION,))
    queue = _Queue(plan)
    summaries: list[str] = []  # one, at the end of a call
    analytics: dict[str, Any] | None = None  # the last one: the final one of an ended call
    for seq, event in _events(store, call_id, plan.last_seq):
        kind = event.get("type")
        if kind == FINAL:
            queue.final(event)
        elif kind == TRANSLATION:
            queue.enrichment(event)
        elif kind in ("payment.started", "payment.ended"):
            what = "started" if kind == "payment.started" else "ended"
            stamp = txt_timestamp(_ms(event.get("startMs")))
            queue.ready(
                f"[{stamp}] --- payment {what} ({_one_line(event.get('trigger', ''))}) ---\n"
            )
        elif kind == "summary":
            summaries.append(_one_line(event.get("text", "")))
        elif kind == ANALYTICS:
            analytics = event
        elif kind == "alert":
            queue.ready(f"{TXT_INDENT}{alert_line(event)}\n")
        for held in queue.pop_ready(seq):
            yield _txt_record(held)
    for held in queue.pop_all():
        yield _txt_record(held)
    for text in summaries:
        yield f"\nSummary: {text}\n".encode()
    if analytics is not None:
        yield ("\n" + "".join(f"{line}\n" for line in summary_lines(analytics))).encode()


def _txt_record(held: _Held) -> bytes:
    if held.final is None:
        return held.text.encode()
    f = held.final
    lines = [
        f"[{txt_timestamp(_ms(f.get('startMs')))}] {_role_label(f.get('role'))}: {_one_line(f.get('text', ''))}\n"
    ]
    lines += [
        f"{TXT_INDENT}({_one_line(lang)}) {_one_line(text)}\n" for lang, text in held.translations
    ]
    return "".join(lines).encode()


# ----- CSV --------------------------------------------------------------------------------


def csv_lines(store: EventStore, call_id: str) -> Iterator[bytes]:
    plan = _plan(store, call_id, (SENTIMENT, TRANSLATION))
    languages = sorted(plan.languages)
    yield _csv_row([*CSV_COLUMNS, *(f"translation_{lang}" for lang in languages)])
    queue = _Queue(plan)
    for seq, event in _events(store, call_id, plan.last_seq):
        kind = event.get("type")
        if kind == FINAL:
            queue.final(event)
        elif kind in (SENTIMENT, TRANSLATION):
            queue.enrichment(event)
        else:
            continue
        for held in queue.pop_ready(seq):
            yield _csv_record(held, languages)
    for held in queue.pop_all():
        yield _csv_record(held, languages)


def _csv_record(held: _Held, languages: list[str]) -> bytes:
    f = held.final or {}
    translations = dict(held.translations)  # the last one per language
    return _csv_row(
        [
            f.get("utteranceId", ""),
            f.get("startMs", ""),
            f.get("endMs", ""),
            f.get("role", ""),
            f.get("participant", ""),
            f.get("text", ""),
            "" if held.label is None else held.label,
            "" if held.score is None else held.score,
            *(translations.get(lang, "") for lang in languages),
        ]
    )


# A spreadsheet reads a cell that starts with one of these as a formula ("=HYPERLINK(...)"
# said by a caller, or a recognizer's "- one" or "+44..."): such text cells get a leading
# apostrophe, which spreadsheets show as text and do not evaluate (OWASP's CSV injection
# advice). Numbers (offsets, a negative sentiment score) are written as they are.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _neutral(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _csv_row(values: list[Any]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf).writerow([_neutral(v) for v in values])  # RFC 4180: quoted as needed, CRLF
    return buf.getvalue().encode()
