"""Teams expert consult: `POST /calls/{callId}/consult` and `GET /experts` (being built)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from pipeline.api.wire import Error, respond


async def consult(request: Request) -> Response:
    return respond(Error(error="not yet"), 503)


async def experts(request: Request) -> Response:
    return respond(Error(error="not yet"), 503)
