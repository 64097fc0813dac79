"""`WS /media`: the ACS media-streaming (and transcription) websocket, as a raw ASGI app.

Raw ASGI rather than a framework WebSocket wrapper because this loop runs 50 times a
second per participant for every call: each message goes straight to the call's
session, which does bounded synchronous work and never awaits. A bug triggered by one
frame is counted and logged, never allowed to end the call or the server.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qs

from .service import Service

CALL_ID_HEADER = b"x-ms-call-connection-id"


def call_id_from_scope(scope: dict[str, Any]) -> str:
    for name, value in scope.get("headers", ()):
        if name == CALL_ID_HEADER and value:
            return value.decode("latin-1")[:128]
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if query.get("callId"):
        return query["callId"][0][:128]
    return str(uuid.uuid4())


class MediaEndpoint:
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        service: Service = scope["app"].state.service
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        if service.draining or not service.ready:
            await send({"type": "websocket.close", "code": 1013, "reason": "draining"})
            return
        call_id = call_id_from_scope(scope)
        await send({"type": "websocket.accept"})
        service.stats.media_connections += 1
        session = service.session(call_id)
        session.attach()
        on_message = session.on_message
        try:
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.receive":
                    data = message.get("text")
                    if data is None:
                        data = message.get("bytes") or b""
                    try:
                        on_message(data)
                    except Exception as exc:  # never let one frame end a call
                        # Counted and logged (rate-limited, type only) like any bad frame.
                        session._malformed(f"internal error {type(exc).__name__}")
                elif kind == "websocket.disconnect":
                    break
        finally:
            session.detach("media-disconnected")
