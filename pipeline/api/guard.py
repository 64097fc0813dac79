"""Every route's checks, made from its declaration in `routes.py` and nothing else.

`auth.py` answers "who is this?" (401 when nobody); this module answers "may they?" (403)
from the route's ``roles``, so the permission table is the route table and cannot drift
from what is enforced (README, "Roles"; `tests/test_roles.py` walks every route with
every role). Also here because they hold for every route alike: a POST body over the
route's ``max_body`` is refused with 413 before the handler sees it, a control route
(a POST naming a call) refuses reserved ids and calls this deployment does not know, and
``/metrics`` asks for ``CALLSTREAM_METRICS_TOKEN`` when one is set.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.websockets import WebSocket

from pipeline.api.auth import bearer_from_headers
from pipeline.api.roles import GRANT, LOCAL, PRINCIPAL, Principal, digest
from pipeline.api.spec import Entry, Grant, Operation, Socket
from pipeline.api.wire import Error, read_limited, respond
from pipeline.service import Service

log = logging.getLogger(__name__)

RESERVED_PREFIX = "_"  # ids the service keeps its own records under (`_retention`)


def principal(scope: Any, auth_enabled: bool) -> Principal | None:
    """The caller `ApiAuthMiddleware` authenticated; everyone is admin when API auth is off."""
    found = scope.get(PRINCIPAL)
    if found is not None:
        return found
    return None if auth_enabled else LOCAL


def grant(roles: Any, who: Principal) -> Grant | None:
    """The widest grant any of the caller's roles has on a route (admin: every route)."""
    if "admin" in who.roles:
        return "all"
    grants = {roles[r] for r in who.roles if r in roles}
    return "all" if "all" in grants else "own" if "own" in grants else None


async def is_member(service: Service, who: Principal, call_id: str) -> bool:
    """Whether an agent may see this call: one of their raw ids joined it (live here, or
    on record), or an integration assigned them to it."""
    if not who.participants:
        return False
    session = service.calls.get(call_id)
    if session is not None and who.participants & session.participants.keys():
        return True
    return bool(who.participants & await asyncio.to_thread(service.store.members, call_id))


async def known_call(service: Service, call_id: str) -> bool:
    """A call this deployment streams, answered, was told of, or has on record."""
    if call_id in service.calls or call_id in service.recording.calls:
        return True
    if await service.cluster.lookup(call_id) or await service.cluster.is_live(call_id):
        return True
    return await asyncio.to_thread(service.store.get_call, call_id) is not None


def _forbidden(console: bool) -> Response:
    if console:
        return PlainTextResponse("Your role may not open this page.\n", 403)
    return respond(Error(error="forbidden"), 403)


def _metrics_allowed(request: Request, token: str | None) -> bool:
    if not token or not token.strip():
        return True
    given = bearer_from_headers(request.scope.get("headers", []))
    return given is not None and hmac.compare_digest(digest(given), digest(token.strip()))


def _refused(entry: Entry, who: Principal, why: str) -> None:
    log.warning("%s refused to %r (%s): %s", entry.name, who.name, who.role, why)


def _operation(op: Operation) -> Any:
    handler = op.endpoint
    console = op.access == "console"
    names_call = "callId" in op.path

    async def guarded(request: Request) -> Response:
        service: Service = request.app.state.service
        if op.access == "metrics" and not _metrics_allowed(request, service.settings.metrics_token):
            log.warning("metrics refused: missing or wrong CALLSTREAM_METRICS_TOKEN")
            return respond(Error(error="unauthorized"), 401)
        if op.access in ("api", "console"):
            who = principal(request.scope, request.app.state.api_auth.enabled)
            if who is None:  # the middleware lets nothing through unauthenticated
                return respond(Error(error="unauthorized"), 401)
            allowed = grant(op.roles, who)
            call_id = request.path_params.get("callId")
            if allowed is None:
                _refused(op, who, "role")
                return _forbidden(console)
            if allowed == "own" and call_id is not None:
                if not await is_member(service, who, call_id):
                    _refused(op, who, "not their call")
                    return _forbidden(console)
            request.scope[GRANT] = allowed
        if op.method == "POST":
            if names_call and request.path_params["callId"].startswith(RESERVED_PREFIX):
                return respond(Error(error="reserved call id"), 404)
            body = await read_limited(request, op.max_body)
            if body is None:
                return respond(Error(error="body too large"), 413)
            if names_call and op.access == "api" and not op.call_may_be_new:
                call_id = request.path_params["callId"]
                if not await known_call(service, call_id):
                    return respond(Error(error="no such call"), 404)
            request = Request(request.scope, _replay(body))
        return await handler(request)

    return functools.update_wrapper(guarded, handler)  # __wrapped__: the declared handler


def _replay(body: bytes) -> Any:
    """A receive channel that gives the handler the body already read (and limited)."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _socket(sock: Socket) -> Any:
    endpoint = sock.endpoint

    async def guarded(websocket: WebSocket) -> None:
        who = principal(websocket.scope, websocket.app.state.api_auth.enabled)
        why = "unauthorized" if who is None else None
        if who is not None:
            allowed = grant(sock.roles, who)
            call_id = websocket.path_params.get("callId")
            if allowed is None:
                why = "forbidden"
            elif allowed == "own" and (
                call_id is None or not await is_member(websocket.app.state.service, who, call_id)
            ):
                why = "forbidden: not their call"
            if why:
                _refused(sock, who, why)
        if why:
            await websocket.accept()  # then 1008 (a close before accept is an HTTP 403)
            await websocket.close(1008, why)
            return
        await endpoint(websocket)

    return functools.update_wrapper(guarded, endpoint)


def guard(entry: Entry) -> Any:
    """The endpoint to mount for ``entry``: its handler behind the checks it declares."""
    if isinstance(entry, Socket):
        return _socket(entry) if entry.access == "api" else entry.endpoint
    return _operation(entry)
