"""The supervisors' routes, declared like every other (`routes.py` mounts them in its
table): call analytics, and asking a Teams expert into a call."""

from __future__ import annotations

from models.events import Analytics
from pipeline.api import analytics_routes, consult_routes
from pipeline.api.route_params import CALL_ID
from pipeline.api.spec import JSON, TEXT, Entry, Operation, Reply, json_reply
from pipeline.api.wire import ConsultAccepted, ConsultRequest, Error, ExpertList

SUPERVISION_ROUTES: tuple[Entry, ...] = (
    Operation(
        "GET",
        "/calls/{callId}/analytics",
        analytics_routes.call_analytics,
        name="getAnalytics",
        tag="supervision",
        summary="The latest call analytics: talk, silence, overlap, interruptions, sentiment "
        "trend, categories (computed now for a call live here, else the last one published)",
        access="api",
        roles={"agent": "own", "supervisor": "all", "compliance": "all"},
        params=(CALL_ID,),
        replies={
            200: json_reply(Analytics, "The analytics (`final` once the call has ended)."),
            404: Reply(
                "No such call, or none published for it yet.",
                {JSON: Error, TEXT: str},
                component="NoAnalytics",
            ),
        },
    ),
    Operation(
        "POST",
        "/calls/{callId}/consult",
        consult_routes.consult,
        name="consultExpert",
        tag="supervision",
        summary="Ask a Microsoft Teams user (Entra object id) into the call through Call "
        "Automation; `consult.requested`, then `consult.added` or `consult.failed` (audited). "
        "An agent may ask only a configured expert (`GET /experts`)",
        access="api",
        roles={"agent": "own", "supervisor": "all"},
        params=(CALL_ID,),
        body=ConsultRequest,
        replies={
            202: json_reply(ConsultAccepted, "Asked; the outcome comes as an event."),
            400: json_reply(Error, 'Not `{"teamsUserId": "<object id>", "displayName": "..."}`.'),
            404: Reply("No live call with that id.", {JSON: Error, TEXT: str}),
            409: json_reply(Error, "A payment window is open: nobody joins while a card is read."),
            503: json_reply(Error, "ACS Call Automation is not configured, or did not answer."),
        },
    ),
    Operation(
        "GET",
        "/experts",
        consult_routes.experts,
        name="listExperts",
        tag="supervision",
        summary="The Teams experts an agent may ask into a call (`CALLSTREAM_EXPERTS`)",
        access="api",
        roles={"agent": "all", "supervisor": "all"},
        replies={200: json_reply(ExpertList, "The experts, in the configured order.")},
    ),
)
