"""ACS's webhooks: Event Grid (``POST /acs/events``) and Call Automation callbacks
(``POST /acs/callbacks``).

- ``/acs/events``: subscription validation is answered; an IncomingCall is answered through
  Call Automation with media streaming to our ``/media`` (unmixed, 16 kHz, DTMF on,
  starting at once) and callbacks to ``/acs/callbacks``.
- ``/acs/callbacks``: CallConnected starts the recording (unless ``CALLSTREAM_RECORDING=off``);
  RecordingStateChanged confirms pauses and resumes; CallDisconnected ends the call;
  AddParticipantSucceeded/Failed settle a Teams expert consult (pipeline/consult); every
  callback is audited by type.

Both need the URL secret; beyond it (ACS's signed token, Event Grid's Entra token, and
callbacks only for calls this deployment knows), see callback_auth.py.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlencode

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from pipeline.api.auth import secret_matches
from pipeline.api.callback_auth import CallbackAuth, RegistryUnavailable
from pipeline.api.wire import (
    AcsAnswer,
    AcsEvent,
    AcsEventData,
    AcsEvents,
    Error,
    read_limited,
    respond,
)
from pipeline.pci.recording import describe_error, http_url, websocket_url
from pipeline.service import Service

log = logging.getLogger(__name__)

VALIDATION = "Microsoft.EventGrid.SubscriptionValidationEvent"
INCOMING_CALL = "Microsoft.Communication.IncomingCall"
ADD_PARTICIPANT = ("AddParticipantSucceeded", "AddParticipantFailed")
MAX_BODY = 1 << 20


def _public_url(service: Service, request: Request) -> str:
    return service.settings.public_url or str(request.base_url).rstrip("/")


def _callback_url(service: Service, public: str) -> str:
    """``/acs/callbacks`` with the callback secret, which ACS echoes back on every callback.
    Never log it: it is a credential."""
    return http_url(public, "/acs/callbacks") + "?" + urlencode({"secret": service.callback_secret})


_EVENTS = msgspec.json.Decoder(AcsEvents)


async def _events(request: Request) -> list[AcsEvent] | Response:
    """The posted event(s), decoded into the very type the document describes."""
    body = await read_limited(request, MAX_BODY)
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


async def _acs_request(
    request: Request, from_call_automation: bool
) -> tuple[Service, list[AcsEvent], str] | Response:
    """The service, the posted events and the public base URL (or the error answer). The
    URL secret first, then the sender's bearer token where one is required."""
    service: Service = request.app.state.service
    reason = None
    if not secret_matches(request.query_params.get("secret"), service.callback_secret):
        reason = "missing or wrong callback secret"
    else:
        auth, headers = CallbackAuth.of(request.app), request.scope["headers"]
        if from_call_automation:
            reason = await auth.callback_refusal(headers)
        else:
            reason = await auth.eventgrid_refusal(headers)
    if reason is not None:
        service.stats.acs_webhooks_refused += 1
        log.warning("POST %s refused: %s", request.url.path, reason)
        return respond(Error(error="unauthorized"), 401)
    items = await _events(request)
    if isinstance(items, Response):
        return items
    return service, items, _public_url(service, request)


async def acs_events(request: Request) -> Response:
    parsed = await _acs_request(request, from_call_automation=False)
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
                answer = _answer(service, CallbackAuth.of(request.app), data, public)
                service.tasks.spawn(answer, name="acs-answer")
            except RuntimeError:  # stopping: Event Grid retries, another replica answers
                return respond(Error(error="shutting down"), 503)
    return respond(AcsAnswer())


async def _answer(service: Service, auth: CallbackAuth, data: AcsEventData, public: str) -> None:
    with auth.answering(data.server_call_id):  # its CallConnected may come first: it waits
        try:
            props = await service.recording.answer(
                data.incoming_call_context or "",
                _callback_url(service, public),
                websocket_url(public, "/media"),
            )
        except Exception as exc:
            log.error("answering an incoming call failed (%s)", describe_error(exc))
            return
        cc = service.recording.control(props.call_connection_id)  # answered: known from now on
    cc.server_call_id = props.server_call_id
    service.cluster.note(cc.call_id, serverCallId=props.server_call_id)
    service.journal.audit(cc.call_id, "acs.answered", {"serverCallId": props.server_call_id})


async def acs_callbacks(request: Request) -> Response:
    parsed = await _acs_request(request, from_call_automation=True)
    if isinstance(parsed, Response):
        return parsed
    service, items, public = parsed
    auth = CallbackAuth.of(request.app)
    try:
        for ev in items:
            await _callback(service, auth, ev, public)
    except RegistryUnavailable:  # ACS retries a 5xx
        return respond(Error(error="call registry unavailable"), 503)
    return respond(AcsAnswer())


async def _callback(service: Service, auth: CallbackAuth, ev: AcsEvent, public: str) -> None:
    kind = (ev.type or ev.event_type or "").removeprefix("Microsoft.Communication.")
    data = ev.data or AcsEventData()
    rec = service.recording
    cc = await auth.known_control(service, data)
    if cc is None:
        # Answered 200 all the same: ACS would retry anything else. Nothing is written.
        service.stats.acs_callbacks_unknown_call += 1
        named = data.call_connection_id or data.recording_id or ""
        log.warning("ACS callback %s for unknown call %r ignored", kind[:64] or "?", named[:64])
        return
    if data.server_call_id:
        cc.server_call_id = data.server_call_id
    audit: dict[str, Any] = {"type": kind}
    if kind == "RecordingStateChanged":
        state = (data.state or "").lower()
        if data.recording_id and cc.recording_id is None:
            cc.recording_id = data.recording_id
        audit |= {"recordingId": data.recording_id, "state": state}
        other = bool(data.recording_id and cc.recording_id and data.recording_id != cc.recording_id)
        if other:  # another recording's state confirms nothing about this call's
            audit["ignored"] = "another recording"
        if state and not other:
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
    elif kind in ADD_PARTICIPANT:  # a Teams expert asked into the call (pipeline/consult)
        info = data.result_information
        audit |= {
            "operationContext": (data.operation_context or "")[:128] or None,
            "resultCode": info.code if info else None,
            "resultSubCode": info.sub_code if info else None,
        }
    service.journal.audit(cc.call_id, "acs.callback", audit)
    if kind in ADD_PARTICIPANT:
        await service.consult.report(cc.call_id, data, succeeded=kind == ADD_PARTICIPANT[0])
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
