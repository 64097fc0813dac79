"""A call's parts, each tested alone: the session's jobs are separate objects with narrow
collaborators, so each can be driven without a service, a socket or the other parts.

Real components where they do the work (Presidio through the real redaction runner, the
real payment guard, the real VAD); the collaborators a part talks to are small recorders
of the part's own Protocols, which is what the Protocols are for.
"""

from __future__ import annotations

import asyncio
import json
import socket
import wave

import uvicorn

from models.events import PaymentEnded, PaymentStarted
from models.settings import load_settings
from models.speech import SpeechResult
from pipeline.analytics.call_analytics import CallAnalytics
from pipeline.api.app import create_app
from pipeline.cli.replay import load_call_audio, replay_call
from pipeline.compliance.store import SqliteEventStore
from pipeline.ingest.call_redaction import CallRedaction
from pipeline.ingest.channel import Channel, Utterance
from pipeline.ingest.handover import HandOverState, from_wire, to_wire
from pipeline.ingest.payment_window import PaymentWindows
from pipeline.observability.stats import Stats
from pipeline.pci.payment_guard import GuardPolicy, PaymentGuard
from pipeline.privacy.redaction import get_redactor
from pipeline.privacy.redaction_runner import RedactionRunner
from pipeline.service import Service
from workers.stt.base import Capabilities

from .conftest import FIXTURES

AGENT, CUSTOMER = "8:acs:agent", "4:+15550100"


class _NoKnownValues:
    def recognizer(self, call_id: str) -> None:
        return None


def _final(uid: str, text: str, start_ms: int, end_ms: int) -> SpeechResult:
    return SpeechResult(uid, True, text, start_ms, end_ms, 0.9, "en-US", "local")


async def _redact_in_order(redaction: CallRedaction, results: list[SpeechResult]) -> list[str]:
    runner = redaction._queue
    got: list[str] = []
    for result in results:
        redaction.result(result, lambda _r, rr: got.append(rr.text))
    await runner.drain()  # type: ignore[attr-defined]
    return got


async def test_call_redaction_alone_carries_context_and_obeys_the_payment_window() -> None:
    runner = RedactionRunner(await asyncio.to_thread(get_redactor))
    try:
        redaction = CallRedaction("parts-call", runner, _NoKnownValues())
        texts = await _redact_in_order(
            redaction,
            [
                _final("u1", "and the expiry date and the security code?", 0, 1000),
                _final("u2", "it is twelve twenty eight and one two three", 1200, 4000),
            ],
        )
        # The question is context for the answer, through this one object.
        assert texts[1] == "it is [CARD_EXPIRY] and [CARD_SECURITY_CODE]"
        assert redaction.sticky.keys() == {"u1", "u2"}  # popped by whoever publishes a final

        fresh = CallRedaction("other-call", runner, _NoKnownValues())
        fresh.all_digits = True  # a payment window is open: every digit goes
        assert await _redact_in_order(fresh, [_final("u1", "it is 4 and then 7", 0, 900)]) == [
            "it is [DIGITS] and then [DIGITS]"
        ]
    finally:
        runner.close()


class _Call:
    """Records what a payment window does to its call (the PaymentCall Protocol)."""

    def __init__(self) -> None:
        self.call_id = "pay-call"
        self.ended = False
        self.events: list[object] = []
        self.audits: list[tuple[str, dict]] = []
        self.window_open: list[bool] = []
        self.clock = 0

    def now_ms(self) -> int:
        return self.clock

    def emit(self, event: object) -> None:
        self.events.append(event)

    def audit(self, kind: str, body: dict) -> None:
        self.audits.append((kind, body))

    def set_payment_window(self, open_: bool) -> None:
        self.window_open.append(open_)


class _Recording:
    timeout_s = 1.0

    def __init__(self) -> None:
        self.requests: list[tuple[str, int]] = []

    def window_opened(self, call: object, window, t0: float) -> None:
        self.requests.append(("pause", window.number))

    def window_closed(self, call: object, window, t0: float) -> None:
        self.requests.append(("resume", window.number))


class _Notes:
    def __init__(self) -> None:
        self.notes: list[dict] = []

    def note(self, call_id: str, **fields: str | None) -> None:
        self.notes.append(fields)


async def test_payment_windows_alone_turn_guard_decisions_into_events_audit_and_pauses() -> None:
    settings = load_settings(environ={}, overrides={})
    guard = PaymentGuard(GuardPolicy.from_settings(settings))
    call, recording, notes, stats = _Call(), _Recording(), _Notes(), Stats()
    windows = PaymentWindows(call, guard, recording, notes, stats)

    windows.apply(guard.on_text("can i take the card number please", "agent", 1000, 1500))
    windows.apply(guard.on_text("thanks your payment has gone through", "agent", 9000, 9500))
    windows.stop()

    assert [type(e) for e in call.events] == [PaymentStarted, PaymentEnded]
    assert call.window_open == [True, False] and stats.payment_windows == 1
    assert recording.requests == [("pause", 1), ("resume", 1)]
    assert notes.notes == [{"payment": "open"}, {"payment": "closed"}]
    kinds = [k for k, _ in call.audits]
    assert kinds[:3] == ["policy", "window.opened", "window.closed"]
    # The customer spoke before ACS confirmed the pause: an exposure goes on record.
    second = guard.on_text("can i take the card number please", "agent", 20000, 20000)
    windows.apply(second)
    guard.on_customer_speech(20100)
    guard.confirmed(20900)
    windows.audit_exposures(second.window)
    windows.stop()
    # From the window's start (the pause was asked for then) to ACS's confirmation.
    exposures = [(b["fromMs"], b["toMs"]) for k, b in call.audits if k == "exposure"]
    assert exposures == [(20000, 20900)]


class _ChannelCall:
    """Records what a channel asks of its call (the ChannelCall Protocol)."""

    def __init__(self, withhold: bool) -> None:
        self.call_id = "chan-call"
        self.sample_rate = 16000
        self.audio_ended: dict[str, float] = {}
        self.withhold = withhold
        settings = load_settings(environ={}, overrides={})
        self.guard = PaymentGuard(GuardPolicy.from_settings(settings))
        self.streams: list[_Stream] = []
        self.analytics = CallAnalytics(self.call_id, (), lambda event: None)

    def now_ms(self) -> int:
        return 0

    def withholds(self, role: str) -> bool:
        return self.withhold and role != "agent"

    def customer_speech(self, onset_ms: int) -> None:
        self.guard.on_customer_speech(self.now_ms(), onset_ms)

    def open_continuous(self, channel: Channel, start_ms: int) -> None:
        return None

    def open_utterance(self, channel: Channel, start_ms: int) -> Utterance:
        stream = _Stream()
        self.streams.append(stream)
        return Utterance(f"u{len(self.streams)}", start_ms, stream)


class _Stream:
    def __init__(self) -> None:
        self.pushed = 0
        self.ended_at: int | None = None

    def push(self, pcm16k: bytes) -> None:
        self.pushed += len(pcm16k)

    def end(self, end_ms: int) -> None:
        self.ended_at = end_ms

    def cancel(self) -> None:
        pass


def _speech() -> bytes:
    """Real human speech (pocketsphinx-testdata clips, tests/fixtures/phone), 16 kHz mono:
    the first 12 s, a few utterances."""
    with wave.open(str(FIXTURES / "phone" / "clean16k.wav"), "rb") as w:
        assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (16000, 2, 1)
        return w.readframes(12 * 16000)


def test_a_channel_alone_segments_real_speech_and_withholds_audio_when_told() -> None:
    settings = load_settings(environ={}, overrides={})
    audio = _speech()
    for withhold in (False, True):
        call = _ChannelCall(withhold)
        channel = Channel(call, settings, CUSTOMER, "customer", 0)
        for i in range(0, len(audio) - 639, 640):  # 20 ms frames, as ACS sends them
            channel.audio(audio[i : i + 640])
        channel.flush()
        assert call.streams, "no utterance in a real recording"
        assert all(s.ended_at is not None for s in call.streams)
        assert set(call.audio_ended) == {f"u{n}" for n in range(1, len(call.streams) + 1)}
        pushed = sum(s.pushed for s in call.streams)
        assert (pushed == 0) is withhold, pushed
        # Analytics heard the same utterances (a click or breath too short is not talk).
        talk = call.analytics.talks
        assert 0 < len(talk) <= len(call.streams)
        assert all(t.role == "customer" and 0 <= t.start_ms < t.end_ms <= 12000 for t in talk)


def test_hand_over_state_round_trips_the_wire_keys_replicas_exchange() -> None:
    state = HandOverState(
        last_seq=41, started=True, mode="unmixed", sample_rate=16000, elapsed_ms=5230,
        participants={CUSTOMER: "customer"}, redaction_counts={"CREDIT_CARD": 1},
        finals=[("agent", "hello")], recording={"recordingId": "rec-1"}, known_values=2,
        analytics={"talks": [["agent", 0, 900]], "words": {"agent": 1}},
    )  # fmt: skip
    wire = to_wire(state)
    # The keys other replicas (and older ones) read: camelCase, as before the struct.
    for key in (
        "lastSeq", "sampleRate", "elapsedMs", "t0WallMs", "knownValues", "recording", "analytics"
    ):  # fmt: skip
        assert key in wire
    assert from_wire(wire) == state
    assert from_wire({**wire, "aFieldFromANewerReplica": 1}) == state


class _BuggyEngine:
    """An engine with a bug: every utterance it is asked to open raises."""

    source = "local"
    capabilities = Capabilities(
        audio_input=True, continuous=False, interim_results=False, remote=False
    )

    async def start(self) -> None:
        pass

    async def aclose(self) -> None:
        pass

    def open_stream(self, *args: object, **kwargs: object):
        raise RuntimeError("engine bug")

    def open_channel(self, *args: object, **kwargs: object):
        raise RuntimeError("not continuous")


async def test_a_part_that_raises_costs_one_frame_not_the_call(tmp_path) -> None:
    """Through a real socket: a frame whose processing raises (here the engine, at each
    utterance start) is counted as an internal error and skipped; the call goes on and ends
    as a clean close, not a lost connection."""
    settings = load_settings(environ={}, overrides={"data_dir": str(tmp_path)})
    service = Service(
        settings, engine=_BuggyEngine(), store=SqliteEventStore(tmp_path / "events.db")
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)  # connections wait in the backlog until the app has started
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(service), lifespan="on", log_level="warning"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        audio = load_call_audio(FIXTURES / "payment_call.wav")
        sent = await replay_call(f"ws://127.0.0.1:{port}/media", audio, "buggy-call", speed=0)
        session = service.calls.get("buggy-call")
        if session is not None and session.close_task is not None:
            await session.close_task
        stats = service.stats
        assert stats.dropped_internal_error >= 1
        # The metadata message, then `sent` audio frames: each accepted (the ones that
        # raised in the engine too: they were counted before they reached it).
        assert stats.frames_received == sent + 1 and stats.frames_audio == sent
        await service.journal.flush()
        events = [json.loads(raw) for _, raw in service.store.read("buggy-call")]
        assert events[-1]["type"] == "call.ended"
        assert events[-1]["reason"] != "media-lost"
    finally:
        server.should_exit = True
        await serving
