"""The control and compliance side of payments, as HTTP endpoints (ACS's own webhooks
are in `acs_webhooks.py`).

- ``POST /calls/{callId}/recording``: register a recording started elsewhere.
- ``POST /calls/{callId}/recording/pause|resume``: the agent's manual control.
- ``GET /calls/{callId}/audit``: the call's compliance record.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from typing import Any, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from pipeline.api.roles import actor
from pipeline.api.wire import (
    Assigned,
    AssignmentRequest,
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
from pipeline.service import Service

log = logging.getLogger(__name__)

MANUAL_ACTIONS = ("pause", "resume")
ASSIGN_WAIT_S = 5.0
T = TypeVar("T")


def _decode(raw: bytes, kind: type[T], shape: str) -> T | Response:
    """The body as ``kind``, or a 400 naming the shape expected (and msgspec's path and
    type, never a value) and nothing else."""
    try:
        return msgspec.json.decode(raw, type=kind)
    except msgspec.ValidationError as exc:
        return respond(Error(error=f"expected {shape} ({exc})"), 400)
    except (msgspec.DecodeError, RecursionError):
        return respond(Error(error=f"expected {shape}"), 400)


async def register_recording(request: Request) -> Response:
    service: Service = request.app.state.service
    call_id = request.path_params["callId"]
    body = _decode(await request.body(), RecordingRegistration, '{"recordingId": "..."}')
    if isinstance(body, Response):
        return body
    recording_id = body.recording_id
    cc = service.recording.control(call_id)
    known = cc.recording_id or (await service.cluster.lookup(call_id)).get("recordingId")
    if known and known != recording_id:
        # Pauses would go to the new id while the recording ACS confirmed keeps recording.
        service.journal.audit(
            call_id,
            "recording.register-refused",
            {"recordingId": recording_id, "current": known, **actor(request.scope)},
        )
        return respond(Error(error="the call already has a different recording"), 409)
    cc.recording_id = recording_id
    service.cluster.note(call_id, recordingId=recording_id)
    if not service.cluster.owns(call_id):
        await service.cluster.send(call_id, "recording", {"recordingId": recording_id})
    service.journal.audit(
        call_id, "recording.registered", {"recordingId": recording_id, **actor(request.scope)}
    )
    return respond(RecordingRegistered(call_id=call_id, recording_id=recording_id))


async def assign(request: Request) -> Response:
    """``POST /calls/{callId}/assignment``: an integration (the routing backend) says which
    agent handles the call, so that agent may read it; audited, and on record before the
    answer (the member row is written with the audit record)."""
    service: Service = request.app.state.service
    call_id = request.path_params["callId"]
    body = _decode(await request.body(), AssignmentRequest, '{"agentId": "<raw id>"}')
    if isinstance(body, Response):
        return body
    if body.agent_id != body.agent_id.strip():  # the pattern's `$` lets a final newline by
        return respond(Error(error='expected {"agentId": "<raw id>"}'), 400)
    service.journal.audit(
        call_id, "call.assigned", {"agentId": body.agent_id, **actor(request.scope)}, body.agent_id
    )
    try:  # on record before the answer, so the agent may read the call at once
        await asyncio.wait_for(service.journal.flush(), ASSIGN_WAIT_S)
    except TimeoutError:
        return respond(Error(error="the store is slow or away; the assignment is queued"), 503)
    return respond(Assigned(call_id=call_id, agent_id=body.agent_id))


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
    service.journal.audit(
        call_id,
        "manual-control",
        {"action": action, "changed": result["changed"], **actor(request.scope)},
    )
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
    service.journal.audit(
        call_id, "legal-hold", {"hold": body.hold, "reason": body.reason, **actor(request.scope)}
    )
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
