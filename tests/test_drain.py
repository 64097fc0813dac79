"""Graceful drain on SIGTERM, as Kubernetes stops a pod.

/readyz turns false and new media is refused at once; the call in progress goes on and
everything it says is stored; the process exits 0 when the call ends, or when the grace
period runs out (the call is then ended as "server-shutdown", and still fully stored).
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from .conftest import start_server, wait_for
from .test_e2e_media import _transcription

AGENT = "8:acs:agent-7"
CUSTOMER = "4:+15551234"


def stored_events(data_dir, call_id: str) -> list[dict]:
    out = subprocess.run(
        [sys.executable, "-m", "pipeline.cli.commands", "export", call_id, "--format", "jsonl", "--data-dir", str(data_dir)],
        capture_output=True, check=True,
    )  # fmt: skip
    return [json.loads(line) for line in out.stdout.splitlines()]


async def test_sigterm_lets_the_call_finish_then_exits_zero(tmp_path) -> None:
    server = start_server(tmp_path, CALLSTREAM_STT="acs", CALLSTREAM_DRAIN_GRACE_S="30")
    call_id = "drain-call"
    async with connect(
        f"{server.ws}/media", additional_headers={"x-ms-call-connection-id": call_id}
    ) as media:
        await media.send(_transcription("hello before the signal", "Final", AGENT, 0))
        await wait_for(lambda: server.get_json("/calls")[1]["calls"], what="the call to be stored")
        server.proc.send_signal(signal.SIGTERM)
        await wait_for(lambda: server.get_json("/readyz")[0] == 503, what="readyz to turn false")
        assert server.get_json("/readyz")[1]["draining"] is True
        # A new call is refused while draining: ACS retries it on another replica.
        with pytest.raises(ConnectionClosed) as refused:
            async with connect(
                f"{server.ws}/media", additional_headers={"x-ms-call-connection-id": "late"}
            ) as ws:
                await ws.recv()
        assert refused.value.rcvd is not None and refused.value.rcvd.code == 1013
        # The call in progress goes on.
        for i, word in enumerate(["one", "two", "three"]):
            await media.send(
                _transcription(
                    f"still talking during the drain part {word}", "Final", CUSTOMER, 1000 * (i + 1)
                )
            )
        # ... and what it says is stored before it ends.
        await wait_for(
            lambda: server.get_bytes(f"/calls/{call_id}/transcript?format=jsonl").count(b'"transcript.final"') == 4,
            what="the finals said during the drain to be stored",
        )  # fmt: skip
    assert await asyncio.to_thread(server.proc.wait, 30) == 0
    events = stored_events(server.data_dir, call_id)
    finals = [e["text"] for e in events if e["type"] == "transcript.final"]
    assert finals[0] == "hello before the signal" and len(finals) == 4
    assert all("during the drain" in t for t in finals[1:])
    assert events[-1]["type"] == "call.ended" and events[-1]["reason"] == "media-disconnected"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert "draining" in server.logs()


async def test_grace_period_over_ends_the_call_and_stores_everything(tmp_path) -> None:
    server = start_server(tmp_path, CALLSTREAM_STT="acs", CALLSTREAM_DRAIN_GRACE_S="1")
    call_id = "long-call"
    async with connect(
        f"{server.ws}/media", additional_headers={"x-ms-call-connection-id": call_id}
    ) as media:
        for i in range(20):
            await media.send(
                _transcription("a long call that will not end by itself", "Final", AGENT, i * 1000)
            )
        await wait_for(lambda: server.get_json("/calls")[1]["calls"], what="the call to be stored")
        server.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(server.proc.wait, 40)
        with pytest.raises(ConnectionClosed):  # the server closed the media websocket
            await asyncio.wait_for(media.recv(), 5)
    assert code == 0
    events = stored_events(server.data_dir, call_id)
    assert sum(e["type"] == "transcript.final" for e in events) == 20
    assert events[-1]["type"] == "call.ended" and events[-1]["reason"] == "server-shutdown"
    assert "grace period over" in server.logs()
