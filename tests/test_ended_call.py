"""A call that has ended stays ended: media for its id is refused, nothing is stored after
its `call.ended`, and the refusal is counted and logged with the reason."""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from .conftest import collect_call_events
from .test_e2e_media import _transcription

CALLER = "4:+15550100"


async def _short_call(ws_base: str, call_id: str, text: str) -> None:
    async with connect(f"{ws_base}/media?callId={call_id}") as ws:
        await ws.send(
            json.dumps(
                {"kind": "TranscriptionMetadata", "transcriptionMetadata": {"locale": "en-us"}}
            )
        )
        await ws.send(_transcription(text, "Final", CALLER, 1000))
    # A clean close (1000) ends the call at once: no reconnect grace.


async def test_media_for_an_ended_call_is_refused_and_nothing_is_stored(acs_server) -> None:
    call_id = "ended-call-1"
    await _short_call(acs_server.ws, call_id, "my internet is down")
    first = await collect_call_events(acs_server.ws, call_id, since=0, timeout=60)
    assert first[-1]["type"] == "call.ended"
    refused_before = acs_server.metric("callstream_media_ended_call_refused_total")

    # ACS (or anyone) streams media for the same call id again.
    async with connect(f"{acs_server.ws}/media?callId={call_id}") as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.send(
                _transcription("your payment has gone through", "Final", "8:acs:agent", 2000)
            )
            await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4410
    assert "ended" in closed.value.rcvd.reason

    again = await collect_call_events(acs_server.ws, call_id, since=0, timeout=60)
    assert again == first, "nothing is stored after call.ended"
    status, calls = acs_server.get_json("/calls")
    assert status == 200
    assert [c["lastSeq"] for c in calls["calls"] if c["callId"] == call_id] == [first[-1]["seq"]]
    assert acs_server.metric("callstream_media_ended_call_refused_total") == refused_before + 1
    assert f"media connection for call '{call_id}' refused: the call has ended" in acs_server.logs()


async def test_a_new_call_id_is_a_new_call(acs_server) -> None:
    await _short_call(acs_server.ws, "ended-call-2a", "hello")
    await _short_call(acs_server.ws, "ended-call-2b", "hello again")
    a = await collect_call_events(acs_server.ws, "ended-call-2a", since=0, timeout=60)
    b = await collect_call_events(acs_server.ws, "ended-call-2b", since=0, timeout=60)
    for events in (a, b):
        assert events[0]["type"] == "call.started" and events[-1]["type"] == "call.ended"
        assert [e["type"] for e in events].count("call.started") == 1
