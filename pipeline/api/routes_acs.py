"""ACS's webhooks, declared like every other route (`routes.py` mounts them in its
table): Event Grid's IncomingCall and Call Automation's callbacks, behind the callback
secret (and ACS's signed JWT where configured)."""

from __future__ import annotations

from pipeline.api import acs_webhooks
from pipeline.api.spec import Entry, Operation, json_reply
from pipeline.api.wire import AcsAnswer, AcsEvents, Error

ACS_REPLIES = {
    200: json_reply(AcsAnswer, "Handled (unknown calls and event types are ignored)."),
    400: json_reply(
        Error, "Not JSON, not an event or an array of events, or a field of the wrong type."
    ),
    413: json_reply(Error, "Body larger than 1 MiB."),
}

ACS_ROUTES: tuple[Entry, ...] = (
    Operation(
        "POST",
        "/acs/events",
        acs_webhooks.acs_events,
        name="acsEvents",
        tag="acs",
        summary="Event Grid: subscription validation and Microsoft.Communication.IncomingCall",
        access="acs",
        max_body=acs_webhooks.MAX_BODY,
        body=AcsEvents,
        replies={
            **ACS_REPLIES,
            503: json_reply(Error, "Stopping: an IncomingCall is left to another replica."),
        },
    ),
    Operation(
        "POST",
        "/acs/callbacks",
        acs_webhooks.acs_callbacks,
        name="acsCallbacks",
        tag="acs",
        summary="Call Automation callbacks (CallConnected, RecordingStateChanged, "
        "CallDisconnected, ...)",
        access="acs",
        max_body=acs_webhooks.MAX_BODY,
        body=AcsEvents,
        replies={
            **ACS_REPLIES,
            503: json_reply(Error, "The call registry is away: ACS retries the callback."),
        },
    ),
)
