"""The agent console: plain HTML pages over the agent-assist stream, served from package files.

- ``GET /console``: live and recent calls (the page reads ``GET /calls``).
- ``GET /console/wallboard``: every live call and recent ended ones, for supervisors (the
  page reads ``GET /calls``, ``GET /calls/{callId}/analytics`` and ``WS /events``).
- ``GET /console/{callId}``: one call, live (the page reads ``WS /calls/{callId}/events``).
- ``GET /console/static/{name}``: the pages' stylesheet, script and icon.

The routes are declared in `routes.py`. The pages are static files in
``pipeline/api/console/`` (package data): the call id is read by the script from the
address, so nothing from a request is ever written into the HTML. A strict
Content-Security-Policy allows only this origin (no inline script, nothing fetched from
anywhere else).
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}
# Only these files are served; a name is looked up here, never joined to a path.
STATIC = ("console.css", "console.js", "icon.svg", "wallboard.css", "wallboard.js")

HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@cache
def _read(name: str) -> bytes:
    return (resources.files("pipeline.api") / "console" / name).read_bytes()


def _file(name: str) -> Response:
    suffix = name[name.rfind(".") :]
    return Response(_read(name), media_type=MEDIA_TYPES[suffix], headers=HEADERS)


async def to_console(request: Request) -> Response:
    """``GET /``: whoever opens the service's address in a browser finds the console."""
    return RedirectResponse("/console", status_code=307)


async def console_index(request: Request) -> Response:
    return _file("index.html")


async def console_wallboard(request: Request) -> Response:
    return _file("wallboard.html")


async def console_call(request: Request) -> Response:
    return _file("call.html")


async def console_static(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in STATIC:
        return PlainTextResponse("not found", status_code=404)
    return _file(name)


def media_type(name: str) -> str:
    """The type a console file is served as, without its parameters (for the document)."""
    return MEDIA_TYPES[name[name.rfind(".") :]].split(";", 1)[0]
