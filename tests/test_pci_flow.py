"""PCI end to end: ACS answers through us, the recording pauses before the card number
and resumes after the payment, and the audit proves it. Driven by the real Call
Automation SDK against a local fake of ACS (tests/fake_acs.py) that checks every
request's HMAC signature."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time

import pytest
from azure.communication.callautomation import CallAutomationClient
from azure.core.credentials import AzureKeyCredential
from websockets.asyncio.client import connect

from pipeline.cli.replay import load_call_audio, replay_call

from .conftest import (
    FIXTURES,
    collect_call_events,
    load_manifest,
    start_server,
    start_subscribers,
    wait_for,
)
from .fake_acs import (
    FakeAcs,
    cloud_event,
    event_grid_validation,
    post_cloud_events,
    post_event_grid,
)
from .test_e2e_media import _transcription

CUSTOMER = "4:+15551234"
AGENT = "8:acs:agent-7"


@pytest.fixture(scope="module")
def fake_acs():
    with FakeAcs() as fake:
        yield fake


CALLBACK_SECRET = "pci-flow-callback-secret"


def acs_env(fake: FakeAcs, **extra: str) -> dict[str, str]:
    """ACS configured; media auth off (these tests stream without ACS's JWT; tests/test_security.py
    covers it) and a known callback secret, for the tests that post to /acs/* themselves."""
    return {
        "CALLSTREAM_ACS_ENDPOINT": fake.endpoint, "CALLSTREAM_ACS_KEY": fake.access_key,
        "CALLSTREAM_MEDIA_AUTH": "off", "CALLSTREAM_CALLBACK_SECRET": CALLBACK_SECRET, **extra,
    }  # fmt: skip


def register_recording(server, fake: FakeAcs, call_id: str) -> str:
    """A recording started elsewhere (not by callstream), registered for the call."""
    client = CallAutomationClient(fake.endpoint, AzureKeyCredential(fake.access_key), retry_total=0)
    recording_id = client.start_recording(server_call_id=f"server-{call_id}").recording_id
    assert server.post_json(f"/calls/{call_id}/recording", {"recordingId": recording_id})[0] == 200
    return recording_id


def audit_of(server, call_id: str) -> dict:
    status, doc = server.get_json(f"/calls/{call_id}/audit")
    assert status == 200, doc
    return doc


def requests_for(fake: FakeAcs, op: str, recording_id: str, status: int | None = None) -> list:
    """The fake's ``op`` requests for this recording (the fake lives as long as the module,
    so `fake.of(op)` also holds earlier tests' requests), answered with ``status`` if given."""
    return [
        r
        for r in fake.of(op)
        if r.recording_id == recording_id and (status is None or r.status == status)
    ]


def confirmed(server, call_id: str, action: str) -> bool:
    """ACS confirmed a pause or resume of the call's recording (on its audit)."""
    records = server.get_json(f"/calls/{call_id}/audit")[1].get("records", [])  # 404 until stored
    return any(r["kind"] == "recording.confirmed" and r.get("action") == action for r in records)


async def test_incoming_call_to_paused_card_number_to_resumed_recording(fake_acs, tmp_path) -> None:
    fake = fake_acs
    server = start_server(tmp_path, public_url_self=True, CALLSTREAM_STT="local", **acs_env(fake))
    try:
        # Event Grid first validates the subscription, then delivers the incoming call.
        status, body = post_event_grid(
            f"{server.http}/acs/events?secret={CALLBACK_SECRET}", event_grid_validation("code-123")
        )
        assert (status, body) == (200, {"validationResponse": "code-123"})
        call_id = "pci-flow-call"
        fake.next_call_connection_id = call_id
        status, _ = post_event_grid(
            f"{server.http}/acs/events?secret={CALLBACK_SECRET}", fake.incoming_call()
        )
        assert status == 200
        await wait_for(lambda: fake.of("start_recording"), what="the recording to start")
        [answer] = fake.answers
        media = answer["mediaStreamingOptions"]
        assert media["transportUrl"] == f"ws://127.0.0.1:{server.port}/media"
        assert (media["audioChannelType"], media["audioFormat"]) == ("unmixed", "pcm16KMono")
        assert media["startMediaStreaming"] is True and media["enableDtmfTones"] is True
        assert (
            answer["callbackUri"]
            == f"http://127.0.0.1:{server.port}/acs/callbacks?secret={CALLBACK_SECRET}"
        )
        [start] = fake.of("start_recording")
        recording_id = next(iter(fake.recordings))
        assert start.body["recordingStateCallbackUri"].endswith(
            f"/acs/callbacks?secret={CALLBACK_SECRET}"
        )

        # The payment call, in real time, as ACS would stream it.
        manifest = load_manifest("payment_call")
        utterances = manifest["utterances"]
        first_digit_ms = utterances[1]["startMs"]  # "four one one one ..."
        security_code_end_ms = utterances[3]["endMs"]  # "... and one two three"
        closing_start_ms = utterances[6]["startMs"]  # "thank you, your payment has gone through"
        [collector] = await start_subscribers(server, collect_call_events(server.ws, call_id))
        t0 = time.monotonic()
        await replay_call(
            f"{server.ws}/media", load_call_audio(FIXTURES / "payment_call.wav"), call_id, speed=1.0
        )
        events = await collector
        doc = audit_of(server, call_id)
    finally:
        server.stop()
        logs = server.logs()

    pauses = [r for r in fake.of("pause") if r.status == 202]
    resumes = [r for r in fake.of("resume") if r.status == 202]
    assert len(pauses) == 1 and len(resumes) == 1
    assert all(r.signed_ok for r in fake.requests) and fake.bad_signatures == 0
    paused_at_ms = (pauses[0].t_mono - t0) * 1000
    resumed_at_ms = (resumes[0].t_mono - t0) * 1000
    print(f"pause sent at {paused_at_ms:.0f} ms (first card digit at {first_digit_ms} ms);"
          f" resume at {resumed_at_ms:.0f} ms (closing phrase from {closing_start_ms} ms)")  # fmt: skip
    assert paused_at_ms < first_digit_ms, (
        "the recording must be paused before the card number starts"
    )
    assert resumed_at_ms > security_code_end_ms and resumed_at_ms > closing_start_ms
    assert fake.recording_state(recording_id) == "active"

    kinds = [e["type"] for e in events]
    assert (
        kinds.index("payment.started")
        < kinds.index("recording.paused")
        < kinds.index("payment.ended")
    )
    assert kinds.index("payment.ended") < kinds.index("recording.resumed")
    [started] = [e for e in events if e["type"] == "payment.started"]
    [ended] = [e for e in events if e["type"] == "payment.ended"]
    assert (started["trigger"], ended["trigger"]) == ("intent", "phrase")
    [paused] = [e for e in events if e["type"] == "recording.paused"]
    assert (
        paused["recordingId"] == recording_id and paused["attempt"] == 1 and paused["latencyMs"] > 0
    )

    assert len(doc["windows"]) == 1 and doc["windows"][0]["trigger"] == "intent"
    assert doc["windows"][0]["endTrigger"] == "phrase"
    assert doc["exposures"] == []
    requests = [(r["action"], r["outcome"]) for r in doc["requests"]]
    assert requests == [("pause", "ok"), ("resume", "ok")]
    assert doc["policyVersion"].startswith("sha256:")
    assert (
        doc["redactionCounts"].get("CREDIT_CARD", 0) + doc["redactionCounts"].get("DIGITS", 0) >= 1
    )
    assert any(r["kind"] == "acs.callback" and r["type"] == "CallConnected" for r in doc["records"])
    # Nothing of the card reached the events, the audit or the logs.
    for text in (json.dumps(events), json.dumps(doc), logs):
        assert "4111111111111111" not in text and "one one one one" not in text


async def test_pause_failures_are_retried_and_the_exposure_is_on_record(fake_acs, tmp_path) -> None:
    fake = fake_acs
    server = start_server(
        tmp_path,
        CALLSTREAM_STT="acs",
        CALLSTREAM_RECORDING_ATTEMPT_TIMEOUT_S="0.5",
        **acs_env(fake),
    )
    try:
        call_id = "retry-call"
        recording_id = register_recording(server, fake, call_id)
        # First pause: HTTP 500. Second: no answer within the attempt timeout, so a third
        # goes out beside it (a hedge), which is fine.
        fake.script("pause", 500, ("timeout", 1.5))
        [collector] = await start_subscribers(server, collect_call_events(server.ws, call_id))
        async with connect(
            f"{server.ws}/media", additional_headers={"x-ms-call-connection-id": call_id}
        ) as ws:
            await ws.send(
                _transcription("can i take the card number please", "Intermediate", AGENT, 500)
            )
            # The partial opened the window: the first (failing) pause attempt is out.
            await wait_for(
                lambda: requests_for(fake, "pause", recording_id), what="the first pause attempt"
            )
            await ws.send(_transcription("can i take the card number please", "Final", AGENT, 500))
            # The customer starts reading the number before the pause has taken effect.
            await ws.send(
                _transcription("sure it's four one one one", "Intermediate", CUSTOMER, 2000)
            )
            await wait_for(
                lambda: requests_for(fake, "pause", recording_id, 202), timeout=15, what="a pause"
            )
            await ws.send(_transcription("sure it's 4111 1111 1111 1111", "Final", CUSTOMER, 2000))
            # The agent resumes once ACS has confirmed the pause (on a loaded machine that
            # can take a moment after the 202).
            await wait_for(
                lambda: confirmed(server, call_id, "pause"),
                timeout=15,
                what="the pause to be confirmed",
            )
            # The attempt that timed out still lands at ACS, late: a pause of a recording
            # already paused. Before the agent resumes, or it would pause the recording
            # again after the resume (which would then, rightly, not be confirmed at once).
            await wait_for(
                lambda: all(r.handled.is_set() for r in requests_for(fake, "pause", recording_id)),
                what="the timed-out pause to land",
            )
            assert server.post_json(f"/calls/{call_id}/recording/resume", {})[0] == 202
            # recording.resumed is published once ACS confirmed the resume: before the hang-up.
            await wait_for(
                lambda: confirmed(server, call_id, "resume"),
                timeout=15,
                what="the resume to be confirmed",
            )
        events = await collector
        doc = audit_of(server, call_id)
    finally:
        server.stop()

    recording = [e for e in events if e["type"].startswith("recording.")]
    # The request that hung (2) got a second one beside it (3, a hedge), which ACS accepted
    # and confirmed; 2's timeout is an error event only if it came before that confirmation
    # (never after `recording.paused`), and always on the audit.
    assert [(e["type"], e["attempt"]) for e in recording] in (
        [("recording.error", 1), ("recording.error", 2), ("recording.paused", 3), ("recording.resumed", 1)],
        [("recording.error", 1), ("recording.paused", 3), ("recording.resumed", 1)],
    ), recording  # fmt: skip
    assert "HTTP 500" in recording[0]["error"]
    assert all("timeout" in e["error"] for e in recording if e.get("attempt") == 2)
    [paused] = [e for e in recording if e["type"] == "recording.paused"]
    [exposure] = doc["exposures"]
    assert exposure["fromMs"] == doc["windows"][0]["startMs"]
    # The exposure lasts until the pause took effect: the paused event's latency, within
    # the few milliseconds between the two clocks' readings.
    assert abs(exposure["durationMs"] - paused["latencyMs"]) < 150, json.dumps(
        [doc["records"], events], indent=1
    )
    pauses = {r["attempt"]: r for r in doc["requests"] if r.get("action") == "pause"}
    assert {n: r["outcome"] for n, r in pauses.items()} == {1: "error", 2: "error", 3: "ok"}
    assert "HTTP 500" in pauses[1]["error"] and "timeout" in pauses[2]["error"]
    assert [r.get("hedge", False) for _, r in sorted(pauses.items())] == [False, False, True]
    # The hedge went out while 2 was unanswered (before its timeout was on record).
    assert pauses[2]["sentAfterMs"] < pauses[3]["sentAfterMs"] < pauses[2]["latencyMs"]
    [ended] = [e for e in events if e["type"] == "payment.ended"]
    assert ended["trigger"] == "manual"
    assert fake.recording_state(recording_id) == "active"


async def test_a_late_trigger_opens_on_digits_and_reports_exposure(fake_acs, tmp_path) -> None:
    fake = fake_acs
    # Configured by connection string this time: its http:// endpoint must be kept as given.
    server = start_server(
        tmp_path,
        CALLSTREAM_STT="acs",
        CALLSTREAM_ACS_CONNECTION_STRING=fake.connection_string,
        CALLSTREAM_MEDIA_AUTH="off",
    )
    try:
        call_id = "late-call"
        recording_id = register_recording(server, fake, call_id)
        [collector] = await start_subscribers(server, collect_call_events(server.ws, call_id))
        async with connect(
            f"{server.ws}/media", additional_headers={"x-ms-call-connection-id": call_id}
        ) as ws:
            await ws.send(_transcription("hi i'd like to pay my bill", "Final", CUSTOMER, 0))
            await ws.send(
                _transcription(
                    "it's four one one one one one one one one", "Intermediate", CUSTOMER, 3000
                )
            )
            await wait_for(lambda: requests_for(fake, "pause", recording_id), what="a pause")
            await ws.send(
                _transcription(
                    "it's four one one one one one one one one one one one one one one one",
                    "Final",
                    CUSTOMER,
                    3000,
                )
            )
            # The call ends once the pause has taken effect (the exposure ends there).
            await wait_for(
                lambda: confirmed(server, call_id, "pause"),
                timeout=15,
                what="the pause to be confirmed",
            )
        events = await collector
        doc = audit_of(server, call_id)
    finally:
        server.stop()
    [started] = [e for e in events if e["type"] == "payment.started"]
    assert started["trigger"] == "digits"
    [exposure] = doc["exposures"]
    assert (
        exposure["reason"].startswith("late trigger") and exposure["fromMs"] <= started["startMs"]
    )
    assert exposure["toMs"] > exposure["fromMs"]
    texts = [e["text"] for e in events if e["type"].startswith("transcript.")]
    assert not any("one one one one" in t or "1111" in t for t in texts)


async def test_dtmf_card_entry_opens_the_window_and_keeps_no_digit(fake_acs, tmp_path) -> None:
    fake = fake_acs
    server = start_server(tmp_path, CALLSTREAM_STT="acs", **acs_env(fake))
    try:
        call_id = "keypad-entry-call"
        recording_id = register_recording(server, fake, call_id)
        [collector] = await start_subscribers(server, collect_call_events(server.ws, call_id))
        async with connect(
            f"{server.ws}/media", additional_headers={"x-ms-call-connection-id": call_id}
        ) as ws:
            await ws.send(_transcription("go ahead and key it in on your phone", "Final", AGENT, 0))
            for tone in "4111111111111111":
                await ws.send(json.dumps({"kind": "DtmfData", "dtmfData": {"data": tone}}))
            await wait_for(lambda: requests_for(fake, "pause", recording_id), what="a pause")
            await wait_for(
                lambda: confirmed(server, call_id, "pause"),
                timeout=15,
                what="the pause to be confirmed",
            )
            # ACS hangs up: the call ends although its media socket is still open.
            post_cloud_events(f"{server.http}/acs/callbacks?secret={CALLBACK_SECRET}", [cloud_event(
                "Microsoft.Communication.CallDisconnected", {"callConnectionId": call_id, "serverCallId": "server-call-dtmf"}
            )])  # fmt: skip
            events = await asyncio.wait_for(collector, 30)
        doc = audit_of(server, call_id)
    finally:
        server.stop()
    assert [e["trigger"] for e in events if e["type"] == "payment.started"] == ["dtmf"]
    assert events[-1]["type"] == "call.ended" and events[-1]["reason"] == "call-disconnected"
    assert any(
        r["kind"] == "acs.callback" and r["type"] == "CallDisconnected" for r in doc["records"]
    )
    [exposure] = doc["exposures"]  # the first tones may be on the recording
    assert exposure["reason"].startswith("late trigger")
    db = sqlite3.connect(server.data_dir / "callstream.db")
    rows = [
        bytes(b).decode()
        for (b,) in db.execute("SELECT body FROM events UNION ALL SELECT body FROM audit")
    ]
    db.close()
    assert "4111" not in "\n".join(rows) + json.dumps(events) + json.dumps(doc) + server.logs()
    assert doc["windows"][0]["trigger"] == "dtmf"


async def test_without_a_known_recording_the_window_still_opens_and_the_audit_says_so(
    fake_acs, tmp_path
) -> None:
    server = start_server(tmp_path, CALLSTREAM_STT="acs", **acs_env(fake_acs))
    try:
        call_id = "unrecorded-call"
        [collector] = await start_subscribers(server, collect_call_events(server.ws, call_id))
        async with connect(
            f"{server.ws}/media", additional_headers={"x-ms-call-connection-id": call_id}
        ) as ws:
            await ws.send(_transcription("can i take the card number", "Final", AGENT, 0))
            # The intent phrase opened a window (on the audit) before the manual commands.
            await wait_for(
                lambda: server.get_json(f"/calls/{call_id}/audit")[1].get("windows"),
                what="the window to open",
            )
            assert server.post_json(f"/calls/{call_id}/recording/resume", {})[0] == 202
            assert server.post_json(f"/calls/{call_id}/recording/pause", {})[0] == 202
            assert (
                server.post_json(f"/calls/{call_id}/recording/pause", {})[0] == 200
            )  # already open
            assert server.post_json(f"/calls/{call_id}/recording/stop", {})[0] == 404
            assert server.post_json("/calls/no-such-call/recording/pause", {})[0] == 404
        events = await collector
        doc = audit_of(server, call_id)
    finally:
        server.stop()
    assert [e["trigger"] for e in events if e["type"] == "payment.started"] == ["intent", "manual"]
    skipped = [r for r in doc["requests"] if r["kind"] == "recording.skipped"]
    assert skipped and all(r["reason"] == "no recording is known for this call" for r in skipped)
    assert not [e for e in events if e["type"].startswith("recording.")]
