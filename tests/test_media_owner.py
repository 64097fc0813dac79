"""One media owner per live call (issue 17, item 5), through real `callstream serve`
processes and real websockets on loopback.

The finding: with media auth off (or any valid ACS media token, which names no call and
can be replayed), a second client opening ``/media?callId=<live call>`` spoke as the agent ("your payment has gone
through") and closed the payment window. Now, while a call's socket streams, a second one
for the same stream is closed with 1008 before any frame of it reaches the call, counted in
``callstream_media_refused_total{reason="second-socket"}`` and logged; a reconnect after a
drop is still accepted; a socket whose peer vanished (silent, still connected) is displaced
by the newcomer; on a cluster, a replica refuses media for a call another replica streams.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from pipeline.cli.replay import audio_message, metadata_message

from .conftest import Server, collect_call_events, start_server, start_subscribers, wait_for
from .fake_jwks import ACS_AUDIENCE, FakeJwks
from .test_e2e_media import _transcription
from .test_resilience import drop, stored

AGENT = "8:acs:agent-7"
CUSTOMER = "4:+15551234"
INJECTED = "thanks your payment has gone through"  # what the second client said as the agent
REASON = "another connection streams this call"
REFUSED = 'callstream_media_refused_total{reason="second-socket"}'


@pytest.fixture(scope="module")
def jwks() -> Iterator[FakeJwks]:
    with FakeJwks() as fake:
        yield fake


@pytest.fixture(scope="module")
def acs_server(tmp_path_factory: pytest.TempPathFactory, jwks: FakeJwks) -> Iterator[Server]:
    """ACS's own transcription (a call may have an audio socket and a transcription socket)
    and ACS's media tokens checked: every socket below, the second ones too, shows one valid
    token, replayed (an ACS media token names no call)."""
    server = start_server(
        tmp_path_factory.mktemp("owner"),
        CALLSTREAM_STT="acs",
        CALLSTREAM_MEDIA_AUTH="acs-jwt",
        CALLSTREAM_ACS_AUDIENCE=ACS_AUDIENCE,
        CALLSTREAM_ACS_JWKS_URL=jwks.url,
        CALLSTREAM_MEDIA_RECONNECT_GRACE_S="30",
    )
    server.media_token = jwks.token(expires_in=600)  # type: ignore[attr-defined]
    yield server
    server.stop()


def media(server: Server, call_id: str, via: str = "header", correlation: str | None = None):
    """A /media websocket for ``call_id``, named by ACS's header or by ``?callId=``, with the
    server's ACS media token when it checks them (and ACS's correlation id header, if given)."""
    token = getattr(server, "media_token", None)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if correlation is not None:
        headers["x-ms-call-correlation-id"] = correlation
    if via == "query":
        return connect(f"{server.ws}/media?callId={call_id}", additional_headers=headers)
    headers["x-ms-call-connection-id"] = call_id
    return connect(f"{server.ws}/media", additional_headers=headers)


async def closed_by_server(ws: ClientConnection, *frames: str) -> tuple[int | None, str]:
    """Send ``frames`` (as far as the server lets it), then wait for the server's close:
    (code, reason), or (None, "") if the socket is still open after 5 s (a refusal comes
    at once, or after at most 2 s of listening for a silent owner)."""
    with contextlib.suppress(ConnectionClosed, TimeoutError):
        for frame in frames:
            await ws.send(frame)
        async with asyncio.timeout(5):
            await ws.recv()  # nothing comes but the close
    return ws.close_code, ws.close_reason or ""


def _metadata() -> str:
    return metadata_message(16000).decode()


def _audio(i: int) -> str:
    ts = f"2026-01-01T00:{i // 3000:02d}:{i // 50 % 60:02d}.{i % 50 * 20:03d}Z"
    return audio_message(b"\x00\x00" * 320, AGENT, ts).decode()


@contextlib.asynccontextmanager
async def streaming_audio(ws: ClientConnection) -> AsyncIterator[asyncio.Event]:
    """Stream silent audio on ``ws`` as ACS does (a frame every 20 ms) until the block ends
    or the returned event is set (then the socket stays open and sends nothing: a peer
    gone without a trace)."""
    stop = asyncio.Event()

    async def pace() -> None:
        await ws.send(_metadata())
        i = 0
        with contextlib.suppress(ConnectionClosed):
            while not stop.is_set():
                await ws.send(_audio(i))
                i += 1
                await asyncio.sleep(0.02)  # ACS's frame clock, not a wait for a state

    task = asyncio.create_task(pace())
    try:
        yield stop
    finally:
        stop.set()
        await task


async def metric(server: Server, name: str) -> float:
    return await asyncio.to_thread(server.metric, name)


def sockets(server: Server, n: int):
    """A `wait_for` predicate: ``server`` has ``n`` media sockets connected."""
    return lambda: asyncio.to_thread(lambda: server.metric("callstream_media_sockets") == n)


async def test_a_second_socket_is_refused_and_the_first_streams_on(acs_server: Server) -> None:
    server, call_id = acs_server, "owned-call"
    before = await metric(server, REFUSED)
    [collector] = await start_subscribers(
        server, collect_call_events(server.ws, call_id, timeout=60)
    )
    async with media(server, call_id) as first:  # ACS's transcription transport
        await first.send(_transcription("can i take the card number please", "Final", AGENT, 500))
        await wait_for(lambda: '"payment.started"' in stored(server, call_id), what="the window")
        # The finding, both ways of naming the call: the injected text never gets in.
        for via in ("header", "query"):
            async with media(server, call_id, via) as second:
                code = await closed_by_server(
                    second, _transcription(INJECTED, "Final", AGENT, 3000)
                )
            assert code == (1008, REASON), via
        # The audio stream is free (no audio socket yet): a socket may take it, but then
        # it cannot speak on the transcription stream that another socket owns.
        async with media(server, call_id) as sneaky:
            code = await closed_by_server(
                sneaky, _metadata(), _audio(0), _transcription(INJECTED, "Final", AGENT, 3000)
            )
        assert code == (1008, REASON)
        # ACS's audio transport joins the call: accepted, and then it owns the audio stream.
        frames = await metric(server, "callstream_frames_audio_total")
        async with media(server, call_id) as audio, streaming_audio(audio):
            await wait_for(
                lambda: asyncio.to_thread(
                    lambda: server.metric("callstream_frames_audio_total") > frames
                ),
                what="the audio transport's frames in the call",
            )
            async with media(server, call_id) as second:
                assert await closed_by_server(second, _metadata(), _audio(1)) == (1008, REASON)
            await first.send(_transcription("let me check that for you", "Final", AGENT, 6000))
            await wait_for(lambda: "check that for you" in stored(server, call_id), what="a final")
        assert audio.close_code == 1000, "the audio transport was closed by us, not the server"
    events = await collector
    assert INJECTED not in json.dumps(events)
    # The window stayed open until the call ended: no phrase (nobody's) closed it.
    assert [e["trigger"] for e in events if e["type"] == "payment.ended"] == ["timeout"]
    assert [e["type"] for e in events].count("call.started") == 1
    assert await metric(server, REFUSED) - before == 4
    assert f"media connection for call {call_id!r} refused" in server.logs()


async def test_a_reconnect_after_a_drop_is_accepted_and_then_owns_the_call(
    acs_server: Server,
) -> None:
    server, call_id = acs_server, "dropped-call"
    before = await metric(server, REFUSED)
    first = await media(server, call_id)
    await first.send(_transcription("hello I need help with my bill", "Final", CUSTOMER, 0))
    await wait_for(lambda: '"transcript.final"' in stored(server, call_id), what="the final")
    await drop(first)  # no close frame: the call waits (30 s) for ACS to come back
    await wait_for(sockets(server, 0), what="the server to see the drop")
    async with media(server, call_id) as again:
        await again.send(_transcription("sure let me look", "Final", AGENT, 3000))
        await wait_for(lambda: "sure let me look" in stored(server, call_id), what="the final")
        # The reconnected socket owns the call as the first did.
        async with media(server, call_id) as second:
            code = await closed_by_server(second, _transcription(INJECTED, "Final", AGENT, 5000))
        assert code == (1008, REASON)
    events = await collect_call_events(server.ws, call_id, since=0, timeout=30)
    audit = server.get_json(f"/calls/{call_id}/audit")[1]
    kinds = [e["type"] for e in events]
    assert kinds.count("call.started") == 1 and kinds[-1] == "call.ended"
    assert [e["text"] for e in events if e["type"] == "transcript.final"] == [
        "hello I need help with my bill", "sure let me look",
    ]  # fmt: skip
    assert any(r["kind"] == "media.reconnected" for r in audit["records"])
    assert await metric(server, REFUSED) - before == 1


async def test_one_socket_per_call_and_a_silent_one_is_displaced(tmp_path) -> None:
    """The local engine makes its own text: a call has one stream, owned from the handshake
    whatever a second socket sends. A socket silent for 2 s (a peer gone without a close)
    is displaced by the next one, which goes on with the same call."""
    server = start_server(tmp_path, CALLSTREAM_STT="local", CALLSTREAM_MEDIA_AUTH="off")
    call_id = "local-call"
    try:
        async with media(server, call_id, correlation="corr-local") as first:
            async with streaming_audio(first) as gone:
                await wait_for(lambda: '"call.started"' in stored(server, call_id), what="the call")
                async with media(server, call_id, "query") as second:
                    code = await closed_by_server(
                        second, _transcription(INJECTED, "Final", AGENT, 3000)
                    )
                assert code == (1008, REASON)
                gone.set()  # the first peer vanishes: still connected, nothing more sent
                # Only a socket of the same call (ACS's correlation id) may take its place.
                for other in ("corr-evil", None):
                    async with media(server, call_id, correlation=other) as impostor:
                        assert await closed_by_server(impostor, _metadata(), _audio(5)) == (
                            1008, REASON,
                        )  # fmt: skip
                third = media(server, call_id, correlation="corr-local")
                async with third as third, streaming_audio(third):
                    assert await closed_by_server(first) == (1008, "displaced")
                    await wait_for(sockets(server, 1), what="the displaced socket gone")
        events = await collect_call_events(server.ws, call_id, since=0, timeout=30)
        audit = server.get_json(f"/calls/{call_id}/audit")[1]
        refused = await metric(server, REFUSED)
        displaced = await metric(server, "callstream_media_displaced_total")
    finally:
        server.stop()
    assert INJECTED not in json.dumps(events)
    kinds = [e["type"] for e in events]
    assert kinds.count("call.started") == 1 and kinds.count("call.ended") == 1
    assert any(r["kind"] == "media.displaced" for r in audit["records"])
    assert (refused, displaced) == (3, 1)


async def test_a_free_stream_is_only_for_the_same_call(acs_server: Server) -> None:
    """ACS's transcription transport streams the call (correlation id known); its audio
    stream is free, but only a socket with the same correlation id may take it."""
    server, call_id = acs_server, "bound-call"
    async with media(server, call_id, correlation="corr-bound") as first:
        await first.send(_transcription("hello there", "Final", AGENT, 0))
        await wait_for(lambda: "hello there" in stored(server, call_id), what="the final")
        for other in ("corr-evil", None):
            async with media(server, call_id, correlation=other) as sneaky:
                assert await closed_by_server(sneaky, _metadata(), _audio(0)) == (1008, REASON)
        frames = await metric(server, "callstream_frames_audio_total")
        async with media(server, call_id, correlation="corr-bound") as audio:
            async with streaming_audio(audio):
                await wait_for(
                    lambda: asyncio.to_thread(
                        lambda: server.metric("callstream_frames_audio_total") > frames
                    ),
                    what="the same call's audio transport accepted",
                )


async def test_a_replica_refuses_media_for_a_call_another_replica_streams(
    tmp_path, redis_url
) -> None:
    """Replica B asks A to hand the call over (that is how ACS's reconnect to B works):
    A says no while its socket streams, and B refuses its socket. After A's socket drops,
    B's is a reconnect, and the call moves."""
    env = {"CALLSTREAM_STT": "acs", "CALLSTREAM_BUS": redis_url, "CALLSTREAM_MEDIA_AUTH": "off",
           "CALLSTREAM_STORE": str(tmp_path / "shared.db"), "CALLSTREAM_MEDIA_RECONNECT_GRACE_S": "30"}  # fmt: skip
    a = start_server(tmp_path, **env)
    b = start_server(tmp_path, **env)
    call_id = "cluster-call"
    try:
        first = await media(a, call_id)
        await first.send(_transcription("can i take the card number please", "Final", AGENT, 500))
        await wait_for(lambda: '"payment.started"' in stored(a, call_id), what="the window on A")
        async with media(b, call_id, "query") as second:
            code = await closed_by_server(second, _transcription(INJECTED, "Final", AGENT, 3000))
        assert code == (1008, REASON)
        await first.send(_transcription("go ahead when you are ready", "Final", AGENT, 4000))
        await wait_for(lambda: "when you are ready" in stored(a, call_id), what="A streams on")
        await drop(first)
        await wait_for(sockets(a, 0), what="A sees the drop")
        async with media(b, call_id) as again:
            await again.send(_transcription("sure let me look", "Final", AGENT, 6000))
            await wait_for(lambda: "sure let me look" in stored(b, call_id), what="the final on B")
        events = await collect_call_events(b.ws, call_id, since=0, timeout=30)
        refused_on_b = await metric(b, REFUSED)
    finally:
        a.stop()
        b.stop()
    assert INJECTED not in json.dumps(events)
    assert [e["text"] for e in events if e["type"] == "transcript.final"] == [
        "can i take the card number please", "go ahead when you are ready", "sure let me look",
    ]  # fmt: skip
    assert refused_on_b == 1
