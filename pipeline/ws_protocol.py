"""uvicorn's websockets (sans-I/O) protocol, pausing reads only under real backlog.

Stock uvicorn pauses the socket after every received message and resumes it when the
app takes that message: two epoll system calls per 20 ms audio frame, which the ingest
benchmark (bench/RESULTS.md) measured at ~18% of the server's CPU. This subclass pauses
only when HIGH_WATER messages wait for the app, so memory per connection stays bounded
while a steadily-keeping-up consumer never pays the toggle. It leans on uvicorn internals
(`read_paused`, `queue`, `send_receive_event_to_app`), so it is used only when they are
there; otherwise the stock protocol serves, unchanged.
"""

from __future__ import annotations

HIGH_WATER = 32


def media_ws_protocol() -> type | str:
    try:
        from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
    except ImportError:
        return "websockets-sansio"
    if not hasattr(WebSocketsSansIOProtocol, "send_receive_event_to_app"):
        return "websockets-sansio"

    class HighWaterSansIOProtocol(WebSocketsSansIOProtocol):  # type: ignore[misc, valid-type]
        def send_receive_event_to_app(self) -> None:
            if getattr(self, "read_paused", True) or self.queue.qsize() + 1 >= HIGH_WATER:
                super().send_receive_event_to_app()  # pauses reading as stock uvicorn does
                return
            self.read_paused = True  # below the mark: keep the base class from pausing
            try:
                super().send_receive_event_to_app()
            finally:
                self.read_paused = False

    return HighWaterSansIOProtocol
