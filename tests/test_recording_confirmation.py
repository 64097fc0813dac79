"""`recording.paused` and `recording.resumed` mean ACS confirmed it (issue 17).

A 202 from ``pause_recording`` says ACS accepted the request, not that the recording
stopped. These tests drive the real Call Automation SDK against the fake ACS
(tests/fake_acs.py), which here accepts a recording's pause or resume and then does nothing
(`unresponsive_recordings`) until the test changes the state itself
(`set_recording_state`, with its RecordingStateChanged callback). Until ACS reports the
state asked for, the call gets a ``recording.error`` with ``error: "unconfirmed"`` (and an
audit record saying the request was accepted but not confirmed) while the requests and
polls go on; the paused or resumed event comes with the confirmation, its ``latencyMs``
running to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator

import pytest
from azure.communication.callautomation import CallAutomationClient
from azure.core.credentials import AzureKeyCredential
from websockets.asyncio.client import ClientConnection, connect

from .conftest import Server, collect_call_events, start_server, start_subscribers, wait_for
from .fake_acs import FakeAcs, cloud_event
from .test_e2e_media import _transcription
from .test_pci_flow import CALLBACK_SECRET, acs_env, requests_for

CUSTOMER = "4:+15551234"
AGENT = "8:acs:agent-7"
INTENT = "can i take the card number please"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAcs]:
    with FakeAcs() as f:
        yield f


@pytest.fixture(scope="module")
def server(fake: FakeAcs, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One service for the module: each test has its own call and its own recording."""
    s = start_server(tmp_path_factory.mktemp("confirm"), CALLSTREAM_STT="acs", **acs_env(fake))
    yield s
    s.stop()


def audit(server: Server, call_id: str) -> dict:
    return server.get_json(f"/calls/{call_id}/audit")[1]  # {} until the call is stored


def settled(server: Server, call_id: str, action: str) -> bool:
    """The driver of ``action`` has waited for ACS once: it wrote ``recording.confirmed``
    (the only outcome before the fix, whatever ACS said) or ``recording.unconfirmed``."""
    return any(
        r["kind"] in ("recording.confirmed", "recording.unconfirmed") and r.get("action") == action
        for r in audit(server, call_id).get("records", [])
    )


def confirmed(server: Server, call_id: str, action: str) -> list[dict]:
    """The call's ``recording.confirmed`` records for ``action`` (before the fix, one was
    written after every accepted request, ``confirmedBy: "unconfirmed"`` included)."""
    return of_kind(audit(server, call_id), "recording.confirmed", action)


def of_kind(doc: dict, kind: str, action: str) -> list[dict]:
    return [r for r in doc.get("records", []) if r["kind"] == kind and r.get("action") == action]


def recording_events(events: list[dict]) -> list[tuple[str, str | None]]:
    return [(e["type"], e.get("error")) for e in events if e["type"].startswith("recording.")]


@contextlib.asynccontextmanager
async def recorded_call(
    server: Server, fake: FakeAcs, call_id: str, *, unresponsive: bool = True
) -> AsyncIterator[tuple[ClientConnection, str]]:
    """The call's media socket, open, and a recording started elsewhere registered for it
    (once the media is in: a control route may refuse a call nobody streams yet)."""
    client = CallAutomationClient(fake.endpoint, AzureKeyCredential(fake.access_key), retry_total=0)
    props = await asyncio.to_thread(
        client.start_recording,
        server_call_id=f"server-{call_id}",
        recording_state_callback_url=f"{server.http}/acs/callbacks?secret={CALLBACK_SECRET}",
    )
    rid = props.recording_id
    if unresponsive:
        fake.unresponsive_recordings.add(rid)
    headers = {"x-ms-call-connection-id": call_id}
    async with connect(f"{server.ws}/media", additional_headers=headers) as ws:
        path = f"/calls/{call_id}/recording"
        await wait_for(
            lambda: server.post_json(path, {"recordingId": rid})[0] == 200,
            what="the recording registered",
        )
        yield ws, rid


async def open_window(ws: ClientConnection, customer_speaks: bool = True) -> None:
    await ws.send(_transcription(INTENT, "Final", AGENT, 500))
    if customer_speaks:  # before any confirmation: audio the recording may hold
        await ws.send(_transcription("sure it's four one one one", "Final", CUSTOMER, 2000))


async def test_a_pause_acs_accepts_but_never_carries_out_is_never_published(fake, server) -> None:
    call_id = "unconfirmed-pause"
    events: list[dict] = []
    [collector] = await start_subscribers(
        server, collect_call_events(server.ws, call_id, into=events)
    )
    async with recorded_call(server, fake, call_id) as (ws, rid):
        await open_window(ws)
        await wait_for(lambda: settled(server, call_id, "pause"), timeout=15, what="a first wait")
        assert not (early := confirmed(server, call_id, "pause")), json.dumps(early)
        # The requests and polls go on: a second round, and ACS still does nothing.
        await wait_for(
            lambda: len(of_kind(audit(server, call_id), "recording.unconfirmed", "pause")) >= 2,
            timeout=15,
            what="a second unconfirmed pause",
        )
        assert server.post_json(f"/calls/{call_id}/recording/resume", {})[0] == 202
        # Nothing was paused: ACS reports the recording active, which the resume asks for.
        await wait_for(lambda: confirmed(server, call_id, "resume"), timeout=15, what="the resume")
    await asyncio.wait_for(collector, 30)
    doc = audit(server, call_id)

    assert fake.recording_state(rid) == "active"
    kinds = [e["type"] for e in events]
    assert "recording.paused" not in kinds, recording_events(events)
    unconfirmed = [e for e in events if e["type"] == "recording.error"]
    assert [e["error"] for e in unconfirmed] == ["unconfirmed"] * len(unconfirmed)
    assert [e["attempt"] for e in unconfirmed][:2] == [1, 2]
    assert all(e["recordingId"] == rid and e["latencyMs"] >= 1000 for e in unconfirmed)
    # The requests and polls went on while the window was open.
    assert len(requests_for(fake, "pause", rid, 202)) >= 2
    assert len(requests_for(fake, "get_recording", rid)) >= 4
    # On record: each accepted request, and that ACS did not confirm it.
    records = of_kind(doc, "recording.unconfirmed", "pause")
    assert len(records) >= 2 and all(r["state"] == "active" for r in records)
    assert not of_kind(doc, "recording.confirmed", "pause")
    # The summary's requests: accepted, not confirmed, asked again (the first two rounds).
    outcomes = [(r["action"], r.get("outcome", r["kind"])) for r in doc["requests"]]
    assert outcomes[:4] == [("pause", "ok"), ("pause", "unconfirmed")] * 2, outcomes
    [window] = doc["windows"]
    assert window["pauseConfirmedMs"] is None
    [exposure] = doc["exposures"]  # the customer spoke, and the recording never paused
    assert (exposure["fromMs"], exposure["toMs"]) == (window["startMs"], window["endMs"])
    # ACS reported the recording active after the resume: that is a confirmed resume.
    [resumed] = [e for e in events if e["type"] == "recording.resumed"]
    [how] = of_kind(doc, "recording.confirmed", "resume")
    assert how["confirmedBy"] == "poll" and how["latencyMs"] == resumed["latencyMs"]


async def test_a_pause_confirmed_late_is_published_with_its_latency_to_the_confirmation(
    fake, server
) -> None:
    call_id = "late-confirmed-pause"
    events: list[dict] = []
    [collector] = await start_subscribers(
        server, collect_call_events(server.ws, call_id, into=events)
    )
    async with recorded_call(server, fake, call_id) as (ws, rid):
        await open_window(ws)
        await wait_for(lambda: settled(server, call_id, "pause"), timeout=15, what="a first wait")
        assert not (early := confirmed(server, call_id, "pause")), json.dumps(early)
        # ACS carries the pause out now, well after it accepted it.
        confirmed_at = time.monotonic()
        assert await asyncio.to_thread(fake.set_recording_state, rid, "inactive") == 200
        await wait_for(lambda: confirmed(server, call_id, "pause"), what="the pause")
        fake.unresponsive_recordings.discard(rid)
        assert server.post_json(f"/calls/{call_id}/recording/resume", {})[0] == 202
        await wait_for(lambda: confirmed(server, call_id, "resume"), what="the resume")
    await asyncio.wait_for(collector, 30)
    doc = audit(server, call_id)

    sent_at = requests_for(fake, "pause", rid, 202)[0].t_mono  # after the window opened
    kinds = [e["type"] for e in events]
    assert kinds.count("recording.paused") == 1, recording_events(events)
    # Before the confirmation, the call was told the pause was not confirmed.
    assert recording_events(events)[0] == ("recording.error", "unconfirmed")
    assert kinds.index("recording.error") < kinds.index("recording.paused")
    [paused] = [e for e in events if e["type"] == "recording.paused"]
    assert paused["latencyMs"] >= (confirmed_at - sent_at) * 1000, (paused, confirmed_at - sent_at)
    [how] = of_kind(doc, "recording.confirmed", "pause")
    # By its callback (or, if a poll answered in flight then, the next poll's answer).
    assert how["confirmedBy"] in ("callback", "poll") and how["latencyMs"] == paused["latencyMs"]
    assert how["state"] == "inactive"
    # The audit says when the recording really paused: the exposure runs to the confirmation.
    [window] = doc["windows"]
    assert window["pauseConfirmedMs"] is not None
    [exposure] = doc["exposures"]
    assert exposure["fromMs"] == window["startMs"]
    assert abs(exposure["durationMs"] - paused["latencyMs"]) < 150, (exposure, paused)
    assert [e["type"] for e in events if e["type"] == "recording.resumed"] == ["recording.resumed"]


async def test_a_resume_is_published_only_when_acs_reports_the_recording_active(
    fake, server
) -> None:
    call_id = "late-confirmed-resume"
    events: list[dict] = []
    [collector] = await start_subscribers(
        server, collect_call_events(server.ws, call_id, into=events)
    )
    async with recorded_call(server, fake, call_id, unresponsive=False) as (ws, rid):
        await open_window(ws, customer_speaks=False)
        await wait_for(lambda: confirmed(server, call_id, "pause"), what="the pause")
        fake.unresponsive_recordings.add(rid)  # from here ACS accepts and does nothing
        assert server.post_json(f"/calls/{call_id}/recording/resume", {})[0] == 202
        await wait_for(lambda: settled(server, call_id, "resume"), timeout=15, what="a wait")
        assert not (early := confirmed(server, call_id, "resume")), json.dumps(early)
        await wait_for(
            lambda: ("recording.error", "unconfirmed") in recording_events(events),
            what="the unconfirmed resume on the event stream",
        )
        before = recording_events(events)
        confirmed_at = time.monotonic()
        assert await asyncio.to_thread(fake.set_recording_state, rid, "active") == 200
        await wait_for(lambda: confirmed(server, call_id, "resume"), what="the resume")
    await asyncio.wait_for(collector, 30)
    doc = audit(server, call_id)

    assert before[:2] == [("recording.paused", None), ("recording.error", "unconfirmed")], before
    assert ("recording.resumed", None) not in before, before
    sent_at = requests_for(fake, "resume", rid, 202)[0].t_mono
    [resumed] = [e for e in events if e["type"] == "recording.resumed"]
    assert resumed["latencyMs"] >= (confirmed_at - sent_at) * 1000, resumed
    [record, *_] = of_kind(doc, "recording.unconfirmed", "resume")
    assert record["state"] == "inactive" and record["recordingId"] == rid
    [how] = of_kind(doc, "recording.confirmed", "resume")
    assert how["confirmedBy"] in ("callback", "poll") and how["latencyMs"] == resumed["latencyMs"]
    assert [e["type"] for e in events].count("recording.paused") == 1


async def test_a_state_reported_before_the_request_confirms_nothing(fake, server) -> None:
    """ACS delivers callbacks in no guaranteed order: an old "inactive" arriving before the
    window opened says nothing about the pause requested afterwards."""
    call_id = "stale-state"
    events: list[dict] = []
    [collector] = await start_subscribers(
        server, collect_call_events(server.ws, call_id, into=events)
    )
    async with recorded_call(server, fake, call_id) as (ws, rid):
        # Before the window, a late "inactive" (ACS's recording stays active all along).
        stale = {"callConnectionId": call_id, "recordingId": rid, "state": "inactive"}
        url = f"{server.http}/acs/callbacks?secret={CALLBACK_SECRET}"
        status = await asyncio.to_thread(
            fake.post_cloud_events, url, [cloud_event("RecordingStateChanged", stale)]
        )
        assert status == 200
        await open_window(ws, customer_speaks=False)
        await wait_for(lambda: settled(server, call_id, "pause"), timeout=15, what="a wait")
        assert not (early := confirmed(server, call_id, "pause")), json.dumps(early)
        assert server.post_json(f"/calls/{call_id}/recording/resume", {})[0] == 202
        await wait_for(lambda: confirmed(server, call_id, "resume"), timeout=15, what="the resume")
    await asyncio.wait_for(collector, 30)
    doc = audit(server, call_id)

    assert "recording.paused" not in [e["type"] for e in events], recording_events(events)
    assert of_kind(doc, "recording.unconfirmed", "pause")[0]["state"] == "active"
    assert fake.recording_state(rid) == "active"
