"""The event bus contract, run against the in-memory bus and the Redis Streams bus.

Both must behave the same for a subscriber: per-call topics and a firehose, order kept,
a bounded queue per subscriber with one `lagged` notice naming the missed range.
The Redis bus runs against a real redis-server started by the tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest

from pipeline.delivery.bus import MemoryBus
from pipeline.delivery.redis_bus import RedisBus

from .conftest import wait_for


def event(call_id: str, seq: int) -> bytes:
    return json.dumps({"type": "transcript.final", "callId": call_id, "seq": seq}).encode()


@pytest.fixture(params=["memory", "redis"])
async def bus(request: pytest.FixtureRequest):
    if request.param == "memory":
        b = MemoryBus(default_maxsize=8)
    else:
        b = RedisBus(request.getfixturevalue("redis_url"), default_maxsize=8)
    await b.start()
    yield b
    await b.aclose()


async def take(sub, n: int, timeout: float = 5.0) -> list:
    async with asyncio.timeout(timeout):
        return [await sub.get() for _ in range(n)]


async def test_per_call_topic_and_firehose_in_order(bus) -> None:
    a = bus.subscribe("A")
    fire = bus.subscribe(None, maxsize=64)
    for seq in range(1, 6):
        bus.publish("A", seq, event("A", seq))
        bus.publish("B", seq, event("B", seq))
    got_a = await take(a, 5)
    assert [(d.call_id, d.seq) for d in got_a] == [("A", s) for s in range(1, 6)]
    assert json.loads(got_a[2].raw)["seq"] == 3
    got_all = await take(fire, 10)
    assert [d.seq for d in got_all if d.call_id == "A"] == [1, 2, 3, 4, 5]
    assert [d.seq for d in got_all if d.call_id == "B"] == [1, 2, 3, 4, 5]
    # Nothing of call B reached call A's subscriber: the next thing it gets is A's next event.
    bus.publish("A", 6, event("A", 6))
    assert [(d.call_id, d.seq) for d in await take(a, 1)] == [("A", 6)]
    assert a.depth == 0
    assert bus.subscriber_count == 2
    a.close()
    fire.close()
    assert bus.subscriber_count == 0


async def test_slow_subscriber_gets_one_lagged_notice_with_the_range(bus) -> None:
    slow = bus.subscribe("A", maxsize=3)
    for seq in range(1, 11):
        bus.publish("A", seq, event("A", seq))
    await bus.flush()
    # The Redis reader has fanned out all ten (the memory bus did as it published).
    await wait_for(
        lambda: getattr(bus, "delivered", 10) >= 10, what="the reader to deliver all ten"
    )
    got = await take(slow, 4)
    assert [d.seq for d in got[:3]] == [1, 2, 3]
    notice = json.loads(got[3].raw)
    assert notice["type"] == "lagged" and (notice["missedFrom"], notice["missedTo"]) == (4, 10)
    bus.publish("A", 11, event("A", 11))
    assert [d.seq for d in await take(slow, 1)] == [11]
    assert slow.lag_notices == 1


async def test_history_resumes_by_seq_from_redis(redis_url: str) -> None:
    bus = RedisBus(redis_url)
    await bus.start()
    try:
        for seq in range(1, 8):
            bus.publish("C", seq, event("C", seq))
        assert await bus.flush()
        assert [s for s, _ in await bus.history("C", 4)] == [5, 6, 7]
        assert json.loads((await bus.history("C", 6))[0][1])["seq"] == 7
        assert await MemoryBus().history("C", 0) == []
    finally:
        await bus.aclose()


async def test_a_subscriber_on_another_replica_sees_every_event_in_order(redis_url: str) -> None:
    replica_a, replica_b = RedisBus(redis_url), RedisBus(redis_url)
    await replica_a.start()
    await replica_b.start()
    try:
        on_b = replica_b.subscribe("X", maxsize=2000)
        for seq in range(1, 1001):
            replica_a.publish("X", seq, event("X", seq))
        got = await take(on_b, 1000, timeout=20)
        assert [d.seq for d in got] == list(range(1, 1001))
    finally:
        await replica_a.aclose()
        await replica_b.aclose()


async def test_events_published_while_redis_is_down_are_delivered_after(redis_server) -> None:
    url = redis_server.fresh_url()
    pub, sub_bus = RedisBus(url), RedisBus(url)
    await pub.start()
    await sub_bus.start()
    try:
        sub = sub_bus.subscribe("R", maxsize=100)
        pub.publish("R", 1, event("R", 1))
        assert [d.seq for d in await take(sub, 1)] == [1]
        redis_server.stop()
        errors = pub.errors
        for seq in range(2, 6):
            pub.publish("R", seq, event("R", seq))
        await wait_for(lambda: pub.errors > errors, what="the publisher to find Redis away")
        assert not await pub.flush(timeout=0.2)  # held in the outbox, not lost
        assert pub.outbox_depth == 4
        redis_server.start()
        got = await take(sub, 4, timeout=20)
        assert [d.seq for d in got] == [2, 3, 4, 5]  # and 1, written again, skipped
        assert pub.epochs_lost == 1  # the restarted Redis came back empty: noticed
    finally:
        await pub.aclose()
        await sub_bus.aclose()


class GatedReads:
    """Holds a replica's firehose reads until opened: a reader that is a little behind,
    made to be behind at the worst moment (Redis losing what it acknowledged)."""

    def __init__(self, bus: RedisBus) -> None:
        self.open = asyncio.Event()
        self.open.set()
        self.held = asyncio.Event()  # a read has come to the closed gate
        self._xread = bus._reader.xread
        bus._reader.xread = self._gated

    async def _gated(self, *args, **kwargs):
        if not self.open.is_set():
            self.held.set()
        await self.open.wait()
        return await self._xread(*args, **kwargs)

    async def close(self) -> None:
        """Hold the reads from now on; return once the reader's next read is held, i.e. the
        blocking read it may have had in flight (which could still return new entries)
        has returned."""
        self.held.clear()
        self.open.clear()
        await asyncio.wait_for(self.held.wait(), 10)


@contextlib.asynccontextmanager
async def publisher_and_gated_reader(
    url: str,
) -> AsyncIterator[tuple[RedisBus, RedisBus, GatedReads]]:
    """Replica A publishes; replica B's firehose reads can be held back."""
    pub, sub_bus = RedisBus(url), RedisBus(url)
    await pub.start()
    await sub_bus.start()
    gate = GatedReads(sub_bus)
    try:
        yield pub, sub_bus, gate
    finally:
        gate.open.set()
        await pub.aclose()
        await sub_bus.aclose()


async def test_events_redis_acknowledged_and_then_lost_are_written_again(redis_server) -> None:
    async with publisher_and_gated_reader(redis_server.fresh_url()) as (pub, sub_bus, gate):
        sub = sub_bus.subscribe("L", maxsize=100)
        for seq in range(1, 4):
            pub.publish("L", seq, event("L", seq))
        assert [d.seq for d in await take(sub, 3)] == [1, 2, 3]
        await gate.close()
        for seq in range(4, 9):
            pub.publish("L", seq, event("L", seq))
        assert await pub.flush()  # Redis acknowledged 4..8; replica B has not read them
        await asyncio.to_thread(redis_server.restart)  # and comes back empty
        for seq in range(9, 11):
            pub.publish("L", seq, event("L", seq))
        assert await pub.flush(timeout=20)
        gate.open.set()
        got = await take(sub, 7, timeout=20)
        assert [d.seq for d in got] == list(range(4, 11))  # each once, in order, no lagged
        assert pub.epochs_lost == 1 and pub.resent >= 5
        assert [s for s, _ in await sub_bus.history("L", 0)][-7:] == list(range(4, 11))
        # Nothing after 10 (no repeat, no lagged): the next thing delivered is the next event.
        pub.publish("L", 11, event("L", 11))
        assert [d.seq for d in await take(sub, 1, timeout=20)] == [11]
        assert sub.depth == 0 and sub_bus.gaps == 0


async def test_a_hole_in_a_calls_seq_reaches_its_subscribers_as_lagged(redis_server) -> None:
    """The outbox overflowed while Redis was away: the events it dropped are in the
    publisher's store only. Another replica's subscriber is told which, not left guessing."""
    url = redis_server.fresh_url()
    pub, sub_bus = RedisBus(url, outbox_max=3), RedisBus(url)
    await pub.start()
    await sub_bus.start()
    try:
        sub = sub_bus.subscribe("H", maxsize=100)
        fire = sub_bus.subscribe(None, maxsize=100)
        pub.publish("H", 1, event("H", 1))
        assert [d.seq for d in await take(sub, 1)] == [1]
        redis_server.stop()
        for seq in range(2, 7):
            pub.publish("H", seq, event("H", seq))
        assert pub.outbox_dropped == 2  # 2 and 3
        await asyncio.to_thread(redis_server.start)
        for got in (await take(sub, 4, timeout=20), (await take(fire, 5, timeout=20))[1:]):
            notice = json.loads(got[0].raw)
            assert notice["type"] == "lagged" and (notice["missedFrom"], notice["missedTo"]) == (
                2,
                3,
            )
            assert [d.seq for d in got[1:]] == [4, 5, 6]
        assert sub_bus.gaps == 1
    finally:
        await pub.aclose()
        await sub_bus.aclose()


async def test_a_call_s_last_events_lost_by_redis_are_written_again_with_nothing_newer(
    redis_server,
) -> None:
    """No event comes after the lost ones (the call ended): the idle publisher notices
    the new epoch by itself."""
    async with publisher_and_gated_reader(redis_server.fresh_url()) as (pub, sub_bus, gate):
        sub = sub_bus.subscribe("E", maxsize=100)
        await gate.close()
        for seq in range(1, 4):
            pub.publish("E", seq, event("E", seq))
        assert await pub.flush()
        await asyncio.to_thread(redis_server.restart)
        gate.open.set()
        got = await take(sub, 3, timeout=20)
        assert [d.seq for d in got] == [1, 2, 3]
        assert pub.epochs_lost == 1


async def test_a_replica_reads_only_what_its_subscribers_watch(redis_url: str) -> None:
    """A replica's reading cost follows its own subscribers, not the cluster's events."""
    replica_a, replica_b = RedisBus(redis_url), RedisBus(redis_url)
    await replica_a.start()
    await replica_b.start()

    def publish(seqs: range) -> None:
        for seq in seqs:
            replica_a.publish("P", seq, event("P", seq))
            replica_a.publish("Q", seq, event("Q", seq))

    async def until(sub, call_id: str, seq: int) -> list:
        got = []
        async with asyncio.timeout(10):
            while not got or (got[-1].call_id, got[-1].seq) != (call_id, seq):
                got.append(await sub.get())
        return got

    try:
        publish(range(1, 51))
        assert await replica_a.flush()
        await asyncio.sleep(0.5)  # a negative check: B would have had this long to read something
        assert replica_b.delivered == 0  # nobody on B watches anything: B reads nothing
        # No wait for B to start reading P: a stream newly read is read from READ_BACK_MS
        # before the present, so what is published now is read whenever the plan changes.
        on_p = replica_b.subscribe("P", maxsize=500)
        publish(range(51, 61))
        got = await until(on_p, "P", 60)
        assert [d.seq for d in got] == sorted({d.seq for d in got}) and got[-1].seq == 60
        await asyncio.sleep(0.3)  # a negative check: a Q event read by mistake would show here
        assert replica_b.delivered == len(got)  # P's events only: Q's were never read
        fire = replica_b.subscribe(None, maxsize=500)  # read from READ_BACK_MS back, as above
        publish(range(61, 66))
        seen = await until(fire, "Q", 65)
        assert [d.seq for d in seen if d.call_id == "Q"][-5:] == [61, 62, 63, 64, 65]
        assert [d.seq for d in await until(on_p, "P", 65)] == [61, 62, 63, 64, 65]
    finally:
        await replica_a.aclose()
        await replica_b.aclose()
