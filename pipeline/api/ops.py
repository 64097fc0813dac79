"""Operations endpoints: liveness, readiness, Prometheus metrics and the API's own document."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from pipeline.api.wire import Health, Readiness, respond
from pipeline.observability.metrics import render_metrics
from pipeline.service import Service


async def healthz(request: Request) -> Response:
    return respond(Health(status="ok"))


async def readyz(request: Request) -> Response:
    service: Service = request.app.state.service
    journal = getattr(service, "journal", None)
    degraded = [] if journal is None or journal.store_ok else ["store"]
    # Not ready while the store is away: new calls go to replicas that can keep them; the
    # calls in progress here go on, their events buffered.
    ok = service.ready and not service.draining and not degraded
    body = Readiness(
        ready=ok, draining=service.draining, degraded=degraded, active_calls=len(service.calls)
    )
    return respond(body, 200 if ok else 503)


async def metrics(request: Request) -> Response:
    body, content_type = render_metrics(request.app.state.service)
    return Response(body, media_type=content_type)


async def openapi_json(request: Request) -> Response:
    """The document `create_app` generated from the very table it mounted."""
    return Response(request.app.state.openapi, media_type="application/json")
