"""callstream's `serve`, with uvicorn's websocket implementation as a parameter.

An experiment only (pipeline/cli.py pins `ws="websockets-sansio"`): the same app, settings
and Service, served with another uvicorn websocket protocol, so bench/ingest.py can
compare the protocol layer's cost (target `callstream:websockets`). Reads the same
CALLSTREAM_* environment as `python -m pipeline.cli serve`.

    CALLSTREAM_STT=acs python bench/serve_variant.py --ws websockets --port 8080
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

if __name__ == "__main__":
    import uvicorn

    from models.settings import load_settings
    from pipeline.app import create_app
    from pipeline.cli import setup_logging
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
        ws=args.ws,
        ws_max_size=1 << 20,
        log_level="warning",
        timeout_graceful_shutdown=30,
    )
