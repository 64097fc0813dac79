"""callstream's `serve`, with uvicorn's websocket implementation as a parameter.

An experiment only (pipeline/cli/commands.py pins `ws="websockets-sansio"`): the same app, settings
and Service, served with another uvicorn websocket protocol, so bench/ingest.py can
compare the protocol layer's cost (target `callstream:websockets`). Reads the same
CALLSTREAM_* environment as `python -m pipeline.cli.commands serve`.

    CALLSTREAM_STT=acs python bench/serve_variant.py --ws websockets --port 8080
    CALLSTREAM_STT=acs python bench/serve_variant.py --ws highwater --port 8080

`--ws highwater` is uvicorn's `websockets-sansio` protocol, changed in one respect: it
pauses reading only when 32 messages are queued for the app, instead of after every
message (which costs an epoll unregister + register per frame). It tests suggestion 1 of
bench/RESULTS.md without touching pipeline/.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

HIGH_WATER = 32


def highwater_protocol() -> type:
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    class HighWaterSansIOProtocol(WebSocketsSansIOProtocol):
        def send_receive_event_to_app(self) -> None:
            if self.read_paused or self.queue.qsize() + 1 >= HIGH_WATER:
                super().send_receive_event_to_app()  # pauses reading as before
                return
            self.read_paused = True  # keeps the base class from pausing below the mark
            try:
                super().send_receive_event_to_app()
            finally:
                self.read_paused = False

    return HighWaterSansIOProtocol


if __name__ == "__main__":
    import uvicorn

    from models.settings import load_settings
    from pipeline.api.app import create_app
    from pipeline.cli.log_setup import setup_logging
    from pipeline.service import Service

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--ws", default="websockets-sansio", help="websockets-sansio | websockets | wsproto"
    )
    ap.add_argument("--port", type=int)
    args = ap.parse_args()
    settings = load_settings(overrides={"port": args.port} if args.port else {})
    setup_logging(settings.log_level)
    uvicorn.run(
        create_app(Service(settings)),
        host=settings.host,
        port=settings.port,
        ws=highwater_protocol() if args.ws == "highwater" else args.ws,
        ws_max_size=1 << 20,
        log_level="warning",
        timeout_graceful_shutdown=30,
    )
