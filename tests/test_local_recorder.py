"""callstream's own recorder (CALLSTREAM_RECORDER=local), end to end: no card audio on disk.

One real `callstream serve` with the local engine takes two calls at once, in real time:
the payment fixture up to the security code (the agent's intent phrase, then the card,
expiry and code), and a late-trigger call made from the fixtures (a greeting, a line from
the customer, the customer reading the card with no intent phrase before it, the agent's
closing phrase, a last line from the customer). For each, the files written are compared
with the audio sent: inside every removed span exactly zero, outside it byte for byte
what was sent; the card's utterance is inside a span; decoded with the same recognizer
(pocketsphinx) the customer's recording holds no digit, while the same clip of the source
decodes to the card's digits (the recognizer would have heard them). Then `export
--audio` and `verify`, then a purge that removes one call's recording and keeps the one
on legal hold.

The reach-back each window needed (how far behind the newest audio its cut began: what
the delay line, or the wait for the recognizer's finals, must cover) is printed:
`pytest tests/test_local_recorder.py -s`. Last, in process: a window that reaches back
further than the delay line held is an exposure on the call's audit, never hidden.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from models.settings import load_settings
from pipeline.cli.replay import AGENT_ID, CUSTOMER_ID, load_call_audio, replay_call
from pipeline.compliance.store import SqliteEventStore
from pipeline.ingest.channel import Utterance
from pipeline.pci.payment_guard import GuardPolicy, PaymentGuard
from pipeline.privacy.spoken_numbers import normalize
from pipeline.recorder.call_recorder import CallRecorder
from pipeline.recorder.writer import DiskWriter
from pipeline.service import Service
from workers.stt.acs import AcsPassthroughEngine

from .conftest import (
    FIXTURES,
    collect_call_events,
    load_manifest,
    payment_call_sender,
    run_cli,
    start_server,
    start_subscribers,
    wait_for,
    wait_until,
)
from .test_e2e_media import _transcription

RATE = 16000
INTENT, LATE = "rec-intent", "rec-late"
CARD_WORDS = {"four", "one"}


def _stereo(name: str) -> np.ndarray:
    with wave.open(str(FIXTURES / f"{name}.wav"), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)


def _clip(name: str, index: int) -> np.ndarray:
    """One utterance of a fixture, from its speaker's channel (0 = customer, 1 = agent)."""
    u = load_manifest(name)["utterances"][index]
    side = 0 if u["role"] == "customer" else 1
    return _stereo(name)[u["startMs"] * 16 : u["endMs"] * 16, side]


def _write_stereo(path: Path, samples: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2), w.setsampwidth(2), w.setframerate(RATE)
        w.writeframes(samples.tobytes())
    return path


def payment_call_to_security_code(path: Path) -> Path:
    """The payment fixture up to a second after the customer's expiry and security code."""
    end_ms = load_manifest("payment_call")["utterances"][3]["endMs"] + 1000
    return _write_stereo(path, _stereo("payment_call")[: end_ms * 16])


# The card's first group ("four one one one") ends at this offset of its clip, in the pause
# before the second; the late call says it alone, then the rest after a breath.
CARD_FIRST_GROUP_MS = 1270
CARD_BREATH_MS = 1500


def late_trigger_call(path: Path) -> dict[str, tuple[str, int, int]]:
    """Write the late-trigger call; returns its lines: name -> (role, startMs, endMs).

    The customer reads the card in two utterances, its first group alone: neither the
    first (four digits) nor an intent phrase says a card is coming, so the window opens on
    the second and must cut the first too."""
    card = load_manifest("payment_call")["utterances"][1]
    clip = _clip("payment_call", 1)  # four one one one, one one one one, ...
    split = CARD_FIRST_GROUP_MS * 16
    rest_ms = card["startMs"] + CARD_FIRST_GROUP_MS + CARD_BREATH_MS
    lines = {  # (role, startMs, audio)
        "greeting": ("agent", 500, _clip("support_call", 0)),  # hello, how can i help you today?
        "problem": ("customer", 3000, _clip("support_call", 1)),  # hi, my internet is not working.
        "card": ("customer", card["startMs"], clip[:split]),  # four one one one
        "card rest": ("customer", rest_ms, clip[split:]),  # one one one one, ...
        "closing": ("agent", 14000, _clip("payment_call", 6)),  # ... payment has gone through.
        "after": ("customer", 19000, _clip("support_call", 5)),  # okay, it is working now.
    }
    end = max(start + len(a) // 16 for _, start, a in lines.values()) + 1000
    out = np.zeros((end * 16, 2), "<i2")
    placed = {}
    for name, (role, start, audio) in lines.items():
        side = 0 if role == "customer" else 1
        out[start * 16 : start * 16 + len(audio), side] = audio
        placed[name] = (role, start, start + len(audio) // 16)
    _write_stereo(path, out)
    return placed


async def _two_calls(server, calls: dict[str, Path]) -> dict[str, list[dict]]:
    collectors = await start_subscribers(
        server, *(collect_call_events(server.ws, call_id) for call_id in calls)
    )
    await asyncio.gather(
        *(
            replay_call(f"{server.ws}/media", load_call_audio(path), call_id, speed=1.0)
            for call_id, path in calls.items()
        )
    )
    return dict(zip(calls, await asyncio.gather(*collectors), strict=True))


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("recorder")
    late_wav = tmp / "late_trigger_call.wav"
    placed = late_trigger_call(late_wav)
    sources = {INTENT: payment_call_to_security_code(tmp / "payment_call.wav"), LATE: late_wav}
    t0 = time.monotonic()
    server = start_server(tmp, CALLSTREAM_STT="local", CALLSTREAM_RECORDER="local")
    try:
        t1 = time.monotonic()
        events = asyncio.run(_two_calls(server, sources))
        print(f"\nserver ready in {t1 - t0:.1f} s; calls done in {time.monotonic() - t1:.1f} s")
        audits = {}
        for call_id in sources:
            # The files' records come as the call ends, before its call.ended is published.
            audits[call_id] = wait_until(
                lambda c=call_id: _records(server, c, "recorder.file"), what="the recording"
            )
            audits[call_id] = server.get_json(f"/calls/{call_id}/audit")[1]["records"]
        yield server, sources, placed, events, audits
    finally:
        server.stop()


def _records(server, call_id: str, kind: str) -> list[dict]:
    status, doc = server.get_json(f"/calls/{call_id}/audit")
    return [r for r in doc.get("records", []) if r["kind"] == kind] if status == 200 else []


def _recording(server, call_id: str, role: str) -> np.ndarray:
    [folder] = [p for p in (server.data_dir / "recordings").iterdir() if p.name.startswith(call_id)]
    with wave.open(str(folder / f"{role}-1.wav"), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, RATE)
        return np.frombuffer(w.readframes(w.getnframes()), "<i2")


@functools.cache
def _decoder():
    from pocketsphinx import Decoder

    decoder = Decoder(loglevel="FATAL", bestpath=True)
    return decoder, decoder.get_cmn()


def _decode(samples: np.ndarray) -> str:
    """Batch decoding with the engine's model and configuration (bench/speech_accuracy.py):
    each clip whole, from the model's initial cepstral mean."""
    decoder, initial_cmn = _decoder()
    decoder.set_cmn(initial_cmn)
    decoder.start_utt()
    decoder.process_raw(samples.astype("<i2").tobytes(), full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return hyp.hypstr if hyp is not None else ""


def _heard(samples: np.ndarray) -> list[str]:
    """What the recognizer hears in a recording: each stretch of sound decoded on its own
    (digital silence holds no word, and decoding it would only cost time)."""
    loud = np.flatnonzero(samples)
    if not len(loud):
        return []
    breaks = np.flatnonzero(np.diff(loud) > RATE // 4)  # a quarter second of zeros between
    starts = [loud[0], *loud[breaks + 1]]
    ends = [*loud[breaks], loud[-1]]
    return [_decode(samples[a : b + 1]) for a, b in zip(starts, ends, strict=True)]


def _card_digits(text: str) -> list[str]:
    """The card's digits (4111 1111 1111 1111) in decoded text: its digit words, and any
    run of two or more digits the Redactor's number reader finds."""
    words = [w for w in text.lower().split() if w in CARD_WORDS]
    return words + [r.digits for r in normalize(text).runs if len(r.digits) >= 2]


def test_no_card_audio_reaches_disk_and_the_rest_is_what_was_sent(recorded) -> None:
    server, sources, placed, events, audits = recorded
    for call_id, source in sources.items():
        records = audits[call_id]
        spans = [r for r in records if r["kind"] == "recorder.removed"]
        opened = [r for r in records if r["kind"] == "window.opened"]
        print(
            f"\n{call_id}: windows {[(w['trigger'], w['startMs'], w['exposureFromMs']) for w in opened]}"
        )
        for s in spans:
            print(f"  removed {s['fromMs']}-{s['toMs']} ms, reach-back {s['reachBackMs']} ms"
                  f" (delay {s['delayS']} s): {s['reason']}")  # fmt: skip
        assert spans and len(spans) == len(opened)
        assert not [r for r in records if r["kind"] in ("recorder.exposure", "recorder.error")]
        local = [e for e in events[call_id] if e.get("recordingId") == "local"]
        assert [e["type"] for e in local] == ["recording.paused", "recording.resumed"] * len(spans)
        with wave.open(str(source), "rb") as w:
            sent = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)
        inside = np.zeros(len(sent), bool)
        for s in spans:
            inside[s["fromMs"] * 16 : s["toMs"] * 16] = True
        for side, role in ((0, "customer"), (1, "agent")):
            got = _recording(server, call_id, role)
            # The replay sends whole 20 ms frames: the file is the call's length in frames.
            assert len(got) == len(sent) // 320 * 320, (role, len(got), len(sent))
            inside, sent_side = inside[: len(got)], sent[: len(got), side]
            # Removed spans are digital silence: zero energy, exactly.
            assert not got[inside].any()
            # Everything else is the audio that was sent, sample for sample, in place.
            assert np.array_equal(got[~inside], sent_side[~inside])
            if role == "customer":
                heard = _heard(got)
                print(f"  {role} recording, decoded: {heard}")
                assert not any(_card_digits(text) for text in heard), heard
        # The card's utterance is inside a removed span (both halves of it in the late call).
        card = load_manifest("payment_call")["utterances"][1]
        end_ms = card["endMs"] + (CARD_BREATH_MS if call_id == LATE else 0)
        assert inside[card["startMs"] * 16 : end_ms * 16].all()
    # The recognizer would have heard the card: the source clip decodes to its digits.
    assert len(_card_digits(_decode(_clip("payment_call", 1)))) >= 4
    # The late call kept what the customer said before the card (what came after the window
    # is kept too, unless the closing phrase was decoded after it: compared above).
    _, start, end = placed["problem"]
    assert _recording(server, LATE, "customer")[start * 16 : end * 16].any()
    [late] = [r for r in audits[LATE] if r["kind"] == "window.opened"]
    assert late["trigger"] == "digits" and late["exposureFromMs"] <= card["startMs"]


def test_export_audio_writes_the_files_and_recording_json(recorded, tmp_path) -> None:
    server, _, _, events, _ = recorded
    out = tmp_path / "late-audio"
    run = run_cli("export", LATE, "--audio", "--out", str(out), "--data-dir", str(server.data_dir))
    assert run.returncode == 0, run.stderr
    doc = json.loads((out / "recording.json").read_text())
    joined = {
        e["participant"]: e["role"] for e in events[LATE] if e["type"] == "participant.joined"
    }
    assert {(f["participant"], f["role"]) for f in doc["files"]} == set(joined.items())
    customer = next(p for p, r in joined.items() if r == "customer")
    assert customer.startswith("4:~") and AGENT_ID in joined  # published ids, pseudonymized
    for f in doc["files"]:
        assert (out / f["file"]).is_file() and (out / f["file"]).stat().st_mode & 0o077 == 0
        assert (f["format"], f["sampleRate"], f["channels"]) == ("wav", RATE, 1)
    assert doc["removedSpans"] and all(
        set(s) == {"fromMs", "toMs", "reason"} and s["toMs"] > s["fromMs"]
        for s in doc["removedSpans"]
    )
    verify = run_cli("verify", str(out / "recording.json"))
    assert verify.returncode == 0 and verify.stdout.startswith("OK"), verify.stdout + verify.stderr
    # A recording file changed after the export is named by verify.
    wav = out / doc["files"][0]["file"]
    wav.write_bytes(wav.read_bytes()[:-2] + b"\x01\x00")
    verify = run_cli("verify", str(out / "recording.json"))
    assert verify.returncode == 1 and "was altered" in verify.stdout, verify.stdout


def test_purge_removes_recordings_and_legal_hold_keeps_them(recorded) -> None:
    server, *_ = recorded
    assert server.post_json(f"/calls/{LATE}/hold", {"hold": True, "reason": "dispute"})[0] == 200
    server.stop()  # the purge below runs on the stopped deployment's data dir
    folders = {p.name.split("-")[1]: p for p in (server.data_dir / "recordings").iterdir()}
    assert set(folders) == {"intent", "late"}
    run = run_cli("purge", "--days", "0", "--data-dir", str(server.data_dir))
    assert run.returncode == 0, run.stderr
    assert not folders["intent"].exists()
    assert (folders["late"] / "customer-1.wav").is_file()


async def test_a_window_reaching_back_past_the_delay_line_is_an_audited_exposure(tmp_path) -> None:
    """A one-second delay line and a late trigger (ACS's transcription, here) that names an
    utterance six seconds back: what was written is an exposure on record (and an event);
    what the line still held is cut."""
    settings = load_settings(
        environ={},
        overrides={"data_dir": str(tmp_path), "recorder": "local", "recorder_delay_s": 1},
    )
    service = Service(
        settings, engine=AcsPassthroughEngine(), store=SqliteEventStore(tmp_path / "events.db")
    )
    service.final_timeout_s = 0.5
    await service.start()
    try:
        session = service.session("exposed")
        session.attach()
        send = payment_call_sender(session)
        send(0, 8000)  # the agent's question and the card's first digits, at once
        recorder = session.recorder
        await wait_for(
            lambda: min(p.track.written for p in recorder.parts) >= 7000 * 32,
            what="the audio older than the one-second delay to be written",
        )
        card = "four one one one one one one one one one one one one one one one"
        session.on_message(_transcription(card, "Final", CUSTOMER_ID, 6400))
        session.detach("test")
        await session.close_task
        await service.journal.flush()
        records = [json.loads(a.body) for a in service.store.audit("exposed")]
        events = [json.loads(raw) for _, raw in service.store.read("exposed")]
    finally:
        await service.stop()
    [span] = [r for r in records if r["kind"] == "recorder.removed"]
    exposures = {r["participant"]: r for r in records if r["kind"] == "recorder.exposure"}
    customer = next(p for p in exposures if p.startswith("4:~"))
    assert exposures[customer]["fromMs"] == span["fromMs"] <= 6400
    assert exposures[customer]["toMs"] == 7000  # all that was written: on record
    assert "before the window reached back" in exposures[customer]["reason"]
    errors = [e for e in events if e["type"] == "recording.error" and e["recordingId"] == "local"]
    assert errors and all(e["error"].startswith("exposure") for e in errors)
    # What the line still held (from 7 s on) was cut; what came before it stayed as written.
    with wave.open(str(next(tmp_path.rglob("customer-1.wav"))), "rb") as w:
        got = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    sent = np.frombuffer(
        dict(load_call_audio(FIXTURES / "payment_call.wav").tracks)[CUSTOMER_ID], "<i2"
    )
    assert not got[7000 * 16 :].any() and sent[7000 * 16 : 8000 * 16].any()
    assert np.array_equal(got[: 7000 * 16], sent[: 7000 * 16])


class _Call:
    """The few things a CallRecorder reads of its call."""

    call_id = "held"
    mode = "unmixed"

    def __init__(self) -> None:
        self.guard = PaymentGuard(GuardPolicy.from_settings(load_settings(environ={})))
        self.pending: set[str] = set()
        self.events: list = []
        self.audits: list[tuple[str, dict]] = []

    def now_ms(self) -> int:
        return 0

    def emit(self, event) -> None:
        self.events.append(event)

    def audit(self, kind: str, body: dict) -> None:
        self.audits.append((kind, body))


class _Channel:
    participant, role = "4:~customer", "customer"
    utterance: Utterance | None = None


async def test_audio_waits_for_the_final_of_the_utterance_it_belongs_to(tmp_path) -> None:
    """A recognizer running behind (the local engine on a busy machine) holds the audio of
    an utterance whose final the guard has not read, past the delay, until it has."""
    call, channel, writer = _Call(), _Channel(), DiskWriter()
    recorder = CallRecorder(call, tmp_path / "held", writer, delay_s=1)
    tape = recorder.track(channel, 0, 16000)
    speech = np.frombuffer(
        dict(load_call_audio(FIXTURES / "payment_call.wav").tracks)[AGENT_ID], "<i2"
    )
    for ms in range(0, 5000, 20):
        tape.append(speech[ms * 16 : ms * 16 + 320].tobytes())
    channel.utterance = Utterance("u1", 1000, None)  # spoken from 1 s; its final pending
    call.pending.add("u1")
    track = recorder.parts[0].track
    await wait_for(lambda: track.written == 1000 * 32, what="the audio before the utterance")
    # A negative check: well past the one-second delay, nothing of the utterance is written.
    await asyncio.sleep(1.5)
    assert track.written == 1000 * 32
    call.pending.discard("u1")  # the guard has read its final
    await wait_for(lambda: track.written == 4000 * 32, what="the rest, up to the delay")
    await recorder.close("test")
    writer.close()
    assert [k for k, _ in call.audits] == ["recorder.file"]
