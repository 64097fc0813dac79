"""The load generator: N unmixed two-party calls streaming the fixture to `/media` in real time.

ingest.py, scale_out.py and soak.py (and flood.py through soak's CallLoad) all load the
server with it. Their figures compare only if the load is the same: the same pre-encoded
frames, the same 1 ms slots and backlog rule, the same ping probe for latency, the same
way of waiting for the server to drain. So it lives here once, and a change to how calls
are paced or counted reaches every benchmark.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from rawws import WsClient, ws_frame

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the scripts run as `python bench/X.py`: make `pipeline` importable

from pipeline.cli.replay import audio_message, load_call_audio, metadata_message  # noqa: E402

FIXTURE = REPO / "tests" / "fixtures" / "support_call.wav"

SLOTS = 20  # 1 ms slots in the 20 ms period
MAX_BACKLOG = 1 << 20  # per connection: beyond this the server is not reading; skip frames

S = TypeVar("S")


@dataclass
class RunStats:
    measuring: bool = False
    rtts: list[float] = field(default_factory=list)
    rtt_at: list[float] = field(default_factory=list)
    lateness: list[float] = field(default_factory=list)
    sent: int = 0
    skipped: int = 0


class MediaClient(WsClient):
    """One ACS media websocket: answers the server's keepalive pings, and times its own
    pings (sent right behind a frame pair) while ``stats.measuring``."""

    def __init__(self, host: str, port: int, call_id: str, stats: RunStats) -> None:
        super().__init__(host, port, "/media", {"x-ms-call-connection-id": call_id})
        self.stats = stats
        self.closed = False
        self.pings: dict[int, float] = {}
        self.ping_seq = 0

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.open.done():
            self.open.set_exception(ConnectionError(f"connection lost during handshake: {exc}"))

    def on_frame(self, opcode: int, payload: bytes) -> None:
        if opcode == 0x9:  # server keepalive ping: answer it
            self.transport.write(ws_frame(0xA, payload))  # type: ignore[union-attr]
        elif opcode == 0xA and len(payload) == 4:
            sent = self.pings.pop(int.from_bytes(payload, "big"), None)
            if sent is not None and self.stats.measuring:
                now = time.perf_counter()
                self.stats.rtts.append(now - sent)
                self.stats.rtt_at.append(sent)
        elif opcode == 0x8:
            self.closed = True

    def ping(self) -> None:
        self.ping_seq += 1
        self.pings[self.ping_seq] = time.perf_counter()
        self.transport.write(ws_frame(0x9, self.ping_seq.to_bytes(4, "big")))  # type: ignore[union-attr]


def build_frames(fixture: Path) -> tuple[bytes, list[bytes]]:
    """The metadata frame and one customer+agent frame pair per 20 ms, encoded once so that
    sending a pair costs the generator one write."""
    audio = load_call_audio(fixture)
    if len(audio.tracks) != 2 or audio.rate != 16000:
        raise SystemExit("the ingest fixture must be a stereo 16 kHz WAV (unmixed two-party call)")
    fb = audio.frame_bytes
    t0 = time.time()
    pairs = []
    for i in range(audio.frames):
        ts = (
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t0 + i * 0.02))
            + f".{int((t0 * 1000 + i * 20) % 1000):03d}Z"
        )
        pair = b""
        for participant, pcm in audio.tracks:
            chunk = pcm[i * fb : (i + 1) * fb].ljust(fb, b"\0")
            pair += ws_frame(0x1, audio_message(chunk, participant, ts))
        pairs.append(pair)
    return ws_frame(0x1, metadata_message(audio.rate)), pairs


async def open_calls(
    port: int, calls: int, id_prefix: str, stats: RunStats, meta: bytes
) -> list[MediaClient]:
    """Connects the calls in batches of 50 (``id_prefix`` + index as the call id), then sends
    each its metadata."""
    loop = asyncio.get_running_loop()
    clients: list[MediaClient] = []
    for start in range(0, calls, 50):
        batch = []
        for i in range(start, min(calls, start + 50)):
            c = MediaClient("127.0.0.1", port, f"{id_prefix}{i}", stats)
            await loop.create_connection(lambda c=c: c, "127.0.0.1", port)
            batch.append(c)
        await asyncio.gather(*(c.open for c in batch))
        clients.extend(batch)
    for c in clients:
        c.transport.write(meta)  # type: ignore[union-attr]
    return clients


class Pacer:
    """Each call's next frame pair in its own 1 ms slot of every 20 ms tick, as independent
    ACS calls would send them, each call at a different place in the fixture. ``stats``
    may be swapped between ticks (a new measuring window); ``on_pair(i, k, transport)``
    runs after call i's pair of tick k is written, before its ping."""

    def __init__(
        self,
        clients: list[MediaClient],
        pairs: list[bytes],
        stats: RunStats,
        ping_every: float,
        on_pair: Callable[[int, int, asyncio.Transport], None] | None = None,
    ) -> None:
        calls = len(clients)
        self.clients, self.pairs, self.stats, self.on_pair = clients, pairs, stats, on_pair
        self.offsets = [(i * 97) % len(pairs) for i in range(calls)]
        self.slots = [[i for i in range(calls) if i % SLOTS == s] for s in range(SLOTS)]
        self.ping_ticks = max(1, round(ping_every / 0.02))
        self.loop = asyncio.get_running_loop()
        self.base = self.loop.time() + 0.05

    async def tick(self, k: int) -> None:
        # locals: this loop is the generator's whole cost, kept as lean as it was inline
        loop, base, nframes = self.loop, self.base, len(self.pairs)
        clients, pairs, offsets, slots = self.clients, self.pairs, self.offsets, self.slots
        ping_ticks, on_pair = self.ping_ticks, self.on_pair
        for s in range(SLOTS):
            due = base + k * 0.02 + s * (0.02 / SLOTS)
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            stats = self.stats
            if stats.measuring:
                stats.lateness.append(loop.time() - due)
            for i in slots[s]:
                c = clients[i]
                tr = c.transport
                if c.closed or tr is None or tr.is_closing():
                    continue
                if tr.get_write_buffer_size() > MAX_BACKLOG:
                    stats.skipped += 2
                    continue
                tr.write(pairs[(offsets[i] + k) % nframes])
                stats.sent += 2
                if on_pair is not None:
                    on_pair(i, k, tr)
                if (k + i) % ping_ticks == 0:
                    c.ping()

    async def measure(
        self, warmup: float, duration: float, snapshot: Callable[[], S]
    ) -> tuple[S, S]:
        """Streams ``warmup`` s, then a ``duration`` s window with ``stats.measuring`` on;
        ``snapshot()`` at the window's start and end."""
        total_ticks = round((warmup + duration) / 0.02)
        warm_ticks = round(warmup / 0.02)
        start: S | None = None
        for k in range(total_ticks):
            if k == warm_ticks:
                start = snapshot()
                self.stats.measuring = True
            await self.tick(k)
        if start is None:
            raise ValueError(f"a {duration} s window is shorter than one 20 ms tick")
        end = snapshot()
        self.stats.measuring = False
        return start, end


def write_backlog(clients: list[MediaClient]) -> int:
    return sum(c.transport.get_write_buffer_size() for c in clients if c.transport is not None)


async def settled_count(count: Callable[[], Awaitable[int]]) -> int:
    """The server's message count once two reads 0.5 s apart agree: a previous overloaded
    run may still be draining."""
    prev = -1
    for _ in range(100):
        now = await count()
        if now == prev:
            break
        prev = now
        await asyncio.sleep(0.5)
    return prev


async def drained_count(
    count: Callable[[], Awaitable[float]],
    since: float,
    expected: int,
    backlog: Callable[[], int],
    poll: float,
    timeout: float = 20.0,
    arrived: Callable[[], bool] = lambda: True,
) -> int | None:
    """The messages the server counted beyond ``since`` once it has them all
    (``expected``) or its count stops moving with nothing left in our buffers, and
    ``arrived()``. An overloaded server may answer slowly: after ``timeout`` s, what it
    counted last (None: it never answered)."""
    handled: int | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await asyncio.sleep(poll)
        try:
            now = int(await count() - since)
        except OSError:
            continue
        if (now >= expected or (now == handled and backlog() == 0)) and arrived():
            return now
        handled = now
    return handled


async def close_calls(clients: list[MediaClient]) -> None:
    """A clean close (1000) first, so that the server ends the calls as hung up."""
    for c in clients:
        if c.transport is not None and not c.transport.is_closing():
            c.transport.write(ws_frame(0x8, (1000).to_bytes(2, "big")))
    await asyncio.sleep(0.5)
    for c in clients:
        if c.transport is not None:
            c.transport.close()


@dataclass
class Run(Generic[S]):
    start: S  # snapshot() at the start of the measured window
    end: S  # and at its end
    backlog: int  # bytes still in our write buffers after the window
    closed_early: int  # connections the server had closed by the end of the window
    expected: int  # messages sent: each call's metadata, then the frames
    handled: int | None  # messages the server counted (None: it never answered)


async def run_calls(
    port: int,
    calls: int,
    id_prefix: str,
    stats: RunStats,
    meta: bytes,
    pairs: list[bytes],
    *,
    warmup: float,
    duration: float,
    ping_every: float,
    snapshot: Callable[[], S],
    count: Callable[[], Awaitable[float]],
    since: float,
    poll: float,
) -> Run[S]:
    """One measured load, the same for every target: connect, warm up, a window between two
    ``snapshot()``s, wait for the server's ``count()`` (from ``since``) to take it all in,
    hang up."""
    clients = await open_calls(port, calls, id_prefix, stats, meta)
    start, end = await Pacer(clients, pairs, stats, ping_every).measure(warmup, duration, snapshot)
    backlog = write_backlog(clients)
    closed_early = sum(c.closed for c in clients)
    expected = calls + stats.sent
    handled = await drained_count(count, since, expected, lambda: backlog, poll)
    await close_calls(clients)
    await asyncio.sleep(1.5)  # let the server end the calls before the next run
    return Run(start, end, backlog, closed_early, expected, handled)
