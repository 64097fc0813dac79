"""Every route of the service, declared once: `create_app` mounts this table and
`openapi.py` documents it, so a route cannot be served undocumented or documented unserved.

Each entry names its handler, its access level (`access.py`), its parameters and body, and
every answer the handler gives (by status code, with the body's msgspec type or the media
type of a text body). What an access level adds (401, the console's redirect) is not
repeated here. Order matters only where the router would otherwise take the wrong entry.
"""

from __future__ import annotations

from typing import Any, Literal

from pipeline.api import (
    calls,
    console_routes,
    control_plane,
    ops,
)
from pipeline.api.route_params import CALL_ID, COMPLIANCE, INTEGRATIONS, SUPERVISORS
from pipeline.api.routes_acs import ACS_ROUTES
from pipeline.api.routes_supervision import SUPERVISION_ROUTES
from pipeline.api.spec import (
    JSON,
    TEXT,
    Entry,
    Operation,
    Param,
    Reply,
    Socket,
    json_reply,
)
from pipeline.api.wire import (
    Assigned,
    AssignmentRequest,
    Audit,
    CallList,
    Error,
    Health,
    Hold,
    HoldRequest,
    KnownEntitiesAccepted,
    KnownEntitiesRequest,
    Manifest,
    ManualControl,
    Readiness,
    RecordingRegistered,
    RecordingRegistration,
)
from pipeline.compliance.export import FORMATS, MEDIA_TYPES
from pipeline.delivery.streams import event_stream
from pipeline.ingest.media import MediaEndpoint

__all__ = ["ROUTES", "TAGS"]


def _one_of(values: tuple[str, ...]) -> Any:
    return Literal[values]  # type: ignore[valid-type]


def _bare(media_type: str) -> str:
    return media_type.split(";", 1)[0]


TAGS: dict[str, str] = {
    "compliance": "The read side: calls, transcripts, audit, manifests, legal hold.",
    "control": "The agent desktop and CRM: manual payment control, recordings, known values.",
    "acs": "Webhooks ACS calls (Event Grid and Call Automation).",
    "supervision": "Call analytics and bringing a Teams expert into a call.",
    "console": "The agent console's pages.",
    "operations": "Health, readiness, metrics.",
}

FORMAT = Param("format", "query", _one_of(FORMATS), "Export format.", default="jsonl")
LIMIT = Param(
    "limit", "query", int, "How many calls (clamped to 1..1000).", default=calls.DEFAULT_LIMIT
)
ACTION = Param("action", "path", _one_of(control_plane.MANUAL_ACTIONS))
STATIC_NAME = Param("name", "path", _one_of(console_routes.STATIC))

# A 404 comes from a handler (JSON) or, for a path no route matches (a call id holding
# "/", say), from the router (plain text).
CALL_NOT_FOUND = Reply(
    "No stored call with that id.", {JSON: Error, TEXT: str}, component="CallNotFound"
)
BAD_FORMAT = json_reply(Error, "Unknown format.")
PAGE = Reply("The page.", {"text/html": str})
TRANSCRIPT = Reply(
    "The export: JSONL is the events as published; WebVTT, TXT and CSV are the finals.",
    {_bare(MEDIA_TYPES[f]): str for f in FORMATS},
)
STATIC_FILES = Reply(
    "The file.", {console_routes.media_type(n): str for n in console_routes.STATIC}
)
NO_SUCH_PAGE = Reply("No such page.", {TEXT: str})

ROUTES: tuple[Entry, ...] = (
    Socket(
        "/media",
        MediaEndpoint(),
        name="media",
        summary="The ACS media-streaming and transcription "
        "transport. The call id is the `x-ms-call-connection-id` handshake header, else the "
        "`callId` query parameter.",
        access="media",
    ),
    Socket(
        "/events",
        event_stream,
        name="events",
        summary="The agent-assist event stream of all calls (`?since=SEQ` resumes).",
        access="api",
        roles=SUPERVISORS,
    ),
    Socket(
        "/calls/{callId}/events",
        event_stream,
        name="callEvents",
        summary="The agent-assist event stream of one call (`?since=SEQ` resumes).",
        access="api",
        roles={"agent": "own", "supervisor": "all"},
    ),
    Operation(
        "GET",
        "/calls",
        calls.list_calls,
        name="listCalls",
        tag="compliance",
        summary="Stored calls, newest first",
        access="api",
        roles={"agent": "own", "supervisor": "all", "compliance": "all"},
        params=(LIMIT,),
        replies={
            200: json_reply(CallList, "The calls."),
            400: json_reply(Error, "`limit` is not an integer."),
        },
    ),
    Operation(
        "GET",
        "/calls/{callId}/transcript",
        calls.transcript,
        name="getTranscript",
        tag="compliance",
        summary="A call's redacted transcript, read from the store",
        access="api",
        roles={"agent": "own", "compliance": "all"},
        params=(CALL_ID, FORMAT),
        replies={200: TRANSCRIPT, 400: BAD_FORMAT, 404: CALL_NOT_FOUND},
    ),
    Operation(
        "POST",
        "/calls/{callId}/known-entities",
        calls.known_entities,
        name="addKnownEntities",
        tag="control",
        summary="Values to redact in one call (from a CRM); kept in memory only, never echoed",
        access="api",
        roles=INTEGRATIONS,
        call_may_be_new=True,
        params=(CALL_ID,),
        body=KnownEntitiesRequest,
        replies={
            200: json_reply(KnownEntitiesAccepted, "Accepted."),
            400: json_reply(
                Error,
                "Not a known-entities request, a blank or too long value (256 "
                "characters once trimmed), or more than 64 values for the call.",
            ),
        },
    ),
    Operation(
        "POST",
        "/calls/{callId}/recording",
        control_plane.register_recording,
        name="registerRecording",
        tag="control",
        summary="Register a recording started elsewhere, so that payments pause it",
        access="api",
        roles=INTEGRATIONS,
        call_may_be_new=True,
        params=(CALL_ID,),
        body=RecordingRegistration,
        replies={
            200: json_reply(RecordingRegistered, "Registered."),
            400: json_reply(Error, 'Not `{"recordingId": "..."}`.'),
            409: json_reply(Error, "The call already has a different recording."),
        },
    ),
    Operation(
        "POST",
        "/calls/{callId}/assignment",
        control_plane.assign,
        name="assignAgent",
        tag="control",
        summary="Assign an agent to a call: the agent may then read it (audited)",
        access="api",
        roles=INTEGRATIONS,
        params=(CALL_ID,),
        body=AssignmentRequest,
        replies={
            200: json_reply(Assigned, "Assigned."),
            400: json_reply(Error, 'Not `{"agentId": "<raw id>"}`.'),
            503: json_reply(Error, "The store did not take the record within 5 s (it is queued)."),
        },
    ),
    Operation(
        "POST",
        "/calls/{callId}/recording/{action:str}",
        control_plane.manual_control,
        name="controlRecording",
        tag="control",
        summary="The agent's manual payment control: pause (opens a payment window) or resume",
        access="api",
        roles={"agent": "own", "supervisor": "all"},
        params=(CALL_ID, ACTION),
        replies={
            200: json_reply(ManualControl, "Nothing changed (already paused, or not paused)."),
            202: json_reply(
                ManualControl, "The window opened or closed; the recording request is on its way."
            ),
            404: Reply(
                "No live call with that id, or an action other than pause or resume.",
                {JSON: Error, TEXT: str},
            ),
        },
    ),
    Operation(
        "GET",
        "/calls/{callId}/audit",
        control_plane.audit,
        name="getAudit",
        tag="compliance",
        summary="A call's compliance record: payment windows, recording requests, exposures",
        access="api",
        roles={"supervisor": "all", "compliance": "all"},
        params=(CALL_ID,),
        replies={200: json_reply(Audit, "The audit trail and its summary."), 404: CALL_NOT_FOUND},
    ),
    *SUPERVISION_ROUTES,
    Operation(
        "POST",
        "/calls/{callId}/hold",
        control_plane.legal_hold,
        name="setLegalHold",
        tag="compliance",
        summary="Put a stored call under legal hold (retention keeps it), or lift the hold",
        access="api",
        roles=COMPLIANCE,
        params=(CALL_ID,),
        body=HoldRequest,
        body_required=False,
        replies={
            200: json_reply(Hold, "The hold is set (or lifted)."),
            400: json_reply(Error, "Not a hold request."),
            404: CALL_NOT_FOUND,
        },
    ),
    Operation(
        "GET",
        "/calls/{callId}/manifest",
        control_plane.manifest,
        name="getManifest",
        tag="compliance",
        summary="The manifest of a call's export in a format (as `callstream export` writes it)",
        access="api",
        roles=COMPLIANCE,
        params=(CALL_ID, FORMAT),
        replies={200: json_reply(Manifest, "The manifest."), 400: BAD_FORMAT, 404: CALL_NOT_FOUND},
    ),
    *ACS_ROUTES,
    Operation(
        "GET",
        "/healthz",
        ops.healthz,
        name="healthz",
        tag="operations",
        summary="Liveness",
        access="public",
        replies={200: json_reply(Health, "The process is up.")},
    ),
    Operation(
        "GET",
        "/readyz",
        ops.readyz,
        name="readyz",
        tag="operations",
        summary="Readiness (not ready while starting, draining, or without the store)",
        access="public",
        replies={
            200: json_reply(Readiness, "Ready for new calls."),
            503: json_reply(Readiness, "Starting, draining, or degraded."),
        },
    ),
    Operation(
        "GET",
        "/metrics",
        ops.metrics,
        name="metrics",
        tag="operations",
        summary="Prometheus metrics",
        access="metrics",
        replies={200: Reply("Prometheus text exposition format.", {TEXT: str})},
    ),
    Operation(
        "GET",
        "/openapi.json",
        ops.openapi_json,
        name="openapi",
        tag="operations",
        summary="This document",
        access="public",
        replies={200: json_reply(dict[str, Any], "The OpenAPI description.")},
    ),
    Operation(
        "GET",
        "/",
        console_routes.to_console,
        name="root",
        tag="console",
        summary="Leads a browser to the console",
        access="public",
        replies={307: Reply("To /console.", headers={"Location": Literal["/console"]})},
    ),
    Operation(
        "GET",
        "/console",
        console_routes.console_index,
        name="consoleIndex",
        tag="console",
        summary="The agent console: live and recent calls",
        access="console",
        roles={"agent": "own", "supervisor": "all", "compliance": "all"},
        replies={200: PAGE},
        also_at=("/console/",),
    ),
    Operation(
        "GET",
        "/console/static/{name}",
        console_routes.console_static,
        name="consoleStatic",
        tag="console",
        summary="The console's stylesheet, script and icon",
        access="public",
        params=(STATIC_NAME,),
        replies={200: STATIC_FILES, 404: NO_SUCH_PAGE},
    ),
    Operation(
        "GET",
        "/console/wallboard",
        console_routes.console_wallboard,
        name="consoleWallboard",
        tag="console",
        summary="The supervisors' wallboard: every live call, its alerts, recent ended calls",
        access="console",
        roles=SUPERVISORS,
        replies={200: PAGE},
    ),
    Operation(
        "GET",
        "/console/{callId}",
        console_routes.console_call,
        name="consoleCall",
        tag="console",
        summary="The agent console: one call, live",
        access="console",
        roles={"agent": "own", "supervisor": "all"},
        params=(CALL_ID,),
        replies={200: PAGE, 404: NO_SUCH_PAGE},
    ),
)
