"""The ACS wire parser: every message shape ACS sends (README, "Connect a real ACS resource"), and a fuzz of malformed frames."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.acs import (
    AudioData,
    AudioMetadata,
    DtmfData,
    MalformedFrame,
    ResultStatus,
    TranscriptionData,
    TranscriptionMetadata,
    UnknownKind,
    decode_message,
    frame_bytes,
    ticks_to_ms,
)
from models.settings import load_settings
from pipeline.compliance.store import SqliteEventStore
from pipeline.service import Service

PCM16 = bytes(range(256)) * 2 + bytes(128)  # 640 bytes
B64 = base64.b64encode(PCM16).decode()

SAMPLES = {
    "AudioMetadata": {
        "kind": "AudioMetadata",
        "audioMetadata": {
            "subscriptionId": "89e8cb59",
            "encoding": "PCM",
            "sampleRate": 16000,
            "channels": 1,
            "length": 640,
        },
    },
    "AudioData": {
        "kind": "AudioData",
        "audioData": {
            "timestamp": "2024-11-15T19:16:12.925Z",
            "participantRawID": "8:acs:3d20e1de",
            "data": B64,
            "silent": False,
        },
    },
    "DtmfData": {"kind": "DtmfData", "dtmfData": {"data": "3"}},
    "TranscriptionMetadata": {
        "kind": "TranscriptionMetadata",
        "transcriptionMetadata": {
            "subscriptionId": "s",
            "locale": "en-us",
            "callConnectionId": "c",
            "correlationId": "r",
        },
    },
    "TranscriptionData": {
        "kind": "TranscriptionData",
        "transcriptionData": {
            "text": "Testing transcription.",
            "format": "display",
            "confidence": 0.695,
            "offset": 2516998782481234400,
            "duration": 31600000,
            "words": [{"text": "testing", "offset": 0, "duration": 0}],
            "participantRawID": "8:acs:x",
            "resultStatus": "Final",
        },
    },
}


def enc(obj: object) -> bytes:
    return json.dumps(obj).encode()


def test_audio_metadata() -> None:
    m = decode_message(enc(SAMPLES["AudioMetadata"]))
    assert isinstance(m, AudioMetadata)
    assert m.audioMetadata.sampleRate == 16000 and m.audioMetadata.length == 640


def test_audio_data_decodes_base64_and_tolerates_optional_fields() -> None:
    msg = json.loads(json.dumps(SAMPLES["AudioData"]))
    msg["audioData"]["mark"] = {"sequence": 3}  # newer SDKs
    m = decode_message(enc(msg))
    assert isinstance(m, AudioData)
    assert m.audioData.data == PCM16
    assert m.audioData.participantRawID == "8:acs:3d20e1de"
    assert m.audioData.silent is False


def test_audio_data_mixed_has_no_participant_and_silent_flag() -> None:
    m = decode_message(
        enc(
            {
                "kind": "AudioData",
                "audioData": {"data": B64, "participantRawID": None, "silent": True},
            }
        )
    )
    assert isinstance(m, AudioData) and m.audioData.participantRawID is None and m.audioData.silent


def test_24khz_metadata_and_frame_size() -> None:
    m = decode_message(
        enc(
            {
                "kind": "AudioMetadata",
                "audioMetadata": {
                    "encoding": "PCM",
                    "sampleRate": 24000,
                    "channels": 1,
                    "length": 960,
                },
            }
        )
    )
    assert isinstance(m, AudioMetadata) and m.audioMetadata.sampleRate == 24000
    assert frame_bytes(24000) == 960 and frame_bytes(16000) == 640


def test_dtmf_with_newer_optional_fields() -> None:
    m = decode_message(
        enc(
            {
                "kind": "DtmfData",
                "dtmfData": {
                    "data": "7",
                    "timestamp": "2024-11-15T19:16:12.925Z",
                    "participantRawID": "4:+1555",
                },
            }
        )
    )
    assert isinstance(m, DtmfData) and m.dtmfData.data == "7"


def test_transcription_messages() -> None:
    meta = decode_message(enc(SAMPLES["TranscriptionMetadata"]))
    assert isinstance(meta, TranscriptionMetadata) and meta.transcriptionMetadata.locale == "en-us"
    data = decode_message(enc(SAMPLES["TranscriptionData"]))
    assert isinstance(data, TranscriptionData)
    assert data.transcriptionData.resultStatus is ResultStatus.FINAL
    assert ticks_to_ms(data.transcriptionData.duration) == 3160
    inter = json.loads(json.dumps(SAMPLES["TranscriptionData"]))
    inter["transcriptionData"]["resultStatus"] = "Intermediate"
    assert decode_message(enc(inter)).transcriptionData.resultStatus is ResultStatus.INTERMEDIATE


def test_unknown_kind_is_tolerated_not_malformed() -> None:
    m = decode_message(b'{"kind":"StopAudio","stopAudio":{}}')
    assert isinstance(m, UnknownKind) and m.kind == "StopAudio"


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"{}",
        b'{"kind":"AudioData"}',
        b'{"kind":"AudioData","audioData":{"data":"!!!notbase64"}}',
        b'{"kind":"AudioMetadata","audioMetadata":{"sampleRate":"fast"}}',
        b'{"kind":"TranscriptionData","transcriptionData":{"text":"x","resultStatus":"Maybe"}}',
        b"[1,2,3]",
    ],
)
def test_malformed_frames_raise_payload_free_error(raw: bytes) -> None:
    with pytest.raises(MalformedFrame) as info:
        decode_message(raw)
    assert "notbase64" not in str(info.value) and "Maybe" not in str(info.value)


# ---- fuzz: frames straight into a live call session ------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def mutated_messages(draw: st.DrawFn) -> bytes:
    msg = json.loads(json.dumps(SAMPLES[draw(st.sampled_from(sorted(SAMPLES)))]))
    kind = msg["kind"]
    payload_key = kind[0].lower() + kind[1:]
    payload = msg[payload_key]
    action = draw(st.sampled_from(["replace", "drop", "payload", "data", "kind"]))
    if action == "replace" and payload:
        payload[draw(st.sampled_from(sorted(payload)))] = draw(json_values)
    elif action == "drop" and payload:
        payload.pop(draw(st.sampled_from(sorted(payload))))
    elif action == "payload":
        msg[payload_key] = draw(json_values)
    elif action == "data" and kind == "AudioData":
        raw = draw(st.binary(max_size=4000))
        payload["data"] = (
            base64.b64encode(raw).decode() if draw(st.booleans()) else draw(st.text(max_size=50))
        )
    elif action == "kind":
        msg["kind"] = draw(st.text(max_size=12))
    return enc(msg)


frames = st.one_of(st.binary(max_size=200), json_values.map(enc), mutated_messages())


@pytest.fixture
async def acs_service(tmp_path) -> AsyncIterator[Service]:
    """A started in-process service (ACS passthrough speech, real Presidio, real SQLite)."""
    cfg = load_settings(environ={}, overrides={"stt": "acs", "data_dir": str(tmp_path)})
    service = Service(cfg, store=SqliteEventStore(tmp_path / "events.db"))
    await service.start()
    yield service
    await service.stop()


async def test_fuzzed_frames_never_escape_and_are_counted(acs_service: Service) -> None:
    service = acs_service
    session = service.session("fuzz-call")
    session.attach()
    session.on_message(enc(SAMPLES["AudioMetadata"]))
    stats = service.stats

    @settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
    @given(frames)
    def feed(frame: bytes) -> None:
        before = stats.as_dict()
        session.on_message(frame)
        after = stats.as_dict()
        assert after["frames_received"] == before["frames_received"] + 1
        moved = {k for k in after if after[k] != before[k]} - {
            "frames_received",
            "frames_silent",
            "utterances",
        }
        accepted_without_counter = isinstance(
            _safe_decode(frame), AudioMetadata | TranscriptionMetadata | TranscriptionData
        )
        assert moved or accepted_without_counter, "every frame is accounted for"

    feed()
    assert stats.frames_malformed > 50
    # The call survives: a valid frame after the fuzz is still handled.
    before = stats.frames_audio
    session.on_message(enc(SAMPLES["AudioData"]))
    assert stats.frames_audio == before + 1
    session.detach("test")
    await session.close_task


def _safe_decode(frame: bytes) -> object:
    try:
        return decode_message(frame)
    except MalformedFrame:
        return None


async def test_wrong_length_and_audio_before_metadata_are_malformed(acs_service: Service) -> None:
    service = acs_service
    session = service.session("m-call")
    session.attach()
    session.on_message(enc(SAMPLES["AudioData"]))  # before metadata
    assert service.stats.frames_malformed == 1
    session.on_message(enc(SAMPLES["AudioMetadata"]))
    odd = json.loads(json.dumps(SAMPLES["AudioData"]))
    odd["audioData"]["data"] = base64.b64encode(b"\x01\x02\x03").decode()
    session.on_message(enc(odd))
    huge = json.loads(json.dumps(SAMPLES["AudioData"]))
    huge["audioData"]["data"] = base64.b64encode(bytes(200_000)).decode()
    session.on_message(enc(huge))
    assert service.stats.frames_malformed == 3
    session.on_message(enc(SAMPLES["AudioData"]))
    assert service.stats.frames_audio == 1
    session.detach("test")
    await session.close_task


def test_media_protocol_is_the_high_water_variant() -> None:
    """Guards the ingest optimisation: a uvicorn upgrade that drops the internals it uses
    falls back to the stock protocol, and this test says so."""
    from pipeline.server.ws_protocol import media_ws_protocol

    proto = media_ws_protocol()
    assert isinstance(proto, type) and proto.__name__ == "HighWaterSansIOProtocol"
    # And the HTTP side's header deadline (tests/test_resilience.py checks what it does).
    from pipeline.server.http_protocol import http_protocol

    http = http_protocol()
    assert isinstance(http, type) and http.__name__ == "HeaderDeadlineH11Protocol"


async def test_gap_in_a_participants_frames_keeps_offsets_on_the_call_timeline(
    acs_service: Service,
) -> None:
    """Unmixed ACS streams only dominant speakers: frames for a participant stop and resume."""
    from pipeline.cli.replay import AGENT_ID, load_call_audio

    from .conftest import FIXTURES

    agent = dict(load_call_audio(FIXTURES / "support_call.wav").tracks)[AGENT_ID]
    session = acs_service.session("gap-call")
    session.attach()
    session.on_message(enc(SAMPLES["AudioMetadata"]))

    def frame(i: int, at_ms: int) -> bytes:
        ts = f"2024-11-15T19:16:{12 + at_ms // 1000:02d}.{at_ms % 1000:03d}Z"
        chunk = agent[i * 640 : (i + 1) * 640]
        return enc(
            {
                "kind": "AudioData",
                "audioData": {
                    "timestamp": ts,
                    "participantRawID": "8:acs:agent",
                    "data": base64.b64encode(chunk).decode(),
                },
            }
        )

    for i in range(50, 100):  # the agent's first words (script: 500 ms on), 1 s in all
        session.on_message(frame(i, (i - 50) * 20))
    ch = session.channels["8:acs:agent"]
    assert ch.segmenter.in_utterance and ch.segmenter.clock_ms == 1000
    session.on_message(frame(100, 6000))  # frames resume 5 s later
    assert not ch.segmenter.in_utterance, "the utterance ended where the audio stopped"
    assert ch.segmenter.clock_ms == 6020
    session.detach("test")
    await session.close_task


async def test_an_utterance_whose_partials_never_end_is_bounded(acs_service: Service) -> None:
    """A client that sends partials and never the final: what the utterance keeps in memory
    (its sticky redacted values) stops growing, every partial is still redacted, and the
    final, when it comes, closes it."""
    from pipeline.privacy.partials import StickyValues

    from .test_e2e_media import _transcription

    session = acs_service.session("endless-call")
    session.attach()
    for i in range(200):
        session.on_message(
            _transcription(f"call me at 212 555 {i:04d}", "Intermediate", "4:+15551234", 1000)
        )
    await acs_service.redaction.drain()
    [sticky] = session.sticky.values()
    assert len(sticky) == StickyValues.MAX_VALUES
    session.on_message(_transcription("call me at 212 555 0199", "Final", "4:+15551234", 1000))
    await acs_service.redaction.drain()
    assert session.sticky == {} and not session.pending
    await acs_service.journal.flush()
    events = [json.loads(raw) for _, raw in acs_service.store.read("endless-call")]
    texts = [e["text"] for e in events if e["type"] in ("transcript.partial", "transcript.final")]
    assert len(texts) == 201 and all("[PHONE_NUMBER]" in t and "555" not in t for t in texts)
    session.detach("test")
    await session.close_task
