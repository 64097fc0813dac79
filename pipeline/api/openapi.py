"""The OpenAPI description of callstream's HTTP API, served at ``GET /openapi.json``.

Written by hand from the handlers (app.py, control_plane.py, console_routes.py) and the
auth middleware: every status code and content type below is one the code returns, so
that a schema-driven fuzzer (tests/test_api_schemathesis.py runs schemathesis against a
real server) can hold the service to it. The websocket endpoints are described in the
text only; OpenAPI has no way to describe them.

The document is open (no token): it names no secret, and an operator needs it to wire a
client. Security requirements are listed only when API auth is on, as the service
enforces them only then.
"""

from __future__ import annotations

import copy
from functools import cache
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from pipeline.api.auth import COOKIE, api_auth_enabled
from pipeline.compliance.export import FORMATS
from pipeline.version import version

__all__ = ["openapi_document", "openapi_json"]

DESCRIPTION = """\
callstream turns Azure Communication Services (ACS) call audio into live, redacted
transcripts, pauses the call recording while a card payment is taken, and keeps a
redacted, append-only record of every call for compliance export.

This document covers the HTTP endpoints. The websockets are not in it (OpenAPI cannot
describe them):

- `WS /media`: the ACS media-streaming and transcription transport. The call id is the
  `x-ms-call-connection-id` handshake header, else the `callId` query parameter. ACS signs
  the handshake with a JWT (`CALLSTREAM_MEDIA_AUTH=acs-jwt`); a refused handshake is
  closed with code 1008.
- `WS /calls/{callId}/events` and `WS /events`: the agent-assist event stream of one call,
  of all calls (`?since=SEQ` resumes). They take the API bearer token, or `?access_token=`.

API auth: when `CALLSTREAM_API_TOKENS` (or an API JWT issuer) is set, `/calls...`, the
event streams and the console pages need `Authorization: Bearer <token>` (the console also
takes its cookie); a refusal is `401` with `WWW-Authenticate: Bearer`. When unset, the API
is open (which `serve` allows only on a loopback host). `/acs/*` take the callback secret
(`?secret=`, `CALLSTREAM_CALLBACK_SECRET`) that callstream puts in the URLs it hands to ACS.
Health, readiness, metrics and this document are open.
"""

CALL_ID = {
    "name": "callId",
    "in": "path",
    "required": True,
    "description": "The ACS call connection id.",
    "schema": {"type": "string", "minLength": 1},
}
FORMAT = {
    "name": "format",
    "in": "query",
    "required": False,
    "description": "Export format (default `jsonl`).",
    "schema": {"type": "string", "enum": list(FORMATS), "default": "jsonl"},
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


# A 404 comes from a handler (JSON) or, for a path no route matches (a call id holding
# "/", say), from the router (plain text).
NOT_FOUND_CONTENT = {
    "application/json": {"schema": _ref("Error")},
    "text/plain": {"schema": {"type": "string"}},
}
UNAUTHORIZED = {"$ref": "#/components/responses/Unauthorized"}
NOT_FOUND_CALL = {"$ref": "#/components/responses/CallNotFound"}
NULLABLE_STR = {"type": ["string", "null"]}
NULLABLE_INT = {"type": ["integer", "null"]}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"const": "ok"}},
    },
    "Readiness": {
        "type": "object",
        "required": ["ready", "draining", "activeCalls"],
        "properties": {
            "ready": {"type": "boolean"},
            "draining": {"type": "boolean"},
            "activeCalls": {"type": "integer", "minimum": 0},
        },
    },
    "CallSummary": {
        "type": "object",
        "required": [
            "callId",
            "startedAt",
            "endedAt",
            "endReason",
            "mode",
            "sampleRate",
            "lastSeq",
            "live",
        ],
        "properties": {
            "callId": {"type": "string"},
            "startedAt": {"type": "string", "description": "ISO 8601, UTC"},
            "endedAt": NULLABLE_STR,
            "endReason": NULLABLE_STR,
            "mode": NULLABLE_STR,
            "sampleRate": NULLABLE_INT,
            "lastSeq": {"type": "integer"},
            "live": {"type": "boolean", "description": "streaming on this replica now"},
        },
    },
    "CallList": {
        "type": "object",
        "required": ["calls"],
        "properties": {"calls": {"type": "array", "items": _ref("CallSummary")}},
    },
    "KnownEntitiesRequest": {
        "type": "object",
        "additionalProperties": False,
        "required": ["entities"],
        "properties": {
            "entities": {
                "type": "array",
                "description": "At most 64 distinct values per call, over all requests.",
                "items": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["type", "value"],
                    "properties": {
                        "type": {"type": "string", "description": "e.g. PERSON, ACCOUNT_NUMBER"},
                        "value": {
                            "type": "string",
                            "description": "Not blank; at most 256 characters once trimmed.",
                        },
                    },
                },
            }
        },
    },
    "KnownEntitiesAccepted": {
        "type": "object",
        "required": ["callId", "accepted", "knownValues"],
        "properties": {
            "callId": {"type": "string"},
            "accepted": {"type": "integer", "minimum": 0},
            "knownValues": {"type": "integer", "minimum": 0},
        },
    },
    "RecordingRegistration": {
        "type": "object",
        "additionalProperties": False,
        "required": ["recordingId"],
        "properties": {"recordingId": {"type": "string"}},
    },
    "RecordingRegistered": {
        "type": "object",
        "required": ["callId", "recordingId"],
        "properties": {"callId": {"type": "string"}, "recordingId": {"type": "string"}},
    },
    "ManualControl": {
        "type": "object",
        "required": ["callId", "payment", "changed", "recordingId"],
        "properties": {
            "callId": {"type": "string"},
            "payment": {"type": "string", "enum": ["open", "closed"]},
            "changed": {"type": "boolean"},
            "recordingId": NULLABLE_STR,
        },
    },
    "Audit": {
        "type": "object",
        "required": [
            "callId",
            "policyVersion",
            "windows",
            "requests",
            "exposures",
            "redactionCounts",
            "records",
        ],
        "properties": {
            "callId": {"type": "string"},
            "policyVersion": NULLABLE_STR,
            "windows": {"type": "array", "items": {"type": "object"}},
            "requests": {"type": "array", "items": {"type": "object"}},
            "exposures": {"type": "array", "items": {"type": "object"}},
            "redactionCounts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "records": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["kind", "time"],
                    "properties": {"kind": {"type": "string"}, "time": {"type": "string"}},
                },
            },
        },
    },
    "HoldRequest": {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "hold": {"type": "boolean", "default": True},
            "reason": NULLABLE_STR,
        },
    },
    "Hold": {
        "type": "object",
        "required": ["callId", "hold"],
        "properties": {"callId": {"type": "string"}, "hold": {"type": "boolean"}},
    },
    "Manifest": {
        "type": "object",
        "required": [
            "manifestVersion",
            "chain",
            "callId",
            "format",
            "firstSeq",
            "lastSeq",
            "eventCount",
            "chainHead",
            "links",
            "policyVersion",
            "redactionCounts",
            "pauseIntervals",
            "exposures",
            "exportSha256",
        ],
        "properties": {
            "manifestVersion": {"type": "integer"},
            "chain": {"type": "string"},
            "callId": {"type": "string"},
            "format": {"type": "string", "enum": list(FORMATS)},
            "firstSeq": NULLABLE_INT,
            "lastSeq": NULLABLE_INT,
            "eventCount": {"type": "integer", "minimum": 0},
            "chainHead": {"type": "string"},
            "links": {"type": "array", "items": {"type": "string"}},
            "policyVersion": NULLABLE_STR,
            "redactionCounts": {"type": "object", "additionalProperties": {"type": "integer"}},
            "pauseIntervals": {"type": "array", "items": {"type": "object"}},
            "exposures": {"type": "array", "items": {"type": "object"}},
            "exportSha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
        },
    },
    "AcsEvent": {
        "type": "object",
        "description": "An Event Grid event or a Call Automation CloudEvent. Only the fields "
        "callstream reads are constrained; a field of the wrong type is refused with 400.",
        "properties": {
            "eventType": NULLABLE_STR,
            "type": NULLABLE_STR,
            "data": {
                "type": ["object", "null"],
                "properties": {
                    "validationCode": NULLABLE_STR,
                    "incomingCallContext": NULLABLE_STR,
                    "callConnectionId": NULLABLE_STR,
                    "serverCallId": NULLABLE_STR,
                    "recordingId": NULLABLE_STR,
                    "state": NULLABLE_STR,
                },
            },
        },
    },
    "AcsEvents": {"oneOf": [_ref("AcsEvent"), {"type": "array", "items": _ref("AcsEvent")}]},
    "AcsAnswer": {
        "type": "object",
        "description": "`{}`, or the answer to a subscription validation.",
        "properties": {"validationResponse": NULLABLE_STR},
        "additionalProperties": False,
    },
}

_ACS_RESPONSES = {
    "200": _json(_ref("AcsAnswer"), "Handled (unknown calls and event types are ignored)."),
    "400": _error("Not JSON, not an event or an array of events, or a field of the wrong type."),
    "401": _error("Missing or wrong `secret`."),
    "413": _error("Body larger than 1 MiB."),
}


def _paths() -> dict[str, Any]:
    bearer = [{"bearerAuth": []}]
    console = [{"bearerAuth": []}, {"consoleCookie": []}]
    secret = [{"callbackSecret": []}]
    html = {"text/html": {"schema": {"type": "string"}}}
    console_401 = {
        "description": "No valid token, or a bad `?token=`.",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
    console_303 = {
        "description": "`?token=` was good: it becomes an HttpOnly cookie, and the redirect drops it from the address.",
        "headers": {
            "Location": {"schema": {"type": "string"}},
            "Set-Cookie": {"schema": {"type": "string"}},
        },
    }
    token_param = {
        "name": "token",
        "in": "query",
        "required": False,
        "description": "An API token, kept as the console's cookie (answered with 303).",
        "schema": {"type": "string"},
    }
    return {
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "tags": ["operations"],
                "summary": "Liveness",
                "responses": {"200": _json(_ref("Health"), "The process is up.")},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "tags": ["operations"],
                "summary": "Readiness (not ready while starting or draining)",
                "responses": {
                    "200": _json(_ref("Readiness"), "Ready for new calls."),
                    "503": _json(_ref("Readiness"), "Starting or draining."),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "tags": ["operations"],
                "summary": "Prometheus metrics",
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "tags": ["operations"],
                "summary": "This document",
                "responses": {"200": _json({"type": "object"}, "The OpenAPI description.")},
            }
        },
        "/calls": {
            "get": {
                "operationId": "listCalls",
                "tags": ["compliance"],
                "summary": "Stored calls, newest first",
                "security": bearer,
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "description": "How many calls (default 100; clamped to 1..1000).",
                        "schema": {"type": "integer", "default": 100},
                    }
                ],
                "responses": {
                    "200": _json(_ref("CallList"), "The calls."),
                    "400": _error("`limit` is not an integer."),
                    "401": UNAUTHORIZED,
                },
            }
        },
        "/calls/{callId}/transcript": {
            "get": {
                "operationId": "getTranscript",
                "tags": ["compliance"],
                "summary": "A call's redacted transcript, read from the store",
                "security": bearer,
                "parameters": [CALL_ID, FORMAT],
                "responses": {
                    "200": {
                        "description": "The export: JSONL is the events as published; WebVTT, TXT and CSV are the finals.",
                        "content": {
                            "application/x-ndjson": {"schema": {"type": "string"}},
                            "text/vtt": {"schema": {"type": "string"}},
                            "text/plain": {"schema": {"type": "string"}},
                            "text/csv": {"schema": {"type": "string"}},
                        },
                    },
                    "400": _error("Unknown format."),
                    "401": UNAUTHORIZED,
                    "404": NOT_FOUND_CALL,
                },
            }
        },
        "/calls/{callId}/manifest": {
            "get": {
                "operationId": "getManifest",
                "tags": ["compliance"],
                "summary": "The manifest of a call's export in a format (as `callstream export` writes it)",
                "security": bearer,
                "parameters": [CALL_ID, FORMAT],
                "responses": {
                    "200": _json(_ref("Manifest"), "The manifest."),
                    "400": _error("Unknown format."),
                    "401": UNAUTHORIZED,
                    "404": NOT_FOUND_CALL,
                },
            }
        },
        "/calls/{callId}/audit": {
            "get": {
                "operationId": "getAudit",
                "tags": ["compliance"],
                "summary": "A call's compliance record: payment windows, recording requests, exposures",
                "security": bearer,
                "parameters": [CALL_ID],
                "responses": {
                    "200": _json(_ref("Audit"), "The audit trail and its summary."),
                    "401": UNAUTHORIZED,
                    "404": NOT_FOUND_CALL,
                },
            }
        },
        "/calls/{callId}/hold": {
            "post": {
                "operationId": "setLegalHold",
                "tags": ["compliance"],
                "summary": "Put a stored call under legal hold (retention keeps it), or lift the hold",
                "security": bearer,
                "parameters": [CALL_ID],
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": _ref("HoldRequest")}},
                },
                "responses": {
                    "200": _json(_ref("Hold"), "The hold is set (or lifted)."),
                    "400": _error("Not a hold request."),
                    "401": UNAUTHORIZED,
                    "404": NOT_FOUND_CALL,
                },
            }
        },
        "/calls/{callId}/known-entities": {
            "post": {
                "operationId": "addKnownEntities",
                "tags": ["control"],
                "summary": "Values to redact in one call (from a CRM); kept in memory only, never echoed",
                "security": bearer,
                "parameters": [CALL_ID],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("KnownEntitiesRequest")}},
                },
                "responses": {
                    "200": _json(_ref("KnownEntitiesAccepted"), "Accepted."),
                    "400": _error(
                        "Not a known-entities request, a blank or too long value, or more than 64 values for the call."
                    ),
                    "401": UNAUTHORIZED,
                },
            }
        },
        "/calls/{callId}/recording": {
            "post": {
                "operationId": "registerRecording",
                "tags": ["control"],
                "summary": "Register a recording started elsewhere, so that payments pause it",
                "security": bearer,
                "parameters": [CALL_ID],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("RecordingRegistration")}},
                },
                "responses": {
                    "200": _json(_ref("RecordingRegistered"), "Registered."),
                    "400": _error('Not `{"recordingId": "..."}`.'),
                    "401": UNAUTHORIZED,
                },
            }
        },
        "/calls/{callId}/recording/{action}": {
            "post": {
                "operationId": "controlRecording",
                "tags": ["control"],
                "summary": "The agent's manual payment control: pause (opens a payment window) or resume",
                "security": bearer,
                "parameters": [
                    CALL_ID,
                    {
                        "name": "action",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": ["pause", "resume"]},
                    },
                ],
                "responses": {
                    "200": _json(
                        _ref("ManualControl"), "Nothing changed (already paused, or not paused)."
                    ),
                    "202": _json(
                        _ref("ManualControl"),
                        "The window opened or closed; the recording request is on its way.",
                    ),
                    "401": UNAUTHORIZED,
                    "404": {
                        "description": "No live call with that id, or an action other than pause or resume.",
                        "content": NOT_FOUND_CONTENT,
                    },
                },
            }
        },
        "/acs/events": {
            "post": {
                "operationId": "acsEvents",
                "tags": ["acs"],
                "summary": "Event Grid: subscription validation and Microsoft.Communication.IncomingCall",
                "security": secret,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("AcsEvents")}},
                },
                "responses": _ACS_RESPONSES,
            }
        },
        "/acs/callbacks": {
            "post": {
                "operationId": "acsCallbacks",
                "tags": ["acs"],
                "summary": "Call Automation callbacks (CallConnected, RecordingStateChanged, CallDisconnected, ...)",
                "security": secret,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("AcsEvents")}},
                },
                "responses": _ACS_RESPONSES,
            }
        },
        "/": {
            "get": {
                "operationId": "root",
                "tags": ["console"],
                "summary": "Leads a browser to the console",
                "security": [],
                "responses": {
                    "307": {
                        "description": "To /console.",
                        "headers": {
                            "Location": {"schema": {"type": "string", "const": "/console"}}
                        },
                    }
                },
            }
        },
        "/console": {
            "get": {
                "operationId": "consoleIndex",
                "tags": ["console"],
                "summary": "The agent console: live and recent calls",
                "security": console,
                "parameters": [token_param],
                "responses": {
                    "200": {"description": "The page.", "content": html},
                    "303": console_303,
                    "401": console_401,
                },
            }
        },
        "/console/{callId}": {
            "get": {
                "operationId": "consoleCall",
                "tags": ["console"],
                "summary": "The agent console: one call, live",
                "security": console,
                "parameters": [CALL_ID, token_param],
                "responses": {
                    "200": {"description": "The page.", "content": html},
                    "303": console_303,
                    "401": console_401,
                    "404": {
                        "description": "No such page.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                },
            }
        },
        "/console/static/{name}": {
            "get": {
                "operationId": "consoleStatic",
                "tags": ["console"],
                "summary": "The console's stylesheet, script and icon",
                "parameters": [
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "schema": {
                            "type": "string",
                            "enum": ["console.css", "console.js", "icon.svg"],
                        },
                    }
                ],
                "responses": {
                    "200": {
                        "description": "The file.",
                        "content": {
                            "text/css": {"schema": {"type": "string"}},
                            "text/javascript": {"schema": {"type": "string"}},
                            "image/svg+xml": {"schema": {"type": "string"}},
                        },
                    },
                    "404": {
                        "description": "No such file.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                },
            }
        },
    }


@cache
def _document(auth: bool) -> dict[str, Any]:
    paths = _paths()
    if not auth:  # the API is open: no operation needs a credential but /acs/*'s secret
        for item in paths.values():
            for op in item.values():
                if op.get("security") and op["security"][0] == {"bearerAuth": []}:
                    del op["security"]
                    op["responses"].pop("401", None)
    return {
        "openapi": "3.1.0",
        "info": {"title": "callstream", "version": version(), "description": DESCRIPTION},
        "tags": [
            {
                "name": "compliance",
                "description": "The read side: calls, transcripts, audit, manifests, legal hold.",
            },
            {
                "name": "control",
                "description": "The agent desktop and CRM: manual payment control, recordings, known values.",
            },
            {"name": "acs", "description": "Webhooks ACS calls (Event Grid and Call Automation)."},
            {"name": "console", "description": "The agent console's pages."},
            {"name": "operations", "description": "Health, readiness, metrics."},
        ],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "responses": {
                "Unauthorized": {
                    "description": "Missing or invalid bearer token.",
                    "headers": {
                        "WWW-Authenticate": {"schema": {"type": "string"}, "required": True}
                    },
                    "content": {"application/json": {"schema": _ref("Error")}},
                },
                "CallNotFound": {
                    "description": "No stored call with that id.",
                    "content": NOT_FOUND_CONTENT,
                },
            },
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "One of CALLSTREAM_API_TOKENS, or a JWT from CALLSTREAM_API_JWT_ISSUER.",
                },
                "consoleCookie": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": COOKIE,
                    "description": "Set by `/console?token=...`; honoured on the console's pages and its same-origin requests.",
                },
                "callbackSecret": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "secret",
                    "description": "CALLSTREAM_CALLBACK_SECRET, which callstream puts in the callback URLs it hands to ACS.",
                },
            },
        },
    }


def openapi_document(auth: bool = True) -> dict[str, Any]:
    """The OpenAPI 3.1 description; ``auth``: whether API bearer auth is enforced."""
    return copy.deepcopy(_document(auth))


async def openapi_json(request: Request) -> Response:
    service = request.app.state.service
    return JSONResponse(_document(api_auth_enabled(service.settings)))
