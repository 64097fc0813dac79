"""A local fake of the Azure Communication Services Call Automation REST API, for tests.

Stdlib only. `FakeAcs` is an HTTP server on 127.0.0.1 that verifies every request's HMAC
signature the way ACS does, records every request, answers the few routes callstream uses
(answer, create call, start/get/pause/resume/stop recording, add participant), posts
CloudEvents callbacks (CallConnected, MediaStreamingStarted, RecordingStateChanged,
AddParticipantSucceeded/Failed) to the callback URLs it was given, and lets a test inject
failures per operation (`script`).

Every callback it posts carries ``Authorization: Bearer <JWT>`` the way ACS signs its
mid-call callbacks (RS256, issuer ``https://acscallautomation.communication.azure.com``,
``aud`` = `callback_audience`, 5-minute lifetime), signed with a key of a local JWKS
(`jwks`, a `FakeJwks`: its own unless one is passed in, so that a server checking media
tokens and callbacks against one key set can be given ``fake.jwks.url``).

Build the real SDK client against it with the constructor, not the connection string:

    with FakeAcs() as fake:
        client = CallAutomationClient(fake.endpoint, AzureKeyCredential(fake.access_key), retry_total=0)

(`CallAutomationClient.from_connection_string` drops the `http://` scheme and then uses
https, so it never reaches the fake; and an endpoint with a trailing slash makes the SDK sign
`host:port/` as the host, which the fake, like ACS, refuses with 401.)

Module helpers build the other side's payloads: `cloud_event`, `event_grid_incoming_call`,
`event_grid_validation`, and post them: `post_cloud_events`, `post_event_grid`.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import queue
import re
import select
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import defaultdict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from .fake_jwks import ACS_AUDIENCE, FakeJwks
from .loopback import LoopbackServer

OPS = (
    "answer",
    "create_call",
    "start_recording",
    "get_recording",
    "pause",
    "resume",
    "stop_recording",
    "add_participant",
    "unknown",
)

SIGNED_HEADERS = "x-ms-date;host;x-ms-content-sha256"
AUTH_PREFIX = f"HMAC-SHA256 SignedHeaders={SIGNED_HEADERS}&Signature="
EVENT_VERSION = "2024-09-01-preview"
RESOURCE_TOPIC = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourcegroups/callstream-test"
    "/providers/microsoft.communication/communicationservices/fake-acs"
)
_ERROR_CODES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    429: "TooManyRequests",
    500: "InternalServerError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "GatewayTimeout",
}
_OK_RESULT = {"code": 200, "subCode": 0, "message": "Action completed successfully."}
_ADDED = {"code": 200, "subCode": 0, "message": "add participant completed successfully."}

# What an add-participant callback says when the fake is scripted to fail it ("fail").
ADD_PARTICIPANT_FAILED = {
    "code": 408,
    "subCode": 10004,
    "message": "The participant did not answer the invitation (injected).",
}

Behavior = str | int | tuple[str, float] | tuple[str, dict]


@dataclass
class Recorded:
    """One request the fake received."""

    op: str
    method: str
    path: str  # path and query exactly as sent (percent-encoded)
    recording_id: str | None
    body: Any
    status: int | None  # what the fake answered; None if the client went away first
    t_mono: float
    t_wall: float
    signed_ok: bool
    headers: dict[str, str] = field(default_factory=dict)
    auth_error: str | None = None  # why the signature was refused, if it was
    call_connection_id: str | None = None  # of a call connection's own route (participants)
    handled: threading.Event = field(
        default_factory=threading.Event, repr=False, compare=False
    )  # done with it


# ---------------------------------------------------------------- payload builders


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def cloud_event(
    type_: str, data: dict, *, source: str | None = None, subject: str | None = None
) -> dict:
    """One CloudEvents 1.0 event as Call Automation posts it to a callback URL.

    `type_` may be short ("CallConnected") or full ("Microsoft.Communication.CallConnected").
    """
    if "." not in type_:
        type_ = "Microsoft.Communication." + type_
    if source is None:
        if "recordingId" in data and "RecordingStateChanged" in type_:
            source = f"calling/recordings/{data['recordingId']}"
        else:
            source = f"calling/callConnections/{data.get('callConnectionId', '')}"
    data = {"version": EVENT_VERSION, "publicEventType": type_, **data}
    return {
        "id": str(uuid.uuid4()),
        "source": source,
        "type": type_,
        "data": data,
        "time": _now_iso(),
        "specversion": "1.0",
        "datacontenttype": "application/json",
        "subject": subject if subject is not None else source,
    }


def identifier_model(raw_id: str) -> dict:
    """A CommunicationIdentifierModel for a raw id ("4:+1555...", "8:acs:...", other)."""
    if raw_id.startswith("4:"):
        return {"kind": "phoneNumber", "rawId": raw_id, "phoneNumber": {"value": raw_id[2:]}}
    if raw_id.startswith("8:acs:") or raw_id.startswith("8:spool:"):
        return {"kind": "communicationUser", "rawId": raw_id, "communicationUser": {"id": raw_id}}
    return {"kind": "unknown", "rawId": raw_id}


def new_server_call_id() -> str:
    """An id shaped like ACS's (base64 of a conversation URL)."""
    url = (
        f"https://api.flightproxy.skype.com/api/v2/cp/conv-fake.conv.skype.com/conv/{uuid.uuid4()}"
    )
    return base64.b64encode(url.encode()).decode()


def new_recording_id() -> str:
    """An id shaped like ACS's (base64 of a JSON document; may contain '+', '/', '=')."""
    doc = {
        "PlatformEndpointId": str(uuid.uuid4()),
        "ResourceSpecificId": str(uuid.uuid4()),
    }
    return base64.b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode()


def event_grid_incoming_call(
    incoming_call_context: str = "ctx",
    to_raw_id: str = "4:+15550100",
    from_raw_id: str = "4:+15551234",
    server_call_id: str | None = None,
    *,
    caller_display_name: str = "",
    correlation_id: str | None = None,
) -> list[dict]:
    """The Event Grid array ACS posts to a webhook for an incoming call."""
    return [
        {
            "id": str(uuid.uuid4()),
            "topic": RESOURCE_TOPIC,
            "subject": f"/caller/{from_raw_id}/recipient/{to_raw_id}",
            "data": {
                "to": identifier_model(to_raw_id),
                "from": identifier_model(from_raw_id),
                "serverCallId": server_call_id or new_server_call_id(),
                "callerDisplayName": caller_display_name,
                "incomingCallContext": incoming_call_context,
                "correlationId": correlation_id or str(uuid.uuid4()),
            },
            "eventType": "Microsoft.Communication.IncomingCall",
            "dataVersion": "1.0",
            "metadataVersion": "1",
            "eventTime": _now_iso(),
        }
    ]


def event_grid_validation(code: str) -> list[dict]:
    """The Event Grid subscription-validation handshake array (answer with
    `{"validationResponse": code}`)."""
    return [
        {
            "id": str(uuid.uuid4()),
            "topic": RESOURCE_TOPIC,
            "subject": "",
            "data": {
                "validationCode": code,
                "validationUrl": f"https://rp-fake.eventgrid.azure.net/validate?id={code}",
            },
            "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
            "eventTime": _now_iso(),
            "metadataVersion": "1",
            "dataVersion": "2",
        }
    ]


def _post_json(
    url: str, payload: Any, headers: dict[str, str] | None, timeout: float
) -> tuple[int, Any]:
    data = json.dumps(payload).encode()
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    req = urllib.request.Request(url, data=data, method="POST", headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = raw.decode("utf-8", "replace")
    return status, body


def post_cloud_events(
    url: str, events: list[dict], *, headers: dict[str, str] | None = None, timeout: float = 5.0
) -> int:
    """POST a CloudEvents array as Call Automation does; returns the HTTP status.
    Raises (URLError, OSError) only if the receiver cannot be reached."""
    return _post_json(url, events, headers, timeout)[0]


def post_event_grid(url: str, events: list[dict], *, timeout: float = 5.0) -> tuple[int, Any]:
    """POST an Event Grid array as Event Grid does (with `aeg-event-type`); returns
    (status, parsed JSON body or text or None)."""
    kind = (
        "SubscriptionValidation"
        if any(
            e.get("eventType") == "Microsoft.EventGrid.SubscriptionValidationEvent" for e in events
        )
        else "Notification"
    )
    return _post_json(url, events, {"aeg-event-type": kind}, timeout)


# ---------------------------------------------------------------- the fake


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    fake: FakeAcs


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _any(self) -> None:
        self.server.fake._handle(self)

    do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = do_HEAD = _any


_REC_ACTION = re.compile(r"^/calling/recordings/([^/]+):(pause|resume)$")
_ADD_PARTICIPANT = re.compile(r"^/calling/callConnections/([^/]+)/participants:add$")
_REC_ONE = re.compile(r"^/calling/recordings/([^/:]+)$")


def _route(method: str, path: str) -> tuple[str, str | None]:
    if method == "POST" and path == "/calling/callConnections:answer":
        return "answer", None
    if method == "POST" and path == "/calling/callConnections":
        return "create_call", None
    if method == "POST" and path == "/calling/recordings":
        return "start_recording", None
    m = _ADD_PARTICIPANT.match(path)
    if m and method == "POST":
        return "add_participant", unquote(m.group(1))  # the callConnectionId
    m = _REC_ACTION.match(path)
    if m and method == "POST":
        return ("pause" if m.group(2) == "pause" else "resume"), unquote(m.group(1))
    m = _REC_ONE.match(path)
    if m and method == "GET":
        return "get_recording", unquote(m.group(1))
    if m and method == "DELETE":
        return "stop_recording", unquote(m.group(1))
    return "unknown", None


def _error_body(status: int, message: str, code: str | None = None) -> dict:
    return {"error": {"code": code or _ERROR_CODES.get(status, str(status)), "message": message}}


class FakeAcs(LoopbackServer):
    """Fake ACS Call Automation REST endpoint. See the module docstring.

    Public state (read it from tests; all lists are appended under `lock`):
      requests, bad_signatures, answers (answer request bodies), calls (by callConnectionId),
      recordings (by recordingId), callbacks_sent [(url, events, status)], callback_errors
      [{"url", "error", "events"}].
    Knobs: next_call_connection_id / next_recording_id (used once), callback_delay (s),
      unresponsive_recordings (ids whose pause/resume is accepted but never carried out),
      auto_callbacks, callback_headers (added to every outgoing callback; an
      ``Authorization`` there replaces the signed one), callback_audience (the ``aud`` of
      the callbacks' JWTs), max_clock_skew (s).
    """

    def __init__(self, access_key: str | None = None, jwks: FakeJwks | None = None) -> None:
        super().__init__()
        self.jwks = jwks if jwks is not None else FakeJwks()
        self._own_jwks = jwks is None
        self.callback_audience = ACS_AUDIENCE
        self._key = access_key or base64.b64encode(os.urandom(32)).decode()
        self.lock = threading.RLock()
        self.requests: list[Recorded] = []
        self.bad_signatures = 0
        self.answers: list[dict] = []
        self.calls: dict[str, dict] = {}
        self.recordings: dict[str, dict] = {}
        self.callbacks_sent: list[tuple[str, list[dict], int]] = []
        self.callback_errors: list[dict] = []
        self.next_call_connection_id: str | None = None
        self.next_recording_id: str | None = None
        self.callback_delay = 0.05
        self.auto_callbacks = True
        self.callback_headers: dict[str, str] = {}
        self.max_clock_skew = 300.0
        # Recordings whose pause and resume ACS accepts (202) but never carries out: no
        # state change, no RecordingStateChanged, until `set_recording_state`.
        self.unresponsive_recordings: set[str] = set()
        self._scripts: dict[str, deque[Behavior]] = defaultdict(deque)
        self._incoming: dict[str, dict] = {}
        self._cb_queue: queue.Queue = queue.Queue()
        self._cb_thread: threading.Thread | None = None
        self._cb_pending = 0
        self._cb_cond = threading.Condition()

    # ---- lifecycle

    handler = _Handler
    thread_name = "fake-acs"

    def _make_server(self, handler: type) -> _Server:
        return _Server(("127.0.0.1", 0), handler)

    def _started(self) -> None:
        if self._own_jwks:
            self.jwks.start()
        self._cb_thread = threading.Thread(
            target=self._callback_worker, name="fake-acs-cb", daemon=True
        )
        self._cb_thread.start()

    def _stopped(self) -> None:
        self._cb_queue.put(None)
        if self._cb_thread:
            self._cb_thread.join(timeout=2)
        if self._own_jwks:
            self.jwks.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        """The endpoint for `CallAutomationClient(endpoint, ...)`: no trailing slash (see
        the module docstring for why)."""
        return self.base_url

    @property
    def access_key(self) -> str:
        return self._key

    @property
    def connection_string(self) -> str:
        return f"endpoint={self.base_url}/;accesskey={self._key}"

    # ---- test API

    def script(self, op: str, *behaviors: Behavior) -> None:
        """Queue behaviors for the next requests of `op`, one per request: "ok", an HTTP
        status int, ("timeout", s) or ("delay", s) (sleep, then answer normally). For
        "add_participant" also "fail" or ("fail", {"code", "subCode", "message"}): accepted
        (202) like any other, and then ACS posts AddParticipantFailed with that
        resultInformation (`ADD_PARTICIPANT_FAILED` by default) instead of
        AddParticipantSucceeded."""
        if op not in OPS:
            raise ValueError(f"unknown op {op!r}; one of {OPS}")
        for b in behaviors:
            fails = op == "add_participant" and (
                b == "fail" or (isinstance(b, tuple) and len(b) == 2 and b[0] == "fail")
            )
            ok = (
                b == "ok"
                or fails
                or (isinstance(b, int) and not isinstance(b, bool) and 100 <= b <= 599)
                or (isinstance(b, tuple) and len(b) == 2 and b[0] in ("timeout", "delay"))
            )
            if not ok:
                raise ValueError(f"bad behavior {b!r}")
        with self.lock:
            self._scripts[op].extend(behaviors)

    def of(self, op: str) -> list[Recorded]:
        with self.lock:
            return [r for r in self.requests if r.op == op]

    def set_recording_state(self, recording_id: str, state: str) -> int | None:
        """ACS changes a recording's state on its own, now (a pause it accepted earlier
        takes effect late): the state, then its RecordingStateChanged callback, posted
        synchronously. Returns the callback's HTTP status (None if it could not be sent)."""
        with self.lock:
            r = self.recordings[recording_id]
            r["state"] = state
            url, events = self._recording_event(r, state)
        return self._deliver(url, events) if url else None

    def recording_state(self, recording_id: str) -> str:
        """State of a recording: "active", "inactive" or "stopped"; KeyError if unknown."""
        with self.lock:
            return self.recordings[recording_id]["state"]

    def incoming_call(
        self,
        incoming_call_context: str | None = None,
        to_raw_id: str = "4:+15550100",
        from_raw_id: str = "4:+15551234",
        server_call_id: str | None = None,
        **kw: Any,
    ) -> list[dict]:
        """Build an IncomingCall Event Grid array and remember its context, so that answering
        it returns the same serverCallId/correlationId/participants."""
        ctx = incoming_call_context or f"fake-ctx-{uuid.uuid4()}"
        events = event_grid_incoming_call(ctx, to_raw_id, from_raw_id, server_call_id, **kw)
        with self.lock:
            self._incoming[ctx] = events[0]["data"]
        return events

    def callback_token(self, **knobs: Any) -> str:
        """A JWT as ACS puts on a callback (5-minute lifetime); ``knobs`` go to
        `FakeJwks.token` (another ``key``, ``expires_in``, ``audience``...), to forge one."""
        return self.jwks.token(**{"audience": self.callback_audience, "expires_in": 300, **knobs})

    def post_cloud_events(self, url: str, events: list[dict]) -> int | None:
        """POST CloudEvents now (synchronously). Never raises: failures go to
        `callback_errors` and return None."""
        return self._deliver(url, events)

    def send_call_event(self, call_connection_id: str, type_: str, **data: Any) -> int | None:
        """Post an event of `type_` (e.g. "CallDisconnected") for a known call to its
        callback URL, now."""
        with self.lock:
            call = self.calls[call_connection_id]
        ev = cloud_event(type_, {**self._call_ids(call), "resultInformation": _OK_RESULT, **data})
        return self._deliver(call["callbackUri"], [ev])

    def disconnect_call(self, call_connection_id: str) -> int | None:
        """The far end hangs up: post CallDisconnected to the call's callback URL."""
        with self.lock:
            self.calls[call_connection_id]["state"] = "disconnected"
        return self.send_call_event(call_connection_id, "CallDisconnected")

    def wait_callbacks(self, timeout: float = 2.0) -> bool:
        """Wait until every queued automatic callback has been delivered (or failed)."""
        deadline = time.monotonic() + timeout
        with self._cb_cond:
            while self._cb_pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cb_cond.wait(left)
        return True

    # ---- callbacks

    def _queue_callback(self, url: str | None, events: list[dict]) -> None:
        if not url or not self.auto_callbacks:
            return
        with self._cb_cond:
            self._cb_pending += 1
        self._cb_queue.put((time.monotonic() + self.callback_delay, url, events))

    def _callback_worker(self) -> None:
        while True:
            item = self._cb_queue.get()
            if item is None:
                return
            due, url, events = item
            try:
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # the configured callback latency itself
                self._deliver(url, events)
            finally:
                with self._cb_cond:
                    self._cb_pending -= 1
                    self._cb_cond.notify_all()

    def _deliver(self, url: str, events: list[dict]) -> int | None:
        try:
            headers = {"Authorization": f"Bearer {self.callback_token()}", **self.callback_headers}
            status = post_cloud_events(url, events, headers=headers, timeout=5.0)
        except Exception as e:
            with self.lock:
                self.callback_errors.append({"url": url, "error": repr(e), "events": events})
            return None
        with self.lock:
            self.callbacks_sent.append((url, events, status))
            if status >= 300:
                self.callback_errors.append(
                    {"url": url, "error": f"HTTP {status}", "events": events}
                )
        return status

    # ---- request handling

    def _verify(self, method: str, path_q: str, headers: Any, raw: bytes) -> str | None:
        """None if the HMAC signature is valid, else the reason."""
        date = headers.get("x-ms-date")
        chash = headers.get("x-ms-content-sha256")
        auth = headers.get("Authorization")
        host = headers.get("Host")
        if not (date and chash and auth and host):
            return "missing x-ms-date, x-ms-content-sha256, Authorization or Host"
        expected_hash = base64.b64encode(hashlib.sha256(raw).digest()).decode()
        if not hmac.compare_digest(chash, expected_hash):
            return "x-ms-content-sha256 does not match the body"
        try:
            when = parsedate_to_datetime(date)
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
        except (TypeError, ValueError):
            return "unparseable x-ms-date"
        if abs((datetime.now(UTC) - when).total_seconds()) > self.max_clock_skew:
            return "x-ms-date is more than 5 minutes from now"
        if not auth.startswith(AUTH_PREFIX):
            return "Authorization is not HMAC-SHA256 with SignedHeaders=" + SIGNED_HEADERS
        given = auth[len(AUTH_PREFIX) :]
        string_to_sign = f"{method}\n{path_q}\n{date};{host};{chash}"
        try:
            secret = base64.b64decode(self._key)
        except ValueError:
            return "fake access key is not base64"
        expected = base64.b64encode(
            hmac.new(secret, string_to_sign.encode("utf-8"), hashlib.sha256).digest()
        ).decode()
        if not hmac.compare_digest(given, expected):
            return "signature mismatch"
        return None

    def _handle(self, h: _Handler) -> None:
        t_mono, t_wall = time.monotonic(), time.time()
        method = h.command.upper()
        path_q = h.path
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        op, recording_id = _route(method, urlsplit(path_q).path)
        ccid = None
        if op == "add_participant":
            ccid, recording_id = recording_id, None
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        why = self._verify(method, path_q, h.headers, raw)
        rec = Recorded(
            op=op,
            method=method,
            path=path_q,
            recording_id=recording_id,
            body=body,
            status=None,
            t_mono=t_mono,
            t_wall=t_wall,
            signed_ok=why is None,
            headers={k.lower(): v for k, v in h.headers.items()},
            auth_error=why,
            call_connection_id=ccid,
        )
        with self.lock:
            self.requests.append(rec)
            if why is not None:
                self.bad_signatures += 1
        try:
            if why is not None:
                self._respond(h, rec, 401, _error_body(401, f"Denied: {why}", "Unauthorized"))
                return

            with self.lock:
                q = self._scripts.get(op)
                behavior: Behavior = q.popleft() if q else "ok"
            if isinstance(behavior, int):
                self._respond(h, rec, behavior, _error_body(behavior, "injected"))
                return
            failure: dict | None = None
            if behavior == "fail" or (isinstance(behavior, tuple) and behavior[0] == "fail"):
                extra = behavior[1] if isinstance(behavior, tuple) else {}
                failure = {**ADD_PARTICIPANT_FAILED, **extra}  # type: ignore[dict-item]
            elif isinstance(behavior, tuple):
                time.sleep(float(behavior[1]))  # type: ignore[arg-type]  # the scripted latency

            # Answer normally. The effect happens even if the client has given up (like a
            # service that did the work but whose answer was never read).
            if op == "add_participant":
                status, payload, after = self._add_participant(ccid, body, failure)
            else:
                status, payload, after = self._dispatch(op, recording_id, body)
            if op == "start_recording" and isinstance(payload, dict):
                rec.recording_id = payload.get("recordingId")
            # Queue the callbacks before answering, so that `wait_callbacks()` called right after
            # the client got its answer sees them (they still go out `callback_delay` later).
            for url, events in after:
                self._queue_callback(url, events)
            if _client_gone(h.connection):
                h.close_connection = True
            else:
                self._respond(h, rec, status, payload)
        finally:
            rec.handled.set()  # answered, refused, or the client was gone

    def _respond(self, h: _Handler, rec: Recorded, status: int, payload: Any) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        # Record before writing: the client may read the answer and look at us at once.
        with self.lock:
            rec.status = status
        try:
            h.send_response(status)
            if payload is not None:
                h.send_header("Content-Type", "application/json; charset=utf-8")
            h.send_header("Content-Length", str(len(data)))
            rid = h.headers.get("x-ms-client-request-id")
            if rid:
                h.send_header("x-ms-client-request-id", rid)
            h.end_headers()
            if data and h.command != "HEAD":
                h.wfile.write(data)
            h.wfile.flush()
        except OSError:
            h.close_connection = True
            with self.lock:
                rec.status = None

    # ---- routes

    def _call_ids(self, call: dict) -> dict:
        return {
            "callConnectionId": call["callConnectionId"],
            "serverCallId": call["serverCallId"],
            "correlationId": call["correlationId"],
        }

    def _dispatch(self, op: str, rid: str | None, body: Any) -> tuple[int, Any, list]:
        body = body if isinstance(body, dict) else {}
        if op == "answer":
            return self._answer(body)
        if op == "create_call":
            return self._create_call(body)
        if op == "start_recording":
            return self._start_recording(body)
        if op == "unknown":
            return 404, _error_body(404, "The fake does not serve this route."), []
        assert rid is not None
        with self.lock:
            r = self.recordings.get(rid)
            if r is None or r["state"] == "stopped":
                return 404, _error_body(404, "Recording not found.", "RecordingNotFound"), []
            if op == "get_recording":
                return 200, self._recording_json(r), []
            if op == "stop_recording":
                r["state"] = "stopped"
                return 204, None, [self._recording_event(r, "inactive")]
            if rid in self.unresponsive_recordings:
                return 202, None, []  # accepted, never carried out
            new = "inactive" if op == "pause" else "active"
            changed = r["state"] != new
            r["state"] = new
            return 202, None, [self._recording_event(r, new)] if changed else []

    def _new_call(self, body: dict, server_call_id: str, correlation_id: str) -> dict:
        with self.lock:
            ccid, self.next_call_connection_id = (
                self.next_call_connection_id or str(uuid.uuid4()),
                None,
            )
            call = {
                "callConnectionId": ccid,
                "serverCallId": server_call_id,
                "correlationId": correlation_id,
                "callbackUri": body.get("callbackUri"),
                "state": "connecting",
                "body": body,
            }
            self.calls[ccid] = call
        return call

    def _connected_events(self, call: dict, body: dict) -> list:
        ids = self._call_ids(call)
        events = [cloud_event("CallConnected", {**ids, "resultInformation": _OK_RESULT})]
        ms = body.get("mediaStreamingOptions") or {}
        if ms.get("startMediaStreaming"):
            update = {
                "contentType": "Audio",
                "mediaStreamingStatus": "mediaStreamingStarted",
                "mediaStreamingStatusDetails": "subscriptionStarted",
            }
            events.append(
                cloud_event(
                    "MediaStreamingStarted",
                    {**ids, "mediaStreamingUpdate": update, "resultInformation": _OK_RESULT},
                )
            )
        # One POST per event, in order, as ACS delivers them.
        return [(call["callbackUri"], [e]) for e in events]

    def _streaming_props(self, body: dict) -> dict:
        props: dict = {}
        ms = body.get("mediaStreamingOptions")
        if ms:
            props["mediaStreamingSubscription"] = {
                "id": str(uuid.uuid4()),
                "state": "inactive",
                "subscribedContentTypes": [ms.get("contentType", "audio")],
            }
        tr = body.get("transcriptionOptions")
        if tr:
            props["transcriptionSubscription"] = {
                "id": str(uuid.uuid4()),
                "state": "inactive",
                "subscribedResultTypes": ["final", "intermediate"],
                "locale": tr.get("locale", "en-US"),
            }
        return props

    def _answer(self, body: dict) -> tuple[int, Any, list]:
        if not body.get("incomingCallContext") or not body.get("callbackUri"):
            return 400, _error_body(400, "incomingCallContext and callbackUri are required."), []
        with self.lock:
            self.answers.append(body)
            known = self._incoming.get(body["incomingCallContext"], {})
        call = self._new_call(
            body,
            known.get("serverCallId") or new_server_call_id(),
            known.get("correlationId") or str(uuid.uuid4()),
        )
        props = {
            **self._call_ids(call),
            "targets": [known.get("to") or identifier_model("4:+15550100")],
            "source": known.get("from") or identifier_model("4:+15551234"),
            "callConnectionState": "connecting",
            "callbackUri": call["callbackUri"],
            **self._streaming_props(body),
        }
        if body.get("answeredBy"):
            props["answeredBy"] = body["answeredBy"]
        return 200, props, self._connected_events(call, body)

    def _create_call(self, body: dict) -> tuple[int, Any, list]:
        if not body.get("targets") or not body.get("callbackUri"):
            return 400, _error_body(400, "targets and callbackUri are required."), []
        call = self._new_call(body, new_server_call_id(), str(uuid.uuid4()))
        props = {
            **self._call_ids(call),
            "targets": body["targets"],
            "callConnectionState": "connecting",
            "callbackUri": call["callbackUri"],
            **self._streaming_props(body),
        }
        if body.get("sourceCallerIdNumber"):
            props["sourceCallerIdNumber"] = body["sourceCallerIdNumber"]
        if body.get("sourceDisplayName"):
            props["sourceDisplayName"] = body["sourceDisplayName"]
        return 201, props, self._connected_events(call, body)

    def _add_participant(
        self, ccid: str | None, body: Any, failure: dict | None
    ) -> tuple[int, Any, list]:
        """``POST /calling/callConnections/{id}/participants:add``: 202 with an
        AddParticipantResponse, then AddParticipantSucceeded (or, scripted, ...Failed) to
        the call's callback URL (or the request's operationCallbackUri)."""
        body = body if isinstance(body, dict) else {}
        with self.lock:
            call = self.calls.get(ccid or "")
            if call is None or call["state"] == "disconnected":
                return 404, _error_body(404, "Call connection not found."), []
            ids = self._call_ids(call)
            url = body.get("operationCallbackUri") or call["callbackUri"]
        target = body.get("participantToAdd")
        if not isinstance(target, dict) or not target.get("rawId"):
            return 400, _error_body(400, "participantToAdd is required."), []
        participant = _as_acs_names_it(target)
        context = body.get("operationContext")
        answer = {
            "participant": {"identifier": participant, "isMuted": False, "isOnHold": False},
            "invitationId": str(uuid.uuid4()),
        }
        data = {**ids, "participant": participant, "resultInformation": failure or _ADDED}
        if context is not None:
            answer["operationContext"] = context
            data["operationContext"] = context
        kind = "AddParticipantFailed" if failure else "AddParticipantSucceeded"
        return 202, answer, [(url, [cloud_event(kind, data)])]

    def _start_recording(self, body: dict) -> tuple[int, Any, list]:
        locator = body.get("callLocator") or {}
        with self.lock:
            ccid = body.get("callConnectionId")
            call = None
            if ccid:
                call = self.calls.get(ccid)
                if call is None:
                    return 404, _error_body(404, "Call connection not found."), []
                server_call_id = call["serverCallId"]
            else:
                server_call_id = (
                    locator.get("serverCallId")
                    or locator.get("groupCallId")
                    or locator.get("roomId")
                )
                if not server_call_id:
                    return 400, _error_body(400, "callLocator or callConnectionId is required."), []
                call = next(
                    (c for c in self.calls.values() if c["serverCallId"] == server_call_id), None
                )
            rid, self.next_recording_id = self.next_recording_id or new_recording_id(), None
            r = {
                "recordingId": rid,
                "state": "inactive" if body.get("pauseOnStart") else "active",
                "kind": "AzureCommunicationServices",
                "serverCallId": server_call_id,
                "callConnectionId": call["callConnectionId"] if call else None,
                "correlationId": call["correlationId"] if call else str(uuid.uuid4()),
                "callbackUri": body.get("recordingStateCallbackUri"),
                "startDateTime": _now_iso(),
                "body": body,
            }
            self.recordings[rid] = r
            return 200, self._recording_json(r), [self._recording_event(r, r["state"])]

    @staticmethod
    def _recording_json(r: dict) -> dict:
        return {
            "recordingId": r["recordingId"],
            "recordingState": r["state"],
            "recordingKind": r["kind"],
        }

    @staticmethod
    def _recording_event(r: dict, state: str) -> tuple[str | None, list[dict]]:
        data = {
            "recordingId": r["recordingId"],
            "state": state,
            "startDateTime": r["startDateTime"],
            "recordingKind": r["kind"],
            "serverCallId": r["serverCallId"],
            "correlationId": r["correlationId"],
        }
        if r["callConnectionId"]:
            data["callConnectionId"] = r["callConnectionId"]
        return r["callbackUri"], [cloud_event("RecordingStateChanged", data)]


_IDENTIFIER_KINDS = (
    "microsoftTeamsUser",
    "communicationUser",
    "phoneNumber",
    "microsoftTeamsApp",
    "teamsExtensionUser",
)


def _as_acs_names_it(model: dict) -> dict:
    """A CommunicationIdentifierModel the SDK sent, as ACS gives it back in its answers and
    callbacks: with its ``kind`` (the SDK sends none) and the cloud in ACS's lower case
    (the SDK sends ``PUBLIC``; the REST enum is ``public``/``dod``/``gcch``)."""
    out = dict(model)
    kind = next((k for k in _IDENTIFIER_KINDS if k in model), None)
    out["kind"] = kind or model.get("kind") or "unknown"
    teams = model.get("microsoftTeamsUser")
    if isinstance(teams, dict):
        out["microsoftTeamsUser"] = {
            "userId": teams.get("userId"),
            "isAnonymous": bool(teams.get("isAnonymous", False)),
            "cloud": str(teams.get("cloud") or "public").lower(),
        }
    return out


def _client_gone(sock: socket.socket) -> bool:
    """True if the peer has closed its side (EOF readable) or the socket errors."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        with contextlib.suppress(BlockingIOError):
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        return False
    except OSError:
        return True
