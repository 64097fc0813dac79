"""Bad input at scale, functionally (the timing comparison is bench/flood.py's): a flood of
malformed frames on one connection, and a subscriber that never reads, cost the other calls
nothing they can see: every good frame is handled, every event arrives, nothing grows
without bound."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket

from websockets.asyncio.client import connect

from .conftest import (
    collect_call_events,
    metric,
    start_server,
    start_subscribers,
    wait_for,
    wait_subscribed,
)
from .test_e2e_media import _transcription

AGENT = "8:acs:agent-7"
JUNK = [
    b"not json at all",
    b'{"kind":"AudioData","audioData":{"data":"%%%not base64","participantRawID":"4:+1"}}',
    b'{"kind":"AudioData"}',
    b'{"kind":"AudioMetadata","audioMetadata":{"encoding":"ZZSECRETENC","sampleRate":8000}}',
    json.dumps(
        {"kind": "AudioData", "audioData": {"data": base64.b64encode(b"\x01").decode()}}
    ).encode(),
    b"[" * 5000,
]


async def test_a_malformed_flood_does_not_cost_another_call_an_event(tmp_path) -> None:
    server = start_server(tmp_path, CALLSTREAM_STT="acs")
    flood_sent = 0
    try:

        async def flood() -> None:
            nonlocal flood_sent
            async with connect(
                f"{server.ws}/media", additional_headers={"x-ms-call-connection-id": "flood"}
            ) as ws:
                for i in range(6000):
                    await ws.send(JUNK[i % len(JUNK)].decode())
                    flood_sent += 1
                    if i % 200 == 0:
                        await asyncio.sleep(0)

        flooder = asyncio.create_task(flood())
        [good] = await start_subscribers(
            server, collect_call_events(server.ws, "good-call", timeout=120)
        )
        async with connect(
            f"{server.ws}/media", additional_headers={"x-ms-call-connection-id": "good-call"}
        ) as ws:
            for i in range(100):
                await ws.send(
                    _transcription(f"good line {'abcdefghij'[i % 10]}", "Final", AGENT, i * 100)
                )
                # Pacing, not a wait: the good call's frames are spread over the flood, as a
                # live call's would be. No assertion depends on how long this takes.
                await asyncio.sleep(0.01)
        await flooder
        events = await good
        metrics = (await asyncio.to_thread(server.get_bytes, "/metrics")).decode()
        healthy = server.get_json("/healthz")[0]
    finally:
        server.stop()
    assert healthy == 200
    assert sum(e["type"] == "transcript.final" for e in events) == 100
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert metric(metrics, "callstream_frames_malformed_total") == flood_sent == 6000
    assert "not base64" not in server.logs() and "ZZSECRETENC" not in server.logs()


async def test_a_subscriber_that_never_reads_is_bounded(tmp_path) -> None:
    server = start_server(tmp_path, CALLSTREAM_STT="acs", CALLSTREAM_SUBSCRIBER_QUEUE="32")
    try:
        # Never reads: its socket buffers fill, then its queue, then it is skipped.
        stuck = await connect(f"{server.ws}/events", max_size=None, max_queue=1)
        await wait_subscribed(server, 1)
        [reader] = await start_subscribers(
            server, collect_call_events(server.ws, "busy-call", timeout=120)
        )
        async with connect(
            f"{server.ws}/media", additional_headers={"x-ms-call-connection-id": "busy-call"}
        ) as ws:
            for i in range(3000):
                await ws.send(
                    _transcription("a long line " + "padding words " * 40, "Final", AGENT, i * 10)
                )
                if i % 100 == 0:
                    await asyncio.sleep(0)
        events = await reader
        metrics = (await asyncio.to_thread(server.get_bytes, "/metrics")).decode()
        stored = (
            (await asyncio.to_thread(server.get_bytes, "/calls/busy-call/transcript"))
            .decode()
            .splitlines()
        )
        await stuck.close()
    finally:
        server.stop()
    assert sum('"transcript.final"' in line for line in stored) == 3000
    # The reading subscriber got every event, or a `lagged` notice naming what it missed
    # (its queue is small here: 32), so it could fetch them with ?since=.
    covered = {e["seq"] for e in events if e["type"] != "lagged"}
    for e in events:
        if e["type"] == "lagged":
            covered |= set(range(e["missedFrom"], e["missedTo"] + 1))
    assert covered == set(range(1, len(stored) + 1))
    # Its queue never holds more than its bound (the socket's buffers take the rest; once
    # they are full it is skipped and told `lagged`: tests/test_bus.py).
    assert metric(metrics, "callstream_subscriber_queue_depth_max") <= 32
    assert metric(metrics, "callstream_subscribers") == 1  # only the stuck one was left


async def test_a_connection_over_its_message_rate_is_read_slowly_and_loses_nothing(
    tmp_path,
) -> None:
    """The flood's cost is bounded by a rate per connection (CALLSTREAM_MEDIA_MESSAGE_RATE):
    past its budget the socket is read more slowly. The bound below is an upper one (a slow
    machine only takes in less), so it is no timing assertion; bench/flood.py measures what
    it buys the other calls."""
    rate, sent = 1000, 6000
    server = start_server(tmp_path, CALLSTREAM_STT="acs", CALLSTREAM_MEDIA_MESSAGE_RATE=str(rate))
    try:
        async with connect(
            f"{server.ws}/media", additional_headers={"x-ms-call-connection-id": "flooder"}
        ) as ws:
            loop = asyncio.get_running_loop()
            started = loop.time()
            writer = asyncio.ensure_future(
                asyncio.gather(*(ws.send(f"not json {i}") for i in range(sent)))
            )
            # The measurement window itself, not a wait for something: what the server took
            # in over about a second (the bound below scales with the elapsed time measured).
            await asyncio.sleep(1.0)
            taken = metric(
                (await asyncio.to_thread(server.get_bytes, "/metrics")).decode(),
                "callstream_frames_malformed_total",
            )
            elapsed = loop.time() - started
            await writer
            # Everything sent is taken in, in the end, and the connection was never closed.
            await wait_for(
                lambda: asyncio.to_thread(lambda: server.metric("callstream_frames_malformed_total") >= sent),
                timeout=60, what="every junk frame taken in",
            )  # fmt: skip
            await ws.send(_transcription("still here", "Final", AGENT, 0))
            await wait_for(
                lambda: asyncio.to_thread(lambda: server.metric("callstream_frames_received_total") >= sent + 1),
                what="the frame after the flood taken in",
            )  # fmt: skip
            # A ping answered after that frame: the connection is still open (a close would
            # have come first).
            await asyncio.wait_for(await ws.ping(), 10)
            open_after = ws.close_code is None
            metrics = (await asyncio.to_thread(server.get_bytes, "/metrics")).decode()
    finally:
        server.stop()
    # A burst of one second's worth, then `rate` a second, give or take one parsed slice.
    assert taken <= rate + rate * elapsed + 400, (taken, elapsed)
    assert metric(metrics, "callstream_frames_malformed_total") == sent
    assert metric(metrics, "callstream_media_throttled_total") >= 1
    assert open_after
    warnings = [line for line in server.logs().splitlines() if "read more slowly" in line]
    assert len(warnings) == 1 and "not json" not in warnings[0]


async def test_a_text_frame_that_is_not_utf8_is_a_malformed_frame_not_the_end_of_the_call(
    tmp_path,
) -> None:
    """RFC 6455 lets a server fail the connection (1007); uvicorn did, with a traceback
    quoting the byte. Here it is counted, logged without its payload and skipped."""
    server = start_server(tmp_path, CALLSTREAM_STT="acs")
    try:
        [events_task] = await start_subscribers(
            server, collect_call_events(server.ws, "utf8-call", timeout=60)
        )
        async with connect(
            f"{server.ws}/media", additional_headers={"x-ms-call-connection-id": "utf8-call"}
        ) as ws:
            await ws.send(_transcription("before", "Final", AGENT, 0))
            await ws.send(NOT_UTF8_FRAME, text=True)
            await ws.send(_transcription("after", "Final", AGENT, 1000))
        events = await events_task
        metrics = (await asyncio.to_thread(server.get_bytes, "/metrics")).decode()
    finally:
        server.stop()
    assert [e["text"] for e in events if e["type"] == "transcript.final"] == ["before", "after"]
    assert events[-1]["type"] == "call.ended" and events[-1]["reason"] != "media-lost"
    assert metric(metrics, "callstream_frames_malformed_total") == 1
    assert 'callstream_frames_dropped_total{reason="invalid"} 1.0' in metrics
    raw_logs = server.log_path.read_bytes()
    assert "Traceback" not in server.logs()
    # The property, whatever words a library uses for the error: nothing of the frame's
    # payload is in any log line, neither its text nor its bad bytes in any rendering.
    leaked = [form for form in _renderings_of_the_bad_frame() if form in raw_logs.lower()]
    assert not leaked, f"the bad frame's payload reached the logs as {leaked}"


NOT_UTF8_FRAME = b'{"kind":"ZZSECRET\xff\xfe"}'


def _renderings_of_the_bad_frame() -> list[bytes]:
    """What of NOT_UTF8_FRAME could reach a log file, lower-cased: its distinctive text (also
    hex-dumped), and its two bad bytes raw, as escapes (Python repr, JSON, surrogateescape),
    as the values a decoder error names ("byte 0xff"), as latin-1 text or as U+FFFD."""
    return [
        b"zzsecret", b"5a5a534543524554",
        b"\xff", b"\xfe", rb"\xff", rb"\xfe", rb"\u00ff", rb"\u00fe", rb"\udcff", rb"\udcfe", b"0xff", b"0xfe",
        "\u00ff".encode(), "\u00fe".encode(), "\ufffd".encode(), rb"\ufffd",
    ]  # fmt: skip


def _raw_media(port: int, call_id: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /media HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                  f"x-ms-call-connection-id: {call_id}\r\n\r\n").encode())  # fmt: skip
    assert sock.recv(4096).startswith(b"HTTP/1.1 101")
    return sock


def _masked_frame(opcode: int, payload: bytes, declared: int | None = None) -> bytes:
    """A client frame; `declared` lies about the length (the header of an oversized one)."""
    n = len(payload) if declared is None else declared
    head = bytes([0x80 | opcode]) + (
        bytes([0x80 | 127]) + n.to_bytes(8, "big")
        if n > 65535
        else bytes([0x80 | 126]) + n.to_bytes(2, "big")
        if n > 125
        else bytes([0x80 | n])
    )
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def test_a_message_read_together_with_an_oversized_one_is_still_delivered(tmp_path) -> None:
    """uvicorn dropped, uncounted, what it had parsed from the same read as an oversized frame."""
    server = start_server(tmp_path, CALLSTREAM_STT="acs", CALLSTREAM_MEDIA_RECONNECT_GRACE_S="0.5")
    try:
        [events_task] = await start_subscribers(
            server, collect_call_events(server.ws, "big-call", timeout=60)
        )
        sock = _raw_media(server.port, "big-call")
        final = _transcription("delivered anyway", "Final", AGENT, 0).encode()
        # One write: a valid Final, then the header of a 2 MiB frame (over ws_max_size).
        sock.sendall(_masked_frame(0x1, final) + _masked_frame(0x1, b"x" * 64, declared=2 << 20))
        events = await events_task
        code = await asyncio.to_thread(sock.recv, 4096)
        sock.close()
        metrics = (await asyncio.to_thread(server.get_bytes, "/metrics")).decode()
    finally:
        server.stop()
    assert code[:1] == b"\x88" and int.from_bytes(code[2:4], "big") == 1009
    assert [e["text"] for e in events if e["type"] == "transcript.final"] == ["delivered anyway"]
    assert metric(metrics, "callstream_frames_received_total") == 2
    assert 'callstream_frames_dropped_total{reason="message_too_large"} 1.0' in metrics


async def test_without_a_message_rate_big_reads_are_still_parsed_in_slices(tmp_path) -> None:
    """CALLSTREAM_MEDIA_MESSAGE_RATE=0 turns the rate off; reads over a slice still go
    through the sliced path (a 200 KB message, then 3,000 small ones written at once)."""
    server = start_server(tmp_path, CALLSTREAM_STT="acs", CALLSTREAM_MEDIA_MESSAGE_RATE="0")
    try:
        [events_task] = await start_subscribers(
            server, collect_call_events(server.ws, "free-call", timeout=60)
        )
        sock = _raw_media(server.port, "free-call")
        long_final = _transcription("word " * 40_000, "Final", AGENT, 0).encode()
        junk = b"".join(_masked_frame(0x1, b"not json %d" % i) for i in range(3000))
        sock.sendall(
            _masked_frame(0x1, long_final) + junk + _masked_frame(0x8, (1000).to_bytes(2, "big"))
        )
        events = await events_task
        sock.close()
        metrics = (await asyncio.to_thread(server.get_bytes, "/metrics")).decode()
        logs = server.logs()
    finally:
        server.stop()
    assert sum(e["type"] == "transcript.final" for e in events) == 1
    assert metric(metrics, "callstream_frames_malformed_total") == 3000
    assert metric(metrics, "callstream_media_throttled_total") == 0
    assert "Traceback" not in logs and "Error" not in logs
