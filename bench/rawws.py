"""A websocket client on a raw asyncio transport, shared by the benchmark scripts.

Not the `websockets` client, because the benchmarks need what it hides: the load
generator sends pre-encoded frames (one `transport.write` per frame pair keeps hundreds of
calls real time on one core) and times its own pings, and the bad-input cases write what
no library would (malformed, oversized, fragmented frames) or stop reading on purpose.
The handshake and frame parsing live here once; subclasses decide what a frame means.
"""

from __future__ import annotations

import asyncio
import base64
import os

import numpy as np

MASK = b"\x5a\x17\xc3\x8e"


def ws_frame(opcode: int, payload: bytes, mask: bytes = MASK) -> bytes:
    """A complete client->server frame (FIN set, masked as RFC 6455 requires)."""
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 1 << 16:
        head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    data = np.frombuffer(payload, np.uint8) ^ np.resize(np.frombuffer(mask, np.uint8), n)
    return head + mask + data.tobytes()


class WsClient(asyncio.Protocol):
    """Sends the upgrade request, resolves ``open`` on a 101, then hands each complete
    server frame to ``on_frame``."""

    def __init__(
        self, host: str, port: int, path: str, headers: dict[str, str] | None = None
    ) -> None:
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        ).encode()
        self.transport: asyncio.Transport | None = None
        self.open: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.buf = bytearray()
        self.handshaken = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self.request)  # type: ignore[attr-defined]

    def on_handshake(self) -> bool:
        """Called once the server accepted the upgrade; False leaves what follows unparsed."""
        return True

    def on_frame(self, opcode: int, payload: bytes) -> None:
        raise NotImplementedError

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.handshaken:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self.buf[:end]).split(b"\r\n", 1)[0]
            del self.buf[: end + 4]
            if b" 101 " not in status + b" ":
                self.open.set_exception(ConnectionError(status.decode(errors="replace")))
                return
            self.handshaken = True
            self.open.set_result(None)
            if not self.on_handshake():
                return
        buf = self.buf
        while len(buf) >= 2:
            opcode, n = buf[0] & 0x0F, buf[1] & 0x7F
            off = 2
            if n == 126:
                if len(buf) < 4:
                    return
                n, off = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n, off = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < off + n:
                return
            payload = bytes(buf[off : off + n])
            del buf[: off + n]
            self.on_frame(opcode, payload)
