"""WebVTT, TXT and CSV exports: from a store built by hand, and through the server and CLI."""

from __future__ import annotations

import asyncio
import csv
import io
import subprocess
import sys
import tracemalloc
import urllib.request

import pytest
import webvtt
from websockets.asyncio.client import connect

from models.events import (
    CallEnded,
    CallStarted,
    Event,
    ParticipantJoined,
    PaymentEnded,
    PaymentStarted,
    Redaction,
    Sentiment,
    Summary,
    TranscriptFinal,
    TranscriptPartial,
    Translation,
    encode_event,
    event_type,
)
from pipeline.compliance.export import FORMATS, MEDIA_TYPES, ExportError, export_lines
from pipeline.compliance.store import SqliteEventStore, StoredEvent

from .conftest import collect_call_events, start_subscribers
from .test_e2e_media import _transcription

CALL = "export-call"
CUST, AGENT = "4:+15551234", "8:acs:agent-7"
CARD_TEXT = "my card is [CREDIT_CARD] and a < b & c"


def _final(
    uid: str, participant: str, role: str, start: int, end: int, text: str
) -> TranscriptFinal:
    redactions = (
        [Redaction("CREDIT_CARD", text.index("["), text.index("]") + 1)] if "[" in text else []
    )
    return TranscriptFinal(
        callId=CALL, participant=participant, role=role, utteranceId=uid, startMs=start, endMs=end,
        text=text, language="en-US", confidence=0.9, source="acs", redactions=redactions,
    )  # fmt: skip


def _partial(uid: str, participant: str, role: str, start: int, text: str) -> TranscriptPartial:
    return TranscriptPartial(
        callId=CALL, participant=participant, role=role, utteranceId=uid, startMs=start, endMs=start + 500,
        text=text, language="en-US", confidence=0.5, source="acs",
    )  # fmt: skip


def _sentiment(uid: str, participant: str, label: str, score: float) -> Sentiment:
    return Sentiment(
        callId=CALL,
        participant=participant,
        utteranceId=uid,
        label=label,
        score=score,
        rollingScore=score,
    )


def _translation(uid: str, participant: str, language: str, text: str) -> Translation:
    return Translation(
        callId=CALL, participant=participant, utteranceId=uid, language=language, text=text
    )


# In publication order. Enrichment comes after its final, and not always right after:
# the agent's u2 is published before u1's sentiment, and u1's French translation is late.
EVENTS: list[Event] = [
    CallStarted(callId=CALL, mode="unmixed", sampleRate=16000),
    ParticipantJoined(callId=CALL, participant=CUST, role="customer"),
    ParticipantJoined(callId=CALL, participant=AGENT, role="agent"),
    _partial("u1", CUST, "customer", 1000, "my card"),
    PaymentStarted(callId=CALL, trigger="intent", startMs=1500),
    _partial("u1", CUST, "customer", 1000, "my card is [DIGITS]"),
    _final("u1", CUST, "customer", 1000, 3250, CARD_TEXT),
    _partial("u2", AGENT, "agent", 2000, "thanks"),
    _final("u2", AGENT, "agent", 2000, 2000, "thanks, that's taken"),  # zero length
    _sentiment("u1", CUST, "neutral", 0.1),
    _translation("u1", CUST, "de", "meine Karte ist [CREDIT_CARD] und a < b & c"),
    PaymentEnded(callId=CALL, trigger="phrase", startMs=4000),
    _sentiment("u2", AGENT, "positive", 0.6),
    _translation("u2", AGENT, "de", "danke, erledigt"),
    _translation("u2", AGENT, "fr", "merci, c'est fait"),
    _translation("u1", CUST, "fr", "ma carte est [CREDIT_CARD] et a < b & c"),
    _final("u3", CUST, "customer", 3_661_000, 3_662_500, 'bye, "thanks"\nagain'),
    _sentiment("u3", CUST, "positive", 0.4),
    _translation("u3", CUST, "de", "tschüss"),
    Summary(callId=CALL, text="The customer paid by card."),
    CallEnded(callId=CALL, reason="hangup"),
]

FINALS = [e for e in EVENTS if isinstance(e, TranscriptFinal)]


def build_store(path, events: list[Event] = EVENTS, call_id: str = CALL) -> SqliteEventStore:
    store = SqliteEventStore(path)
    rows = []
    for seq, event in enumerate(events, start=1):
        event.seq, event.time = seq, f"2024-05-01T10:00:{seq % 60:02d}.000Z"
        event.callId = call_id
        rows.append(
            StoredEvent(
                call_id, seq, event_type(event), event.time, encode_event(event),
                mode=getattr(event, "mode", None), sample_rate=getattr(event, "sampleRate", None),
                reason=getattr(event, "reason", None),
            )
        )  # fmt: skip
    store.append(rows)
    return store


@pytest.fixture
def store(tmp_path):
    s = build_store(tmp_path / "db")
    yield s
    s.close()


def export(store: SqliteEventStore, fmt: str, call_id: str = CALL) -> bytes:
    return b"".join(export_lines(store, call_id, fmt))


def _ms(ts: webvtt.models.Timestamp) -> int:
    h, m, s, ms = ts.to_tuple()
    return ((h * 60 + m) * 60 + s) * 1000 + ms


def test_vtt_is_valid_webvtt_with_one_voiced_cue_per_final(store) -> None:
    raw = export(store, "vtt").decode()
    assert raw.startswith("WEBVTT\n\n")
    assert f"NOTE call {CALL}" in raw
    cues = webvtt.from_buffer(io.StringIO(raw)).captions
    assert len(cues) == len(FINALS)
    assert [c.identifier for c in cues] == ["u1", "u2", "u3"]  # publication order
    for cue, final in zip(cues, FINALS, strict=True):
        assert _ms(cue.start_time) / 1000 == final.startMs / 1000
        end = final.endMs if final.endMs > final.startMs else final.startMs + 1
        assert _ms(cue.end_time) / 1000 == end / 1000
    assert cues[0].start == "00:00:01.000" and cues[0].end == "00:00:03.250"
    assert cues[1].end == "00:00:02.001"  # a zero-length final gets one millisecond
    assert cues[2].start == "01:01:01.000"
    assert [c.voice for c in cues] == ["Customer", "Agent", "Customer"]
    assert "<v Customer>my card is [CREDIT_CARD] and a &lt; b &amp; c</v>" in raw
    assert "<v Agent>thanks, that's taken</v>" in raw
    assert cues[0].raw_text == "<v Customer>my card is [CREDIT_CARD] and a &lt; b &amp; c</v>"
    # No blank line may split a cue: a line break in the text becomes a space.
    assert cues[2].raw_text == '<v Customer>bye, "thanks" again</v>'
    # Partials, sentiment and translations are not cues.
    assert "[DIGITS]" not in raw and "Karte" not in raw


def test_txt_is_speaker_labelled_with_translations_payments_and_summary(store) -> None:
    text = export(store, "txt").decode()
    indent = " " * 11
    assert text == (
        f"Call {CALL}\n"
        "[00:00:01] --- payment started (intent) ---\n"
        f"[00:00:01] Customer: {CARD_TEXT}\n"
        f"{indent}(de) meine Karte ist [CREDIT_CARD] und a < b & c\n"
        f"{indent}(fr) ma carte est [CREDIT_CARD] et a < b & c\n"
        "[00:00:02] Agent: thanks, that's taken\n"
        f"{indent}(de) danke, erledigt\n"
        f"{indent}(fr) merci, c'est fait\n"
        "[00:00:04] --- payment ended (phrase) ---\n"
        '[01:01:01] Customer: bye, "thanks" again\n'
        f"{indent}(de) tschüss\n"
        "\n"
        "Summary: The customer paid by card.\n"
    )


def test_csv_has_one_row_per_final_with_sentiment_and_translations(store) -> None:
    raw = export(store, "csv")
    assert raw.startswith(
        b"utteranceId,startMs,endMs,role,participant,text,sentiment_label,sentiment_score,"
        b"translation_de,translation_fr\r\n"
    )
    rows = list(csv.DictReader(io.StringIO(raw.decode(), newline="")))
    assert [r["utteranceId"] for r in rows] == ["u1", "u2", "u3"]
    u1, u2, u3 = rows
    assert u1 == {
        "utteranceId": "u1", "startMs": "1000", "endMs": "3250", "role": "customer", "participant": CUST,
        "text": CARD_TEXT, "sentiment_label": "neutral", "sentiment_score": "0.1",
        "translation_de": "meine Karte ist [CREDIT_CARD] und a < b & c",
        "translation_fr": "ma carte est [CREDIT_CARD] et a < b & c",
    }  # fmt: skip
    assert (u2["role"], u2["sentiment_label"], u2["sentiment_score"]) == (
        "agent",
        "positive",
        "0.6",
    )
    assert (u2["translation_de"], u2["translation_fr"]) == ("danke, erledigt", "merci, c'est fait")
    assert u3["text"] == 'bye, "thanks"\nagain'  # quoted, kept as recorded
    assert (u3["sentiment_label"], u3["translation_de"], u3["translation_fr"]) == (
        "positive",
        "tschüss",
        "",
    )


def test_no_translations_means_no_translation_columns(tmp_path) -> None:
    events = [e for e in EVENTS if not isinstance(e, Translation)]
    store = build_store(tmp_path / "db", events)
    try:
        header = export(store, "csv").split(b"\r\n")[0]
        assert (
            header
            == b"utteranceId,startMs,endMs,role,participant,text,sentiment_label,sentiment_score"
        )
        assert "(de)" not in export(store, "txt").decode()
    finally:
        store.close()


def test_formats_jsonl_unchanged_and_unknown_format(store) -> None:
    assert FORMATS == ("jsonl", "vtt", "txt", "csv")
    assert set(MEDIA_TYPES) == set(FORMATS)
    lines = export(store, "jsonl").splitlines()
    assert lines == [encode_event(e) for e in EVENTS]
    with pytest.raises(ExportError, match="unknown format 'pdf'"):
        export_lines(store, CALL, "pdf")  # raised at once, before anything is read
    for fmt in ("vtt", "txt", "csv"):
        assert export(store, fmt, "no-such-call")  # headers only, no error


def test_long_call_exports_in_flat_memory(tmp_path) -> None:
    """Hours of long, enriched finals: the writers hold far less than what they write.

    (TXT and CSV keep a few ints per utterance, never its text.)"""
    events: list[Event] = [CallStarted(callId=CALL, mode="unmixed", sampleRate=16000)]
    words = "and then I said that the order should arrive on tuesday " * 10
    for i in range(2000):
        uid, who = f"u{i}", (CUST if i % 2 else AGENT)
        events += [
            _partial(uid, who, "customer", i * 1000, words[:40]),
            _final(uid, who, "customer", i * 1000, i * 1000 + 900, words),
            _sentiment(uid, who, "neutral", 0.0),
            _translation(uid, who, "de", words),
        ]
    store = build_store(tmp_path / "db", events)
    try:
        for fmt in ("vtt", "txt", "csv"):
            tracemalloc.start()
            written = sum(len(chunk) for chunk in export_lines(store, CALL, fmt))
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            assert written > 1_000_000
            assert peak < written / 4, f"{fmt}: peak {peak} bytes for {written} written"
    finally:
        store.close()


# ----- through the server and the command line ------------------------------------------------


def _get(url: str) -> tuple[str, bytes]:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.headers["content-type"], r.read()


async def test_server_and_cli_exports(acs_server) -> None:
    call_id = "export-formats"
    [collector] = await start_subscribers(acs_server, collect_call_events(acs_server.ws, call_id))
    async with connect(
        f"{acs_server.ws}/media", additional_headers={"x-ms-call-connection-id": call_id}
    ) as ws:
        await ws.send(_transcription("hello I need help with x < y & z", "Final", CUST, 1000))
        await ws.send(_transcription("sure let me look", "Final", AGENT, 3000))
        await ws.send(_transcription("thank you so much", "Final", CUST, 6500))
    events = await collector
    finals = [e for e in events if e["type"] == "transcript.final"]
    assert len(finals) == 3
    sentiments = {e["utteranceId"]: e for e in events if e["type"] == "sentiment"}

    bodies = {}
    for fmt, media_type in (
        ("vtt", "text/vtt"),
        ("txt", "text/plain; charset=utf-8"),
        ("csv", "text/csv; charset=utf-8"),
    ):
        content_type, body = await asyncio.to_thread(
            _get, f"{acs_server.http}/calls/{call_id}/transcript?format={fmt}"
        )
        assert content_type.split(";")[0] == media_type.split(";")[0]
        if "charset" in media_type:
            assert "charset=utf-8" in content_type
        bodies[fmt] = body
        cli = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "pipeline.cli.commands", "export", call_id, "--format", fmt, "--data-dir", str(acs_server.data_dir)],
            capture_output=True, timeout=300,
        )  # fmt: skip
        assert cli.returncode == 0, cli.stderr.decode()
        assert cli.stdout == body, fmt

    cues = webvtt.from_buffer(io.StringIO(bodies["vtt"].decode())).captions
    assert [c.identifier for c in cues] == [f["utteranceId"] for f in finals]
    assert [_ms(c.start_time) for c in cues] == [f["startMs"] for f in finals]
    assert [c.voice for c in cues] == [f["role"].capitalize() for f in finals]
    assert "x &lt; y &amp; z" in bodies["vtt"].decode()

    text = bodies["txt"].decode()
    assert text.startswith(f"Call {call_id}\n")
    assert f"Customer: {finals[0]['text']}\n" in text and f"Agent: {finals[1]['text']}\n" in text

    rows = list(csv.DictReader(io.StringIO(bodies["csv"].decode(), newline="")))
    assert [r["utteranceId"] for r in rows] == [f["utteranceId"] for f in finals]
    assert [r["text"] for r in rows] == [f["text"] for f in finals]
    for row in rows:
        s = sentiments[row["utteranceId"]]
        assert (row["sentiment_label"], float(row["sentiment_score"])) == (s["label"], s["score"])


def test_enrichment_published_before_its_final_still_lands_on_it(tmp_path) -> None:
    """Azure's live translation is redacted apart from the final and may be published first."""
    events: list[Event] = [
        CallStarted(callId=CALL, mode="unmixed", sampleRate=16000),
        _translation("u1", CUST, "de", "hallo"),
        _final("u1", CUST, "customer", 0, 800, "hello"),
        _sentiment("u1", CUST, "positive", 0.5),
        _translation("u9", CUST, "de", "verwaist"),  # its final was empty and not published
        CallEnded(callId=CALL, reason="hangup"),
    ]
    store = build_store(tmp_path / "db", events)
    try:
        assert (
            export(store, "txt").decode()
            == f"Call {CALL}\n[00:00:00] Customer: hello\n{' ' * 11}(de) hallo\n"
        )
        [row] = csv.DictReader(io.StringIO(export(store, "csv").decode(), newline=""))
        assert (row["text"], row["sentiment_label"], row["translation_de"]) == (
            "hello",
            "positive",
            "hallo",
        )
    finally:
        store.close()
