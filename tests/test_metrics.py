"""Metrics and logs (issue 7): what `/metrics` counts after a known call, and what the logs hold.

One fixture call runs through a real `callstream serve` (local pocketsphinx, real Presidio,
SQLite) with a fake ACS for the recording: the payment fixture, unmixed, with a known
number of audio and silent frames, malformed frames of every kind, DTMF tones, frames
after ACS hung up and one message over the websocket size limit. The counters must match
what was sent exactly, the latency histograms must have observations, no label may hold
anything but a fixed enumeration, and every log line must be JSON, with the call id on
the call's lines and none of the fixture's secrets anywhere.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import io
import json
import logging
import re
import threading
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from azure.communication.callautomation import CallAutomationClient
from azure.core.credentials import AzureKeyCredential
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from models.settings import load_settings
from pipeline.cli.replay import (
    AGENT_ID,
    CUSTOMER_ID,
    audio_message,
    load_call_audio,
    metadata_message,
)
from pipeline.ingest.media_owner import SECOND_SOCKET
from pipeline.observability.gc_pauses import GENERATIONS
from pipeline.observability.metrics import DROP_REASONS, SPEECH_SOURCES
from pipeline.privacy.log_scrubber import JsonFormatter, ScrubbingFilter, current_call_id

from .conftest import (
    FIXTURES,
    Server,
    collect_call_events,
    load_manifest,
    start_server,
    start_subscribers,
    wait_for,
)
from .fake_acs import FakeAcs, cloud_event, post_cloud_events

CALL_ID = "metrics-call-3f9c"
CALLBACK_SECRET = "metrics-test-callback-secret"
DTMF_TONES = "4111"  # the card's first digits, keyed: counted, never kept
AFTER_END_FRAMES = 5

# Malformed frames, each with the drop reason it must be counted under.
_AUDIO = {
    "kind": "AudioData",
    "audioData": {"participantRawID": CUSTOMER_ID, "data": base64.b64encode(bytes(640)).decode()},
}
MALFORMED_MID_CALL = [
    ("this is not json", "invalid"),
    ('{"kind":"AudioData","audioData":{"data":"@@@"}}', "invalid"),
    (json.dumps({**_AUDIO, "audioData": {**_AUDIO["audioData"], "data": base64.b64encode(b"\x01\x02\x03").decode()}}), "bad_size"),
    (json.dumps({**_AUDIO, "audioData": {**_AUDIO["audioData"], "data": base64.b64encode(bytes(200_000)).decode()}}), "payload_too_large"),
    (json.dumps({"kind": "AudioMetadata", "audioMetadata": {"encoding": "PCM", "sampleRate": 8000, "channels": 1, "length": 320}}), "unsupported_format"),
]  # fmt: skip
UNKNOWN_KIND = '{"kind":"SomethingNew","somethingNew":{}}'


@dataclass
class Run:
    server: Server
    fake: FakeAcs
    sent: Counter[str] = field(default_factory=Counter)
    events: list[dict] = field(default_factory=list)
    metrics_text: str = ""  # the last scrape, after the call ended
    content_type: str = ""
    logs: str = ""  # everything the server wrote, shutdown included

    @property
    def samples(self) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
        return parse_samples(self.metrics_text)


def register_recording(server: Server, fake: FakeAcs, call_id: str) -> str:
    """A recording started elsewhere, registered for the call (so windows send pauses)."""
    client = CallAutomationClient(fake.endpoint, AzureKeyCredential(fake.access_key), retry_total=0)
    recording_id = client.start_recording(server_call_id=f"server-{call_id}").recording_id
    assert server.post_json(f"/calls/{call_id}/recording", {"recordingId": recording_id})[0] == 200
    return recording_id


def scrape(server: Server) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    return parse_samples(server.get_bytes("/metrics").decode())


def parse_samples(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample of an exposition: sample name -> {sorted label pairs: value}."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[name][tuple(sorted(labels.items()))]


async def _wait_metric(server: Server, predicate, what: str, timeout: float = 120) -> dict:
    async def sampled() -> dict | None:
        samples = await asyncio.to_thread(scrape, server)
        return samples if predicate(samples) else None

    return await wait_for(sampled, timeout, what, interval=0.1)


async def _drive_call(run: Run) -> None:
    server, sent = run.server, run.sent
    audio = load_call_audio(FIXTURES / "payment_call.wav")
    assert audio.rate == 16000 and [p for p, _ in audio.tracks] == [CUSTOMER_ID, AGENT_ID]
    fb = audio.frame_bytes
    [collector] = await start_subscribers(
        server, collect_call_events(server.ws, CALL_ID, timeout=300)
    )
    t0 = dt.datetime.now(dt.UTC)
    async with connect(
        f"{server.ws}/media",
        additional_headers={"x-ms-call-connection-id": CALL_ID},
        max_size=None,
        compression=None,
    ) as ws:

        async def send(message: str, kind: str) -> None:
            await ws.send(message)
            sent[kind] += 1

        await send(json.dumps(_AUDIO), "before_metadata")  # audio before AudioMetadata
        await send(metadata_message(audio.rate).decode(), "metadata")
        for i in range(audio.frames):
            ts = (
                (t0 + dt.timedelta(milliseconds=20 * i))
                .isoformat(timespec="milliseconds")
                .replace("+00:00", "Z")
            )
            for participant, pcm in audio.tracks:
                chunk = pcm[i * fb : (i + 1) * fb].ljust(fb, b"\0")
                await send(
                    audio_message(chunk, participant, ts).decode(),
                    "audio" if any(chunk) else "silent",
                )
            if i == 100:
                for message, reason in MALFORMED_MID_CALL:
                    await send(message, reason)
                await send(UNKNOWN_KIND, "unknown")
            if i == 150:
                for tone in DTMF_TONES:
                    await send(json.dumps({"kind": "DtmfData", "dtmfData": {"data": tone}}), "dtmf")
            if i % 50 == 0:
                await asyncio.sleep(0)  # let the collector read
        # Every frame so far has been handled before ACS hangs up.
        total = sum(sent.values())
        await _wait_metric(
            server,
            lambda s: value(s, "callstream_frames_received_total") == total,
            "the frames to be handled",
        )
        status = await asyncio.to_thread(
            post_cloud_events,
            f"{server.http}/acs/callbacks?secret={CALLBACK_SECRET}",
            [cloud_event("Microsoft.Communication.CallDisconnected", {"callConnectionId": CALL_ID, "serverCallId": f"server-{CALL_ID}"})],
        )  # fmt: skip
        assert status == 200
        # ACS hung up but its socket is still open: these frames must not reach the call.
        chunk = dict(audio.tracks)[AGENT_ID][:fb]
        for _ in range(AFTER_END_FRAMES):
            await send(audio_message(chunk, AGENT_ID, t0.isoformat()).decode(), "call_ended")
        # A message over `serve`'s 1 MiB websocket limit: refused, and the socket closed.
        try:
            await ws.send(json.dumps({"kind": "AudioData", "audioData": {"data": "A" * (1 << 20)}}))
            sent["message_too_large"] += 1
            await asyncio.wait_for(ws.wait_closed(), 30)
        except ConnectionClosed:
            pass
        assert ws.close_code == 1009, ws.close_code
    run.events = await collector


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    with FakeAcs() as fake:
        server = start_server(
            tmp_path_factory.mktemp("metrics"),
            CALLSTREAM_STT="local",
            CALLSTREAM_ACS_ENDPOINT=fake.endpoint,
            CALLSTREAM_ACS_KEY=fake.access_key,
            CALLSTREAM_MEDIA_AUTH="off",  # streamed without ACS's JWT (tests/test_security.py covers it)
            CALLSTREAM_CALLBACK_SECRET=CALLBACK_SECRET,
        )
        try:
            result = Run(server, fake)
            register_recording(server, fake, CALL_ID)
            asyncio.run(_drive_call(result))
            asyncio.run(
                _wait_metric(
                    server,
                    lambda s: (
                        value(s, "callstream_calls_ended_total") == 1
                        and value(s, "callstream_frames_dropped_total", reason="message_too_large")
                        == 1
                    ),
                    "the call to end",
                )
            )
            with urllib.request.urlopen(server.http + "/metrics", timeout=10) as r:
                result.content_type = r.headers["content-type"]
                result.metrics_text = r.read().decode()
        finally:
            server.stop()
        result.logs = server.logs()
        yield result


def test_counters_match_what_was_sent(run: Run) -> None:
    sent = run.sent
    s = run.samples
    assert run.events[0]["type"] == "call.started" and run.events[-1]["type"] == "call.ended"
    malformed = {
        reason: sent[reason]
        for reason in (
            "invalid",
            "bad_size",
            "payload_too_large",
            "unsupported_format",
            "before_metadata",
        )
    }
    assert value(s, "callstream_frames_received_total") == sum(sent.values())
    assert value(s, "callstream_frames_audio_total") == sent["audio"] + sent["silent"]
    assert value(s, "callstream_frames_silent_total") == sent["silent"] > 0
    assert value(s, "callstream_frames_malformed_total") == sum(malformed.values()) == 6
    assert value(s, "callstream_frames_unknown_total") == sent["unknown"] == 1
    assert value(s, "callstream_dtmf_tones_total") == sent["dtmf"] == len(DTMF_TONES)
    for reason in DROP_REASONS:
        assert value(s, "callstream_frames_dropped_total", reason=reason) == sent[reason], reason
    assert sent["call_ended"] == AFTER_END_FRAMES and sent["message_too_large"] == 1
    assert (
        value(s, "callstream_calls_started_total") == value(s, "callstream_calls_ended_total") == 1
    )
    assert value(s, "callstream_media_connections_total") == 1
    assert value(s, "callstream_active_calls") == 0
    assert value(s, "callstream_events_stored_total") == len(run.events)

    # One 20 ms, 16 kHz frame is one VAD frame, silent or not.
    vad, speech = (
        value(s, "callstream_vad_frames_total"),
        value(s, "callstream_vad_speech_frames_total"),
    )
    assert vad == sent["audio"] + sent["silent"]
    assert 0 < speech < vad
    assert value(s, "callstream_vad_speech_ratio") == pytest.approx(speech / vad)

    assert value(s, "callstream_subscriber_lag_notices_total") == 0
    assert value(s, "callstream_subscriber_queue_depth_max") == 0
    assert value(s, "callstream_recording_pause_failures_total") == 0


def test_latency_histograms_have_observations(run: Run) -> None:
    s = run.samples
    utterances = value(s, "callstream_utterances_total")
    assert utterances > 0
    # The local engine: every utterance gets exactly one final, each one observed.
    assert value(s, "callstream_speech_final_latency_seconds_count", source="local") == utterances
    assert value(s, "callstream_speech_final_latency_seconds_sum", source="local") > 0
    for source in ("azure", "acs"):
        assert value(s, "callstream_speech_final_latency_seconds_count", source=source) == 0
    redactions = value(s, "callstream_redactions_total")
    assert redactions >= sum(e["type"].startswith("transcript.") for e in run.events) > 0
    assert value(s, "callstream_redaction_latency_seconds_count") == redactions
    assert value(s, "callstream_store_write_seconds_count") >= 1
    assert value(s, "callstream_store_write_seconds_sum") > 0
    # Each payment window's first pause request (the fake ACS accepts them all).
    windows = value(s, "callstream_payment_windows_total")
    assert windows >= 1 and [e["trigger"] for e in run.events if e["type"] == "payment.started"]
    assert (
        value(s, "callstream_payment_pause_latency_seconds_count")
        == windows
        == len(run.fake.of("pause"))
    )
    assert 0 < value(s, "callstream_payment_pause_latency_seconds_sum") < 5 * windows
    # Buckets are cumulative and end at +Inf = count.
    buckets = s["callstream_payment_pause_latency_seconds_bucket"]
    assert buckets[(("le", "+Inf"),)] == windows
    # Garbage collections, timed by the interpreter's callbacks: the young generation runs
    # many times in a call; each count is the +Inf bucket of its generation.
    assert value(s, "callstream_gc_pause_seconds_count", generation="0") > 0
    for gen in ("0", "1", "2"):
        assert s["callstream_gc_pause_seconds_bucket"][
            (("generation", gen), ("le", "+Inf"))
        ] == value(s, "callstream_gc_pause_seconds_count", generation=gen)


def _forbidden() -> list[str]:
    manifest = load_manifest("payment_call")
    texts = [u["text"] for u in manifest["utterances"]]
    words = {w for t in texts for w in re.findall(r"[a-z]{5,}", t.lower())}
    digit_runs = {m for secret in manifest["secrets"] for m in re.findall(r"\d{3,}", secret)}
    return [
        CALL_ID, CUSTOMER_ID, AGENT_ID, CUSTOMER_ID.split(":")[1], "acs:agent", DTMF_TONES,
        *manifest["secrets"], *digit_runs, *texts, *words, "four one one one",
    ]  # fmt: skip


def test_no_label_holds_text_ids_or_secrets(run: Run) -> None:
    allowed = {
        *DROP_REASONS, *SPEECH_SOURCES, "sentiment", "translation", "summary", *GENERATIONS,
        SECOND_SOCKET,
    }  # fmt: skip
    forbidden = _forbidden()
    seen = set()
    for family in text_string_to_metric_families(run.metrics_text):
        for sample in family.samples:
            for name, label in sample.labels.items():
                seen.add((name, label))
                assert not any(f.lower() in label.lower() for f in forbidden), (
                    sample.name,
                    name,
                    label,
                )
                if name == "le":
                    float(label)  # a bucket bound, "+Inf" included
                else:
                    assert name in ("reason", "source", "kind", "generation"), (sample.name, name)
                    assert label in allowed, (sample.name, name, label)
    assert ("reason", "call_ended") in seen and ("source", "local") in seen
    # The whole exposition, not only its labels, is free of the call's secrets and ids.
    for secret in [
        CALL_ID,
        CUSTOMER_ID,
        AGENT_ID,
        *load_manifest("payment_call")["secrets"],
        "four one one one",
    ]:
        assert secret not in run.metrics_text


def test_logs_are_json_with_the_call_id_and_no_secrets(run: Run) -> None:
    records = []
    for line in run.logs.splitlines():
        if not line.strip() or line.startswith("callstream: "):
            continue  # the CLI's own start-up messages to the operator, not log records
        doc = json.loads(line)  # every log record is one JSON object on one line
        assert {"time", "level", "logger", "message"} <= doc.keys(), doc
        assert doc["time"].endswith("Z")
        records.append(doc)
    assert any(r["logger"] == "pipeline.service" and "ready" in r["message"] for r in records)
    call_lines = [r for r in records if CALL_ID in r["message"]]
    assert call_lines, "the malformed frames are logged"
    assert all(r.get("callId") == CALL_ID for r in call_lines), call_lines
    malformed = [r for r in records if "malformed frame" in r["message"]]
    assert len(malformed) == 5 and all(
        r["level"] == "WARNING" for r in malformed
    )  # rate-limited: first five
    for secret in _forbidden()[6:]:  # secrets, their digit runs and the transcript
        if len(secret) >= 5 and not secret.isalpha():
            assert secret not in run.logs, secret
    for text in load_manifest("payment_call")["utterances"]:
        assert text["text"] not in run.logs
    assert "4111" not in run.logs and "four one one one" not in run.logs


# --------------------------------------------------------------------- in-process units


def _format(record: logging.LogRecord, scrubbed: bool = True) -> dict:
    if scrubbed:
        ScrubbingFilter().filter(record)
    return json.loads(JsonFormatter().format(record))


def _record(msg: str, *args: object, exc: bool = False, **extra: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("could not charge 4111 1111 1111 1111")
        except ValueError:
            import sys

            exc_info = sys.exc_info()
    record = logging.LogRecord("pipeline.test", logging.ERROR, __file__, 1, msg, args, exc_info)
    record.__dict__.update(extra)
    return record


@pytest.mark.parametrize("scrubbed", [True, False])
def test_json_formatter_scrubs_message_and_exception(scrubbed: bool) -> None:
    doc = _format(_record("payment for %s failed", "4111111111111111", exc=True), scrubbed=scrubbed)
    assert doc["message"] == "payment for ################ failed"
    assert doc["excType"] == "ValueError"
    assert (
        "ValueError: could not charge #### #### #### ####" in doc["exc"]
        and "Traceback" in doc["exc"]
    )
    assert "4111" not in json.dumps(doc)
    assert doc["level"] == "ERROR" and doc["logger"] == "pipeline.test" and "callId" not in doc


def test_json_formatter_call_id_from_context_or_extra() -> None:
    token = current_call_id.set("ctx-call")
    try:
        assert _format(_record("hello"))["callId"] == "ctx-call"
        assert _format(_record("hello", callId="explicit-call"))["callId"] == "explicit-call"
        # A thread does not inherit the connection's context: it passes extra= instead.
        out: list[dict] = []
        thread = threading.Thread(target=lambda: out.append(_format(_record("from a thread"))))
        thread.start()
        thread.join()
        assert "callId" not in out[0]
    finally:
        current_call_id.reset(token)
    uuid_id = "401f3500-08a0-4e5c-9f17-123456789012"
    assert _format(_record("x", callId=uuid_id))["callId"] == uuid_id  # an id, never card data
    assert _format(_record("x", callId="4111111111111111"))["callId"] == "#" * 16


def test_json_logs_through_a_handler_with_the_scrubber() -> None:
    from pipeline.privacy.log_scrubber import install_log_scrubber

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("callstream.test.json")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    install_log_scrubber(log)
    try:
        log.info("card %s", "4111 1111 1111 1111", extra={"callId": "c-1"})
        try:
            raise RuntimeError("spoken four one one one one one one one one one")
        except RuntimeError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["message"] == "card #### #### #### ####" and lines[0]["callId"] == "c-1"
    assert lines[1]["excType"] == "RuntimeError" and "[spoken digits withheld]" in lines[1]["exc"]
    assert "4111" not in stream.getvalue() and "four one one" not in stream.getvalue()


def test_each_service_has_its_own_registry_and_lag_is_monotonic(tmp_path: Path) -> None:
    from pipeline.observability.metrics import render_metrics
    from pipeline.service import Service
    from workers.stt.acs import AcsPassthroughEngine

    settings = load_settings(environ={}, overrides={"stt": "acs", "data_dir": str(tmp_path)})
    a, b = (
        Service(settings, engine=AcsPassthroughEngine()),
        Service(settings, engine=AcsPassthroughEngine()),
    )
    try:
        a.metrics.redaction_latency.observe(0.01)
        sub = a.bus.subscribe("lag-call", maxsize=2)
        for seq in range(1, 6):
            a.bus.publish("lag-call", seq, b"{}")

        async def drain() -> None:
            while sub.depth:
                await sub.get()

        asyncio.run(drain())
        assert sub.lag_notices == 1

        def samples(service: Service) -> dict:
            text = render_metrics(service)[0].decode()
            return {
                s.name: s.value
                for f in text_string_to_metric_families(text)
                for s in f.samples
                if not s.labels
            }

        first = samples(a)
        assert first["callstream_redaction_latency_seconds_count"] == 1
        assert samples(b)["callstream_redaction_latency_seconds_count"] == 0
        assert first["callstream_subscriber_lag_notices_total"] == 1
        sub.close()
        assert samples(a)["callstream_subscriber_lag_notices_total"] == 1, (
            "a closed subscriber's notices stay counted"
        )
    finally:
        for service in (a, b):
            service.recording.close()


def test_metrics_endpoint_content_type(run: Run) -> None:
    assert run.content_type.startswith("text/plain") and "version=" in run.content_type
