"""The vocabulary the route table (`routes.py`) is written in, and the mounting of it.

A route is declared once, as data: `mount` builds the Starlette routes from it and
`openapi.py` builds the OpenAPI document from it, so that what is served and what is
documented come from the same entry and cannot disagree. Bodies are msgspec types (see
`wire.py`): their JSON Schema is msgspec's, never written by hand.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from msgspec import NODEFAULT
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route, WebSocketRoute

Access = Literal["public", "metrics", "api", "console", "acs", "media"]
# Who may use an `api` or `console` route, beyond admin (who may use every route): a role
# and its grant, "all" (any call) or "own" (only calls the caller is a member of; a route
# without a call id then shows only those). Enforced by `guard.py`, from this field alone.
Grant = Literal["all", "own"]
Roles = Mapping[str, Grant]
MAX_BODY = 64 * 1024  # the default request-body limit of a POST
JSON = "application/json"
TEXT = "text/plain"


@dataclass(frozen=True)
class Param:
    """A path or query parameter; ``type`` is a msgspec type (its schema is msgspec's)."""

    name: str
    where: Literal["path", "query"]
    type: Any
    description: str = ""
    default: Any = NODEFAULT


@dataclass(frozen=True)
class Reply:
    """One status code's answer. ``content`` maps a media type to its body's msgspec type
    (``str`` for text); ``component`` shares it under that name in the document."""

    description: str
    content: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, Any] = field(default_factory=dict)
    required_headers: tuple[str, ...] = ()
    component: str | None = None


def json_reply(body: Any, description: str) -> Reply:
    return Reply(description, {JSON: body})


Handler = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True)
class Operation:
    """An HTTP operation. ``replies`` are the handler's own answers; what the access level
    adds (401, the console's redirect) comes from `access.py`, so it is stated once."""

    method: Literal["GET", "POST"]
    path: str  # Starlette's template: a convertor (``{action:str}``) is dropped in the doc
    endpoint: Handler
    name: str  # the operationId: a stable public name, kept apart from the handler's
    tag: str
    summary: str
    access: Access
    replies: Mapping[int, Reply]
    params: tuple[Param, ...] = ()
    body: Any = None  # the request body's msgspec type (JSON), or None
    body_required: bool = True
    also_at: tuple[str, ...] = ()  # the same operation mounted again (not documented twice)
    roles: Roles = field(default_factory=dict)
    max_body: int = MAX_BODY
    # A POST naming a call is refused for a call this deployment does not know, unless
    # the route is for calls about to start (a CRM's known values).
    call_may_be_new: bool = False


@dataclass(frozen=True)
class Socket:
    """A websocket: not an OpenAPI operation, but mounted and documented from here too."""

    path: str
    endpoint: Any  # an ASGI app or a ``async (WebSocket) -> None``
    name: str
    summary: str
    access: Access
    roles: Roles = field(default_factory=dict)


Entry = Operation | Socket

_CONVERTOR = re.compile(r"\{(\w+):\w+\}")


def doc_path(path: str) -> str:
    """The OpenAPI form of a Starlette path template (``{action:str}`` -> ``{action}``)."""
    return _CONVERTOR.sub(r"{\1}", path)


def path_names(path: str) -> set[str]:
    return set(re.findall(r"\{(\w+)", path))


def mount(table: Iterable[Entry], guard: Callable[[Entry], Any]) -> list[BaseRoute]:
    """The Starlette routes of ``table``, in its order (the router tries them in turn);
    each endpoint is what ``guard`` makes of its entry (the checks the entry declares)."""
    routes: list[BaseRoute] = []
    for entry in table:
        endpoint = guard(entry)
        if isinstance(entry, Socket):
            routes.append(WebSocketRoute(entry.path, endpoint, name=entry.name))
            continue
        for path in (entry.path, *entry.also_at):
            routes.append(Route(path, endpoint, methods=[entry.method], name=entry.name))
    return routes
