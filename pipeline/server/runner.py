"""Running the ASGI app: uvicorn with a graceful drain, and N worker processes on one port.

Drain (SIGTERM, as Kubernetes sends it): `/readyz` turns false and `/media` refuses new
connections at once, the calls in progress go on until they end or the grace period
(`CALLSTREAM_DRAIN_GRACE_S`) runs out, then uvicorn shuts down, the service ends what is
left ("server-shutdown"), flushes the store and the bus, and the process exits 0. A
second signal skips the wait.

`--workers N` starts N `serve` processes that each bind the port with SO_REUSEPORT, so
the kernel spreads connections over them; calls then live in different processes, which
is why it needs the Redis bus (an agent's stream and a call's media may land on
different workers). The parent only supervises: it forwards SIGTERM/SIGINT and restarts
a worker that dies.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import subprocess
import sys
import time
from types import FrameType
from typing import TYPE_CHECKING

import uvicorn

from pipeline.observability.gc_pauses import freeze_startup_heap

if TYPE_CHECKING:
    from models.settings import Settings
    from pipeline.service import Service

log = logging.getLogger("callstream")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, service: Service, grace_s: float) -> None:
        super().__init__(config)
        self.service = service
        self.grace_s = grace_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._drain_task: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets=sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            # What exists now lives as long as the process: full collections need not walk it.
            log.info("startup heap frozen: %d objects", freeze_startup_heap())
            for line in where_and_how(self.service.settings):
                log.info("%s", line)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # The signal is not handed to uvicorn's own handler: it would re-raise it after a
        # clean shutdown, and the process would end "killed by SIGTERM" instead of 0.
        if self._loop is None or self._drain_task is not None or self.service.draining:
            self.should_exit = True
            if sig == signal.SIGINT and self._drain_task is not None:
                self.force_exit = True
            return
        self._loop.call_soon_threadsafe(self._start_drain, sig)

    def _start_drain(self, sig: int) -> None:
        if self._drain_task is None:
            self._drain_task = asyncio.create_task(self._drain(sig))

    async def _drain(self, sig: int) -> None:
        service = self.service
        service.draining = True
        live = len(service.calls)
        log.info(
            "%s: draining (%d calls in progress, grace period %g s)",
            signal.Signals(sig).name,
            live,
            self.grace_s,
        )
        deadline = time.monotonic() + self.grace_s
        while service.calls and time.monotonic() < deadline and not self.should_exit:  # noqa: ASYNC110 - a 0.2 s poll of a dict
            await asyncio.sleep(0.2)
        if service.calls:
            # Ended here, before uvicorn closes their websockets, so that they end as
            # what they are (a shutdown), not as a media disconnection.
            log.warning("drain: grace period over, ending %d calls", len(service.calls))
            for session in list(service.calls.values()):
                session.end_now("server-shutdown")
            closing = [s.close_task for s in service.calls.values() if s.close_task is not None]
            if closing:
                await asyncio.wait(closing, timeout=service.final_timeout_s)
        else:
            log.info("drain: every call has ended")
        self.should_exit = True


def where_and_how(settings: Settings) -> list[str]:
    """What a platform engineer needs at start: where the service listens, where the console
    is, and what it runs on. No secret: store and bus URLs lose their passwords, tokens and
    keys are only said to be set."""
    from models.settings import mask_url
    from pipeline.api.auth import media_auth_mode
    from pipeline.api.credentials import api_auth_enabled
    from pipeline.version import version

    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    base = f"http://{host}:{settings.port}"
    lines = [f"callstream {version()} listening on {base}"]
    if settings.host in ("0.0.0.0", "::", ""):
        lines[0] += " (all interfaces)"
    public = (settings.public_url or "").rstrip("/")
    lines.append(
        f"console {base}/console, media {base.replace('http', 'ws', 1)}/media, events {base.replace('http', 'ws', 1)}/events"
        + (f"; ACS is given {public}" if public else "")
    )
    if settings.acs_configured:
        acs = f"ACS {mask_url(settings.acs_endpoint or 'from the connection string')}, recording {settings.recording or 'on'}"
    else:
        acs = "ACS not configured (no recording control)"
    store = mask_url(settings.store) if settings.store else f"SQLite {settings.store_url}"
    lines.append(
        f"settings: speech {settings.stt}, {acs}, store {store}, bus {mask_url(settings.bus)}, "
        f"media auth {media_auth_mode(settings)}, "
        f"API {'token or JWT required' if api_auth_enabled(settings) else 'open (no token configured)'}, "
        f"sentiment {settings.sentiment}, translation {settings.translator}"
        + (
            f" to {settings.translate_to}"
            if settings.translator != "off" and settings.translate_to
            else ""
        )
    )
    return lines


def _listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(False)
    return sock


def run_server(settings: Settings, reuse_port: bool = False) -> int:
    from pipeline.api.app import create_app
    from pipeline.server.http_protocol import http_protocol_for
    from pipeline.server.ws_protocol import media_ws_protocol_for
    from pipeline.service import Service

    service = Service(settings)
    config = uvicorn.Config(
        create_app(service),
        host=settings.host,
        port=settings.port,
        http=http_protocol_for(service),
        ws=media_ws_protocol_for(service),
        ws_max_size=1 << 20,
        log_level="warning",
        log_config=None,  # uvicorn logs propagate to the root handler, which has the scrubber
        timeout_graceful_shutdown=30,
    )
    server = DrainingServer(config, service, settings.drain_grace_s)
    sockets = [_listening_socket(settings.host, settings.port)] if reuse_port else None
    asyncio.run(server.serve(sockets=sockets))
    return 0 if server.started else 1


def supervise_workers(argv: list[str], workers: int) -> int:
    """Start ``workers`` copies of ``callstream serve --reuse-port``; forward signals;
    restart one that dies; exit when all have stopped after a signal."""
    cmd = [sys.executable, "-m", "pipeline.cli.commands", "serve", "--reuse-port", *argv]
    procs: list[subprocess.Popen] = [subprocess.Popen(cmd) for _ in range(workers)]
    stopping = False

    def forward(sig: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for p in procs:
            if p.poll() is None:
                p.send_signal(sig)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    log.info(
        "callstream: %d worker processes on one port (pids %s)",
        workers,
        ", ".join(str(p.pid) for p in procs),
    )
    restarts: list[float] = []
    while True:
        time.sleep(0.2)
        if stopping:
            if all(p.poll() is not None for p in procs):
                codes = [p.returncode for p in procs]
                return 0 if all(c == 0 for c in codes) else 1
            continue
        for i, p in enumerate(procs):
            if p.poll() is not None and not stopping:
                now = time.monotonic()
                restarts = [t for t in restarts if now - t < 60] + [now]
                if len(restarts) > 5 * workers:
                    log.error("workers keep dying; giving up")
                    forward(signal.SIGTERM, None)
                    break
                log.error("worker pid %d exited with %s; starting another", p.pid, p.returncode)
                procs[i] = subprocess.Popen(cmd)


def worker_env_check(settings: Settings, workers: int) -> str | None:
    """Why ``--workers`` cannot run with these settings (None: it can)."""
    if workers > 1 and not settings.bus.startswith(("redis://", "rediss://", "unix://")):
        return (
            f"--workers {workers} needs the Redis bus: calls and their subscribers can land on "
            "different worker processes. Set CALLSTREAM_BUS=redis://host:6379/0 (or run one worker)."
        )
    return None


__all__ = ["DrainingServer", "run_server", "supervise_workers", "worker_env_check"]
