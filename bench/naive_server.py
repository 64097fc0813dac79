"""The reference floor of the benchmarking method (bench/README.md): the plainest ACS media server one could write.

A `websockets` (asyncio) server that, per message, does `json.loads`, base64-decodes
`audioData.data` and runs `webrtcvad.Vad(2).is_speech` on the 640-byte frame (one Vad per
connection), and nothing else: no sessions, no store, no events. callstream's cost per
frame is compared with this one's under the same load (see bench/ingest.py).

It counts the messages it received; `GET /count` (plain HTTP on the same port) returns
that count, so the load generator can check frames handled / frames sent the same way it
reads `callstream_frames_received` from callstream's `/metrics`. The count is also printed
on exit.

    python bench/naive_server.py --port 8766
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import signal
from http import HTTPStatus

import webrtcvad
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request

received = 0


async def handler(ws: ServerConnection) -> None:
    global received
    vad = webrtcvad.Vad(2)
    with contextlib.suppress(Exception):
        async for raw in ws:
            received += 1
            msg = json.loads(raw)
            audio = msg.get("audioData")
            if audio is None:
                continue
            pcm = base64.b64decode(audio["data"])
            if len(pcm) == 640:
                vad.is_speech(pcm, 16000)


def process_request(connection: ServerConnection, request: Request):
    if request.path == "/count":
        return connection.respond(HTTPStatus.OK, f"{received}\n")
    if request.path == "/readyz":
        return connection.respond(HTTPStatus.OK, "ok\n")
    return None


async def main(port: int) -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(
        handler,
        "127.0.0.1",
        port,
        process_request=process_request,
        max_size=1 << 20,
        compression=None,
    ):
        await stop
    print(f"naive_server: {received} messages received", flush=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8766)
    asyncio.run(main(ap.parse_args().port))
