"""One media owner per live call: which `/media` websocket streams each stream of a call.

WHY: a call's payment guard and transcript trust whatever arrives on its media socket. ACS
media tokens are not tied to a call (and with ``CALLSTREAM_MEDIA_AUTH=off`` there is no
token at all), so anyone who can reach ``/media`` could open a second socket for a live
call id and speak as the agent ("your payment has gone through"), closing the payment
window. So a call has one owner socket per stream, and a second socket for a stream that
is already streaming is refused (close code 1008, counted, logged).

Streams: with ACS's own transcription (``CALLSTREAM_STT=acs``) a call legitimately has
two sockets, ACS's audio (`AudioMetadata`, `AudioData`, `DtmfData`) and ACS's transcription
(`TranscriptionMetadata`, `TranscriptionData`), both to ``/media``: one owner each, told
apart by a socket's first frame. With any other engine a call has one stream, and one
owner whatever the socket sends, decided at the handshake.

What "streaming" means, so that ACS's reconnect is never refused by a dead socket: a
socket that closed or dropped has released its stream (a reconnect within the grace takes
it at once). A socket whose peer vanished without a trace (a half-open TCP connection, a
balancer that failed over) still looks connected: an audio socket that has received
nothing for `OWNER_STALE_S` is that (ACS sends a frame every 20 ms, silent or not), so a
newcomer displaces it, and it is closed. A transcription socket is quiet whenever nobody
speaks, so it owns its stream for as long as it is connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from pipeline.ingest.session import CallSession

log = logging.getLogger(__name__)

AUDIO = "audio"
TRANSCRIPTION = "transcription"
ONE_STREAM = "media"  # the only stream of a call when the engine makes its own text
# An audio socket silent this long is a dead peer: 100 of ACS's 20 ms frames missed.
OWNER_STALE_S = 2.0
_POLL_S = 0.02  # one ACS frame
REFUSED_CLOSE = 1008  # policy violation, as for a bad media token
REFUSED_REASON = "another connection streams this call"
SECOND_SOCKET = "second-socket"  # the `reason` label of callstream_media_refused
# The key of a hand-over answer that says no: the call's socket streams on that replica.
HANDOVER_REFUSED = "refused"

_STREAM_OF_KIND = {
    "AudioMetadata": AUDIO,
    "AudioData": AUDIO,
    "DtmfData": AUDIO,
    "TranscriptionMetadata": TRANSCRIPTION,
    "TranscriptionData": TRANSCRIPTION,
}


class _Kind(msgspec.Struct):
    kind: str = ""


_kind_decoder = msgspec.json.Decoder(_Kind)


def stream_of(raw: bytes | str) -> str | None:
    """`AUDIO` or `TRANSCRIPTION` for a frame whose kind says which, else None (malformed,
    unknown): only the ``kind`` field is read, and only until a socket has said."""
    try:
        return _STREAM_OF_KIND.get(_kind_decoder.decode(raw).kind)
    except (msgspec.DecodeError, RecursionError, UnicodeError):
        return None


class MediaSocket:
    """One accepted ``/media`` websocket of a call: the streams it owns, the stream its
    first frame said, and how many messages it has received (the media loop adds 1 per
    message, nothing more)."""

    __slots__ = (
        "call_id", "closed", "correlation", "displaced", "owns", "pure", "received", "send", "session",
        "settled", "stream",
    )  # fmt: skip

    def __init__(
        self, call_id: str, session: CallSession, send: Any, pure: bool, correlation: str | None
    ) -> None:
        self.call_id = call_id
        self.correlation = correlation  # ACS's x-ms-call-correlation-id handshake header
        self.session = session
        self.send = send
        self.owns: set[str] = set()  # its call's streams it owns: its frames are the call's
        self.stream: str | None = None  # what its first frame said (AUDIO, TRANSCRIPTION)
        # Joined a call another socket was streaming (ACS's second transport, or not ACS at
        # all): every frame must be of a stream it owns, so it cannot speak on the other.
        self.pure = pure
        self.received = 0
        self.displaced = False  # a newcomer took its stream (it was silent: a dead peer)
        self.closed = False
        # Nothing left to check per frame (it owns its stream, and may send any frame): the
        # media loop's one test per message. False until then, and for a pure socket.
        self.settled = False

    async def streaming(self) -> bool:
        """Is this socket its call's live stream? Waits, at most `OWNER_STALE_S`, for one
        more frame of an audio socket (or of one that has not said what it streams)."""
        if self.closed or self.displaced or self.session.ended:
            return False
        if self.stream == TRANSCRIPTION or TRANSCRIPTION in self.owns:
            return True
        seen = self.received
        deadline = time.monotonic() + OWNER_STALE_S
        while time.monotonic() < deadline:
            await asyncio.sleep(_POLL_S)
            if self.closed or self.displaced:
                return False
            if self.received != seen:
                return True
        return False


class MediaOwners:
    """The owner socket of each stream of each call on this replica (one per service).

    ``per_stream``: a call may have an audio and a transcription owner (ACS transcription
    engine); otherwise one owner per call, decided at the handshake.
    """

    def __init__(self, per_stream: bool) -> None:
        self.per_stream = per_stream
        self._owners: dict[str, dict[str, MediaSocket]] = {}  # call id -> stream -> owner
        # call id -> (its session, the correlation id its first owner came with): every later
        # socket of that call must come with the same one (see `_same_call`).
        self._bound: dict[str, tuple[CallSession, str]] = {}
        self.open = 0  # media sockets connected now (callstream_media_sockets)
        self.displaced = 0  # owners displaced for silence (callstream_media_displaced)

    def connect(
        self, call_id: str, session: CallSession, send: Any, correlation: str | None = None
    ) -> MediaSocket:
        """A socket accepted for ``session``: pure if another socket is connected to it."""
        self.open += 1
        pure = self.per_stream and session.connections > 0
        return MediaSocket(call_id, session, send, pure, correlation)

    def _same_call(self, sock: MediaSocket) -> bool:
        """ACS sends a call's correlation id on every media handshake of that call (audio,
        transcription, reconnects); a call id is in URLs and logs, its correlation id is
        not. Once a call's first owner came with one, a socket without the same one never
        owns a stream of it: neither a free stream nor one whose owner went quiet."""
        bound = self._bound.get(sock.call_id)
        if bound is not None and bound[0] is sock.session and not sock.session.ended:
            return sock.correlation == bound[1]
        if sock.correlation:
            self._bound[sock.call_id] = (sock.session, sock.correlation)
        else:
            self._bound.pop(sock.call_id, None)
        return True

    def to_claim(self, sock: MediaSocket, raw: bytes | str) -> str | None:
        """The stream ``sock`` must own before ``raw`` is its call's, or None: the frame goes
        on (a stream it owns, or no stream at all: malformed and unknown frames are the
        session's to count). Sets what the socket streams, and whether it is settled."""
        stream = stream_of(raw)
        if sock.stream is None:
            sock.stream = stream
        sock.settled = bool(sock.owns) and sock.stream is not None and not sock.pure
        if stream is None or not self.per_stream or stream in sock.owns:
            return None
        return stream

    async def claim(self, sock: MediaSocket, slot: str) -> bool:
        """Make ``sock`` the owner of its call's ``slot`` (`ONE_STREAM`, or with two streams
        per call `AUDIO` or `TRANSCRIPTION`); False if another socket streams it."""
        if not self._same_call(sock):
            return False
        owners = self._owners.setdefault(sock.call_id, {})
        displaced: MediaSocket | None = None
        while (holder := owners.get(slot)) is not None and holder is not sock:
            if await holder.streaming():
                return False
            if owners.get(slot) is holder:  # unchanged while we listened: a dead peer
                displaced = holder
                break
        owners[slot] = sock
        self._owners[sock.call_id] = owners  # (dropped meanwhile if its last owner left)
        sock.owns.add(slot)
        sock.settled = sock.stream is not None and not sock.pure
        if displaced is not None:
            await self._displace(displaced, slot)
        return True

    async def _displace(self, old: MediaSocket, slot: str) -> None:
        """The newcomer owns the stream: nothing the old socket sends (should it wake) is
        the call's any more, and it is closed. (An old socket of a call that has ended here
        since, handed over say, is only closed.)"""
        for stream, holder in list(self._owners.get(old.call_id, {}).items()):
            if holder is old and stream != slot:
                del self._owners[old.call_id][stream]
        old.owns.clear()
        old.settled = False
        old.displaced = True
        if not old.session.ended:
            self.displaced += 1
            log.warning(
                "call %r: a media connection silent for %g s was displaced by a new one",
                old.call_id,
                OWNER_STALE_S,
            )
            old.session.audit("media.displaced", {"stream": slot, "silentS": OWNER_STALE_S})
        with contextlib.suppress(Exception):  # it is gone, most likely
            await old.send(
                {"type": "websocket.close", "code": REFUSED_CLOSE, "reason": "displaced"}
            )

    def release(self, sock: MediaSocket) -> None:
        """The socket closed: its stream is free (a reconnect takes it at once)."""
        if sock.closed:
            return
        sock.closed = True
        self.open -= 1
        bound = self._bound.get(sock.call_id)
        if bound is not None and bound[0] is sock.session and sock.session.ended:
            del self._bound[sock.call_id]
        owners = self._owners.get(sock.call_id)
        if owners is None:
            return
        for slot, holder in list(owners.items()):
            if holder is sock:
                del owners[slot]
        if not owners:
            del self._owners[sock.call_id]

    async def streaming(self, call_id: str) -> bool:
        """Does a socket on this replica stream the call? (Asked before a hand-over.)"""
        owners = list(self._owners.get(call_id, {}).values())
        if not owners:
            return False
        return any(await asyncio.gather(*(o.streaming() for o in owners)))
