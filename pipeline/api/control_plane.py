"""The ACS control plane and the compliance side of payments, as HTTP endpoints.

- ``POST /acs/events``: Event Grid. Subscription validation is answered; an IncomingCall
  is answered through Call Automation with media streaming to our ``/media`` (unmixed,
  16 kHz, DTMF on, starting at once) and callbacks to ``/acs/callbacks``.
- ``POST /acs/callbacks``: Call Automation CloudEvents. CallConnected starts the
  recording (unless ``CALLSTREAM_RECORDING=off``); RecordingStateChanged confirms pauses
  and resumes; CallDisconnected ends the call; every callback is audited by type.
- ``POST /calls/{callId}/recording``: register a recording started elsewhere.
- ``POST /calls/{callId}/recording/pause|resume``: the agent's manual control.
- ``GET /calls/{callId}/audit``: the call's compliance record.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any
from urllib.parse import urlencode

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from pipeline.api.auth import secret_matches
from pipeline.compliance.audit_summary import summarize
from pipeline.pci.recording import describe_error, http_url, websocket_url
from pipeline.service import Service

log = logging.getLogger(__name__)

VALIDATION = "Microsoft.EventGrid.SubscriptionValidationEvent"
INCOMING_CALL = "Microsoft.Communication.IncomingCall"
MAX_BODY = 1 << 20


def _public_url(service: Service, request: Request) -> str:
    return service.settings.public_url or str(request.base_url).rstrip("/")


def _callback_url(service: Service, public: str) -> str:
    """``/acs/callbacks`` with the callback secret, which ACS echoes back on every callback.
    Never log it: it is a credential."""
    return http_url(public, "/acs/callbacks") + "?" + urlencode({"secret": service.callback_secret})


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None past ``limit`` bytes: read in chunks, never held whole beyond it."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    parts, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
    return b"".join(parts)


async def _json_array(request: Request) -> list[dict] | Response:
    body = await _read_limited(request, MAX_BODY)
    if body is None:
        return JSONResponse({"error": "body too large"}, status_code=413)
    try:
        doc = json.loads(body)
    except ValueError:
        return JSONResponse({"error": "body is not JSON"}, status_code=400)
    items = doc if isinstance(doc, list) else [doc]
    if not all(isinstance(i, dict) for i in items):
        return JSONResponse({"error": "expected an event or an array of events"}, status_code=400)
    for i, ev in enumerate(items):
        problem = _event_problem(ev)
        if problem is not None:
            return JSONResponse({"error": f"event {i}: {problem}"}, status_code=400)
    return items


# The fields the handlers below read; ACS sends them as strings (or leaves them out).
_EVENT_FIELDS = ("eventType", "type")
_DATA_FIELDS = (
    "validationCode",
    "incomingCallContext",
    "callConnectionId",
    "serverCallId",
    "recordingId",
    "state",
)


def _event_problem(ev: dict) -> str | None:
    """Why an event cannot be read (a field of the wrong type), or None."""
    for name in _EVENT_FIELDS:
        if not isinstance(ev.get(name), str | None):
            return f"{name} is not a string"
    data = ev.get("data")
    if data is None:
        return None
    if not isinstance(data, dict):
        return "data is not an object"
    for name in _DATA_FIELDS:
        if not isinstance(data.get(name), str | None):
            return f"data.{name} is not a string"
    return None


def _recording_wanted(service: Service) -> bool:
    setting = (service.settings.recording or "").lower()
    return service.recording.configured and setting != "off"


async def _acs_request(request: Request) -> tuple[Service, list[dict], str] | Response:
    """The service, the posted events and the public base URL (or the error answer)."""
    service: Service = request.app.state.service
    if not secret_matches(request.query_params.get("secret"), service.callback_secret):
        log.warning("POST %s refused: missing or wrong callback secret", request.url.path)
        return JSONResponse({"error": "unauthorized"}, status_code=401)
    items = await _json_array(request)
    if isinstance(items, Response):
        return items
    return service, items, _public_url(service, request)


async def acs_events(request: Request) -> Response:
    parsed = await _acs_request(request)
    if isinstance(parsed, Response):
        return parsed
    service, items, public = parsed
    for ev in items:
        kind = ev.get("eventType") or ev.get("type")
        data = ev.get("data") or {}
        if kind == VALIDATION:
            return JSONResponse({"validationResponse": data.get("validationCode")})
        if kind == INCOMING_CALL:
            context = data.get("incomingCallContext")
            if not context:
                return JSONResponse(
                    {"error": "IncomingCall without incomingCallContext"}, status_code=400
                )
            asyncio.get_running_loop().create_task(_answer(service, context, public))
    return JSONResponse({})


async def _answer(service: Service, context: str, public: str) -> None:
    try:
        props = await service.recording.answer(
            context, _callback_url(service, public), websocket_url(public, "/media")
        )
    except Exception as exc:
        log.error("answering an incoming call failed (%s)", describe_error(exc))
        return
    cc = service.recording.control(props.call_connection_id)
    cc.server_call_id = props.server_call_id
    service.cluster.note(cc.call_id, serverCallId=props.server_call_id)
    service.journal.audit(cc.call_id, "acs.answered", {"serverCallId": props.server_call_id})


async def acs_callbacks(request: Request) -> Response:
    parsed = await _acs_request(request)
    if isinstance(parsed, Response):
        return parsed
    service, items, public = parsed
    for ev in items:
        await _callback(service, ev, public)
    return JSONResponse({})


async def _callback(service: Service, ev: dict, public: str) -> None:
    kind = str(ev.get("type") or ev.get("eventType") or "").removeprefix("Microsoft.Communication.")
    data = ev.get("data") or {}
    rec = service.recording
    call_id = data.get("callConnectionId")
    cc = rec.control(call_id) if call_id else rec.by_recording(str(data.get("recordingId") or ""))
    if cc is None:
        log.warning("ACS callback %s for an unknown call ignored", kind or "?")
        return
    if data.get("serverCallId"):
        cc.server_call_id = data["serverCallId"]
    audit: dict[str, Any] = {"type": kind}
    if kind == "RecordingStateChanged":
        state = str(data.get("state") or "").lower()
        if data.get("recordingId") and cc.recording_id is None:
            cc.recording_id = data["recordingId"]
        audit |= {"recordingId": data.get("recordingId"), "state": state}
        if state:
            rec.on_state(cc, state)
            service.cluster.note(cc.call_id, recordingId=cc.recording_id, recordingState=state)
            if not service.cluster.owns(cc.call_id):  # the driver waiting for it is there
                await service.cluster.send(
                    cc.call_id, "recording-state", {"state": state, "recordingId": cc.recording_id}
                )
    elif kind == "CallDisconnected":
        session = service.calls.get(cc.call_id)
        if session is not None:
            session.end_now("call-disconnected")
        else:
            await service.cluster.send(cc.call_id, "end", {"reason": "call-disconnected"})
    service.journal.audit(cc.call_id, "acs.callback", audit)
    if (
        kind == "CallConnected"
        and _recording_wanted(service)
        and cc.recording_id is None
        and cc.server_call_id
    ):
        try:
            await rec.start_recording(cc, _callback_url(service, public))
            learnt = {
                "recordingId": cc.recording_id,
                "recordingState": cc.recording_state,
                "serverCallId": cc.server_call_id,
            }
            service.cluster.note(cc.call_id, **learnt)
            if not service.cluster.owns(cc.call_id):
                await service.cluster.send(cc.call_id, "recording", learnt)
            service.journal.audit(
                cc.call_id,
                "recording.started",
                {"recordingId": cc.recording_id, "state": cc.recording_state},
            )
        except Exception as exc:
            service.journal.audit(
                cc.call_id, "recording.start-failed", {"error": describe_error(exc)}
            )
            log.error(
                "call %s: starting the recording failed (%s)", cc.call_id, describe_error(exc)
            )


class _RecordingBody(msgspec.Struct, forbid_unknown_fields=True):
    recordingId: str


async def register_recording(request: Request) -> Response:
    service: Service = request.app.state.service
    call_id = request.path_params["callId"]
    try:
        body = msgspec.json.decode(await request.body(), type=_RecordingBody)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return JSONResponse({"error": 'expected {"recordingId": "..."}'}, status_code=400)
    cc = service.recording.control(call_id)
    cc.recording_id = body.recordingId
    service.cluster.note(call_id, recordingId=body.recordingId)
    if not service.cluster.owns(call_id):
        await service.cluster.send(call_id, "recording", {"recordingId": body.recordingId})
    service.journal.audit(call_id, "recording.registered", {"recordingId": body.recordingId})
    return JSONResponse({"callId": call_id, "recordingId": body.recordingId})


async def manual_control(request: Request) -> Response:
    service: Service = request.app.state.service
    call_id = request.path_params["callId"]
    action = request.path_params["action"]
    if action not in ("pause", "resume"):
        return JSONResponse(
            {"error": "use .../recording/pause or .../recording/resume"}, status_code=404
        )
    # Runs where the call's media is: here, or on the replica that owns it.
    result = await service.cluster.send(call_id, "manual", {"action": action})
    if result is None:
        return JSONResponse({"error": f"no live call {call_id!r}"}, status_code=404)
    return JSONResponse(
        {"callId": call_id, **result}, status_code=202 if result["changed"] else 200
    )


async def audit(request: Request) -> Response:
    service: Service = request.app.state.service
    call_id = request.path_params["callId"]
    stored = await asyncio.to_thread(service.store.audit, call_id)
    if not stored and await asyncio.to_thread(service.store.get_call, call_id) is None:
        return JSONResponse({"error": f"no stored call {call_id!r}"}, status_code=404)
    records = [json.loads(a.body) for a in stored]
    return JSONResponse({"callId": call_id, **summarize(records), "records": records})


class _HoldBody(msgspec.Struct, forbid_unknown_fields=True):
    hold: bool = True
    reason: str | None = None


async def legal_hold(request: Request) -> Response:
    """``POST /calls/{callId}/hold`` ``{"hold": true}``: purge keeps the call until lifted."""
    service: Service = request.app.state.service
    call_id = request.path_params["callId"]
    try:
        body = msgspec.json.decode(await request.body() or b"{}", type=_HoldBody)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return JSONResponse(
            {"error": 'expected {"hold": true|false, "reason": "..."}'}, status_code=400
        )
    if not await asyncio.to_thread(service.store.set_hold, call_id, body.hold):
        return JSONResponse({"error": f"no stored call {call_id!r}"}, status_code=404)
    service.journal.audit(call_id, "legal-hold", {"hold": body.hold, "reason": body.reason})
    return JSONResponse({"callId": call_id, "hold": body.hold})


async def manifest(request: Request) -> Response:
    """``GET /calls/{callId}/manifest?format=``: the manifest of that export, as the CLI writes it."""
    import hashlib

    from pipeline.compliance.export import ExportError, export_lines
    from pipeline.compliance.manifest import build_manifest

    service: Service = request.app.state.service
    call_id = request.path_params["callId"]
    fmt = request.query_params.get("format", "jsonl")
    if await asyncio.to_thread(service.store.get_call, call_id) is None:
        return JSONResponse({"error": f"no stored call {call_id!r}"}, status_code=404)

    def build() -> dict:
        digest = hashlib.sha256()
        for line in export_lines(service.store, call_id, fmt):
            digest.update(line)
        return build_manifest(service.store, call_id, fmt, digest.hexdigest())

    try:
        doc = await asyncio.to_thread(build)
    except ExportError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    return JSONResponse(doc)
