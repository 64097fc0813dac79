"""The one ASGI app: media ingest, agent-assist streams, read API, health and metrics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute

from pipeline.api import console_routes, control_plane, openapi
from pipeline.api.auth import ApiAuth, ApiAuthMiddleware, MediaAuth
from pipeline.compliance.export import MEDIA_TYPES, ExportError, export_lines
from pipeline.delivery.streams import event_stream
from pipeline.ingest.media import MediaEndpoint
from pipeline.observability.metrics import render_metrics
from pipeline.privacy.known_entities import KnownEntityError, parse_request
from pipeline.service import Service


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    service: Service = request.app.state.service
    journal = getattr(service, "journal", None)
    degraded = [] if journal is None or journal.store_ok else ["store"]
    # Not ready while the store is away: new calls go to replicas that can keep them; the
    # calls in progress here go on, their events buffered.
    ok = service.ready and not service.draining and not degraded
    body = {
        "ready": ok,
        "draining": service.draining,
        "degraded": degraded,
        "activeCalls": len(service.calls),
    }
    return JSONResponse(body, status_code=200 if ok else 503)


async def metrics(request: Request) -> Response:
    body, content_type = render_metrics(request.app.state.service)
    return Response(body, media_type=content_type)


async def list_calls(request: Request) -> Response:
    service: Service = request.app.state.service
    try:
        limit = min(1000, max(1, int(request.query_params.get("limit", "100"))))
    except ValueError:
        return JSONResponse({"error": "limit must be an integer"}, status_code=400)
    records = await asyncio.to_thread(service.store.calls, limit)
    return JSONResponse(
        {
            "calls": [
                {
                    "callId": r.call_id,
                    "startedAt": r.started_at,
                    "endedAt": r.ended_at,
                    "endReason": r.end_reason,
                    "mode": r.mode,
                    "sampleRate": r.sample_rate,
                    "lastSeq": r.last_seq,
                    "live": r.call_id in service.calls,
                }
                for r in records
            ]
        }
    )


async def transcript(request: Request) -> Response:
    service: Service = request.app.state.service
    call_id = request.path_params["callId"]
    fmt = request.query_params.get("format", "jsonl")
    record = await asyncio.to_thread(service.store.get_call, call_id)
    if record is None:
        return JSONResponse({"error": f"no stored call {call_id!r}"}, status_code=404)
    try:
        lines = export_lines(service.store, call_id, fmt)  # raises at once for a bad format
    except ExportError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)

    async def body() -> AsyncIterator[bytes]:
        # Store reads block: take the export in chunks of records from a thread, so a
        # long call streams out with flat memory and the loop never waits on the disk.
        def chunk() -> list[bytes]:
            return [line for _, line in zip(range(256), lines, strict=False)]

        while part := await asyncio.to_thread(chunk):
            yield b"".join(part)

    return StreamingResponse(body(), media_type=MEDIA_TYPES[fmt])


async def known_entities(request: Request) -> Response:
    """Values to redact in one call (the caller's name, account number), from the CRM.

    Accepted before the call starts too. The answer never repeats a value.
    """
    service: Service = request.app.state.service
    call_id = request.path_params["callId"]
    try:
        values = parse_request(await request.body())
        if service.cluster.owns(call_id):
            count = service.known.add(call_id, values)
        else:
            # Kept in memory only, on the replica that streams the call; before the call
            # starts, every replica holds them until one claims the call (or they expire).
            reply = await service.cluster.send(call_id, "known", {"values": values})
            if reply is None:
                await service.cluster.broadcast(call_id, "known", {"values": values})
                reply = {"knownValues": len(values)}
            count = reply["knownValues"]
    except KnownEntityError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    return JSONResponse({"callId": call_id, "accepted": len(values), "knownValues": count})


async def not_found(request: Request, exc: Exception) -> Response:
    return PlainTextResponse("not found", status_code=404)


def create_app(service: Service) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = Starlette(
        routes=[
            WebSocketRoute("/media", MediaEndpoint()),
            WebSocketRoute("/events", event_stream),
            WebSocketRoute("/calls/{callId}/events", event_stream),
            Route("/calls", list_calls),
            Route("/calls/{callId}/transcript", transcript),
            Route("/calls/{callId}/known-entities", known_entities, methods=["POST"]),
            Route("/calls/{callId}/recording", control_plane.register_recording, methods=["POST"]),
            Route(
                "/calls/{callId}/recording/{action:str}",
                control_plane.manual_control,
                methods=["POST"],
            ),
            Route("/calls/{callId}/audit", control_plane.audit),
            Route("/calls/{callId}/hold", control_plane.legal_hold, methods=["POST"]),
            Route("/calls/{callId}/manifest", control_plane.manifest),
            Route("/acs/events", control_plane.acs_events, methods=["POST"]),
            Route("/acs/callbacks", control_plane.acs_callbacks, methods=["POST"]),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            Route("/openapi.json", openapi.openapi_json),
            *console_routes.routes,
        ],
        lifespan=lifespan,
        # Bearer auth on the event stream, the read/control API and the console pages, when
        # CALLSTREAM_API_TOKENS (or an API JWT issuer) is set; /media and /acs/* check their own.
        middleware=[
            Middleware(
                ApiAuthMiddleware,
                auth=ApiAuth(service.settings),
                secure_cookie=(service.settings.public_url or "").startswith("https:"),
            )
        ],
    )
    app.state.service = service
    app.state.media_auth = MediaAuth(service.settings)
    return app
