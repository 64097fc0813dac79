"""Redaction inside a live call: partials and finals agree, context and known values
count, the payment-window hook redacts every digit, and a spoken payment call leaks
nothing anywhere (events, store, export, logs)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator

from websockets.asyncio.client import connect

from models.settings import load_settings
from pipeline.cli.replay import load_call_audio, replay_call
from pipeline.compliance.export_analytics import side_file_of
from pipeline.compliance.store import SqliteEventStore
from pipeline.privacy.partials import StickyValues
from pipeline.privacy.redaction import RedactionPolicy, get_redactor
from pipeline.privacy.spoken_numbers import normalize
from pipeline.service import Service

from .conftest import FIXTURES, collect_call_events, load_manifest, start_subscribers
from .test_e2e_media import _transcription

CUSTOMER = "4:+15551234"
AGENT = "8:acs:agent-7"


def texts(events: list[dict], kind: str | None = None) -> list[str]:
    return [
        e["text"]
        for e in events
        if e["type"].startswith("transcript.") and (kind is None or e["type"] == kind)
    ]


def digit_leaks(text: str, secret_digits: str, min_len: int = 4) -> list[str]:
    """Runs of ``min_len``+ digits (spoken or written) in ``text`` that occur in the secret."""
    return [
        r.digits
        for r in normalize(text).runs
        if len(r.digits) >= min_len and r.digits in secret_digits
    ]


def all_outputs(server, call_id: str, events: list[dict]) -> dict[str, str]:
    db = sqlite3.connect(server.data_dir / "callstream.db")
    store = "\n".join(
        bytes(b).decode()
        for (b,) in db.execute("SELECT body FROM events WHERE call_id = ?", (call_id,))
    )
    db.close()
    outputs = {
        "events": json.dumps(events),
        "store": store,
        "metrics": server.get_bytes("/metrics").decode(),
        "logs": server.logs(),
        "audit": json.dumps(server.get_json(f"/calls/{call_id}/audit")[1]),
        "manifest": json.dumps(server.get_json(f"/calls/{call_id}/manifest")[1]),
    }
    for fmt in ("jsonl", "vtt", "txt", "csv"):
        outputs[f"export ({fmt})"] = server.get_bytes(
            f"/calls/{call_id}/transcript?format={fmt}"
        ).decode()
    # The call's analytics as the read API gives them, and the CSV export's side file.
    outputs["analytics"] = server.get_bytes(f"/calls/{call_id}/analytics").decode()
    reader = SqliteEventStore(server.data_dir / "callstream.db")
    try:
        outputs["export (csv analytics)"] = side_file_of(reader, call_id).decode()
    finally:
        reader.close()
    return outputs


async def run_transcripts(server, call_id: str, frames: list[str]) -> list[dict]:
    [collector] = await start_subscribers(server, collect_call_events(server.ws, call_id))
    async with connect(
        f"{server.ws}/media", additional_headers={"x-ms-call-connection-id": call_id}
    ) as ws:
        for frame in frames:
            await ws.send(frame)
    return await collector


async def test_partials_and_finals_agree_and_unfinished_entities_are_held_back(acs_server) -> None:
    card_words = "four one one one one one one one one one one one one one one one"
    # The recognizer revises "four" to "for" in the final: alone, that final would show
    # fifteen digits of the card. What a partial redacted must stay redacted.
    revised = "it's " + " ".join(["one"] * 15)
    assert "one one one one" in get_redactor().redact(revised).text
    events = await run_transcripts(
        acs_server,
        "sticky-call",
        [
            _transcription("it's four one one", "Intermediate", CUSTOMER, 1000),
            _transcription(f"it's {card_words}", "Intermediate", CUSTOMER, 1000),
            _transcription(revised, "Final", CUSTOMER, 1000),
            _transcription(
                "and my email is john dot smith at contoso", "Intermediate", CUSTOMER, 6000
            ),
            _transcription(
                "and my email is john dot smith at contoso dot com", "Final", CUSTOMER, 6000
            ),
        ],
    )
    assert texts(events, "transcript.partial") == ["it's", "it's [CREDIT_CARD]", "and my email is"]
    # The card digits also opened a payment window (a late trigger), so the final's
    # digits are redacted as [DIGITS]; test_sticky_values_keep_a_partials_redaction shows
    # the same final redacted without a window.
    assert texts(events, "transcript.final") == [
        "it's [DIGITS]",
        "and my email is [EMAIL_ADDRESS]",
    ]
    assert [e["trigger"] for e in events if e["type"] == "payment.started"] == ["digits"]
    for e in events:
        if e["type"].startswith("transcript."):
            assert not digit_leaks(e["text"], "4111111111111111")
            for r in e["redactions"]:
                assert e["text"][r["start"] : r["end"]] == f"[{r['type']}]"


def test_sticky_values_keep_a_partials_redaction() -> None:
    redactor = get_redactor()
    partial = "it's four one one one one one one one one one one one one one one one"
    final = "it's " + " ".join(["one"] * 15)
    sticky = StickyValues()
    first = redactor.redact(partial, RedactionPolicy(sticky=sticky.recognizer))
    sticky.remember(partial, first)
    assert first.text == "it's [CREDIT_CARD]"
    assert redactor.redact(final).text == final  # alone, fifteen digits of the card would show
    assert (
        redactor.redact(final, RedactionPolicy(sticky=sticky.recognizer)).text
        == "it's [CREDIT_CARD]"
    )


@contextlib.asynccontextmanager
async def in_process_service(tmp_path, **overrides: object) -> AsyncIterator[Service]:
    """A started service in this process (ACS passthrough speech, real Presidio, SQLite)."""
    cfg = load_settings(
        environ={}, overrides={"stt": "acs", "data_dir": str(tmp_path), **overrides}
    )
    service = Service(cfg, store=SqliteEventStore(tmp_path / "events.db"))
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


async def feed(service: Service, call_id: str, frames: list[str]) -> list[dict]:
    """Send frames to a call one by one (each redacted before the next), end it, read the store."""
    session = service.session(call_id)
    session.attach()
    for frame in frames:
        session.on_message(frame)
        await service.redaction.drain()
    session.detach("test")
    await session.close_task
    await service.journal.flush()
    return [json.loads(b) for _, b in service.store.read(call_id)]


async def test_the_question_asked_is_context_for_the_answer(tmp_path) -> None:
    # No intent phrases here, so that no payment window redacts the digits anyway.
    async with in_process_service(tmp_path, payment_intent_phrases="") as service:
        events = await feed(
            service,
            "context-call",
            [
                _transcription("and the expiry date and the security code?", "Final", AGENT, 1000),
                _transcription(
                    "it is twelve twenty eight and one two three", "Final", CUSTOMER, 4000
                ),
            ],
        )
    assert texts(events, "transcript.final")[1] == "it is [CARD_EXPIRY] and [CARD_SECURITY_CODE]"
    assert not [e for e in events if e["type"] == "payment.started"]
    # Without the question, the same words are not secrets: context is the previous turns only.
    assert get_redactor().redact("it is twelve twenty eight and one two three").text == (
        "it is twelve twenty eight and one two three"
    )


async def test_known_entities_are_redacted_in_any_form_and_never_echoed(acs_server) -> None:
    call_id = "known-call"
    secrets = {"PERSON": "Marta Kowalski", "ACCOUNT_NUMBER": "88124409"}
    status, body = acs_server.post_json(
        f"/calls/{call_id}/known-entities",
        {"entities": [{"type": t, "value": v} for t, v in secrets.items()]},
    )
    assert status == 200 and body == {"callId": call_id, "accepted": 2, "knownValues": 2}
    # Bad requests get a clear 400 that never repeats what was sent.
    for bad in (
        b"not json",
        {"entities": [{"type": "PERSON"}]},
        {"entities": [{"type": "X", "value": 88124409}]},
    ):
        status, body = acs_server.post_json(f"/calls/{call_id}/known-entities", bad)
        assert status == 400 and body["error"] and "88124409" not in json.dumps(body)

    events = await run_transcripts(
        acs_server,
        call_id,
        [
            _transcription(
                "yes it's marta and my account is eight eight one two four four oh nine",
                "Final",
                CUSTOMER,
                1000,
            ),
            _transcription(
                "Thanks Ms. Kowalski, account 8812 4409 is verified.", "Final", AGENT, 5000
            ),
        ],
    )
    assert texts(events, "transcript.final") == [
        "yes it's [PERSON] and my account is [ACCOUNT_NUMBER]",
        "Thanks Ms. [PERSON], account [ACCOUNT_NUMBER] is verified.",
    ]
    for name, text in all_outputs(acs_server, call_id, events).items():
        for value in ("marta", "kowalski", "88124409", "8812 4409"):
            assert value not in text.lower(), f"{value} leaked into {name}"


async def test_payment_window_hook_redacts_every_digit(tmp_path) -> None:
    async with in_process_service(tmp_path) as service:
        session = service.session("pay-call")
        session.attach()
        session.on_message(_transcription("it's for the blue one at 3 pm", "Final", CUSTOMER, 1000))
        await service.redaction.drain()
        session.set_payment_window(True)
        session.on_message(_transcription("it's for the blue one at 3 pm", "Final", CUSTOMER, 3000))
        session.on_message(
            _transcription("4 1 1 1 um sorry, it's 12 then 7", "Final", CUSTOMER, 5000)
        )
        await service.redaction.drain()
        session.set_payment_window(False)
        session.detach("test")
        await session.close_task
        await service.journal.flush()
        events = [json.loads(b) for _, b in service.store.read("pay-call")]
    assert texts(events, "transcript.final") == [
        "it's for the blue one at 3 pm",
        "it's for the blue [DIGITS] at [DIGITS] pm",
        "[DIGITS] um sorry, it's [DIGITS] then [DIGITS]",
    ]


async def test_spoken_payment_call_leaks_nothing(local_server) -> None:
    """The payment fixture, spoken by a synthesizer and recognized by pocketsphinx: the card
    number, the phone number and the caller's name (known to the CRM) appear nowhere."""
    manifest = load_manifest("payment_call")
    call_id = "spoken-payment"
    status, _ = local_server.post_json(
        f"/calls/{call_id}/known-entities",
        {"entities": [{"type": "PERSON", "value": "John Smith"}]},
    )
    assert status == 200
    [collector] = await start_subscribers(
        local_server, collect_call_events(local_server.ws, call_id)
    )
    await replay_call(
        f"{local_server.ws}/media",
        load_call_audio(FIXTURES / "payment_call.wav"),
        call_id,
        speed=2.0,
    )
    events = await collector
    finals = texts(events, "transcript.final")
    print("finals:", finals)
    joined = " ".join(finals)
    # The agent's "take the payment ... card number" opened a payment window, so the phone
    # number (said before "payment has gone through") is redacted as [DIGITS].
    assert "[CREDIT_CARD]" in joined and "[DIGITS]" in joined
    card, email, phone = manifest["secrets"]
    for name, text in all_outputs(local_server, call_id, events).items():
        for secret in (card, email, phone, "john dot smith", "contoso dot com"):
            assert secret not in text, f"{secret!r} leaked into {name}"
        assert "smith" not in text.lower(), f"the caller's name leaked into {name}"
        if name in ("events", "store") or name.startswith("export"):
            assert not digit_leaks(text, card + " " + phone, 4), f"digits leaked into {name}"


async def test_dtmf_tones_are_counted_never_kept(acs_server) -> None:
    """A keypad entry is card data: the service records that tones came, never which."""
    call_id = "keypad-call"
    tones = ["4", "1", "1", "1", "*", "#"]
    frames = [json.dumps({"kind": "DtmfData", "dtmfData": {"data": t}}) for t in tones]
    before = acs_server.get_bytes("/metrics").decode()
    events = await run_transcripts(
        acs_server,
        call_id,
        [_transcription("go ahead and key it in", "Final", AGENT, 500), *frames],
    )
    assert [e["trigger"] for e in events if e["type"] == "payment.started"] == ["dtmf"]
    assert {e["type"] for e in events} <= {
        "call.started",
        "participant.joined",
        "transcript.final",
        "sentiment",
        "payment.started",
        "payment.ended",
        "analytics",  # (the call's figures: talk, silence, categories; no digit)
        "call.ended",
    }
    # That tones came is on record (the window's trigger), which tones is not.
    [started] = [e for e in events if e["type"] == "payment.started"]
    assert set(started) == {"type", "callId", "seq", "time", "trigger", "startMs"}
    assert not any("dtmf" in json.dumps(e).lower() for e in events if e is not started)
    after = acs_server.get_bytes("/metrics").decode()

    def tones_counted(metrics: str) -> float:
        [line] = [x for x in metrics.splitlines() if x.startswith("callstream_dtmf_tones")]
        return float(line.split()[-1])

    assert tones_counted(after) - tones_counted(before) == len(tones)
    assert "*" not in acs_server.get_bytes(f"/calls/{call_id}/transcript?format=jsonl").decode()
