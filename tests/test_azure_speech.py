"""The azure speech engine, through the REAL Speech SDK, against a local fake service."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field

import pytest

pytest.importorskip("azure.cognitiveservices.speech")

from models.speech import SpeechResult
from tests.conftest import wait_for
from tests.fake_speech import Failure, FakeSpeech, Phrase
from workers.stt.azure import AzureChannel, AzureSpeechEngine

CHUNK_MS = 100
BYTES_PER_MS = 32


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeSpeech]:
    with FakeSpeech() as f:
        yield f


@pytest.fixture
async def engine(fake: FakeSpeech) -> AsyncIterator[AzureSpeechEngine]:
    eng = AzureSpeechEngine(key="fake-key", host=fake.host)
    await eng.start()
    yield eng
    await eng.aclose()


@dataclass
class Sink:
    """Collects one channel's callbacks and checks they run on the loop thread."""

    results: list[SpeechResult] = field(default_factory=list)
    translations: list[tuple[str, str, dict[str, str], bool]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    threads: set[int] = field(default_factory=set)

    def on_result(self, r: SpeechResult) -> None:
        self.threads.add(threading.get_ident())
        self.results.append(r)

    def on_translation(self, uid: str, channel: str, tr: dict[str, str], final: bool) -> None:
        self.threads.add(threading.get_ident())
        self.translations.append((uid, channel, dict(tr), final))

    def on_error(self, description: str) -> None:
        self.threads.add(threading.get_ident())
        self.errors.append(description)

    @property
    def finals(self) -> list[SpeechResult]:
        return [r for r in self.results if r.is_final]

    def open(self, engine: AzureSpeechEngine, channel_id: str, start_ms: int, **kw) -> AzureChannel:
        return engine.open_channel(
            channel_id, start_ms, self.on_result, self.on_translation, self.on_error, **kw
        )


async def until(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    await wait_for(pred, timeout, interval=0.02)


async def stream(channel: AzureChannel, ms: int, pace_s: float = 0.005) -> None:
    """Push `ms` of silence in 100 ms chunks (faster than real time)."""
    chunk = b"\x00" * (CHUNK_MS * BYTES_PER_MS)
    for _ in range(ms // CHUNK_MS):
        channel.push(chunk)
        await asyncio.sleep(pace_s)  # pacing a live stream, not a wait: nothing depends on it


def by_utterance(results: list[SpeechResult]) -> dict[str, list[SpeechResult]]:
    out: dict[str, list[SpeechResult]] = {}
    for r in results:
        out.setdefault(r.utterance_id, []).append(r)
    return out


async def test_two_channels_partials_and_finals(
    engine: AzureSpeechEngine, fake: FakeSpeech
) -> None:
    before = len(fake.connections)
    fake.script(
        [
            Phrase("hello this is alice", 300, 900),
            Phrase("my card is ready", 1500, 1000, confidence=0.8),
        ]
    )
    fake.script([Phrase("hi bob speaking here", 500, 800, confidence=0.95)])
    alice, bob = Sink(), Sink()
    ch_a = alice.open(engine, "8:acs:alice-0001", 1000)
    await stream(ch_a, 200)
    await fake.await_connections(before + 1)  # alice's connection takes the first script
    ch_b = bob.open(engine, "4:+15550100", 250)
    await asyncio.gather(stream(ch_a, 2800), stream(ch_b, 3000))
    ch_a.close()
    ch_b.close()
    ch_a.close()  # idempotent
    await until(lambda: len(alice.finals) == 2 and len(bob.finals) == 1)
    await until(lambda: not engine._channels)  # both recognizers stopped after close

    loop_thread = {threading.get_ident()}
    assert alice.threads == loop_thread and bob.threads == loop_thread
    assert not alice.errors and not bob.errors

    a = by_utterance(alice.results)
    assert len(a) == 2
    (id1, rs1), (id2, rs2) = a.items()
    assert id1 != id2 and id1.startswith("ce0001-az") and id2.startswith("ce0001-az")
    assert [r.is_final for r in rs1] == [False, True]
    assert rs1[0].text == "hello this" and rs1[1].text == "hello this is alice"
    assert (rs1[0].start_ms, rs1[0].end_ms) == (1300, 1750)
    assert (rs1[1].start_ms, rs1[1].end_ms) == (1300, 2200)
    assert rs1[1].confidence == pytest.approx(0.9) and rs1[0].confidence == 0.0
    assert [r.text for r in rs2] == ["my card", "my card is ready"]
    assert (rs2[1].start_ms, rs2[1].end_ms) == (2500, 3500)
    assert rs2[1].confidence == pytest.approx(0.8)
    assert all(r.source == "azure" and r.language == "en-US" for r in alice.results)

    b = by_utterance(bob.results)
    assert len(b) == 1
    ((bid, brs),) = b.items()
    assert bid.startswith("550100-az") and bid not in a
    assert [r.text for r in brs] == ["hi bob", "hi bob speaking here"]
    assert (brs[1].start_ms, brs[1].end_ms) == (750, 1550)
    assert brs[1].confidence == pytest.approx(0.95)

    conns = fake.connections[before:]
    assert len(conns) == 2
    for c in conns:
        assert c.path == "/speech/recognition/conversation/cognitiveservices/v1"
        assert c.language == "en-US"
        assert c.query.get("format") == ["detailed"]
        assert c.headers["ocp-apim-subscription-key"] == "fake-key"
        assert c.audio_bytes == 3000 * BYTES_PER_MS
        assert c.wav_headers == 1 and c.stream_ended
    await until(lambda: all(c.closed for c in conns))  # stopped recognizers hang up


async def test_translation(fake: FakeSpeech) -> None:
    before = len(fake.connections)
    fake.script([Phrase("hello this is alice", 300, 900, {"de": "hallo hier ist alice"})])
    eng = AzureSpeechEngine(key="fake-key", host=fake.host, translate_to=["de"])
    await eng.start()
    try:
        sink = Sink()
        ch = sink.open(eng, "8:acs:alice-0001", 500)
        await stream(ch, 1500)
        ch.close()
        await until(lambda: len(sink.finals) == 1 and any(t[3] for t in sink.translations))
    finally:
        await eng.aclose()
    (final,) = sink.finals
    assert final.text == "hello this is alice"
    assert (final.start_ms, final.end_ms) == (800, 1700)
    uid = final.utterance_id
    assert sink.translations == [
        (uid, "8:acs:alice-0001", {"de": "hallo hier"}, False),
        (uid, "8:acs:alice-0001", {"de": "hallo hier ist alice"}, True),
    ]
    assert [r.text for r in sink.results] == ["hello this", "hello this is alice"]
    assert not sink.errors
    (conn,) = fake.connections[before:]
    assert conn.is_translation and conn.targets == ["de"] and conn.language == "en-US"


async def test_nomatch_settles_only_published_partials(
    engine: AzureSpeechEngine, fake: FakeSpeech
) -> None:
    fake.script(
        [
            Phrase("", 100, 300, status="NoMatch"),  # nothing published: nothing delivered
            Phrase("uh huh", 600, 400, status="NoMatch"),  # partial then NoMatch: empty final
            Phrase("thank you", 1200, 500),
        ]
    )
    sink = Sink()
    ch = sink.open(engine, "p-0002", 0)
    await stream(ch, 2000)
    ch.close()
    await until(lambda: len(sink.finals) == 2)
    await until(lambda: not engine._channels)
    u = by_utterance(sink.results)
    assert len(u) == 2
    (id1, rs1), (id2, rs2) = u.items()
    assert [(r.is_final, r.text) for r in rs1] == [(False, "uh"), (True, "")]
    assert (rs1[1].start_ms, rs1[1].end_ms) == (600, 1000)
    assert [(r.is_final, r.text) for r in rs2] == [(False, "thank"), (True, "thank you")]
    assert id1 != id2


async def test_failing_connection_reports_error_others_unaffected(
    engine: AzureSpeechEngine, fake: FakeSpeech
) -> None:
    # The SDK retries a dropped connection (5 connections in all) before it gives up.
    before = len(fake.connections)
    fake.script(
        Failure(close_code=1011, reason="fake overload", after_ms=200, repeat=5), language="fr-FR"
    )
    fake.script([Phrase("still here", 300, 600)])
    loop_errors: list[dict] = []
    asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: loop_errors.append(ctx))
    bad, good = Sink(), Sink()
    ch_bad = bad.open(engine, "bad-0003", 0, language="fr-FR")
    ch_good = good.open(engine, "good-0004", 0)
    await stream(ch_good, 1000)
    # The SDK reconnects when it has audio to send: keep the failing channel's audio
    # flowing, as a live call does, until it gives up.
    for _ in range(300):
        if bad.errors:
            break
        await stream(ch_bad, 100, pace_s=0.02)
    assert bad.errors
    await stream(ch_bad, 500)  # audio into a failed channel is dropped, no exception
    ch_bad.close()
    ch_good.close()
    await until(lambda: len(good.finals) == 1)
    await until(lambda: not engine._channels)
    assert bad.errors == ["canceled: Error ServiceError"]
    failed = [c for c in fake.connections[before:] if c.language == "fr-FR"]
    assert len(failed) == 5 and all(isinstance(c.script, Failure) for c in failed)
    assert not bad.results
    assert [r.text for r in good.results] == ["still", "still here"]
    assert good.finals[0].text == "still here" and not good.errors
    assert not loop_errors


async def test_rejected_handshake_reports_error(
    engine: AzureSpeechEngine, fake: FakeSpeech
) -> None:
    fake.script(Failure(http_status=401), language="de-DE")
    sink = Sink()
    ch = sink.open(engine, "p-0005", 0, language="de-DE")
    await stream(ch, 300)
    await until(lambda: bool(sink.errors))
    ch.close()
    await until(lambda: not engine._channels)
    assert sink.errors == ["canceled: Error AuthenticationFailure"]
    assert "fake" not in sink.errors[0]


async def test_aclose_stops_open_channels_in_bounded_time(fake: FakeSpeech) -> None:
    before = len(fake.connections)
    fake.script([Phrase("one two three", 200, 600), Phrase("never reached", 60_000, 500)])
    fake.script([Phrase("four five six", 200, 600), Phrase("never reached", 60_000, 500)])
    eng = AzureSpeechEngine(key="fake-key", host=fake.host, close_timeout_s=5.0)
    await eng.start()
    a, b = Sink(), Sink()
    ch_a = a.open(eng, "a-0006", 0)
    ch_b = b.open(eng, "b-0007", 0)
    await asyncio.gather(stream(ch_a, 1000), stream(ch_b, 1000))
    await until(lambda: len(a.finals) == 1 and len(b.finals) == 1)
    n = len(a.results) + len(b.results)
    t0 = time.monotonic()
    await eng.aclose()  # channels still open: no close() called
    assert time.monotonic() - t0 < 5.0
    assert not eng._channels
    ch_a.push(b"\x00" * 640)  # harmless after aclose
    await asyncio.sleep(0.2)  # a negative check: a result would have had this long to come
    assert len(a.results) + len(b.results) == n  # nothing after aclose
    conns = fake.connections[before:]
    assert len(conns) == 2
    await until(lambda: all(c.closed for c in conns))
    with pytest.raises(RuntimeError):
        a.open(eng, "a-0006", 0)


def test_config_validation_and_repr() -> None:
    with pytest.raises(ValueError):
        AzureSpeechEngine(key="k")
    with pytest.raises(ValueError):
        AzureSpeechEngine(key="k", region="westeurope", host="ws://127.0.0.1:1")
    with pytest.raises(ValueError):
        AzureSpeechEngine(key=None, region="westeurope")
    eng = AzureSpeechEngine(key="secret-key-123", region="westeurope")
    assert "secret-key-123" not in repr(eng)
    assert eng.source == "azure" and eng.capabilities.remote and eng.capabilities.continuous


async def test_dropped_connection_is_resumed_by_the_sdk(fake: FakeSpeech) -> None:
    """The SDK reconnects by itself, replays the audio after the last final and rebases the
    new connection's offsets: results stay on the channel's timeline, no error."""
    before = len(fake.connections)
    fake.script([Phrase("first part", 300, 600), Failure(after_ms=1500, close_code=1011)])
    fake.script([Phrase("second part", 1000, 500)])  # offsets of the replayed audio
    eng = AzureSpeechEngine(key="fake-key", endpoint=fake.endpoint)
    await eng.start()
    try:
        sink = Sink()
        ch = sink.open(eng, "p-0008", 10_000)
        await stream(ch, 4000, pace_s=0.02)
        ch.close()
        await until(lambda: len(sink.finals) == 2)
        await until(lambda: not eng._channels)
    finally:
        await eng.aclose()
    assert not sink.errors
    first, second = sink.finals
    assert (first.text, first.start_ms, first.end_ms) == ("first part", 10_300, 10_900)
    # replay starts at the end of the last final (900 ms): 900 + 1000
    assert (second.text, second.start_ms, second.end_ms) == ("second part", 11_900, 12_400)
    conns = fake.connections[before:]
    assert len(conns) == 2
    assert conns[1].context["continuation"]["audio"]["streams"]["1"]["offset"] == "9000000"
    assert conns[0].audio_ms >= 1500 and conns[1].audio_ms == 4000 - 900


async def test_close_without_audio(engine: AzureSpeechEngine) -> None:
    sink = Sink()
    ch = sink.open(engine, "p-0009", 0)
    ch.close()
    await until(lambda: not engine._channels)
    assert not sink.results and not sink.errors
