"""The privacy boundary and the command line, as a user drives them."""

from __future__ import annotations

import json
import sqlite3

from websockets.asyncio.client import connect

from .conftest import FIXTURES, collect_call_events, run_cli, start_subscribers, wait_until
from .test_e2e_media import _transcription

SECRETS = ["4111 1111 1111 1111", "4111111111111111", "john.smith@contoso.com", "078-05-1120"]


async def test_secrets_never_leave_the_boundary(acs_server) -> None:
    call_id = "privacy-call"
    [collector] = await start_subscribers(acs_server, collect_call_events(acs_server.ws, call_id))
    async with connect(
        f"{acs_server.ws}/media", additional_headers={"x-ms-call-connection-id": call_id}
    ) as ws:
        await ws.send(
            _transcription("my card is 4111 1111 1111", "Intermediate", "4:+15551234", 1000)
        )
        await ws.send(
            _transcription(
                "my card is 4111 1111 1111 1111 and mail john.smith@contoso.com",
                "Final",
                "4:+15551234",
                1000,
            )
        )
        await ws.send(_transcription("and my social is 078-05-1120", "Final", "4:+15551234", 4000))
        await ws.send(json.dumps({"kind": "DtmfData", "dtmfData": {"data": "7"}}))
    events = await collector
    partials = [e for e in events if e["type"] == "transcript.partial"]
    # Twelve card digits open a payment window (a late trigger): every digit is redacted.
    assert [p["text"] for p in partials] == ["my card is [DIGITS]"]
    assert [e["trigger"] for e in events if e["type"] == "payment.started"] == ["digits"]
    finals = [e for e in events if e["type"] == "transcript.final"]
    assert len(finals) == 2
    assert finals[0]["text"] == "my card is [CREDIT_CARD] and mail [EMAIL_ADDRESS]"
    for e in finals:
        for r in e["redactions"]:
            assert e["text"][r["start"] : r["end"]] == f"[{r['type']}]"

    outputs = {
        "events": json.dumps(events),
        "export": acs_server.get_bytes(f"/calls/{call_id}/transcript?format=jsonl").decode(),
        "metrics": acs_server.get_bytes("/metrics").decode(),
        "logs": acs_server.logs(),
    }
    db = sqlite3.connect(acs_server.data_dir / "callstream.db")
    outputs["store"] = "\n".join(
        bytes(b).decode() for (b,) in db.execute("SELECT body FROM events")
    )
    db.close()
    assert "[CREDIT_CARD]" in outputs["store"]
    for name, text in outputs.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} leaked into {name}"
        assert "4111 1111 1111" not in text, f"a partial card number leaked into {name}"


def test_redact_json_names_entities_and_spans() -> None:
    out = run_cli("redact", "--json", "call me at 212-555-0199 or mail ann@example.org")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert "212-555-0199" not in doc["text"] and "ann@example.org" not in doc["text"]
    source = "call me at 212-555-0199 or mail ann@example.org"
    spans = {source[e["start"] : e["end"]]: e["type"] for e in doc["entities"]}
    assert spans["ann@example.org"] == "EMAIL_ADDRESS"
    assert spans["212-555-0199"] == "PHONE_NUMBER"
    assert all(0 < e["score"] <= 1 for e in doc["entities"])
    spoken = "it's four one one one, double one um one one, one one one one, one one one one thanks"
    doc = json.loads(run_cli("redact", "--json", spoken).stdout)
    assert doc["text"] == "it's [CREDIT_CARD] thanks"
    [entity] = doc["entities"]
    assert entity["type"] == "CREDIT_CARD"
    # The span is on the words that were spoken, fillers and all.
    assert spoken[entity["start"] : entity["end"]] == spoken[5:-7]
    lines = run_cli("redact", stdin="nothing secret here\nmail bob@example.com\n")
    assert lines.stdout.splitlines() == ["nothing secret here", "mail [EMAIL_ADDRESS]"]


def test_replay_cli_and_export_cli(acs_server, tmp_path) -> None:
    # Mono file: sent mixed; with the acs engine the call carries VAD only and ends cleanly.
    rep = run_cli(
        "replay",
        str(FIXTURES / "support_call.wav"),
        "--url",
        f"{acs_server.ws}/media",
        "--call-id",
        "cli-replay",
        "--speed",
        "0",
        "--calls",
        "2",
    )
    assert rep.returncode == 0, rep.stderr
    assert "cli-replay-1" in rep.stdout and "cli-replay-2" in rep.stdout
    wait_until(
        lambda: {"cli-replay-1", "cli-replay-2"} <= {c["callId"] for c in acs_server.get_json("/calls")[1]["calls"] if c["endedAt"]},
        what="both replayed calls to have ended",
    )  # fmt: skip
    out = tmp_path / "x.jsonl"
    exp = run_cli(
        "export",
        "cli-replay-1",
        "--format",
        "jsonl",
        "--out",
        str(out),
        "--data-dir",
        str(acs_server.data_dir),
    )
    assert exp.returncode == 0, exp.stderr
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines[0]["type"] == "call.started" and lines[-1]["type"] == "call.ended"
    missing = run_cli("export", "nope", "--data-dir", str(acs_server.data_dir))
    assert missing.returncode == 1 and "no stored call" in missing.stderr
    bad = run_cli("replay", str(tmp_path / "absent.wav"), "--url", f"{acs_server.ws}/media")
    assert bad.returncode == 2 and "absent.wav" in bad.stderr
