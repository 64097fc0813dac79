"""In-memory event bus: per-call topics plus a firehose, never blocking the publisher.

Publishing is synchronous and bounded: each subscriber has a fixed-size queue. A
subscriber whose queue is full is not waited for: it starts missing events, and as soon
as it has room again it gets one `lagged` notice per call naming the seq range it
missed, so it can resume from the store with `?since=`. A slow agent desktop therefore
never slows a call, and never silently loses anything.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import NamedTuple, Protocol

from models.events import Lagged, encode_event, utc_now_iso


def lagged_notice(call_id: str, first: int, last: int) -> bytes:
    """The `lagged` event naming seqs ``first``..``last`` of a call as missed (its seq is
    ``last``, so a subscriber's position moves past the range)."""
    return encode_event(
        Lagged(callId=call_id, seq=last, time=utc_now_iso(), missedFrom=first, missedTo=last)
    )


class Delivery(NamedTuple):
    call_id: str
    seq: int
    raw: bytes  # the event's JSON, exactly as stored


class Subscription:
    def __init__(self, bus: MemoryBus, call_id: str | None, maxsize: int) -> None:
        self._bus = bus
        self.call_id = call_id
        self.maxsize = maxsize
        self._queue: deque[Delivery] = deque()
        self._wakeup = asyncio.Event()
        self._missed: dict[str, list[int]] = {}  # call id -> [first missed seq, last missed seq]
        self.closed = False
        self.lag_notices = 0

    @property
    def depth(self) -> int:
        """Events queued for this subscriber and not yet sent: its lag, in events."""
        return len(self._queue)

    def offer(self, item: Delivery) -> None:
        if len(self._queue) >= self.maxsize:
            span = self._missed.get(item.call_id)
            if span is None:
                self._missed[item.call_id] = [item.seq, item.seq]
            else:
                span[1] = item.seq
            return
        if self._missed:
            self._flush_missed()
            if len(self._queue) >= self.maxsize:
                self.offer(item)
                return
        self._queue.append(item)
        self._wakeup.set()

    def _flush_missed(self) -> None:
        for call_id, (first, last) in list(self._missed.items()):
            self._queue.append(Delivery(call_id, last, lagged_notice(call_id, first, last)))
            self.lag_notices += 1
        self._missed.clear()
        self._wakeup.set()

    async def get(self) -> Delivery:
        while not self._queue:
            if self._missed:
                self._flush_missed()
                continue
            self._wakeup.clear()
            await self._wakeup.wait()
        item = self._queue.popleft()
        if not self._queue and self._missed:
            self._flush_missed()
        return item

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._bus._unsubscribe(self)


class EventBus(Protocol):
    """What every bus does (in memory here, Redis Streams in redis_bus.py): take stored
    events without ever blocking the publisher, and hand them to subscribers of one call
    or of every call, with `lagged` notices for what a slow one missed."""

    async def start(self) -> None: ...
    async def aclose(self) -> None: ...
    def publish(self, call_id: str, seq: int, raw: bytes) -> None: ...
    def subscribe(self, call_id: str | None = None, maxsize: int | None = None) -> Subscription:
        """A queue of one call's events (None: every call's, the firehose)."""
        ...

    async def history(self, call_id: str, since: int) -> list[tuple[int, bytes]]:
        """Events of a call after ``since`` that this bus still holds (a resume)."""
        ...

    async def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every event published so far has left this process."""
        ...

    def subscriber_count(self) -> int: ...
    def subscriptions(self) -> list[Subscription]: ...


class MemoryBus:
    """The embedded default: one process, its subscribers in memory."""

    def __init__(self, default_maxsize: int = 256) -> None:
        self.default_maxsize = default_maxsize
        self._by_call: dict[str, set[Subscription]] = {}
        self._firehose: set[Subscription] = set()

    async def start(self) -> None:
        """Nothing to connect to; the same lifecycle as the Redis bus."""

    async def history(self, call_id: str, since: int) -> list[tuple[int, bytes]]:
        """Nothing is kept here: a single process resumes from its store."""
        return []

    async def flush(self, timeout: float = 10.0) -> bool:
        return True

    async def aclose(self) -> None:
        pass

    def publish(self, call_id: str, seq: int, raw: bytes) -> None:
        item = Delivery(call_id, seq, raw)
        for sub in self._by_call.get(call_id, ()):
            sub.offer(item)
        for sub in self._firehose:
            sub.offer(item)

    def subscribe(self, call_id: str | None = None, maxsize: int | None = None) -> Subscription:
        sub = Subscription(self, call_id, maxsize or self.default_maxsize)
        if call_id is None:
            self._firehose.add(sub)
        else:
            self._by_call.setdefault(call_id, set()).add(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        if sub.call_id is None:
            self._firehose.discard(sub)
        else:
            subs = self._by_call.get(sub.call_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._by_call[sub.call_id]

    @property
    def has_firehose_subscribers(self) -> bool:
        return bool(self._firehose)

    def watched_calls(self) -> set[str]:
        """The calls that have a subscriber of their own here."""
        return set(self._by_call)

    @property
    def subscriber_count(self) -> int:
        return len(self._firehose) + sum(len(s) for s in self._by_call.values())

    def subscriptions(self) -> list[Subscription]:
        """Every live subscription (metrics read their queue depth and lag notices)."""
        return [*self._firehose, *(s for subs in self._by_call.values() for s in subs)]
