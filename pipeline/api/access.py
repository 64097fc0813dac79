"""Who may call a route: the access levels the route table declares, and what each one
means on the wire as `auth.py` enforces it today.

Authentication is by path in `auth.py` (the middleware, the `/acs/*` secret check, the
media handshake); authorization is per route in `guard.py`, from the route's ``roles``.
Both are declared with each route so that the OpenAPI document states what every
operation needs (``security``, ``x-callstream-access``, ``x-callstream-roles``), and so
that the answers a level adds (401, 403, the console's redirect) are written here once
rather than on every route.
`tests/test_api_declared.py` holds the declarations to what a running server does.
"""

from __future__ import annotations

from typing import Any, get_args

from pipeline.api.auth import ACCESS_TOKEN_PARAM, CONSOLE_TOKEN_PARAM, COOKIE
from pipeline.api.spec import JSON, TEXT, Access, Operation, Param, Reply, Socket
from pipeline.api.wire import Error

LEVELS: tuple[str, ...] = get_args(Access)

MEANING: dict[str, str] = {
    "public": "open, no credential",
    "metrics": "open, unless `CALLSTREAM_METRICS_TOKEN` is set: then that bearer token",
    "api": "an API bearer token (`CALLSTREAM_API_TOKENS`, the access file's, or a JWT from "
    "`CALLSTREAM_API_JWT_ISSUER`) when API auth is on, with a role the route names in "
    f"`x-callstream-roles`; a websocket may carry it as `?{ACCESS_TOKEN_PARAM}=`; the "
    "console's cookie is honoured from the same origin",
    "console": "the API bearer token or the console's cookie when API auth is on; "
    f"`?{CONSOLE_TOKEN_PARAM}=` sets the cookie",
    "acs": "the callback secret (`?secret=`, `CALLSTREAM_CALLBACK_SECRET`) that callstream "
    "puts into the URLs it hands to ACS; with `CALLSTREAM_ACS_AUDIENCE` set, `/acs/callbacks` "
    "also needs ACS's signed JWT (and `/acs/events` an Entra JWT when the Event Grid JWT "
    "settings are set)",
    "media": "ACS's signed JWT on the websocket handshake (`CALLSTREAM_MEDIA_AUTH=acs-jwt`); "
    "a refused handshake is closed with code 1008",
}

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "bearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "One of CALLSTREAM_API_TOKENS, or a JWT from CALLSTREAM_API_JWT_ISSUER.",
    },
    "consoleCookie": {
        "type": "apiKey",
        "in": "cookie",
        "name": COOKIE,
        "description": f"Set by `/console?{CONSOLE_TOKEN_PARAM}=...`; honoured on the console's "
        "pages and its same-origin requests.",
    },
    "callbackSecret": {
        "type": "apiKey",
        "in": "query",
        "name": "secret",
        "description": "CALLSTREAM_CALLBACK_SECRET, which callstream puts in the callback URLs "
        "it hands to ACS.",
    },
}

_SECURITY: dict[str, list[dict[str, list[str]]]] = {
    "api": [{"bearerAuth": []}],
    "console": [{"bearerAuth": []}, {"consoleCookie": []}],
    "acs": [{"callbackSecret": []}],
}

# What the middleware answers (ApiAuthMiddleware._unauthorized, ._console, ._console_unauthorized).
UNAUTHORIZED = Reply(
    "Missing or invalid bearer token.",
    {JSON: Error},
    headers={"WWW-Authenticate": str},
    required_headers=("WWW-Authenticate",),
    component="Unauthorized",
)
_CONSOLE_REDIRECT = Reply(
    f"`?{CONSOLE_TOKEN_PARAM}=` was good: it becomes an HttpOnly cookie, and the redirect "
    "drops it from the address.",
    headers={"Location": str, "Set-Cookie": str},
)
_CONSOLE_UNAUTHORIZED = Reply(
    f"No valid token, or a bad `?{CONSOLE_TOKEN_PARAM}=`.",
    {TEXT: str},
    headers={"WWW-Authenticate": str},
)
_CONSOLE_TOKEN = Param(
    CONSOLE_TOKEN_PARAM,
    "query",
    str,
    "An API token, kept as the console's cookie (answered with 303).",
)
# What `acs_webhooks._acs_request` answers without the secret.
_WRONG_SECRET = Reply("Missing or wrong `secret`.", {JSON: Error})


def enforced(access: Access, api_auth: bool) -> bool:
    """Whether a request without a credential is refused at this level right now."""
    if access in ("api", "console"):
        return api_auth
    return access in ("acs", "media")


def security(access: Access, api_auth: bool) -> list[dict[str, list[str]]]:
    """The OpenAPI ``security`` of an operation: empty (open) when nothing is enforced."""
    return _SECURITY.get(access, []) if enforced(access, api_auth) else []


def replies(access: Access, api_auth: bool) -> dict[int, Reply]:
    """The answers this level adds to every operation that has it."""
    if not enforced(access, api_auth):
        return {}
    if access == "api":
        return {401: UNAUTHORIZED}
    if access == "console":
        return {303: _CONSOLE_REDIRECT, 401: _CONSOLE_UNAUTHORIZED}
    if access == "acs":
        return {401: _WRONG_SECRET}
    return {}


def params(access: Access, api_auth: bool) -> tuple[Param, ...]:
    """The parameters this level adds (the console's ``?token=``)."""
    return (_CONSOLE_TOKEN,) if access == "console" and enforced(access, api_auth) else ()


# What `guard.py` answers, from the route's declaration.
_FORBIDDEN = Reply(
    "The caller's role may not use this route, or (an agent) it is not one of their calls.",
    {JSON: Error},
    component="Forbidden",
)
_FORBIDDEN_PAGE = Reply("The caller's role may not open this page.", {TEXT: str})
_TOO_LARGE = Reply("The body is larger than this route takes.", {JSON: Error})
_NOT_A_CALL = Reply("A reserved call id, or a call this deployment does not know.", {JSON: Error})


def guard_replies(op: Operation, api_auth: bool) -> dict[int, Reply]:
    """What the guard adds to an operation (a route's own answer for a code comes first)."""
    out: dict[int, Reply] = {}
    if op.access in ("api", "console") and api_auth:
        out[403] = _FORBIDDEN_PAGE if op.access == "console" else _FORBIDDEN
    if op.method == "POST":
        out[413] = _TOO_LARGE
        if "callId" in op.path and op.access == "api":
            out[404] = _NOT_A_CALL
    return out


def roles(entry: Operation | Socket) -> dict[str, str]:
    """Who may use an `api` or `console` route (admin always), as ``x-callstream-roles``."""
    if entry.access not in ("api", "console"):
        return {}
    return {"admin": "all", **entry.roles}
