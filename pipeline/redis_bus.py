"""The event bus on Redis Streams (`CALLSTREAM_BUS=redis://...`), for many replicas.

Same interface as `MemoryBus`: `publish` is synchronous and never blocks the journal,
`subscribe` hands out the same bounded `Subscription`s with their `lagged` notices.

- Every event goes to its call's stream (`callstream:call:{callId}`, capped, expiring
  a while after `call.ended`) and to the firehose (`callstream:events`, capped).
- Each replica runs one reader that follows the firehose with blocking XREAD and fans
  the events out to its local subscriptions, so an agent's subscription on replica B sees
  a call that streams to replica A, in the order A stored it. Local subscribers are fed
  the same way: one path, one order.
- `history(call_id, since)` reads a call's stream, so a subscriber that lands on a
  replica whose store does not have the call still resumes by `seq`.
- Redis going away loses nothing: unsent events stay in the outbox (bounded, oldest first
  out, counted), the reader resumes from the last firehose id it saw.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from .bus import MemoryBus, Subscription

log = logging.getLogger(__name__)

FIREHOSE = "callstream:events"
_ENDED = b'{"type":"call.ended"'


def call_stream(call_id: str) -> str:
    return f"callstream:call:{call_id}"


class RedisBus:
    def __init__(
        self,
        url: str,
        default_maxsize: int = 256,
        call_maxlen: int = 20_000,
        firehose_maxlen: int = 200_000,
        ended_ttl_s: int = 3600,
        outbox_max: int = 100_000,
    ) -> None:
        self.url = url
        self.local = MemoryBus(default_maxsize)
        self.call_maxlen = call_maxlen
        self.firehose_maxlen = firehose_maxlen
        self.ended_ttl_s = ended_ttl_s
        self.outbox_max = outbox_max
        self._outbox: deque[tuple[str, int, bytes]] = deque()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._redis: aioredis.Redis | None = None
        self._reader: aioredis.Redis | None = None
        self._closing = False
        self.published = 0
        self.delivered = 0
        self.outbox_dropped = 0
        self.errors = 0
        self.connected = False

    @property
    def outbox_depth(self) -> int:
        return len(self._outbox)

    @property
    def redis(self) -> aioredis.Redis:
        assert self._redis is not None, "RedisBus.start() was not awaited"
        return self._redis

    async def start(self) -> None:
        self._redis = aioredis.from_url(self.url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=10)
        # The reader blocks in XREAD; its own connection, with no read timeout of its own.
        self._reader = aioredis.from_url(self.url, socket_connect_timeout=2, health_check_interval=10)
        await self._redis.ping()
        self.connected = True
        # Start from the firehose's current end: what was before us is in the store.
        last = await self._redis.xrevrange(FIREHOSE, count=1)
        start_id = last[0][0] if last else b"0-0"
        self._tasks = [
            asyncio.create_task(self._publish_loop(), name="redis-bus-publisher"),
            asyncio.create_task(self._read_loop(start_id), name="redis-bus-reader"),
        ]

    # ----- publishing ----------------------------------------------------------------------
    def publish(self, call_id: str, seq: int, raw: bytes) -> None:
        if len(self._outbox) >= self.outbox_max:
            self._outbox.popleft()  # Redis has been away for long: the store still has it
            self.outbox_dropped += 1
        self._outbox.append((call_id, seq, raw))
        self._idle.clear()
        self._wakeup.set()

    async def _publish_loop(self) -> None:
        backoff = 0.1
        while True:
            if not self._outbox:
                self._idle.set()
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = [self._outbox[i] for i in range(min(len(self._outbox), 512))]
            pipe = self.redis.pipeline(transaction=False)
            for call_id, seq, raw in batch:
                fields = {b"c": call_id, b"s": seq, b"r": raw}
                stream = call_stream(call_id)
                pipe.xadd(stream, fields, maxlen=self.call_maxlen, approximate=True)
                pipe.xadd(FIREHOSE, fields, maxlen=self.firehose_maxlen, approximate=True)
                if raw.startswith(_ENDED):
                    pipe.expire(stream, self.ended_ttl_s)
            try:
                await pipe.execute()
            except (RedisError, OSError) as exc:
                self.errors += 1
                self.connected = False
                log.error("redis bus: publishing failed (%s); %d events kept", type(exc).__name__, len(self._outbox))
                if self._closing and backoff > 2:
                    return
                await asyncio.sleep(backoff)
                backoff = min(2.0, backoff * 2)
                continue
            backoff = 0.1
            self.connected = True
            for _ in batch:
                self._outbox.popleft()
            self.published += len(batch)

    # ----- reading -------------------------------------------------------------------------
    async def _read_loop(self, last_id: bytes) -> None:
        assert self._reader is not None
        backoff = 0.1
        # Not cancelled from outside: redis-py can hang cancelling a blocked XREAD, so the
        # loop looks at `_closing` between reads (each blocks for at most half a second).
        while not self._closing:
            try:
                answer = await self._reader.xread({FIREHOSE: last_id}, count=512, block=500)
            except (RedisError, OSError) as exc:
                self.errors += 1
                log.warning("redis bus: reading failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(2.0, backoff * 2)
                continue
            backoff = 0.1
            for _stream, entries in answer or ():
                for i, (entry_id, fields) in enumerate(entries):
                    last_id = entry_id
                    try:
                        call_id = fields[b"c"].decode()
                        seq = int(fields[b"s"])
                        raw = fields[b"r"]
                    except (KeyError, ValueError, UnicodeDecodeError):
                        log.warning("redis bus: a malformed firehose entry was skipped")
                        continue
                    self.local.publish(call_id, seq, raw)
                    self.delivered += 1
                    if i % 64 == 63:
                        await asyncio.sleep(0)  # let subscriber pumps drain their queues

    async def history(self, call_id: str, since: int) -> list[tuple[int, bytes]]:
        """A call's events after ``since`` from its stream (empty if Redis lost them)."""
        try:
            entries = await self.redis.xrange(call_stream(call_id))
        except (RedisError, OSError):
            return []
        out = []
        for _id, fields in entries:
            seq = int(fields[b"s"])
            if seq > since:
                out.append((seq, fields[b"r"]))
        return out

    # ----- the MemoryBus interface ---------------------------------------------------------
    def subscribe(self, call_id: str | None = None, maxsize: int | None = None) -> Subscription:
        return self.local.subscribe(call_id, maxsize)

    def subscriptions(self) -> list[Subscription]:
        return self.local.subscriptions()

    @property
    def subscriber_count(self) -> int:
        return self.local.subscriber_count

    async def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything published so far is in Redis (False: timed out)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def aclose(self) -> None:
        self._closing = True
        self._wakeup.set()
        await self.flush()
        _, late = await asyncio.wait(self._tasks, timeout=3)
        for task in late:
            task.cancel()
        for conn in (self._redis, self._reader):
            if conn is not None:
                await conn.aclose()
