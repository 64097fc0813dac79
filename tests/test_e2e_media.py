"""End to end over real loopback websockets: a real `callstream serve`, real pocketsphinx.

Fixture dialogues are replayed with the ACS protocol; what comes out of the agent-assist
stream, the store and the export is checked against the fixture script.
"""

from __future__ import annotations

import asyncio
import json
import socket
import wave
from pathlib import Path

import jiwer
import numpy as np
from websockets.asyncio.client import connect
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.protocol import CLOSED, CONNECTING, OPEN
from websockets.uri import parse_uri

from pipeline.cli.replay import load_call_audio, replay_call, replay_many
from pipeline.privacy.pseudonyms import KEY_FILE, pseudonym, read_key_file

from .conftest import (
    FIXTURES,
    assert_seq_strict,
    collect_call_events,
    load_manifest,
    normalize_words,
    start_subscribers,
    wait_subscribed,
)


def _wer_by_role(events: list[dict], manifest: dict) -> dict[str, float]:
    out = {}
    for role in ("agent", "customer"):
        ref = " ".join(
            normalize_words(u["text"]) for u in manifest["utterances"] if u["role"] == role
        )
        finals = sorted(
            (e for e in events if e["type"] == "transcript.final" and e["role"] == role),
            key=lambda e: e["startMs"],
        )
        hyp = " ".join(normalize_words(e["text"]) for e in finals)
        out[role] = jiwer.wer(ref, hyp)
    return out


async def test_unmixed_call_end_to_end(local_server) -> None:
    manifest = load_manifest("support_call")
    audio = load_call_audio(FIXTURES / "support_call.wav")
    call_id = "e2e-unmixed"
    [collector] = await start_subscribers(
        local_server, collect_call_events(local_server.ws, call_id)
    )
    await replay_call(f"{local_server.ws}/media", audio, call_id, speed=2.0)
    events = await collector

    assert_seq_strict(events)
    assert (
        events[0]["type"] == "call.started"
        and events[0]["mode"] == "unmixed"
        and events[0]["sampleRate"] == 16000
    )
    assert events[-1]["type"] == "call.ended"
    joined = {e["participant"]: e["role"] for e in events if e["type"] == "participant.joined"}
    # The caller's number is published as its pseudonym under the server's (generated) key.
    caller = pseudonym("4:+15550100", read_key_file(local_server.data_dir / KEY_FILE))
    assert joined == {caller: "customer", "8:acs:agent": "agent"}

    finals = [e for e in events if e["type"] == "transcript.final"]
    assert {e["role"] for e in finals} == {"agent", "customer"}
    for e in finals:
        assert e["source"] == "local" and e["language"] == "en-US"
        assert joined[e["participant"]] == e["role"]
        assert 0 <= e["startMs"] < e["endMs"]
    # Utterance timing agrees with the script (offsets from the call's first frame).
    for u in manifest["utterances"]:
        assert any(
            abs(e["startMs"] - u["startMs"]) < 700 and e["role"] == u["role"] for e in finals
        ), u["startMs"]

    wer = _wer_by_role(events, manifest)
    print("WER by role:", wer)
    assert all(w < 0.20 for w in wer.values()), wer

    # Partials come before their final, and never after it.
    partials = [e for e in events if e["type"] == "transcript.partial"]
    assert partials, "the local engine publishes partial hypotheses while an utterance goes on"
    final_seq = {e["utteranceId"]: e["seq"] for e in finals}
    for p in partials:
        assert p["utteranceId"] in final_seq and p["seq"] < final_seq[p["utteranceId"]]

    # A subscriber that joins late with ?since=0 gets everything; so do the store and the export.
    late = await collect_call_events(local_server.ws, call_id, since=0, timeout=30)
    assert late == events
    exported = [
        json.loads(line)
        for line in local_server.get_bytes(f"/calls/{call_id}/transcript?format=jsonl").splitlines()
    ]
    assert exported == events
    resumed = await collect_call_events(local_server.ws, call_id, since=5, timeout=30)
    assert resumed == events[5:]
    status, listing = local_server.get_json("/calls")
    assert status == 200 and any(c["callId"] == call_id and c["endedAt"] for c in listing["calls"])
    assert local_server.get_json("/calls/no-such-call/transcript?format=jsonl")[0] == 404


def _mixed_wav(tmp: Path) -> Path:
    with wave.open(str(FIXTURES / "support_call.wav"), "rb") as w:
        pcm = (
            np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2).astype(np.int32)
        )
    mono = np.clip(pcm.sum(axis=1), -32768, 32767).astype("<i2")
    out = tmp / "support_mixed.wav"
    with wave.open(str(out), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(mono.tobytes())
    return out


async def test_mixed_24khz_three_concurrent_calls(local_server, tmp_path) -> None:
    manifest = load_manifest("support_call")
    audio = load_call_audio(_mixed_wav(tmp_path), rate=24000)
    assert audio.rate == 24000 and len(audio.tracks) == 1
    ids = [f"mixed24-{k + 1}" for k in range(3)]
    collectors = await start_subscribers(
        local_server, *(collect_call_events(local_server.ws, cid) for cid in ids)
    )
    await replay_many(
        f"{local_server.ws}/media", audio, "mixed24", calls=3, speed=0, progress=False
    )
    results = await asyncio.gather(*collectors)
    ref = " ".join(normalize_words(u["text"]) for u in manifest["utterances"])
    for cid, events in zip(ids, results, strict=True):
        assert_seq_strict(events)
        assert all(e["callId"] == cid for e in events)
        started = events[0]
        assert (
            started["type"] == "call.started"
            and started["mode"] == "mixed"
            and started["sampleRate"] == 24000
        )
        finals = sorted(
            (e for e in events if e["type"] == "transcript.final"), key=lambda e: e["startMs"]
        )
        assert finals and all(
            e["role"] == "unknown" and e["participant"] == "mixed" for e in finals
        )
        wer = jiwer.wer(ref, " ".join(normalize_words(e["text"]) for e in finals))
        print(cid, "mixed 24 kHz WER", round(wer, 3))
        assert wer < 0.30
        assert events[-1]["type"] == "call.ended"


class RawSubscriber:
    """A websocket client that completes the handshake and then does not read at all.

    The websockets asyncio client keeps reading into its own buffers; a plain socket with a
    small receive buffer is what a stuck agent desktop looks like to the server.
    """

    def __init__(self, port: int, path: str) -> None:
        self.proto = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}{path}"))
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect(("127.0.0.1", port))
        self.proto.send_request(self.proto.connect())
        self.sock.sendall(b"".join(self.proto.data_to_send()))
        while self.proto.handshake_exc is None and not self.proto.events_received():
            self.proto.receive_data(self.sock.recv(4096))
            if self.proto.state is not CONNECTING:
                break
        assert self.proto.state is OPEN, self.proto.handshake_exc

    def read_all(self, timeout: float = 60) -> list[dict]:
        self.sock.settimeout(timeout)
        out: list[dict] = []
        while True:
            data = self.sock.recv(1 << 16)
            self.proto.receive_data(data) if data else self.proto.receive_eof()
            for frame in self.proto.events_received():
                if isinstance(frame, Frame) and frame.opcode is Opcode.TEXT:
                    out.append(json.loads(frame.data))
            if (
                not data
                or self.proto.state is CLOSED
                or any(e["type"] == "call.ended" for e in out[-1:])
            ):
                self.sock.close()
                return out


def _transcription(text: str, status: str, participant: str, offset_ms: int) -> str:
    return json.dumps(
        {
            "kind": "TranscriptionData",
            "transcriptionData": {
                "text": text,
                "format": "display",
                "confidence": 0.9,
                "offset": offset_ms * 10_000,
                "duration": 5_000_000,
                "words": [],
                "participantRawID": participant,
                "resultStatus": status,
            },
        }
    )


async def test_acs_transcription_passthrough_and_malformed_frames(acs_server) -> None:
    call_id = "acs-pass"
    [collector] = await start_subscribers(acs_server, collect_call_events(acs_server.ws, call_id))
    async with connect(
        f"{acs_server.ws}/media", additional_headers={"x-ms-call-connection-id": call_id}
    ) as ws:
        await ws.send(
            json.dumps(
                {
                    "kind": "TranscriptionMetadata",
                    "transcriptionMetadata": {"locale": "en-gb", "callConnectionId": call_id},
                }
            )
        )
        await ws.send("this is not json")
        await ws.send('{"kind":"AudioData","audioData":{"data":"@@@"}}')
        await ws.send('{"kind":"SomethingNew","somethingNew":{}}')
        await ws.send(_transcription("hello I need help", "Intermediate", "4:+15551234", 1000))
        await ws.send(
            _transcription("hello I need help with my bill", "Final", "4:+15551234", 1000)
        )
        await ws.send(_transcription("sure let me look", "Final", "8:acs:agent-7", 3000))
    events = await collector
    assert_seq_strict(events)
    finals = [e for e in events if e["type"] == "transcript.final"]
    assert [
        (e["role"], e["text"], e["startMs"], e["endMs"], e["source"], e["language"]) for e in finals
    ] == [
        ("customer", "hello I need help with my bill", 1000, 1500, "acs", "en-GB"),
        ("agent", "sure let me look", 3000, 3500, "acs", "en-GB"),
    ]
    partial = next(e for e in events if e["type"] == "transcript.partial")
    assert partial["utteranceId"] == finals[0]["utteranceId"] and partial["seq"] < finals[0]["seq"]
    assert events[-1]["type"] == "call.ended"
    metrics = acs_server.get_bytes("/metrics").decode()
    assert (
        "callstream_frames_malformed_total 2.0" in metrics
        or "callstream_frames_malformed 2.0" in metrics
    )
    assert "callstream_frames_unknown" in metrics


async def test_slow_subscriber_gets_lagged_others_miss_nothing(acs_server) -> None:
    call_id = "lag-call"
    # Enough events to overflow a non-reading subscriber (its kernel buffers hold ~1000 of
    # these), few enough that the call ends before the server's keepalive (ping every 20 s,
    # 20 s for the pong) gives up on a peer that never reads: each 1000-word final costs
    # the Redactor ~20 ms, and a closed subscriber would get no `lagged` notice.
    n = 900
    text = "please hold while I check the details of your order " * 100
    before = await asyncio.to_thread(acs_server.subscribers)
    slow = RawSubscriber(
        acs_server.port, f"/calls/{call_id}/events"
    )  # handshakes, then never reads
    await wait_subscribed(acs_server, before + 1)
    [fast] = await start_subscribers(
        acs_server, collect_call_events(acs_server.ws, call_id, timeout=120)
    )
    async with connect(
        f"{acs_server.ws}/media", additional_headers={"x-ms-call-connection-id": call_id}
    ) as ws:
        for i in range(n):
            await ws.send(_transcription(text, "Final", "4:+15551234", 1000 + i * 10))
    events = await fast
    assert_seq_strict(events)
    assert sum(e["type"] == "transcript.final" for e in events) == n
    stored = [
        json.loads(line)
        for line in acs_server.get_bytes(f"/calls/{call_id}/transcript?format=jsonl").splitlines()
    ]
    assert stored == events

    slow_events = await asyncio.to_thread(slow.read_all)
    lagged = [e for e in slow_events if e["type"] == "lagged"]
    print("slow subscriber got", len(slow_events), "events;", len(lagged), "lagged notices")
    assert lagged, (
        f"a subscriber that does not read is told what it missed (got {len(slow_events)} of {len(events)})"
    )
    assert all(e["missedFrom"] <= e["missedTo"] for e in lagged)
    # What it got plus what it was told it missed covers the whole call, in order.
    covered = set()
    for e in slow_events:
        covered.update(
            range(e["missedFrom"], e["missedTo"] + 1) if e["type"] == "lagged" else [e["seq"]]
        )
    assert covered == set(range(1, len(events) + 1))
