"""The `azure` speech engine inside a live call: two participants recognized at once by the
real Speech SDK against a local fake of the service (tests/fake_speech.py), results placed
on the call's timeline, a canceled recognizer reported without ending the call."""

from __future__ import annotations

import pytest

from pipeline.cli.replay import load_call_audio, replay_call

from .conftest import FIXTURES, collect_call_events, start_server, start_subscribers
from .fake_speech import Failure, FakeSpeech, Phrase

SCRIPT_A = [
    Phrase("hello how can i help you today", 500, 1500),
    Phrase("thanks for your call goodbye", 9000, 1200),
]
SCRIPT_B = [
    Phrase("hi my internet is not working", 2000, 1400),
    Phrase("my card is 4111 1111 1111 1111", 5000, 2000),
]


@pytest.fixture
def fake_speech():
    with FakeSpeech() as fake:
        yield fake


def azure_env(fake: FakeSpeech, **extra: str) -> dict[str, str]:
    return {
        "CALLSTREAM_STT": "azure",
        "CALLSTREAM_SPEECH_ENDPOINT": fake.host,
        "CALLSTREAM_SPEECH_KEY": "k",
        **extra,
    }


async def run_call(server, call_id: str) -> list[dict]:
    [collector] = await start_subscribers(
        server, collect_call_events(server.ws, call_id, timeout=120)
    )
    await replay_call(
        f"{server.ws}/media", load_call_audio(FIXTURES / "support_call.wav"), call_id, speed=0
    )
    return await collector


async def test_two_participants_at_once_on_the_call_timeline(fake_speech, tmp_path) -> None:
    fake_speech.script(SCRIPT_A)
    fake_speech.script(SCRIPT_B)
    server = start_server(tmp_path, **azure_env(fake_speech))
    try:
        events = await run_call(server, "azure-call")
    finally:
        server.stop()
    finals = [e for e in events if e["type"] == "transcript.final"]
    partials = [e for e in events if e["type"] == "transcript.partial"]
    assert len(finals) == 4 and partials
    assert all(e["source"] == "azure" for e in finals + partials)
    by_participant: dict[str, list[dict]] = {}
    for f in finals:
        by_participant.setdefault(f["participant"], []).append(f)
    assert len(by_participant) == 2
    scripts = {tuple(p.text for p in s): s for s in (SCRIPT_A, SCRIPT_B)}
    for finals_of in by_participant.values():
        texts = tuple(f["text"] for f in finals_of)
        script = scripts.get(texts) or scripts[tuple(p.text for p in SCRIPT_B)]
        for f, phrase in zip(finals_of, script, strict=True):
            # Offsets: the channel starts with the call (both sides from the first frame).
            assert (
                f["startMs"] == phrase.offset_ms
                and f["endMs"] == phrase.offset_ms + phrase.duration_ms
            )
    # The card number spoken to Azure never came back unredacted.
    assert any(f["text"] == "my card is [CREDIT_CARD]" or "[DIGITS]" in f["text"] for f in finals)
    assert not any("4111" in e.get("text", "") for e in events)
    uids = [f["utteranceId"] for f in finals]
    assert len(set(uids)) == 4
    for p in partials:
        assert p["utteranceId"] in uids
    assert events[-1]["type"] == "call.ended"


async def test_a_canceled_recognizer_is_reported_and_the_call_goes_on(
    fake_speech, tmp_path
) -> None:
    fake_speech.script(Failure(http_status=401))
    fake_speech.script(SCRIPT_A)
    server = start_server(tmp_path, **azure_env(fake_speech))
    try:
        events = await run_call(server, "azure-canceled")
        metrics = server.get_bytes("/metrics").decode()
    finally:
        server.stop()
    errors = [e for e in events if e["type"] == "speech.error"]
    assert len(errors) == 1 and "canceled" in errors[0]["error"]
    finals = [e for e in events if e["type"] == "transcript.final"]
    assert [f["text"] for f in finals] == [p.text for p in SCRIPT_A]
    assert finals[0]["participant"] != errors[0]["participant"]
    assert events[-1]["type"] == "call.ended"
    assert "callstream_speech_errors_total 1.0" in metrics


async def test_live_translation_from_the_audio_is_redacted(fake_speech, tmp_path) -> None:
    card_de = "meine Karte ist 4111 1111 1111 1111"
    for _ in range(2):
        fake_speech.script(
            [Phrase("my card is 4111 1111 1111 1111", 1000, 2000, translations={"de": card_de})]
        )
    server = start_server(
        tmp_path,
        CALLSTREAM_TRANSLATOR="azure",
        CALLSTREAM_TRANSLATE_TO="de",
        **azure_env(fake_speech),
    )
    try:
        events = await run_call(server, "azure-translated")
    finally:
        server.stop()
    translations = [e for e in events if e["type"] == "translation"]
    finals = {e["utteranceId"] for e in events if e["type"] == "transcript.final"}
    assert translations and {t["utteranceId"] for t in translations} <= finals
    for t in translations:
        assert t["language"] == "de" and t["text"].startswith("meine Karte ist [")
    assert not any("4111" in e.get("text", "") for e in events)
