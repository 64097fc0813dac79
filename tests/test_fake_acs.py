"""The ACS Call Automation fake, driven by the real SDK client (azure-communication-callautomation)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from azure.communication.callautomation import (
    AudioFormat,
    CallAutomationClient,
    MediaStreamingAudioChannelType,
    MediaStreamingContentType,
    MediaStreamingOptions,
    PhoneNumberIdentifier,
    StreamingTransportType,
)
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from .fake_acs import (
    FakeAcs,
    cloud_event,
    event_grid_incoming_call,
    event_grid_validation,
    post_cloud_events,
    post_event_grid,
)

TRANSPORT_URL = "wss://callstream.example/media?call=1"


class Receiver:
    """A tiny webhook: records every POSTed JSON body; answers Event Grid validation."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, str], object]] = []
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw)
                with receiver.cond:
                    receiver.posts.append((self.path, dict(self.headers), body))
                    receiver.cond.notify_all()
                out = b""
                if (
                    isinstance(body, list)
                    and body
                    and body[0].get("eventType", "").endswith("SubscriptionValidationEvent")
                ):
                    out = json.dumps(
                        {"validationResponse": body[0]["data"]["validationCode"]}
                    ).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def events(self, path: str | None = None) -> list[dict]:
        with self.cond:
            return [e for p, _, body in self.posts if path in (None, p) for e in body]

    def wait_for(self, type_suffix: str, n: int = 1, timeout: float = 3.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = [
                    e
                    for _, _, b in self.posts
                    for e in b
                    if e.get("type", "").endswith(type_suffix)
                ]
                if len(got) >= n or time.monotonic() >= deadline:
                    return got
                self.cond.wait(deadline - time.monotonic())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake() -> Iterator[FakeAcs]:
    with FakeAcs() as f:
        yield f


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def client(fake: FakeAcs) -> CallAutomationClient:
    return CallAutomationClient(fake.endpoint, AzureKeyCredential(fake.access_key), retry_total=0)


def _streaming() -> MediaStreamingOptions:
    return MediaStreamingOptions(
        transport_url=TRANSPORT_URL,
        transport_type=StreamingTransportType.WEBSOCKET,
        content_type=MediaStreamingContentType.AUDIO,
        audio_channel_type=MediaStreamingAudioChannelType.UNMIXED,
        start_media_streaming=True,
        audio_format=AudioFormat.PCM16_K_MONO,
        enable_dtmf_tones=True,
    )


def _signed_request(
    fake: FakeAcs,
    method: str,
    path: str,
    body: bytes = b"",
    *,
    key: str | None = None,
    date: datetime | None = None,
    content_hash: str | None = None,
) -> tuple[int, dict]:
    """Sign a request by hand (independently of the SDK) and send it with urllib."""
    host = f"127.0.0.1:{fake.port}"
    d = format_datetime(date or datetime.now(UTC), usegmt=True)
    h = content_hash or base64.b64encode(hashlib.sha256(body).digest()).decode()
    sts = f"{method}\n{path}\n{d};{host};{h}"
    sig = base64.b64encode(
        hmac.new(base64.b64decode(key or fake.access_key), sts.encode(), hashlib.sha256).digest()
    ).decode()
    req = urllib.request.Request(
        fake.base_url + path,
        data=body or None,
        method=method,
        headers={
            "x-ms-date": d,
            "x-ms-content-sha256": h,
            "Authorization": f"HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={sig}",
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if raw else {}


# ---------------------------------------------------------------- answer


def test_answer_call_with_media_streaming(
    fake: FakeAcs, client: CallAutomationClient, receiver: Receiver
) -> None:
    events = fake.incoming_call("ctx-1", to_raw_id="4:+15550100", from_raw_id="4:+15551234")
    server_call_id = events[0]["data"]["serverCallId"]

    props = client.answer_call(
        incoming_call_context="ctx-1",
        callback_url=receiver.url + "/acs/callbacks",
        media_streaming=_streaming(),
    )

    assert props.call_connection_id
    assert props.server_call_id == server_call_id
    assert props.correlation_id == events[0]["data"]["correlationId"]
    assert props.callback_url == receiver.url + "/acs/callbacks"
    assert props.call_connection_state == "connecting"
    assert props.media_streaming_subscription is not None
    assert props.media_streaming_subscription.subscribed_content_types == ["audio"]
    assert [t.raw_id for t in props.targets] == ["4:+15550100"]
    assert props.source is not None and props.source.raw_id == "4:+15551234"

    (seen,) = fake.answers
    assert seen["incomingCallContext"] == "ctx-1"
    ms = seen["mediaStreamingOptions"]
    assert ms["transportUrl"] == TRANSPORT_URL
    assert ms["transportType"] == "websocket"
    assert ms["audioChannelType"] == "unmixed"
    assert ms["audioFormat"] == "pcm16KMono"
    assert ms["contentType"] == "audio"
    assert ms["startMediaStreaming"] is True and ms["enableDtmfTones"] is True
    (rec,) = fake.of("answer")
    assert rec.signed_ok and rec.status == 200 and rec.method == "POST"
    assert rec.path.startswith("/calling/callConnections:answer?api-version=")

    (connected,) = receiver.wait_for("CallConnected")
    assert connected["type"] == "Microsoft.Communication.CallConnected"
    assert connected["specversion"] == "1.0"
    assert connected["data"]["callConnectionId"] == props.call_connection_id
    assert connected["data"]["serverCallId"] == server_call_id
    assert connected["data"]["correlationId"] == props.correlation_id
    (started,) = receiver.wait_for("MediaStreamingStarted")
    assert (
        started["data"]["mediaStreamingUpdate"]["mediaStreamingStatus"] == "mediaStreamingStarted"
    )
    # Delivered in order, one POST per event, on the callback path.
    assert [e["type"].rsplit(".", 1)[1] for e in receiver.events("/acs/callbacks")] == [
        "CallConnected",
        "MediaStreamingStarted",
    ]
    assert fake.callback_errors == []


def test_answer_uses_next_call_connection_id_once(
    fake: FakeAcs, client: CallAutomationClient
) -> None:
    fake.auto_callbacks = False
    fake.next_call_connection_id = "cc-fixed"
    first = client.answer_call("ctx-a", "http://127.0.0.1:9/cb")
    second = client.answer_call("ctx-b", "http://127.0.0.1:9/cb")
    assert first.call_connection_id == "cc-fixed"
    assert second.call_connection_id not in ("cc-fixed", None)
    assert set(fake.calls) == {"cc-fixed", second.call_connection_id}


def test_callback_failure_is_recorded_not_raised(
    fake: FakeAcs, client: CallAutomationClient
) -> None:
    props = client.answer_call("ctx", "http://127.0.0.1:9/unreachable")  # port 9: nothing listens
    assert props.call_connection_id
    assert fake.wait_callbacks(3)
    assert (
        fake.callback_errors and fake.callback_errors[0]["url"] == "http://127.0.0.1:9/unreachable"
    )


def test_disconnect_call_posts_call_disconnected(
    fake: FakeAcs, client: CallAutomationClient, receiver: Receiver
) -> None:
    props = client.answer_call("ctx", receiver.url + "/cb")
    assert fake.disconnect_call(props.call_connection_id) == 200
    (ev,) = receiver.wait_for("CallDisconnected")
    assert ev["data"]["callConnectionId"] == props.call_connection_id


def test_create_call(fake: FakeAcs, client: CallAutomationClient) -> None:
    fake.auto_callbacks = False
    props = client.create_call(
        PhoneNumberIdentifier("+15550199"),
        "http://127.0.0.1:9/cb",
        source_caller_id_number=PhoneNumberIdentifier("+15550100"),
    )
    assert props.call_connection_id in fake.calls
    assert [t.raw_id for t in props.targets] == ["4:+15550199"]
    assert fake.of("create_call")[0].status == 201


# ---------------------------------------------------------------- recording


def test_recording_lifecycle_and_state_callbacks(
    fake: FakeAcs, client: CallAutomationClient, receiver: Receiver
) -> None:
    fake.incoming_call("ctx", server_call_id="server-call-1")
    call = client.answer_call("ctx", receiver.url + "/cb")

    started = client.start_recording(
        server_call_id="server-call-1", recording_state_callback_url=receiver.url + "/rec"
    )
    rid = started.recording_id
    assert rid and started.recording_state == "active"
    assert started.recording_kind == "AzureCommunicationServices"
    assert fake.recording_state(rid) == "active"
    body = fake.of("start_recording")[0].body
    assert body["callLocator"] == {"kind": "serverCallLocator", "serverCallId": "server-call-1"}
    assert body["recordingStateCallbackUri"] == receiver.url + "/rec"
    assert fake.of("start_recording")[0].recording_id == rid

    client.pause_recording(rid)
    assert fake.recording_state(rid) == "inactive"
    assert client.get_recording_properties(rid).recording_state == "inactive"
    client.resume_recording(rid)
    assert client.get_recording_properties(rid).recording_state == "active"

    states = receiver.wait_for("RecordingStateChanged", n=3)
    assert [e["data"]["state"] for e in states] == ["active", "inactive", "active"]
    for e in states:
        assert e["data"]["recordingId"] == rid
        assert e["data"]["serverCallId"] == "server-call-1"
        assert e["data"]["callConnectionId"] == call.call_connection_id
        assert e["data"]["correlationId"] == call.correlation_id
    assert {p for p, _, _ in receiver.posts if p != "/cb"} == {"/rec"}

    assert [r.status for r in fake.of("pause")] == [202]
    assert fake.of("pause")[0].recording_id == rid

    client.stop_recording(rid)
    assert fake.recording_state(rid) == "stopped"
    assert fake.of("stop_recording")[0].status == 204
    with pytest.raises(ResourceNotFoundError):
        client.get_recording_properties(rid)


def test_recording_id_with_reserved_characters_round_trips(
    fake: FakeAcs, client: CallAutomationClient
) -> None:
    fake.next_recording_id = "eyJh+b/c=="
    rid = client.start_recording(server_call_id="s", pause_on_start=True).recording_id
    assert rid == "eyJh+b/c=="
    assert fake.recording_state(rid) == "inactive"
    client.resume_recording(rid)
    (rec,) = fake.of("resume")
    assert rec.signed_ok and rec.status == 202 and rec.recording_id == rid
    assert "%2B" in rec.path and "%2F" in rec.path  # the SDK percent-encodes the id, and signs that


def test_unknown_recording_is_404(client: CallAutomationClient) -> None:
    with pytest.raises(ResourceNotFoundError):
        client.pause_recording("nope")


def test_unknown_route_is_404(fake: FakeAcs, client: CallAutomationClient) -> None:
    with pytest.raises(ResourceNotFoundError):
        client.get_call_connection("cc").get_call_properties()
    (rec,) = fake.requests
    assert rec.op == "unknown" and rec.status == 404 and rec.signed_ok


# ---------------------------------------------------------------- signatures


def test_wrong_key_is_401(fake: FakeAcs) -> None:
    wrong = base64.b64encode(b"x" * 32).decode()
    bad = CallAutomationClient(fake.endpoint, AzureKeyCredential(wrong), retry_total=0)
    with pytest.raises(ClientAuthenticationError) as ei:
        bad.start_recording(server_call_id="s")
    assert ei.value.status_code == 401
    assert fake.bad_signatures == 1
    (rec,) = fake.requests
    assert rec.op == "start_recording" and rec.status == 401 and not rec.signed_ok
    assert fake.recordings == {}


def test_manual_signing_matches_and_tampering_is_refused(fake: FakeAcs) -> None:
    body = json.dumps({"callLocator": {"kind": "serverCallLocator", "serverCallId": "s"}}).encode()
    path = "/calling/recordings?api-version=2025-05-15"
    status, resp = _signed_request(fake, "POST", path, body)
    assert status == 200 and resp["recordingState"] == "active"

    old = datetime.now(UTC) - timedelta(minutes=6)
    assert _signed_request(fake, "POST", path, body, date=old)[0] == 401
    wrong_hash = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    status, resp = _signed_request(fake, "POST", path, body, content_hash=wrong_hash)
    assert status == 401 and resp["error"]["code"] == "Unauthorized"
    req = urllib.request.Request(fake.base_url + path, data=body, method="POST")
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(req, timeout=5)
    assert ei.value.code == 401
    assert fake.bad_signatures == 3
    assert [r.auth_error is None for r in fake.requests] == [True, False, False, False]


def test_trap_from_connection_string_uses_https_and_never_reaches_the_fake(fake: FakeAcs) -> None:
    assert fake.connection_string.startswith("endpoint=http://127.0.0.1:")
    c = CallAutomationClient.from_connection_string(
        fake.connection_string, retry_total=0, connection_timeout=2
    )
    t0 = time.monotonic()
    with pytest.raises(ServiceRequestError):  # TLS handshake against a plain-HTTP server
        c.start_recording(server_call_id="s")
    assert time.monotonic() - t0 < 5
    assert fake.requests == []


def test_trap_trailing_slash_endpoint_signs_the_wrong_host(fake: FakeAcs) -> None:
    c = CallAutomationClient(
        fake.endpoint + "/", AzureKeyCredential(fake.access_key), retry_total=0
    )
    with pytest.raises(ClientAuthenticationError):
        c.start_recording(server_call_id="s")
    assert fake.requests[0].auth_error == "signature mismatch"


# ---------------------------------------------------------------- failure injection


def test_script_500_then_timeout_then_ok(fake: FakeAcs, client: CallAutomationClient) -> None:
    fake.auto_callbacks = False
    rid = client.start_recording(server_call_id="s").recording_id
    fake.script("pause", 500, ("timeout", 1.5))

    with pytest.raises(HttpResponseError) as ei:
        client.pause_recording(rid)
    assert ei.value.status_code == 500
    assert "injected" in str(ei.value)
    assert fake.recording_state(rid) == "active"

    t0 = time.monotonic()
    with pytest.raises(ServiceResponseError):  # ServiceResponseTimeoutError in azure-core
        client.pause_recording(rid, read_timeout=0.5)
    assert time.monotonic() - t0 < 1.4

    client.pause_recording(rid)
    assert fake.recording_state(rid) == "inactive"

    pauses = fake.of("pause")
    assert len(pauses) == 3
    assert pauses[0].status == 500 and pauses[2].status == 202
    assert pauses[0].t_mono < pauses[1].t_mono < pauses[2].t_mono
    assert pauses[1].handled.wait(10), "the fake never finished the timed-out request"
    assert pauses[1].status is None  # the client had gone away; nothing was answered


def test_script_delay_and_ok_then_normal(fake: FakeAcs, client: CallAutomationClient) -> None:
    fake.script("start_recording", ("delay", 0.3), "ok")
    t0 = time.monotonic()
    client.start_recording(server_call_id="s")
    assert time.monotonic() - t0 >= 0.3
    client.start_recording(server_call_id="s")
    client.start_recording(server_call_id="s")
    assert [r.status for r in fake.of("start_recording")] == [200, 200, 200]


def test_script_503_is_resent_by_an_sdk_retry(fake: FakeAcs) -> None:
    c = CallAutomationClient(
        fake.endpoint, AzureKeyCredential(fake.access_key), retry_total=1, retry_backoff_factor=0
    )
    fake.script("start_recording", 503)
    assert c.start_recording(server_call_id="s").recording_id
    assert [r.status for r in fake.of("start_recording")] == [503, 200]


def test_script_rejects_bad_input(fake: FakeAcs) -> None:
    with pytest.raises(ValueError):
        fake.script("nope", 500)
    with pytest.raises(ValueError):
        fake.script("pause", ("hang", 1))


# ---------------------------------------------------------------- payload helpers


def test_event_grid_and_cloud_event_helpers(receiver: Receiver) -> None:
    events = event_grid_incoming_call(incoming_call_context="c1", server_call_id="srv")
    (ev,) = events
    assert ev["eventType"] == "Microsoft.Communication.IncomingCall"
    assert ev["data"]["to"] == {
        "kind": "phoneNumber",
        "rawId": "4:+15550100",
        "phoneNumber": {"value": "+15550100"},
    }
    assert ev["data"]["from"]["rawId"] == "4:+15551234"
    assert ev["data"]["serverCallId"] == "srv" and ev["data"]["incomingCallContext"] == "c1"
    for key in ("id", "topic", "subject", "eventTime", "dataVersion", "metadataVersion"):
        assert key in ev
    assert post_event_grid(receiver.url + "/eg", events) == (200, None)

    status, body = post_event_grid(receiver.url + "/eg", event_grid_validation("code-7"))
    assert (status, body) == (200, {"validationResponse": "code-7"})
    hdrs = {k.lower(): v for k, v in receiver.posts[-1][1].items()}
    assert hdrs["aeg-event-type"] == "SubscriptionValidation"

    ce = cloud_event("CallDisconnected", {"callConnectionId": "cc"})
    assert ce["type"] == "Microsoft.Communication.CallDisconnected"
    assert ce["source"] == "calling/callConnections/cc" and ce["specversion"] == "1.0"
    assert post_cloud_events(receiver.url + "/cb", [ce]) == 200
    assert receiver.events("/cb")[0]["id"] == ce["id"]
