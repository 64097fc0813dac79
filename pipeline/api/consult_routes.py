"""Teams expert consult: ``POST /calls/{callId}/consult`` and ``GET /experts``.

The request goes to the replica that has the call live (`pipeline.consult.controller`);
the answer is 202 at once with the request's operation context, and the outcome comes on
the call's event stream (``consult.added`` / ``consult.failed``). An agent may ask only
the configured experts (``CALLSTREAM_EXPERTS``, `GET /experts`); a supervisor or an admin
any Teams user by Entra object id.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from pipeline.api.control_plane import _decode
from pipeline.api.roles import GRANT, actor
from pipeline.api.wire import (
    ConsultAccepted,
    ConsultRequest,
    Error,
    Expert,
    ExpertList,
    respond,
)
from pipeline.consult.experts import is_object_id
from pipeline.service import Service

SHAPE = '{"teamsUserId": "<Entra object id>", "displayName": "..."}'


async def consult(request: Request) -> Response:
    service: Service = request.app.state.service
    call_id = request.path_params["callId"]
    body = _decode(await request.body(), ConsultRequest, SHAPE)
    if isinstance(body, Response):
        return body
    display_name = body.display_name.strip()
    # The pattern's `$` lets a final newline by; a name of spaces names nobody.
    if not is_object_id(body.teams_user_id) or not display_name:
        return respond(Error(error=f"expected {SHAPE}"), 400)
    controller = service.consult
    if not controller.configured:
        return respond(
            Error(
                error="ACS Call Automation is not configured (CALLSTREAM_ACS_ENDPOINT and "
                "CALLSTREAM_ACS_KEY, or CALLSTREAM_ACS_CONNECTION_STRING): nobody can be "
                "added to a call"
            ),
            503,
        )
    if request.scope.get(GRANT) == "own" and not controller.is_expert(body.teams_user_id):
        return respond(Error(error="an agent may ask only a configured expert (GET /experts)"), 403)
    teams_user_id = body.teams_user_id.lower()
    if request.scope.get(GRANT) == "own":  # an agent's expert is named as configured
        display_name = controller.expert_name(teams_user_id) or display_name
    result = await controller.ask(call_id, teams_user_id, display_name, actor(request.scope))
    if result is None:
        return respond(Error(error=f"no live call {call_id!r}"), 404)
    if "refused" in result:
        return respond(Error(error=str(result["refused"])), 409)
    accepted = ConsultAccepted(
        call_id=call_id,
        teams_user_id=teams_user_id,
        display_name=display_name,
        operation_context=str(result["operationContext"]),
    )
    return respond(accepted, 202)


async def experts(request: Request) -> Response:
    service: Service = request.app.state.service
    listed = [Expert(name=e.name, teams_user_id=e.teams_user_id) for e in service.consult.experts]
    return respond(ExpertList(experts=listed))
