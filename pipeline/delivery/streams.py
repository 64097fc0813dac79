"""The agent-assist stream: `WS /calls/{callId}/events` and `WS /events`.

A subscriber first subscribes to the live bus, then replays what the store holds
after `?since=`, then forwards live events, skipping any it already sent: so replay
and live join without a gap or a duplicate. If a live event still shows a hole after
what was sent (the replay could not read Redis; the store refused events), the hole is
read again from the store and Redis, and what neither has is named with `lagged`: a
subscriber is never left with a silent gap. A per-call stream closes after the call's
`call.ended`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from starlette.websockets import WebSocket, WebSocketDisconnect

from pipeline.delivery.bus import lagged_notice
from pipeline.service import Service

log = logging.getLogger(__name__)

_LAGGED = b'{"type":"lagged"'
_ENDED = b'{"type":"call.ended"'
ENDED_IDLE_S = 2.0
SEND_TIMEOUT_S = 30.0


def _since(websocket: WebSocket) -> int | None:
    raw = websocket.query_params.get("since")
    if raw is None:
        return None
    try:
        return max(0, int(raw))
    except ValueError:
        return None


async def _send_missed(websocket: WebSocket, call_id: str, first: int, last: int) -> None:
    await websocket.send_text(lagged_notice(call_id, first, last).decode())


async def _replay(
    service: Service, websocket: WebSocket, call_id: str, since: int, last: dict[str, int]
) -> bool:
    """Send what the store holds after ``since``, then what the bus still has beyond it (a
    call streaming to another replica whose store this replica does not share). A hole in
    what the store has is looked up in the bus; what neither has is named with `lagged`.
    True if the call's end was sent."""
    rows = await asyncio.to_thread(lambda: list(service.store.read(call_id, since)))
    last.setdefault(call_id, since)  # a live event past since+1 that replay lacks is a hole
    remote: list[tuple[int, bytes]] | None = None
    ended = False

    async def send(seq: int, body: bytes, fill: bool) -> None:
        nonlocal remote, ended
        if seq <= last[call_id]:
            return
        if seq > last[call_id] + 1 and fill:
            if remote is None:
                remote = await service.bus.history(call_id, last[call_id])
            for other, other_body in remote:
                if last[call_id] < other < seq:
                    await send(other, other_body, fill=False)
        if seq > last[call_id] + 1:
            await _send_missed(websocket, call_id, last[call_id] + 1, seq - 1)
        await websocket.send_text(body.decode())
        last[call_id] = seq
        ended = body.startswith(_ENDED)

    for seq, body in rows:
        await send(seq, body, fill=True)
    if not ended:
        for seq, body in await service.bus.history(call_id, last[call_id]):
            await send(seq, body, fill=False)
    return ended


async def _fill(
    service: Service, websocket: WebSocket, call_id: str, upto: int, last: dict[str, int]
) -> bool:
    """Live events went on past a hole after what this subscriber was sent (its replay ran
    while Redis was away; the store refused events): send the hole from the store or Redis,
    or name what neither has with a `lagged` notice. True if that reached the call's end."""
    if await _replay(service, websocket, call_id, last[call_id], last):
        return True
    if upto > last[call_id] + 1:
        await _send_missed(websocket, call_id, last[call_id] + 1, upto - 1)
        last[call_id] = upto - 1
    return False


async def event_stream(websocket: WebSocket) -> None:
    service: Service = websocket.app.state.service
    call_id = websocket.path_params.get("callId")
    since = _since(websocket)
    await websocket.accept()
    sub = service.bus.subscribe(call_id)
    last: dict[str, int] = {}

    async def pump() -> None:
        gone_since: float | None = None
        if since is not None:
            targets = [call_id] if call_id else await service.cluster.live_calls()
            for cid in targets:
                if await _replay(service, websocket, cid, since, last) and call_id:
                    return
        elif call_id is not None:
            record = await asyncio.to_thread(service.store.get_call, call_id)
            if (
                record is not None
                and record.ended_at is not None
                and not await service.cluster.is_live(call_id)
            ):
                return  # nothing live will come for an ended call; replay with ?since=0
        while True:
            if call_id is not None and call_id not in service.calls:
                # Not live here: live on another replica, or over (its call.ended may have
                # been in a lagged range). Close once it is over and nothing more is queued,
                # rather than wait for an event that will not come.
                try:
                    item = await asyncio.wait_for(sub.get(), ENDED_IDLE_S)
                except TimeoutError:
                    if await service.cluster.is_live(call_id):
                        gone_since = None
                        continue
                    # With many replicas the registry may briefly miss a live call (Redis
                    # restarted: replicas re-register theirs each heartbeat); be sure first.
                    gone_since = gone_since or time.monotonic()
                    if time.monotonic() - gone_since < service.cluster.liveness_settle_s:
                        continue
                    return
                gone_since = None
            else:
                item = await sub.get()
            if item.seq <= last.get(item.call_id, 0):
                continue  # sent already (replay and live overlap), or a hole already named
            if (
                not item.raw.startswith(_LAGGED)
                and item.call_id in last
                and item.seq > last[item.call_id] + 1
            ):
                if await _fill(service, websocket, item.call_id, item.seq, last) and call_id:
                    return
                if item.seq <= last[item.call_id]:
                    continue
            last[item.call_id] = item.seq
            # A subscriber that stops reading fills its socket, then this send waits:
            # give up on it rather than hold its task, its queue and its buffers forever.
            async with asyncio.timeout(SEND_TIMEOUT_S):
                await websocket.send_text(item.raw.decode())
            if call_id is not None and item.raw.startswith(_ENDED):
                return

    async def watch_client() -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while (await websocket.receive())["type"] != "websocket.disconnect":
                pass

    pump_task = asyncio.create_task(pump())
    watch_task = asyncio.create_task(watch_client())
    try:
        done, _ = await asyncio.wait({pump_task, watch_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sub.close()
        for task in (pump_task, watch_task):
            task.cancel()
        await asyncio.gather(pump_task, watch_task, return_exceptions=True)
    if pump_task in done and not pump_task.cancelled():
        error = pump_task.exception()
        if isinstance(error, WebSocketDisconnect):
            error = None  # the subscriber left while we were sending: nothing went wrong
        elif isinstance(error, TimeoutError):
            log.warning("a subscriber stopped reading for %g s: disconnected", SEND_TIMEOUT_S)
        elif (
            error is not None
        ):  # the store could not be read, say: tell the client, which may retry
            log.error("event stream failed (%s)", type(error).__name__)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(
                5
            ):  # a peer that does not read may not take the close either
                await websocket.close(1000 if error is None else 1011)
