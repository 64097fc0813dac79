"""The one piece every fake of a cloud service shares: a stdlib HTTP server on loopback,
served from a background thread, started and stopped (or used as a context manager)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class LoopbackServer:
    """Subclasses give the handler class and may hook start and stop."""

    thread_name = "fake"

    def __init__(self, port: int = 0) -> None:
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def _make_server(self, handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
        raise NotImplementedError

    def _started(self) -> None:
        """Called after the server thread started."""

    def _stopping(self) -> None:
        """Called before the server shuts down (wake sleeping handlers here)."""

    def _stopped(self) -> None:
        """Called after the server thread ended."""

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._server.server_address[1]

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> str:
        if self._server is None:
            server = self._make_server(self.handler)  # type: ignore[attr-defined]
            server.fake = self  # type: ignore[attr-defined]
            self._server = server
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=self.thread_name,
                daemon=True,
            )
            self._thread.start()
            self._started()
        return self.base_url  # type: ignore[attr-defined]

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self._stopped()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
