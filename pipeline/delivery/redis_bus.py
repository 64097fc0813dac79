"""The event bus on Redis Streams (`CALLSTREAM_BUS=redis://...`), for many replicas.

Same interface as `MemoryBus`: `publish` is synchronous and never blocks the journal,
`subscribe` hands out the same bounded `Subscription`s with their `lagged` notices.

- Every event goes to its call's stream (`callstream:call:{callId}`, capped, expiring
  a while after `call.ended`) and to the firehose (`callstream:events`, capped).
- Each replica runs one reader that follows, with blocking XREAD, what its subscribers
  need and fans the events out to them, so an agent's subscription on replica B sees a
  call that streams to replica A, in the order A stored it. Local subscribers are fed the
  same way: one path, one order. With a firehose subscriber (`WS /events`), or more than
  `FIREHOSE_ABOVE` calls watched, it reads the firehose; otherwise only the streams of
  the calls its subscribers watch, and with no subscriber nothing. So a replica's cost
  grows with what its own agents watch, not with the whole cluster's events.
- `history(call_id, since)` reads a call's stream, so a subscriber that lands on a
  replica whose store does not have the call still resumes by `seq`.
- Redis going away loses nothing: unsent events stay in the outbox (bounded, oldest first
  out, counted), the reader resumes from the last entry id it saw in each stream. A stream
  it starts to read (a new subscriber's call) is read from a little before the present:
  repeats are skipped, and the subscriber's replay covers the rest.
- Redis coming back *empty* (restarted without persistence, flushed, failed over to a
  replica that was behind) loses what it had acknowledged and not every reader had read.
  The dataset carries an epoch token; every batch is written by a script that first checks
  it, so a batch never lands in a dataset its publisher has not seen. On a new epoch the
  publisher writes again what Redis acknowledged in the last `resend_window_s`, ahead of
  anything newer, so a reader sees each call's events in seq order.
- Readers deliver each call's events once and in order: a repeat is skipped, and a hole
  (an outbox overflow, a loss older than the resend window) becomes a `lagged` notice for
  the call's subscribers, who resume from the store, rather than a silent gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections import OrderedDict, deque

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from pipeline.delivery.bus import MemoryBus, Subscription, lagged_notice

log = logging.getLogger(__name__)

FIREHOSE = "callstream:events"
EPOCH = "callstream:bus:epoch"
_ENDED = b'{"type":"call.ended"'
EPOCH_CHECK_S = 2.0  # an idle publisher looks at the epoch this often
FIREHOSE_ABOVE = 64  # calls watched here beyond which one firehose read is cheaper
READ_BLOCK_MS = 200  # how long a read waits: also how soon a new subscriber's call is read
READ_BACK_MS = 2000  # a stream newly read starts this far back (Redis's clock)
_ENDED_REMEMBERED = 4096  # calls whose end a reader remembers, to skip late repeats

# KEYS: epoch, firehose, then one call stream per event. ARGV: the epoch the publisher
# saw, the two caps, the ended TTL, then (call id, seq, event, ended?) per event.
# Returns the number written, or the dataset's epoch ("" if none) when it is not ours.
_PUBLISH_LUA = """
local epoch = redis.call('GET', KEYS[1])
if epoch ~= ARGV[1] then return epoch or '' end
for i = 3, #KEYS do
  local a = 5 + (i - 3) * 4
  redis.call('XADD', KEYS[i], 'MAXLEN', '~', ARGV[2], '*', 'c', ARGV[a], 's', ARGV[a + 1], 'r', ARGV[a + 2])
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', 'c', ARGV[a], 's', ARGV[a + 1], 'r', ARGV[a + 2])
  if ARGV[a + 3] == '1' then redis.call('EXPIRE', KEYS[i], ARGV[4]) end
end
return #KEYS - 2
"""


def redis_client(url: str, **kwargs: object) -> aioredis.Redis:
    """A client whose command is tried again on a new connection when Redis closed the old
    one (it restarted; a proxy dropped an idle connection). Without this the first command
    after a restart fails although Redis is back, and a subscriber's history comes back empty."""
    retry = Retry(
        ExponentialBackoff(cap=0.5, base=0.02), 3, supported_errors=(RedisConnectionError, OSError)
    )
    return aioredis.from_url(url, socket_connect_timeout=2, retry=retry, **kwargs)


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
        resend_window_s: float = 10.0,
        resend_max: int = 50_000,
    ) -> None:
        self.url = url
        self.local = MemoryBus(default_maxsize)
        self.call_maxlen = call_maxlen
        self.firehose_maxlen = firehose_maxlen
        self.ended_ttl_s = ended_ttl_s
        self.outbox_max = outbox_max
        self._outbox: deque[tuple[str, int, bytes]] = deque()
        self.resend_window_s = resend_window_s
        self.resend_max = resend_max
        self._acked: deque[tuple[float, tuple[str, int, bytes]]] = deque()  # for a lost dataset
        self._epoch = ""
        self._last_seq: dict[str, int] = {}  # per live call, what this reader delivered
        self._ended: OrderedDict[str, int] = OrderedDict()  # recently ended calls, last seq
        self._wakeup = asyncio.Event()
        self._watch_changed = asyncio.Event()
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
        self.epochs_lost = 0  # datasets found replaced under us
        self.resent = 0
        self.repeats_skipped = 0
        self.gaps = 0

    @property
    def outbox_depth(self) -> int:
        return len(self._outbox)

    @property
    def redis(self) -> aioredis.Redis:
        assert self._redis is not None, "RedisBus.start() was not awaited"
        return self._redis

    async def start(self) -> None:
        self._redis = redis_client(self.url, socket_timeout=5, health_check_interval=10)
        # The reader blocks in XREAD; its own connection, with no read timeout of its own.
        self._reader = redis_client(self.url, health_check_interval=10)
        await self._redis.ping()
        self._publish_script = self._redis.register_script(_PUBLISH_LUA)
        self._epoch = await self._join_epoch()
        self.connected = True
        self._tasks = [
            asyncio.create_task(self._publish_loop(), name="redis-bus-publisher"),
            asyncio.create_task(self._read_loop(), name="redis-bus-reader"),
        ]

    # ----- publishing ----------------------------------------------------------------------
    def publish(self, call_id: str, seq: int, raw: bytes) -> None:
        if len(self._outbox) >= self.outbox_max:
            self._outbox.popleft()  # Redis has been away for long: the store still has it
            self.outbox_dropped += 1
        self._outbox.append((call_id, seq, raw))
        self._idle.clear()
        self._wakeup.set()

    async def _join_epoch(self) -> str:
        """The dataset's epoch token, set by whichever replica finds it missing first."""
        await self.redis.set(EPOCH, secrets.token_hex(8), nx=True)
        return (await self.redis.get(EPOCH) or b"").decode()

    async def _write(self, batch: list[tuple[str, int, bytes]]) -> bool:
        """Write ``batch`` if the dataset is still the one we wrote to (False: it is not)."""
        keys = [EPOCH, FIREHOSE]
        args: list[str | int | bytes] = [
            self._epoch,
            self.call_maxlen,
            self.firehose_maxlen,
            self.ended_ttl_s,
        ]
        for call_id, seq, raw in batch:
            keys.append(call_stream(call_id))
            args += [call_id, seq, raw, 1 if raw.startswith(_ENDED) else 0]
        answer = await self._publish_script(keys=keys, args=args)
        return isinstance(answer, int)

    async def _check_epoch_idle(self) -> None:
        if not self._acked:
            return  # nothing acknowledged lately that a reader could still miss
        try:
            current = (await self.redis.get(EPOCH) or b"").decode()
            if current != self._epoch:
                await self._take_new_epoch()
            else:
                self._forget_acked_before(time.monotonic() - self.resend_window_s)
        except (RedisError, OSError):
            pass  # Redis is away: checked again next time

    async def _take_new_epoch(self) -> None:
        """The dataset is new: join its epoch, and put what the old one acknowledged lately
        back ahead of the outbox, so readers that had not read it yet get it, in order."""
        self._epoch = await self._join_epoch()
        acked = [item for _, item in self._acked]
        self._acked.clear()
        self._outbox.extendleft(reversed(acked))
        self.resent += len(acked)
        self.epochs_lost += 1
        log.warning(
            "redis bus: Redis lost its data (new epoch); writing the last %d events again",
            len(acked),
        )

    def _remember_acked(self, batch: list[tuple[str, int, bytes]]) -> None:
        now = time.monotonic()
        self._acked.extend((now, item) for item in batch)
        self._forget_acked_before(now - self.resend_window_s)

    def _forget_acked_before(self, horizon: float) -> None:
        """Called only when Redis has just shown it still holds our dataset: during an
        outage nothing is forgotten, so a Redis down for minutes still gets the events
        acknowledged in the window before it went."""
        while self._acked and (self._acked[0][0] < horizon or len(self._acked) > self.resend_max):
            self._acked.popleft()

    async def _publish_loop(self) -> None:
        backoff = 0.1
        while True:
            if not self._outbox:
                self._idle.set()
                if self._closing:
                    return
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), EPOCH_CHECK_S)
                except TimeoutError:
                    # Nothing to write: still notice a Redis that lost what it acknowledged
                    # last (a call's last events, its call.ended), rather than at the next event.
                    await self._check_epoch_idle()
                continue
            batch = [self._outbox[i] for i in range(min(len(self._outbox), 512))]
            try:
                written = await self._write(batch)
                if not written:
                    await self._take_new_epoch()
                    continue
            except (RedisError, OSError) as exc:
                self.errors += 1
                self.connected = False
                log.error(
                    "redis bus: publishing failed (%s); %d events kept",
                    type(exc).__name__,
                    len(self._outbox),
                )
                if self._closing and backoff > 2:
                    return
                await asyncio.sleep(backoff)
                backoff = min(2.0, backoff * 2)
                continue
            backoff = 0.1
            self.connected = True
            for _ in batch:
                self._outbox.popleft()
            self._remember_acked(batch)
            self.published += len(batch)

    # ----- reading -------------------------------------------------------------------------
    async def _read_loop(self) -> None:
        assert self._reader is not None
        reading: dict[str, bytes] = {}  # stream -> the last entry id read from it
        backoff = 0.1
        # Not cancelled from outside: redis-py can hang cancelling a blocked XREAD, so the
        # loop looks at `_closing` between reads (each blocks for READ_BLOCK_MS at most).
        while not self._closing:
            try:
                reading = await self._plan_reads(reading)
                if not reading:
                    self._watch_changed.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._watch_changed.wait(), READ_BLOCK_MS / 1000)
                    continue
                answer = await self._reader.xread(reading, count=512, block=READ_BLOCK_MS)
            except (RedisError, OSError) as exc:
                self.errors += 1
                log.warning("redis bus: reading failed (%s); retrying", type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(2.0, backoff * 2)
                continue
            backoff = 0.1
            for stream, entries in answer or ():
                name = stream.decode() if isinstance(stream, bytes) else stream
                for i, (entry_id, fields) in enumerate(entries):
                    reading[name] = entry_id
                    try:
                        call_id = fields[b"c"].decode()
                        seq = int(fields[b"s"])
                        raw = fields[b"r"]
                    except (KeyError, ValueError, UnicodeDecodeError):
                        log.warning("redis bus: a malformed stream entry was skipped")
                        continue
                    self._deliver(call_id, seq, raw)
                    if i % 64 == 63:
                        await asyncio.sleep(0)  # let subscriber pumps drain their queues

    async def _plan_reads(self, reading: dict[str, bytes]) -> dict[str, bytes]:
        """The streams to read next, each from where its reading got to; a stream newly
        needed starts READ_BACK_MS before Redis's present."""
        calls = self.local.watched_calls()
        if self.local.has_firehose_subscribers or len(calls) > FIREHOSE_ABOVE:
            wanted = {FIREHOSE}
        else:
            wanted = {call_stream(c) for c in calls}
        if wanted == reading.keys():
            return reading
        plan = {stream: reading[stream] for stream in wanted if stream in reading}
        if len(plan) < len(wanted):
            assert self._reader is not None
            seconds, micros = await self._reader.time()
            start = f"{max(0, seconds * 1000 + micros // 1000 - READ_BACK_MS)}-0".encode()
            plan |= {stream: start for stream in wanted if stream not in plan}
        if FIREHOSE not in wanted:
            # A call no longer read here starts afresh when it is read again: what it missed
            # meanwhile is not a hole (nobody here was watching), so forget where it was.
            for call_id in [c for c in self._last_seq if call_stream(c) not in wanted]:
                del self._last_seq[call_id]
        return plan

    def _deliver(self, call_id: str, seq: int, raw: bytes) -> None:
        """Hand one stream entry to local subscribers: once, in seq order, holes named."""
        last = self._last_seq.get(call_id)
        if last is None:
            last = self._ended.get(call_id)
        if last is not None:
            if seq <= last:
                self.repeats_skipped += 1  # written again after Redis lost its data
                return
            if seq > last + 1:
                self.gaps += 1
                log.warning(
                    "redis bus: call %s events %d..%d are not in Redis; subscribers told (lagged)",
                    call_id, last + 1, seq - 1, extra={"callId": call_id},
                )  # fmt: skip
                self.local.publish(call_id, seq - 1, lagged_notice(call_id, last + 1, seq - 1))
        if raw.startswith(_ENDED):
            self._last_seq.pop(call_id, None)
            self._ended[call_id] = seq
            if len(self._ended) > _ENDED_REMEMBERED:
                self._ended.popitem(last=False)
        else:
            self._last_seq[call_id] = seq
        self.local.publish(call_id, seq, raw)
        self.delivered += 1

    async def history(self, call_id: str, since: int) -> list[tuple[int, bytes]]:
        """A call's events after ``since`` from its stream (empty if Redis lost them), in seq
        order, each once."""
        try:
            entries = await self.redis.xrange(call_stream(call_id))
        except (RedisError, OSError):
            return []
        out = []
        for _id, fields in entries:
            seq = int(fields[b"s"])
            if seq > since:
                out.append((seq, fields[b"r"]))
                since = seq
        return out

    # ----- the MemoryBus interface ---------------------------------------------------------
    def subscribe(self, call_id: str | None = None, maxsize: int | None = None) -> Subscription:
        sub = self.local.subscribe(call_id, maxsize)
        self._watch_changed.set()  # an idle reader starts reading the call at once
        return sub

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
