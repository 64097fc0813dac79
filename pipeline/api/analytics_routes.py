"""`GET /calls/{callId}/analytics`: the latest call analytics (being built)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from pipeline.api.wire import Error, respond


async def call_analytics(request: Request) -> Response:
    return respond(Error(error="not yet"), 404)
