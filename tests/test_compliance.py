"""Compliance: exports carry a manifest whose chain names any tampered event; retention
purges what policy says and nothing on legal hold, and every purge is on record."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from pipeline.compliance.retention import cutoff_for

from .conftest import collect_call_events, start_server, start_subscribers, wait_for
from .test_e2e_media import _transcription
from .test_privacy_and_cli import run_cli

CUSTOMER = "4:+15551234"
AGENT = "8:acs:agent-7"


async def make_call(server, call_id: str, turns: int = 4) -> list[dict]:
    [collector] = await start_subscribers(server, collect_call_events(server.ws, call_id))
    async with connect(
        f"{server.ws}/media", additional_headers={"x-ms-call-connection-id": call_id}
    ) as ws:
        for i in range(turns):
            who = AGENT if i % 2 == 0 else CUSTOMER
            await ws.send(
                _transcription(
                    f"turn {i}: thanks, my email is ann{i}@example.com", "Final", who, 1000 * i
                )
            )
    return await collector


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    s = start_server(tmp_path_factory.mktemp("compliance"), CALLSTREAM_STT="acs")
    yield s
    s.stop()


def export(server, call_id: str, out: Path, fmt: str = "jsonl") -> None:
    r = run_cli(
        "export", call_id, "--format", fmt, "--out", str(out), "--data-dir", str(server.data_dir)
    )
    assert r.returncode == 0, r.stderr


def verify(path: Path) -> tuple[int, str]:
    r = run_cli("verify", str(path))
    return r.returncode, r.stdout


def db(server) -> sqlite3.Connection:
    return sqlite3.connect(server.data_dir / "callstream.db", isolation_level=None)


async def test_an_untouched_export_verifies_and_its_manifest_says_what_it_holds(
    server, tmp_path
) -> None:
    events = await make_call(server, "clean-call")
    out = tmp_path / "clean.jsonl"
    export(server, "clean-call", out)
    assert verify(out) == (0, f"OK: {out} matches its manifest\n")
    manifest = json.loads(Path(f"{out}.manifest.json").read_text())  # noqa: ASYNC240 - a test reading its file
    assert (manifest["callId"], manifest["firstSeq"], manifest["lastSeq"]) == (
        "clean-call",
        1,
        events[-1]["seq"],
    )
    assert manifest["eventCount"] == len(events) == len(manifest["links"])
    assert manifest["chainHead"] == manifest["links"][-1]
    assert manifest["redactionCounts"] == {"EMAIL_ADDRESS": 4}
    assert manifest["pauseIntervals"] == [] and manifest["exposures"] == []
    # The HTTP manifest of the same export is the same document.
    status, http_manifest = server.get_json("/calls/clean-call/manifest?format=jsonl")
    assert status == 200 and http_manifest == manifest
    # A character changed in the exported file is named too.
    lines = out.read_bytes().splitlines(keepends=True)
    i = next(n for n, line in enumerate(lines) if b"turn 1" in line)
    lines[i] = lines[i].replace(b"turn 1", b"turn 7")
    out.write_bytes(b"".join(lines))
    code, said = verify(out)
    assert code == 1 and f"event seq {i + 1} was altered" in said, said


@pytest.mark.parametrize("tamper", ["change", "delete", "reorder"])
async def test_tampering_with_the_store_is_named_by_verify(server, tmp_path, tamper: str) -> None:
    call_id = f"tampered-{tamper}"
    await make_call(server, call_id)
    conn = db(server)
    if tamper == "change":
        seq, body = conn.execute(
            "SELECT seq, body FROM events WHERE call_id = ? AND CAST(body AS TEXT) LIKE '%turn 2%' ORDER BY seq LIMIT 1",
            (call_id,),
        ).fetchone()
        conn.execute(
            "UPDATE events SET body = ? WHERE call_id = ? AND seq = ?",
            (bytes(body).replace(b"turn 2", b"turn 9"), call_id, seq),
        )
        expected = f"event seq {seq} was altered"
    elif tamper == "delete":
        conn.execute("DELETE FROM events WHERE call_id = ? AND seq = 5", (call_id,))
        expected = "event seq 5 is missing"
    else:
        rows = dict(
            conn.execute(
                "SELECT seq, body FROM events WHERE call_id = ? AND seq IN (3, 5)", (call_id,)
            )
        )
        conn.execute("UPDATE events SET body = ? WHERE call_id = ? AND seq = 3", (rows[5], call_id))
        conn.execute("UPDATE events SET body = ? WHERE call_id = ? AND seq = 5", (rows[3], call_id))
        expected = "event seq 3 is missing (line 3 holds seq 5)"
    conn.close()
    out = tmp_path / f"{call_id}.jsonl"
    export(server, call_id, out)
    code, said = verify(out)
    assert code == 1 and expected in said, said


async def test_legal_hold_and_purge_with_an_audit_record(server, tmp_path) -> None:
    await make_call(server, "old-call")
    await make_call(server, "held-call")
    assert server.post_json("/calls/held-call/hold", {"hold": True, "reason": "case 42"}) == (
        200, {"callId": "held-call", "hold": True},
    )  # fmt: skip
    assert server.post_json("/calls/no-such-call/hold", {"hold": True})[0] == 404
    # `purge --days 0` removes the calls that ended before now, to the millisecond.
    await wait_for(
        lambda: all(c["endedAt"] and c["endedAt"] < cutoff_for(0) for c in server.get_json("/calls")[1]["calls"]
                    if c["callId"] in ("old-call", "held-call")),
        what="the clock to pass the calls' end",
    )  # fmt: skip
    r = run_cli("purge", "--days", "0", "--data-dir", str(server.data_dir))
    assert r.returncode == 0, r.stderr
    assert server.get_json("/calls/old-call/transcript?format=jsonl")[0] == 404
    assert server.get_json("/calls/old-call/audit")[0] == 404
    assert server.get_bytes("/calls/held-call/transcript?format=jsonl")
    status, doc = server.get_json("/calls/_retention/audit")
    assert status == 200
    [purge] = [r for r in doc["records"] if r["kind"] == "purge" and "old-call" in r["purged"]]
    assert purge["actor"] == "cli" and "held-call" not in purge["purged"]
    held = server.get_json("/calls/held-call/audit")[1]
    assert any(r["kind"] == "legal-hold" and r["hold"] for r in held["records"])


async def test_the_service_purges_on_its_own_schedule(tmp_path) -> None:
    s = start_server(
        tmp_path,
        CALLSTREAM_STT="acs",
        CALLSTREAM_RETENTION_DAYS="0",
        CALLSTREAM_RETENTION_INTERVAL_S="0.5",
    )
    try:
        await make_call(s, "short-lived", turns=1)
        # The purge runs in the server on its own clock: wait for its effect.
        await wait_for(
            lambda: s.get_json("/calls/short-lived/audit")[0] == 404, what="the scheduled purge"
        )
        assert s.get_json("/calls/short-lived/transcript?format=jsonl")[0] == 404
        records = s.get_json("/calls/_retention/audit")[1]["records"]
        assert any("short-lived" in r["purged"] and r["actor"] == "schedule" for r in records)
    finally:
        s.stop()
