"""`WS /media`: the ACS media-streaming (and transcription) websocket, as a raw ASGI app.

Raw ASGI rather than a framework WebSocket wrapper because this loop runs 50 times a
second per participant for every call: each message goes straight to the call's
session, which does bounded synchronous work and never awaits. A bug triggered by one
frame is counted and logged, never allowed to end the call or the server.

One socket owns each stream of a live call (`media_owner.py`): a second socket for a call
another socket streams, here or on another replica, is accepted and closed at once with
1008, counted (``callstream_media_refused_total{reason="second-socket"}``) and logged; a
reconnect after a drop takes the stream over within the call's reconnect grace.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any
from urllib.parse import parse_qs

from pipeline.api.auth import MediaAuth
from pipeline.ingest.media_owner import (
    HANDOVER_REFUSED,
    ONE_STREAM,
    REFUSED_CLOSE,
    REFUSED_REASON,
    MediaSocket,
)
from pipeline.privacy.log_scrubber import current_call_id
from pipeline.service import Service

log = logging.getLogger(__name__)

CALL_ID_HEADER = b"x-ms-call-connection-id"
CORRELATION_HEADER = b"x-ms-call-correlation-id"
CLEAN_CLOSE_CODES = (1000, 1001)
IDLE_CLOSE = 1000
# Media for a call that has ended (like HTTP's 410 Gone, in the application's range of
# close codes): a call id is used once; nothing is stored after a call's `call.ended`.
ENDED_CLOSE = 4410


async def _idle_watchdog(sock: MediaSocket, idle_s: float) -> bool:
    """Close a media connection that sends nothing for ``idle_s`` (ACS sends a frame every
    20 ms, silent or not, for as long as a call lasts): a dead peer must not hold a call and
    its resources open. Checks once per period: cheaper than a timeout on every receive."""
    seen = 0  # a connection that never sends anything is idle from the start
    while True:
        await asyncio.sleep(idle_s)
        if sock.received == seen:
            log.warning("media connection idle for %g s: closed", idle_s)
            await sock.send({"type": "websocket.close", "code": IDLE_CLOSE, "reason": "idle"})
            return True
        seen = sock.received


async def _refuse_second_socket(service: Service, send: Any, call_id: str, where: str) -> None:
    """A second socket for a call another socket streams (`media_owner.py`): closed with
    1008 before a frame of the stream it asked for reaches the call, counted, logged in
    one line (the call id as %r, never a payload)."""
    service.stats.media_second_socket_refused += 1
    log.warning("media connection for call %r refused: %s", call_id, where)
    await send({"type": "websocket.close", "code": REFUSED_CLOSE, "reason": REFUSED_REASON})


def correlation_from_scope(scope: dict[str, Any]) -> str | None:
    """ACS's ``x-ms-call-correlation-id`` handshake header (`media_owner.py` binds on it)."""
    for name, value in scope.get("headers", ()):
        if name == CORRELATION_HEADER and value:
            return value.decode("latin-1")[:128]
    return None


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
        call_id = call_id_from_scope(scope)
        if not service.ready or (service.draining and call_id not in service.calls):
            # New calls go elsewhere while this replica drains (1013: try again later); a
            # call in progress may still reconnect. Accepted first, like the 1008 below.
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 1013, "reason": "draining"})
            return
        auth: MediaAuth = scope["app"].state.media_auth
        refusal = await auth.refusal(scope)
        if refusal is not None:
            # Accept, then close with 1008: uvicorn turns a close before the accept into an
            # HTTP 403, and ACS (like any websocket client) should see the policy code.
            service.stats.media_auth_refused += 1
            log.warning("media connection for call %r refused: %s", call_id, refusal)
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 1008, "reason": refusal[:120]})
            return
        await send({"type": "websocket.accept"})
        # Every log record of this connection's task, and of the tasks it starts (the
        # session's close, its recording requests), carries the call id (JSON logs).
        current_call_id.set(call_id)
        service.stats.media_connections += 1
        stored = None
        handed: dict | None = None
        if (
            call_id not in service.calls
        ):  # a new call, one another replica streams, or one from before a restart
            try:
                handed = await service.cluster.take_over(call_id)
            except Exception as exc:  # Redis away: go on from the store
                log.warning(
                    "call %r: no hand-over from another replica (%s)", call_id, type(exc).__name__
                )
            try:
                stored = await asyncio.to_thread(service.store.get_call, call_id)
            except Exception as exc:  # the store is away: the call goes on, its events buffered
                log.warning(
                    "call %r: the store could not be read (%s)", call_id, type(exc).__name__
                )
        if handed is not None and handed.get(HANDOVER_REFUSED):
            # The replica that owns the call still has its socket streaming: not a reconnect.
            await _refuse_second_socket(
                service, send, call_id, "its media streams on another replica"
            )
            return
        live = service.calls.get(call_id)
        ended_at = stored.ended_at if stored is not None and handed is None else None
        if (live is not None and live.ended) or (live is None and ended_at is not None):
            service.stats.media_ended_call_refused += 1
            log.warning(
                "media connection for call %r refused: the call has ended%s; a new call needs a new call id",
                call_id,
                f" (at {ended_at})" if ended_at else "",
            )
            await send({"type": "websocket.close", "code": ENDED_CLOSE, "reason": "call has ended"})
            return
        session = service.session(call_id, stored)
        if handed is not None:
            service.adopt(session, handed)
        owners = service.media_owners
        sock = owners.connect(call_id, session, send, correlation_from_scope(scope))
        try:
            await self._stream(service, receive, sock)
        finally:
            owners.release(sock)

    async def _stream(self, service: Service, receive: Any, sock: MediaSocket) -> None:
        """Own the call's stream (or be refused), then hand every message to the session.

        With one stream per call the socket claims it now, before any frame; with two (ACS
        transcription) its first frame says which it claims, and a socket that came while
        another was connected (pure) must own the stream of every frame it sends. Such a
        socket joins the call (`attach`: the reconnect bookkeeping) only once it owns a
        stream, so a refused one leaves the call exactly as it was.
        """
        session, call_id = sock.session, sock.call_id
        owners = service.media_owners
        if not owners.per_stream and not await owners.claim(sock, ONE_STREAM):
            await _refuse_second_socket(
                service, sock.send, call_id, "another connection streams it"
            )
            return
        attached = not sock.pure  # a pure socket attaches once it owns a stream
        if attached:
            session.attach()
        on_message = session.on_message
        close_code: int | None = None
        watchdog = asyncio.create_task(_idle_watchdog(sock, service.settings.media_idle_timeout_s))
        try:
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.receive":
                    sock.received += 1
                    if not sock.received & 63:
                        # Messages already read off the socket come back from receive()
                        # without a turn of the loop: one connection's burst (a flood)
                        # must not hold every other call for its whole length.
                        await asyncio.sleep(0)
                    data = message.get("text")
                    if data is None:
                        data = message.get("bytes") or b""
                    if not sock.settled:  # the first frame; every frame of a pure socket
                        if sock.displaced:
                            break  # a newer socket owns its stream; it is being closed
                        slot = owners.to_claim(sock, data)
                        if slot is not None:
                            if not await owners.claim(sock, slot):
                                await _refuse_second_socket(
                                    service, sock.send, call_id, f"another connection streams its {slot}"
                                )  # fmt: skip
                                return
                            if not attached:
                                session.attach()
                                attached = True
                    try:
                        on_message(data)
                    except Exception as exc:  # never let one frame end a call
                        # Counted and logged (rate-limited, type only) like any bad frame.
                        session.frames.malformed(
                            f"internal error {type(exc).__name__}", "dropped_internal_error"
                        )
                elif kind == "websocket.disconnect":
                    close_code = message.get("code")
                    if close_code == 1009:
                        # The websocket layer refused a message over ws_max_size (and closed
                        # the connection): it never reached the session, count it here.
                        service.stats.frames_received += 1
                        service.stats.dropped_message_too_large += 1
                    break
        finally:
            watchdog.cancel()
            if watchdog.done() and not watchdog.cancelled() and watchdog.result():
                close_code = IDLE_CLOSE  # we closed it: the call is over, no reconnect wait
            # A clean close ends the call now; a dropped connection (1006, no close frame)
            # may come back: ACS reconnects with the same call id.
            clean = close_code in CLEAN_CLOSE_CODES
            if attached:
                session.detach(
                    "media-disconnected", 0.0 if clean else service.settings.media_reconnect_grace_s
                )
