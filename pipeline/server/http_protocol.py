"""uvicorn's h11 protocol with a deadline for a request's headers.

uvicorn closes a keep-alive connection that stays idle after a response, but a connection
that sends nothing, or half a request line, or headers one byte a minute (slowloris), or
whose peer vanished without a FIN, is kept until the process runs out of file descriptors
(bench/flood.py's idle case held 100 of each for as long as it watched). Here a
connection must complete its request headers within `timeout_s` of opening, or of its
previous response; otherwise it is closed. A websocket upgrade completes its headers
at once, so live media and event streams are untouched; the body of a request is not
timed here (the /acs endpoints bound its size).

It leans on uvicorn internals (`conn`, `connection_made`, `data_received`,
`on_response_complete`), so it is used only when they are there; otherwise the stock
protocol serves, unchanged (a test says so).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.service import Service

log = logging.getLogger("callstream.http")

DEFAULT_TIMEOUT_S = 10.0


def http_protocol(
    timeout_s: float = DEFAULT_TIMEOUT_S, on_timeout: Callable[[], None] | None = None
) -> type | str:
    """The protocol class for uvicorn's `http=`; `on_timeout()` counts closed connections."""
    try:
        import h11
        from uvicorn.protocols.http.h11_impl import H11Protocol
    except ImportError:
        return "auto"
    if timeout_s <= 0 or not all(
        hasattr(H11Protocol, n)
        for n in ("connection_made", "data_received", "on_response_complete")
    ):
        return "auto"

    class HeaderDeadlineH11Protocol(H11Protocol):  # type: ignore[misc, valid-type]
        _deadline: asyncio.TimerHandle | None = None

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(timeout_s, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                if on_timeout is not None:
                    on_timeout()
                self.transport.close()

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._deadline is not None and self.conn.their_state is not h11.IDLE:
                self._disarm()  # the headers are in: the request (or the upgrade) goes on

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request on this keep-alive connection

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

    return HeaderDeadlineH11Protocol


def http_protocol_for(service: Service) -> type | str:
    """The protocol with the service's `CALLSTREAM_HTTP_HEADER_TIMEOUT_S`, counting closes."""
    stats = service.stats

    def on_timeout() -> None:
        stats.http_header_timeouts += 1

    return http_protocol(service.settings.http_header_timeout_s, on_timeout)
