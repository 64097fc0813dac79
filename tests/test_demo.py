"""`callstream demo` as a newcomer runs it: twice in one folder, through the real CLI.

Each run is its own call; nothing is stored after any `call.ended`; the export the demo
writes passes `callstream verify`; the output shows what callstream is for (redaction,
a payment window, sentiment) in the call's time order, and leaks none of the call's
secrets.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest

from pipeline.cli.demo import sample_call_path
from pipeline.cli.demo_view import Styles, TimeOrderedView

from .conftest import assert_seq_strict, run_cli

ROOT = Path(__file__).resolve().parent.parent


def run_demo_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALLSTREAM_")}
    return run_cli(*args, cwd=cwd, env=env, timeout=400)


@pytest.fixture(scope="module")
def two_demo_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, list[subprocess.CompletedProcess]]:
    folder = tmp_path_factory.mktemp("newcomer")
    runs = [run_demo_cli("demo", "--speed", "0", cwd=folder) for _ in range(2)]
    return folder, runs


def _exports(out: str) -> Path:
    return Path(re.search(r"^export: (\S+\.jsonl)$", out, re.M).group(1))


def test_two_demo_runs_are_two_calls_and_nothing_follows_call_ended(two_demo_runs) -> None:
    folder, runs = two_demo_runs
    for run in runs:
        assert run.returncode == 0, run.stdout + run.stderr
        assert "Traceback" not in run.stdout + run.stderr
    ids = [
        re.search(r"as call (demo-sample-call-[0-9a-f]{6})$", r.stdout, re.M).group(1) for r in runs
    ]
    assert ids[0] != ids[1]
    db = sqlite3.connect(folder / "callstream-data" / "callstream.db")
    stored = {cid for (cid,) in db.execute("SELECT call_id FROM calls")}
    assert stored == set(ids)
    for call_id in ids:
        events = [
            json.loads(row[0])
            for row in db.execute(
                "SELECT body FROM events WHERE call_id = ? ORDER BY seq", (call_id,)
            )
        ]
        types = [e["type"] for e in events]
        assert types.count("call.started") == 1 and types[0] == "call.started"
        assert types.count("call.ended") == 1 and types[-1] == "call.ended", (
            "no event after call.ended"
        )
        assert_seq_strict(events)


def test_the_demos_export_has_a_manifest_and_verifies(two_demo_runs) -> None:
    folder, runs = two_demo_runs
    for run in runs:
        export = _exports(run.stdout)
        assert Path(f"{export}.manifest.json").is_file()
        assert re.search(
            rf"^verify: OK \((\S*callstream) verify {re.escape(str(export))}\)$", run.stdout, re.M
        )
        verify = run_demo_cli("verify", str(export), cwd=folder)
        assert verify.returncode == 0 and verify.stdout.startswith("OK"), (
            verify.stdout + verify.stderr
        )


def test_the_demo_shows_redaction_a_payment_window_and_sentiment_without_leaking(
    two_demo_runs,
) -> None:
    _, runs = two_demo_runs
    out = runs[0].stdout
    assert re.search(r"\[(CREDIT_CARD|DIGITS)\]", out), out
    assert "[PERSON]" in out
    assert "payment window OPEN" in out and "payment window closed" in out
    assert re.search(r"\((positive|negative|neutral) [+-]\d\.\d\d\)$", out, re.M), (
        "sentiment, readable"
    )
    assert "{" not in out, "no raw JSON"
    assert "--keep" in out, "the demo offers --keep"
    assert (
        "flood" not in (runs[0].stderr + out).lower()
        and "throttl" not in (runs[0].stderr + out).lower()
    )
    secrets = json.loads(sample_call_path().with_suffix(".json").read_text())["secrets"]
    export = _exports(out).read_text()
    for secret in secrets:
        for text in (out, runs[0].stderr, export):
            assert secret not in re.sub(r"[\s.-]", "", text), secret
    # Finals print in the call's time order.
    starts = [
        60 * int(m) + float(s)
        for m, s in re.findall(r"^  (\d\d):(\d\d\.\d)  (?:agent|customer)", out, re.M)
    ]
    assert len(starts) >= 8 and starts == sorted(starts)


def _final(uid: str, start: int, text: str = "hello") -> dict:
    return {
        "type": "transcript.final",
        "utteranceId": uid,
        "startMs": start,
        "role": "agent",
        "text": text,
        "seq": 0,
    }


def test_the_view_holds_an_event_back_while_an_earlier_utterance_is_being_decoded() -> None:
    lines: list[str] = []
    view = TimeOrderedView(write=lines.append, style=Styles(enabled=False), live=True)
    view.add({"type": "transcript.partial", "utteranceId": "a", "startMs": 1000}, now=0.0)
    # The payment window opens on a's partial: its event arrives before a's final.
    view.add({"type": "payment.started", "trigger": "intent", "startMs": 3000, "seq": 1}, now=0.1)
    assert lines == []
    view.add(_final("a", 1000, "can i take the card number"), now=0.5)
    view.add(
        {"type": "sentiment", "utteranceId": "a", "label": "neutral", "score": 0.0, "seq": 3},
        now=0.6,
    )
    assert lines[0].endswith("can i take the card number   (neutral +0.00)")
    assert "payment window OPEN" in lines[1]
    # A final whose sentiment never comes prints once the wait is over.
    view.add(_final("b", 5000), now=1.0)
    view.tick(now=1.2)
    assert len(lines) == 2
    view.tick(now=1.0 + view.sentiment_wait_s)
    assert lines[2].startswith("  00:05.0  agent")


def test_the_view_prints_everything_in_time_order_when_not_live() -> None:
    lines: list[str] = []
    view = TimeOrderedView(write=lines.append, style=Styles(enabled=False), live=False)
    for uid, start in (("b", 9000), ("a", 2000), ("c", 4000)):
        view.add(_final(uid, start, uid), now=0.0)
    assert lines == []
    view.add({"type": "call.ended", "reason": "media-disconnected", "seq": 9}, now=0.1)
    assert [line.split()[-1] for line in lines] == ["a", "c", "b", "(media-disconnected)"]
