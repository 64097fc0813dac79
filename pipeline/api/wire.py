"""The JSON bodies of the HTTP API, as msgspec types.

Handlers decode requests into these and encode their answers from them, and the OpenAPI
document takes its schemas from msgspec's JSON Schema of the same types: a field the
service sends is a field the document names. Field names are snake_case here and camelCase
on the wire (``rename="camel"``). Answers forbid unknown fields so that their schemas say
``additionalProperties: false``: an undeclared key in an answer fails the schema fuzz test.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType
from starlette.requests import Request
from starlette.responses import Response

from pipeline.compliance.export import FORMATS
from pipeline.privacy.known_entities import KnownEntitiesRequest

__all__ = [
    "AcsAnswer",
    "AcsEvent",
    "AcsEventData",
    "AcsEvents",
    "Audit",
    "CallList",
    "CallSummary",
    "ConsultAccepted",
    "ConsultRequest",
    "Expert",
    "ExpertList",
    "Error",
    "Health",
    "Hold",
    "HoldRequest",
    "KnownEntitiesAccepted",
    "KnownEntitiesRequest",
    "ManualControl",
    "Manifest",
    "Readiness",
    "RecordingRegistered",
    "RecordingRegistration",
    "respond",
]

Count = Annotated[int, Meta(ge=0)]
Objects = list[dict[str, Any]]


class _Answer(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """Base of the answers: forbidding unknown fields is what makes their schemas closed."""


class Error(_Answer):
    """A refusal; the message never quotes a credential or a known value."""

    error: str


class Health(_Answer):
    status: Literal["ok"]


class Readiness(_Answer):
    """Not ready while starting, draining, or while the store is away (`degraded`): new
    calls then go to replicas that can keep them."""

    ready: bool
    draining: bool
    degraded: Annotated[list[str], Meta(description="What is away, e.g. `store`.")]
    active_calls: Count


class CallSummary(_Answer):
    call_id: str
    started_at: Annotated[str, Meta(description="ISO 8601, UTC")]
    ended_at: str | None
    end_reason: str | None
    mode: str | None
    sample_rate: int | None
    last_seq: int
    live: Annotated[bool, Meta(description="streaming on this replica now")]


class CallList(_Answer):
    calls: list[CallSummary]


class KnownEntitiesAccepted(_Answer):
    """How many values came, and how many the call has been sent (duplicates counted: the
    answer must not tell a guess that is already there from one that is not)."""

    call_id: str
    accepted: Count
    known_values: Count


# An ACS raw id: `8:orgid:<Entra object id>`, `8:acs:<resource>_<user>`, ...
RAW_ID = r"^[0-9]+:[A-Za-z0-9._:@+\-]{1,250}$"


class AssignmentRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    agent_id: Annotated[
        str, Meta(pattern=RAW_ID, description="The agent's raw id, e.g. `8:orgid:<object id>`.")
    ]


class Assigned(_Answer):
    call_id: str
    agent_id: str


# A Microsoft Entra object id (a GUID), as Teams users are added by.
ENTRA_OBJECT_ID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


class ConsultRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    teams_user_id: Annotated[
        str, Meta(pattern=ENTRA_OBJECT_ID, description="The Teams user's Entra object id.")
    ]
    display_name: Annotated[str, Meta(min_length=1, max_length=256)]


class ConsultAccepted(_Answer):
    """The request is on its way to ACS: `consult.added` or `consult.failed` follows."""

    call_id: str
    teams_user_id: str
    display_name: str
    operation_context: str


class Expert(_Answer):
    name: str
    teams_user_id: str


class ExpertList(_Answer):
    """The experts an agent may ask into a call (`CALLSTREAM_EXPERTS`)."""

    experts: list[Expert]


class RecordingRegistration(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    recording_id: Annotated[str, Meta(min_length=1, max_length=256)]


class RecordingRegistered(_Answer):
    call_id: str
    recording_id: str


class ManualControl(_Answer):
    call_id: str
    payment: Literal["open", "closed"]
    changed: bool
    recording_id: str | None


AuditRecord = Annotated[
    dict[str, Any],
    Meta(extra_json_schema={"required": ["kind", "time"]}),
]


class Audit(_Answer):
    """The audit trail and the parts a compliance officer asks for first."""

    call_id: str
    policy_version: str | None
    windows: Objects
    requests: Objects
    exposures: Objects
    redaction_counts: dict[str, int]
    records: list[AuditRecord]


class HoldRequest(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    hold: bool = True
    reason: Annotated[str, Meta(max_length=1000)] | None = None


class Hold(_Answer):
    call_id: str
    hold: bool


class Manifest(_Answer):
    """As `callstream export` writes it beside the export."""

    manifest_version: int
    chain: str
    call_id: str
    format: Literal[FORMATS]  # type: ignore[valid-type]
    first_seq: int | None
    last_seq: int | None
    event_count: Count
    chain_head: str
    links: list[str]
    policy_version: str | None
    redaction_counts: dict[str, int]
    pause_intervals: Objects
    exposures: Objects
    export_sha256: Annotated[str, Meta(pattern="^[0-9a-f]{64}$")]


class AcsResultInformation(msgspec.Struct, rename="camel"):
    """A Call Automation callback's outcome (the SDK's ``ResultInformation``)."""

    code: int | None = None
    sub_code: int | None = None
    message: str | None = None


class AcsTeamsUser(msgspec.Struct, rename="camel"):
    user_id: str | None = None


class AcsIdentifier(msgspec.Struct, rename="camel"):
    """A ``CommunicationIdentifierModel``: the parts callstream reads."""

    raw_id: str | None = None
    kind: str | None = None
    microsoft_teams_user: AcsTeamsUser | None = None


class AcsEventData(msgspec.Struct, rename="camel"):
    """The fields of an event's ``data`` callstream reads; ACS sends more, which are ignored."""

    validation_code: str | None = None
    incoming_call_context: str | None = None
    call_connection_id: str | None = None
    server_call_id: str | None = None
    recording_id: str | None = None
    state: str | None = None
    # AddParticipantSucceeded / AddParticipantFailed (a Teams expert asked into the call)
    operation_context: str | None = None
    result_information: AcsResultInformation | None = None
    participant: AcsIdentifier | None = None


class AcsEvent(msgspec.Struct, rename="camel"):
    """An Event Grid event or a Call Automation CloudEvent. Only the fields callstream reads
    are constrained; a field of the wrong type is refused with 400."""

    event_type: str | None = None
    type: str | None = None
    data: AcsEventData | None = None


AcsEvents = AcsEvent | list[AcsEvent]


class AcsAnswer(_Answer):
    """`{}`, or the answer to a subscription validation."""

    validation_response: str | None | UnsetType = UNSET


_encode = msgspec.json.Encoder().encode


def respond(body: msgspec.Struct, status: int = 200) -> Response:
    """``body`` as the JSON answer: the only way handlers here put JSON on the wire."""
    return Response(_encode(body), status_code=status, media_type="application/json")


async def read_limited(request: Request, limit: int) -> bytes | None:
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
