"""The calls read side (the list, transcripts) and the CRM's known values for a call."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from pipeline.api.roles import GRANT, LOCAL, PRINCIPAL, actor
from pipeline.api.wire import CallList, CallSummary, Error, KnownEntitiesAccepted, respond
from pipeline.compliance.export import MEDIA_TYPES, ExportError, export_lines
from pipeline.privacy.known_entities import KnownEntityError, parse_request
from pipeline.service import Service

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100


async def list_calls(request: Request) -> Response:
    service: Service = request.app.state.service
    try:
        limit = int(request.query_params.get("limit", str(DEFAULT_LIMIT)))
    except ValueError:
        return respond(Error(error="limit must be an integer"), 400)
    limit = min(MAX_LIMIT, max(1, limit))
    # A caller granted only their own calls here (an agent) sees the calls they are a member of.
    who = request.scope.get(PRINCIPAL) or LOCAL
    members = sorted(who.participants) if request.scope.get(GRANT) == "own" else None
    records = await asyncio.to_thread(service.store.calls, limit, members)
    calls = [
        CallSummary(
            call_id=r.call_id,
            started_at=r.started_at,
            ended_at=r.ended_at,
            end_reason=r.end_reason,
            mode=r.mode,
            sample_rate=r.sample_rate,
            last_seq=r.last_seq,
            live=r.call_id in service.calls,
        )
        for r in records
    ]
    return respond(CallList(calls=calls))


async def transcript(request: Request) -> Response:
    service: Service = request.app.state.service
    call_id = request.path_params["callId"]
    fmt = request.query_params.get("format", "jsonl")
    record = await asyncio.to_thread(service.store.get_call, call_id)
    if record is None:
        return respond(Error(error=f"no stored call {call_id!r}"), 404)
    try:
        lines = export_lines(service.store, call_id, fmt)  # raises at once for a bad format
    except ExportError as exc:
        return respond(Error(error=str(exc)), 400)
    if request.method == "GET":  # a HEAD sends nothing
        audit = {"format": fmt, "via": "api", **actor(request.scope)}
        service.journal.audit(call_id, "export", audit)

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
        return respond(Error(error=str(exc)), 400)
    # Type and count only: the values themselves are never written anywhere.
    types = dict(Counter(t for t, _ in values))
    audit = {"count": len(values), "types": types, **actor(request.scope)}
    service.journal.audit(call_id, "known-entities", audit)
    return respond(KnownEntitiesAccepted(call_id=call_id, accepted=len(values), known_values=count))
