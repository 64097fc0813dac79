"""PCI timing (issue 18): with ACS failing the first pause requests, the recording is still
confirmed paused before the customer's first card digit.

The end-to-end test streams the payment fixture in real time through the local engine to
`callstream serve`, answered through the fake of ACS (signed requests, RecordingStateChanged
callbacks), whose first two pause requests answer HTTP 500. Every figure it compares is a
position on the call's own timeline (ms from its first audio frame): the window's
``startMs`` and ``pauseConfirmedMs`` from the audit, the utterances' ``startMs``/``endMs``
from the events and the fixture's manifest. Nothing is held to a wall-clock limit, and
nothing waits by sleeping: the test waits for the call's event stream to close.

The other tests drive one request round (`pipeline.pci.recording_attempts`) and one
driver (`RecordingController._drive_once`) against a scripted sender, in process.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from models.events import RecordingError
from models.settings import load_settings
from pipeline.cli.replay import CallAudio, load_call_audio, replay_call
from pipeline.pci import recording_attempts
from pipeline.pci.payment_guard import GuardPolicy, PaymentGuard, Window
from pipeline.pci.recording import RecordingController
from pipeline.pci.recording_attempts import RETRY_DELAYS_S, Attempts, retry_delay
from pipeline.pci.recording_confirm import StateReports

from .conftest import FIXTURES, collect_call_events, load_manifest, start_server, start_subscribers
from .fake_acs import FakeAcs, post_event_grid
from .test_pci_flow import CALLBACK_SECRET, acs_env, audit_of

# The fixture's agent says "i will take the payment now" 3.5 s before asking for the card;
# with only the phrases about the card itself, the question alone opens the window (its
# "number on the front" ends ~760 ms before the agent stops, ~1.6 s before the first
# digit), as on a call where the agent asks for the card without announcing the payment.
CARD_PHRASES = (
    "card number|long number|number on the front|card details|expiry date|security code|cvv"
)
REPLAY_UNTIL_MS = 12_500  # through the customer's card number


async def test_two_failed_pauses_still_confirm_before_the_first_card_digit(tmp_path) -> None:
    manifest = load_manifest("payment_call")
    question, card = manifest["utterances"][0], manifest["utterances"][1]
    audio = load_call_audio(FIXTURES / "payment_call.wav")
    cut = REPLAY_UNTIL_MS * 32
    audio = CallAudio(audio.rate, [(p, pcm[:cut]) for p, pcm in audio.tracks])
    with FakeAcs() as fake:
        server = start_server(
            tmp_path, public_url_self=True, CALLSTREAM_STT="local",
            CALLSTREAM_PAYMENT_INTENT_PHRASES=CARD_PHRASES, **acs_env(fake),
        )  # fmt: skip
        try:
            call_id = "pci-timing-call"
            fake.next_call_connection_id = call_id
            url = f"{server.http}/acs/events?secret={CALLBACK_SECRET}"
            assert (await asyncio.to_thread(post_event_grid, url, fake.incoming_call()))[0] == 200
            fake.script("pause", 500, 500)
            [collector] = await start_subscribers(server, collect_call_events(server.ws, call_id))
            await replay_call(f"{server.ws}/media", audio, call_id, speed=1.0)
            events = await collector  # until call.ended: the window closed, all on record
            doc = audit_of(server, call_id)
        finally:
            server.stop()

    [window] = doc["windows"]
    agent_final = next(
        e for e in events if e["type"] == "transcript.final" and e["role"] == "agent"
    )
    digits = [
        e
        for e in events
        if e["type"].startswith("transcript.")
        and e["role"] == "customer"
        and ("[DIGITS]" in e["text"] or "[CREDIT_CARD]" in e["text"])
    ]
    first_digit_ms = min(digits[0]["startMs"], card["startMs"])  # VAD's start, or the audio's
    timeline = {
        "window": window,
        "agentEndMs": agent_final["endMs"],
        "firstDigitMs": first_digit_ms,
    }
    # The question opened the window, on a partial: while the agent was still speaking.
    assert window["trigger"] == "intent"
    assert window["startMs"] < question["endMs"], timeline
    # ACS failed twice, then accepted; the pause was confirmed before the first card digit,
    # and before the agent's turn was over (the customer cannot have begun).
    pauses = [r for r in doc["requests"] if r.get("action") == "pause"]
    assert [(r["attempt"], r["outcome"]) for r in pauses][:3] == [
        (1, "error"), (2, "error"), (3, "ok"),
    ], pauses  # fmt: skip
    assert all("HTTP 500" in r["error"] for r in pauses[:2])
    assert window["pauseConfirmedMs"] is not None, timeline
    assert window["pauseConfirmedMs"] < first_digit_ms, timeline
    assert window["pauseConfirmedMs"] < agent_final["endMs"], timeline
    assert doc["exposures"] == []
    kinds = [(e["type"], e.get("attempt")) for e in events if e["type"].startswith("recording.")]
    assert kinds[:3] == [("recording.error", 1), ("recording.error", 2), ("recording.paused", 3)]


# ----- in process: one round, one driver ------------------------------------------------


class _Call:
    """What the recording driver needs of a call, on record in lists."""

    call_id = "timing-call"

    def __init__(self) -> None:
        self.guard = PaymentGuard(GuardPolicy.from_settings(load_settings(environ={})))
        self.events: list = []
        self.records: list[tuple[str, dict]] = []
        self.tasks: set[asyncio.Future] = set()

    def now_ms(self) -> int:
        return 1000

    def emit(self, event) -> None:
        self.events.append(event)

    def audit(self, kind: str, body: dict) -> None:
        self.records.append((kind, body))

    def audit_exposures(self, window: Window) -> None:
        pass

    def track(self, task: asyncio.Future) -> None:
        self.tasks.add(task)


class _Http500(Exception):
    status_code = 500


class _Acs:
    """A scripted ACS behind ``send``: per request, "500", "ok" (then the recording's
    state callback) or "hang" (answered only when ``release`` is called)."""

    def __init__(self, reports: StateReports, *script: str) -> None:
        self.reports = reports
        self.script = list(script)
        self.sent: list[str] = []
        self.on_wire = asyncio.Event()  # a request was sent
        self._hung: list[asyncio.Future] = []

    async def send(self, on_sent) -> None:
        behavior = self.script.pop(0) if self.script else "ok"
        self.sent.append(behavior)
        on_sent()
        self.on_wire.set()
        if behavior == "500":
            raise _Http500("injected")
        if behavior == "hang":
            fut = asyncio.get_running_loop().create_future()
            self._hung.append(fut)
            await fut  # raises what `release` sets
            return
        asyncio.get_running_loop().call_soon(self.reports.add, "inactive", "callback")

    def release(self) -> None:
        for fut in self._hung:
            fut.set_exception(TimeoutError())


def _attempts(call: _Call, acs: _Acs) -> Attempts:
    window = call.guard.on_text("can i take the card number", "agent", 0, 0).window
    return Attempts(
        call, window, "pause", "rec-1", time.monotonic(), acs.send, lambda e: type(e).__name__
    )


def test_the_first_retry_is_at_once_and_later_ones_back_off() -> None:
    assert retry_delay(1) == RETRY_DELAYS_S[0] <= 0.05  # tens of milliseconds
    delays = [retry_delay(n) for n in range(1, 12)]
    assert delays == sorted(delays) and delays[-1] == RETRY_DELAYS_S[-1] == 4.0


async def test_a_request_acs_does_not_answer_gets_a_hedge_beside_it(monkeypatch) -> None:
    monkeypatch.setattr(recording_attempts, "HEDGE_AFTER_S", 0.01)
    call, reports = _Call(), StateReports()
    acs = _Acs(reports, "hang", "ok")
    attempts = _attempts(call, acs)
    accepted, got = await attempts.round(reports, "inactive", lambda: True)
    assert acs.sent == ["hang", "ok"] and accepted is not None
    assert (accepted.number, accepted.hedge, accepted.error, got) == (2, True, None, None)
    attempts.settled = True  # the driver: ACS confirmed
    acs.release()  # the hung request's answer comes late: on record, no error event
    await asyncio.gather(*call.tasks)
    assert not [e for e in call.events if isinstance(e, RecordingError)]
    outcomes = [(b["attempt"], b["outcome"], b.get("hedge", False)) for _, b in call.records]
    assert outcomes == [(2, "ok", True), (1, "error", False)]


async def test_acs_confirming_while_a_request_hangs_ends_the_round() -> None:
    call, reports = _Call(), StateReports()
    acs = _Acs(reports, "hang")
    attempts = _attempts(call, acs)
    round_ = asyncio.ensure_future(attempts.round(reports, "inactive", lambda: True))
    await acs.on_wire.wait()  # the request is out: ACS carries it out, its answer is lost
    reports.add("inactive", "callback")
    accepted, got = await round_
    assert accepted is None and got is not None and got.state == "inactive"
    acs.release()
    await asyncio.gather(*call.tasks)


@pytest.mark.parametrize("failures", [1, 2])
async def test_the_driver_retries_failed_pauses_and_publishes_only_the_confirmation(
    failures: int,
) -> None:
    settings = load_settings(
        environ={}, overrides={"acs_endpoint": "http://127.0.0.1:9", "acs_key": "a2V5"}
    )
    controller = RecordingController(settings)
    call = _Call()
    acs = _Acs(controller.control(call.call_id).reports, *["500"] * failures, "ok")

    async def fake_call(method: str, recording_id: str, on_sent) -> None:
        assert (method, recording_id) == ("pause_recording", "rec-1")
        await acs.send(on_sent)

    controller._call = fake_call  # type: ignore[method-assign]
    controller.control(call.call_id).recording_id = "rec-1"
    window = call.guard.on_text("can i take the card number", "agent", 0, 0).window
    try:
        controller.window_opened(call, window, time.monotonic())
        await asyncio.gather(*call.tasks)  # the driver, until ACS confirmed
        await asyncio.gather(*call.tasks)  # and its requests
    finally:
        controller.close()
    kinds = [(type(e).__name__, e.attempt) for e in call.events]
    assert kinds == [("RecordingError", n) for n in range(1, failures + 1)] + [
        ("RecordingPaused", failures + 1)
    ]
    requests = [(b["attempt"], b["outcome"]) for k, b in call.records if k == "recording.request"]
    assert requests == [(n, "error") for n in range(1, failures + 1)] + [(failures + 1, "ok")]
    assert [k for k, _ in call.records][-1] == "recording.confirmed"
    assert window.confirmed_ms is not None
