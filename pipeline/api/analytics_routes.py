"""`GET /calls/{callId}/analytics`: the latest call analytics.

A call live on this replica is measured now (its figures as of this moment, `final`
false); any other call answers with the last `analytics` event on record (the final one
once it has ended), read from the store, so every replica gives the same answer for a
call that streams elsewhere, to within its interval.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from models.events import Analytics, utc_now_iso
from pipeline.api.wire import Error, respond
from pipeline.compliance.export_analytics import last_analytics
from pipeline.service import Service


async def call_analytics(request: Request) -> Response:
    service: Service = request.app.state.service
    call_id = request.path_params["callId"]
    session = service.calls.get(call_id)
    if session is not None and session.started and not session.ended:
        now: Analytics = session.analytics.snapshot(session.audio_ms())
        now.seq, now.time = session.seq, utc_now_iso()  # as of the last event published
        return respond(now)
    body = await asyncio.to_thread(last_analytics, service.store, call_id)
    if body is None:
        return respond(Error(error=f"no analytics for call {call_id!r}"), 404)
    return Response(body, media_type="application/json")
