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
import hashlib
import json
import logging
from typing import Any
from urllib.parse import urlencode

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from pipeline.api.auth import secret_matches
from pipeline.api.wire import (
    AcsAnswer,
    AcsEvent,
    AcsEventData,
    AcsEvents,
    Audit,
    Error,
    Hold,
    HoldRequest,
    Manifest,
    ManualControl,
    RecordingRegistered,
    RecordingRegistration,
    respond,
)
from pipeline.compliance.audit_summary import summarize
from pipeline.compliance.export import ExportError, export_lines
from pipeline.compliance.manifest import build_manifest
from pipeline.pci.recording import describe_error, http_url, websocket_url
from pipeline.service import Service

log = logging.getLogger(__name__)

VALIDATION = "Microsoft.EventGrid.SubscriptionValidationEvent"
INCOMING_CALL = "Microsoft.Communication.IncomingCall"
MAX_BODY = 1 << 20
MANUAL_ACTIONS = ("pause", "resume")


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


_EVENTS = msgspec.json.Decoder(AcsEvents)


async def _events(request: Request) -> list[AcsEvent] | Response:
    """The posted event(s), decoded into the very type the document describes."""
    body = await _read_limited(request, MAX_BODY)
    if body is None:
        return respond(Error(error="body too large"), 413)
    try:
        doc = _EVENTS.decode(body)
    except msgspec.ValidationError as exc:  # names the path and the type, never a value
        return respond(Error(error=f"expected an event or an array of events ({exc})"), 400)
    except (msgspec.DecodeError, RecursionError):
        return respond(Error(error="body is not JSON"), 400)
    return doc if isinstance(doc, list) else [doc]


def _recording_wanted(service: Service) -> bool:
    setting = (service.settings.recording or "").lower()
    return service.recording.configured and setting != "off"


async def _acs_request(request: Request) -> tuple[Service, list[AcsEvent], str] | Response:
    """The service, the posted events and the public base URL (or the error answer)."""
    service: Service = request.app.state.service
    if not secret_matches(request.query_params.get("secret"), service.callback_secret):
        log.warning("POST %s refused: missing or wrong callback secret", request.url.path)
        return respond(Error(error="unauthorized"), 401)
    items = await _events(request)
    if isinstance(items, Response):
        return items
    return service, items, _public_url(service, request)


async def acs_events(request: Request) -> Response:
    parsed = await _acs_request(request)
    if isinstance(parsed, Response):
        return parsed
    service, items, public = parsed
    for ev in items:
        kind = ev.event_type or ev.type
        data = ev.data or AcsEventData()
        if kind == VALIDATION:
            return respond(AcsAnswer(validation_response=data.validation_code))
        if kind == INCOMING_CALL:
            context = data.incoming_call_context
            if not context:
                return respond(Error(error="IncomingCall without incomingCallContext"), 400)
            try:
                # Owned by the service: held until done, logged if it fails, cancelled at stop.
                service.tasks.spawn(_answer(service, context, public), name="acs-answer")
            except RuntimeError:  # stopping: Event Grid retries, another replica answers
                return respond(Error(error="shutting down"), 503)
    return respond(AcsAnswer())


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
    return respond(AcsAnswer())


async def _callback(service: Service, ev: AcsEvent, public: str) -> None:
    kind = (ev.type or ev.event_type or "").removeprefix("Microsoft.Communication.")
    data = ev.data or AcsEventData()
    rec = service.recording
    call_id = data.call_connection_id
    cc = rec.control(call_id) if call_id else rec.by_recording(data.recording_id or "")
    if cc is None:
        log.warning("ACS callback %s for an unknown call ignored", kind or "?")
        return
    if data.server_call_id:
        cc.server_call_id = data.server_call_id
    audit: dict[str, Any] = {"type": kind}
    if kind == "RecordingStateChanged":
        state = (data.state or "").lower()
        if data.recording_id and cc.recording_id is None:
            cc.recording_id = data.recording_id
        audit |= {"recordingId": data.recording_id, "state": state}
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


async def register_recording(request: Request) -> Response:
    service: Service = request.app.state.service
    call_id = request.path_params["callId"]
    try:
        body = msgspec.json.decode(await request.body(), type=RecordingRegistration)
    except (msgspec.DecodeError, RecursionError):
        return respond(Error(error='expected {"recordingId": "..."}'), 400)
    recording_id = body.recording_id
    cc = service.recording.control(call_id)
    cc.recording_id = recording_id
    service.cluster.note(call_id, recordingId=recording_id)
    if not service.cluster.owns(call_id):
        await service.cluster.send(call_id, "recording", {"recordingId": recording_id})
    service.journal.audit(call_id, "recording.registered", {"recordingId": recording_id})
    return respond(RecordingRegistered(call_id=call_id, recording_id=recording_id))


async def manual_control(request: Request) -> Response:
    service: Service = request.app.state.service
    call_id = request.path_params["callId"]
    action = request.path_params["action"]
    if action not in MANUAL_ACTIONS:
        return respond(Error(error="use .../recording/pause or .../recording/resume"), 404)
    # Runs where the call's media is: here, or on the replica that owns it.
    result = await service.cluster.send(call_id, "manual", {"action": action})
    if result is None:
        return respond(Error(error=f"no live call {call_id!r}"), 404)
    body = ManualControl(
        call_id=call_id,
        payment=result["payment"],
        changed=result["changed"],
        recording_id=result["recordingId"],
    )
    return respond(body, 202 if body.changed else 200)


async def audit(request: Request) -> Response:
    service: Service = request.app.state.service
    call_id = request.path_params["callId"]
    stored = await asyncio.to_thread(service.store.audit, call_id)
    if not stored and await asyncio.to_thread(service.store.get_call, call_id) is None:
        return respond(Error(error=f"no stored call {call_id!r}"), 404)
    records = [json.loads(a.body) for a in stored]
    # Converted, not spread into a dict: the answer has the fields Audit declares, no more.
    doc = {"callId": call_id, **summarize(records), "records": records}
    return respond(msgspec.convert(doc, Audit))


async def legal_hold(request: Request) -> Response:
    """``POST /calls/{callId}/hold`` ``{"hold": true}``: purge keeps the call until lifted."""
    service: Service = request.app.state.service
    call_id = request.path_params["callId"]
    try:
        body = msgspec.json.decode(await request.body() or b"{}", type=HoldRequest)
    except (msgspec.DecodeError, RecursionError):
        return respond(Error(error='expected {"hold": true|false, "reason": "..."}'), 400)
    if not await asyncio.to_thread(service.store.set_hold, call_id, body.hold):
        return respond(Error(error=f"no stored call {call_id!r}"), 404)
    service.journal.audit(call_id, "legal-hold", {"hold": body.hold, "reason": body.reason})
    return respond(Hold(call_id=call_id, hold=body.hold))


async def manifest(request: Request) -> Response:
    """``GET /calls/{callId}/manifest?format=``: the manifest of that export, as the CLI
    writes it."""
    service: Service = request.app.state.service
    call_id = request.path_params["callId"]
    fmt = request.query_params.get("format", "jsonl")
    if await asyncio.to_thread(service.store.get_call, call_id) is None:
        return respond(Error(error=f"no stored call {call_id!r}"), 404)

    def build() -> dict[str, Any]:
        digest = hashlib.sha256()
        for line in export_lines(service.store, call_id, fmt):
            digest.update(line)
        return build_manifest(service.store, call_id, fmt, digest.hexdigest())

    try:
        doc = await asyncio.to_thread(build)
    except ExportError as exc:
        return respond(Error(error=str(exc)), 400)
    return respond(msgspec.convert(doc, Manifest))
