"""uvicorn's websockets (sans-I/O) protocol, made cheap for steady senders and fair under floods.

Three changes to the stock protocol, each measured by a benchmark (bench/RESULTS.md):

- **High-water pausing.** Stock uvicorn pauses the socket after every received message and
  resumes it when the app takes that message: two epoll system calls per 20 ms audio frame,
  ~18% of the server's CPU in the ingest benchmark. Here reading pauses only when
  HIGH_WATER messages wait for the app, so memory per connection stays bounded while a
  consumer that keeps up never pays the toggle.
- **Bounded parsing per turn of the loop.** asyncio hands over up to 256 KiB per read, and
  the sans-I/O parser turns all of it into messages inside one callback: ten thousand small
  frames from one connection held every other call on the replica for tens of
  milliseconds (the flood benchmark). Bytes past SLICE wait, with the socket paused, and
  are parsed at most SLICE at a time, one slice per turn of the loop; fewer when the
  connection is near its rate (below).
- **A message rate per connection.** ACS sends 50 messages a second per participant. A
  connection that sends far more (a flood of malformed frames, a broken client) is read
  more slowly once its budget (`rate` a second, a burst of one second's worth) is spent:
  TCP holds what it sent, nothing is dropped and the connection stays open, and the other
  calls keep their share of the CPU. A message costs 1 plus 1 per KiB (parsing big ones
  costs by the byte): an ACS audio frame costs about 2.
- **A text message that is not UTF-8 is a malformed frame**, handed over as bytes for the
  app to count and skip, not a reason to fail the connection (stock: 1007 and a traceback).

It leans on uvicorn internals (`read_paused`, `queue`, `send_receive_event_to_app`,
`data_received`, `receive`), so it is used only on the uvicorn versions the suite has
passed on (from OLDEST_UVICORN; pyproject.toml bounds the range) and only when they are
there; otherwise the stock protocol serves, unchanged (a test says so). Older versions
have the same names and break in them (measured on 0.44-0.49).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.service import Service

log = logging.getLogger("callstream.media")

HIGH_WATER = 32
SLICE = 4096  # bytes parsed per turn of the loop: ~4 audio frames, or ~150 tiny messages
MIN_SLICE = 256
MIN_BATCH = 16.0  # a throttled connection waits until this many messages' budget is back
BYTES_PER_COST = 1024  # a message costs 1 + len / BYTES_PER_COST against the rate
DEFAULT_RATE = 2000.0  # message costs a second per connection (0: no limit)
OLDEST_UVICORN = (0, 53)  # the oldest the suite has passed on; pyproject.toml says the same


def _uvicorn_version() -> tuple[int, ...]:
    from importlib.metadata import version

    try:
        return tuple(int(part) for part in version("uvicorn").split(".")[:2])
    except ValueError:  # a local build ("0.53.0+local" parses; anything odder is unknown)
        return (0, 0)


def media_ws_protocol(
    rate: float = DEFAULT_RATE, on_throttle: Callable[[float], None] | None = None
) -> type | str:
    """The protocol class for uvicorn's `ws=`. `on_throttle(seconds)` is called each time a
    connection over its rate is held back (for a metric)."""
    if _uvicorn_version() < OLDEST_UVICORN:
        return "websockets-sansio"
    try:
        from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    except ImportError:
        return "websockets-sansio"
    needed = (
        "send_receive_event_to_app",
        "data_received",
        "receive",
        "handle_ping",
        "handle_pong",
        "keepalive_timeout",
        "handle_events",
        "handle_parser_exception",
    )
    if not all(hasattr(WebSocketsSansIOProtocol, name) for name in needed):
        return "websockets-sansio"
    burst = rate  # one second's worth

    class HighWaterSansIOProtocol(WebSocketsSansIOProtocol):  # type: ignore[misc, valid-type]
        _pending: bytearray | None = None  # received, not parsed yet (the socket is paused)
        _feed: asyncio.Handle | asyncio.TimerHandle | None = None  # the next slice, scheduled
        _held = False  # reading paused by this class (the base class has `read_paused`)
        _tokens = burst
        _stamp = 0.0
        _warned = False
        _messages = 1  # messages and their bytes on the wire so far (a header is ~6 bytes)
        _wire_bytes = 64

        # -- bounded parsing -------------------------------------------------------------

        def data_received(self, data: bytes) -> None:
            if self._pending is None and len(data) <= SLICE and self._tokens > 0:
                self._parse(data)  # the steady case: one frame, straight through
                return
            if self._pending is None:
                self._pending = bytearray()
            self._pending += data
            self._hold()
            if self._feed is None:
                self._next_slice()

        def _next_slice(self) -> None:
            self._feed = None
            pending = self._pending
            if pending is None or self.transport.is_closing():
                self._pending = None
                return
            size = SLICE
            if not self.close_sent:
                budget = self._refill()
                if budget < MIN_BATCH:  # over its rate: wait until a few messages' worth is back
                    wait = (MIN_BATCH - budget) / rate
                    self._feed = self.loop.call_later(wait, self._next_slice)
                    self._throttled(wait)
                    return
                if self.queue.qsize() >= HIGH_WATER:
                    return  # receive() schedules the next slice when the app takes one
                # Parse about as many messages as the budget allows (this connection's average
                # size so far), so that a throttled flood of tiny frames is parsed a few at a
                # time, not a whole slice's hundreds at once.
                if rate > 0:
                    size = min(
                        SLICE, max(MIN_SLICE, int(budget * self._wire_bytes / self._messages))
                    )
            chunk = bytes(pending[:size])
            del pending[:size]
            if not pending:
                self._pending = None
            self._parse(chunk)
            if self._pending is not None:
                self._feed = self.loop.call_soon(self._next_slice)
            elif self._held:
                self._held = False
                if not self.read_paused:
                    self.transport.resume_reading()

        def _parse(self, data: bytes) -> None:
            # Stock uvicorn, on a parser error (a message over ws_max_size), drops the messages
            # parsed before it in the same read, uncounted; they are delivered first here.
            self.conn.receive_data(data)
            self.handle_events()
            if self.conn.parser_exc is not None:
                self.handle_parser_exception()

        def _hold(self) -> None:
            if not self._held:
                self._held = True
                if not self.read_paused:
                    self.transport.pause_reading()

        async def receive(self):  # type: ignore[no-untyped-def]
            message = await self.queue.get()
            if self.read_paused and self.queue.empty():
                self.read_paused = False
                if not self._held:
                    self.transport.resume_reading()
            if self._pending is not None and self._feed is None:
                self._feed = self.loop.call_soon(self._next_slice)
            return message

        def keepalive_timeout(self) -> None:
            if self._pending is not None or self._held:
                # The pong may be behind what this class has not read yet (a connection over
                # its rate): the peer is alive, it is sending. Wait again instead of closing
                # with 1011, which would throw away everything it sent.
                self.pong_timer = self.loop.call_later(self.ping_timeout, self.keepalive_timeout)
                return
            super().keepalive_timeout()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._feed is not None:
                self._feed.cancel()
                self._feed = None
            self._pending = None
            super().connection_lost(exc)

        # -- the rate ------------------------------------------------------------------------

        def _refill(self) -> float:
            if rate <= 0:
                return self._tokens  # no limit: infinite
            now = self.loop.time()
            if self._stamp:
                self._tokens = min(burst, self._tokens + (now - self._stamp) * rate)
            self._stamp = now
            return self._tokens

        def _charge(self, size: int) -> None:
            self._messages += 1
            self._wire_bytes += size + 6
            if rate > 0:
                self._refill()
                self._tokens -= 1.0 + size / BYTES_PER_COST

        def _throttled(self, wait: float) -> None:
            if on_throttle is not None:
                on_throttle(wait)
            if not self._warned:
                self._warned = True
                client = self.client[0] if self.client else "?"
                log.warning(
                    "a websocket from %s sends more than %.0f messages a second: it is read more slowly "
                    "(nothing is dropped)",
                    client,
                    rate,
                )

        # -- messages --------------------------------------------------------------------

        def send_receive_event_to_app(self) -> None:
            frames = self.frames
            self._charge(len(frames[0]) if len(frames) == 1 else sum(map(len, frames)))
            if self.curr_msg_data_type == "text":
                self._check_text()
            if getattr(self, "read_paused", True) or self.queue.qsize() + 1 >= HIGH_WATER:
                super().send_receive_event_to_app()  # pauses reading as stock uvicorn does
                return
            self.read_paused = True  # below the mark: keep the base class from pausing
            try:
                super().send_receive_event_to_app()
            finally:
                self.read_paused = False

        def _check_text(self) -> None:
            # A text message that is not UTF-8: stock uvicorn logs a traceback (with the
            # offending byte) and fails the connection with 1007, ending the call's media. It
            # is handed to the app as bytes instead, where the ACS decoder counts it as a
            # malformed frame and skips it, like any other.
            data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
            if isinstance(data, memoryview):
                data = bytes(data)
            if data.isascii():
                return
            try:
                data.decode()
            except UnicodeDecodeError:
                self.curr_msg_data_type = "bytes"

        def handle_ping(self) -> None:
            self._charge(0)
            super().handle_ping()

        def handle_pong(self, event) -> None:  # type: ignore[no-untyped-def]
            self._charge(0)
            super().handle_pong(event)

    if rate <= 0:
        # No limit: the budget never runs out.
        HighWaterSansIOProtocol._tokens = float("inf")
    return HighWaterSansIOProtocol


def media_ws_protocol_for(service: Service) -> type | str:
    """The protocol with the service's `CALLSTREAM_MEDIA_MESSAGE_RATE`, counting hold-backs."""
    stats = service.stats

    def on_throttle(_wait: float) -> None:
        stats.media_throttled += 1

    return media_ws_protocol(service.settings.media_message_rate, on_throttle)
