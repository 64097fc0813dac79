"""A customer's phone number never leaves the process: it is published as a keyed pseudonym.

Issue 17 found the caller's number in clear in every event (`participant`), in the store,
the exports and the utterance ids. A real call through a real `callstream serve` on
loopback, with enrichment against the fake model, and then every way out of the process
is searched for the number and for its digits: the live event stream, the store's files,
the four export formats, the audit and listing APIs, the metrics, the server's log and
what the model received. The pseudonym is then checked for what makes it useful: stable
across a restart on the same data dir, different under a different key, and agents'
ids (and anonymous Teams guests') left as they are.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import stat
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from models.settings import load_settings
from pipeline.privacy.pseudonyms import (
    KEY_FILE,
    PseudonymKeyError,
    Pseudonyms,
    deployment_key,
    key_problems,
    pseudonym,
    read_key_file,
)

from .conftest import Server, collect_call_events, run_cli, start_server, start_subscribers
from .fake_openai import FakeOpenAI
from .test_e2e_media import _transcription

# A number from the UK's range for drama (020 7946 0xxx): nobody's, and none of its digit
# runs is a common substring of timestamps or counters.
CUSTOMER = "4:+442079460958"
DIGITS = "442079460958"
# Every way the number could show: whole, without the plus, the national form, and the
# tails an id built from it would keep (the old utterance ids kept the last six).
NEEDLES = (CUSTOMER, "+" + DIGITS, DIGITS, "2079460958", "20 7946 0958", "79460958", DIGITS[-6:])
AGENT = "8:acs:agent-7"
VISITOR = "8:teamsvisitor:6f1c2ad0-58e2-4d64-9f5b-2c0e9e7a41b3"
EXPLICIT_KEY = "a-deployment-key-set-by-the-operator-0123"
PSEUDONYM = re.compile(r"4:~[a-z2-7]{26}")


# ----------------------------------------------------------------- the function and the key
def test_the_pseudonym_is_a_keyed_hash_of_the_raw_id() -> None:
    key = "k" * 32
    p = pseudonym(CUSTOMER, key)
    assert PSEUDONYM.fullmatch(p), p
    assert p == pseudonym(CUSTOMER, key.encode())  # a str key is its UTF-8 bytes
    assert p == pseudonym(CUSTOMER, key), "stable"
    assert p != pseudonym(CUSTOMER, "j" * 32), "another key, another pseudonym"
    assert p != pseudonym("4:+442079460959", key), "another number, another pseudonym"
    # The documented way back: the key holder recomputes it for a candidate number.
    digest = hmac.new(key.encode(), CUSTOMER.encode(), hashlib.sha256).digest()[:16]
    assert p == "4:~" + base64.b32encode(digest).decode().rstrip("=").lower()

    ids = Pseudonyms(key)
    assert ids.published(CUSTOMER, "customer") == p
    assert ids.published(CUSTOMER, "unknown") == p  # a number is a number, whatever the role
    assert ids.published(AGENT, "agent") == AGENT
    assert ids.published("8:orgid:1a2b", "agent") == "8:orgid:1a2b"
    assert ids.published(VISITOR, "customer") == VISITOR
    assert ids.published("mixed", "unknown") == "mixed"
    assert ids.published("4:+18005550199", "agent") == "4:+18005550199"  # a site's staff line


def test_a_short_key_is_refused_naming_the_setting(tmp_path: Path) -> None:
    with pytest.raises(PseudonymKeyError, match="CALLSTREAM_PSEUDONYM_KEY"):
        Pseudonyms("too-short")
    settings = load_settings(
        environ={"CALLSTREAM_PSEUDONYM_KEY": "short", "CALLSTREAM_DATA_DIR": str(tmp_path)}
    )
    errors, _ = key_problems(settings)
    assert len(errors) == 1 and "CALLSTREAM_PSEUDONYM_KEY" in errors[0]
    out = run_cli(
        "serve", env={**os.environ, "CALLSTREAM_PSEUDONYM_KEY": "short",
                      "CALLSTREAM_DATA_DIR": str(tmp_path / "d"), "CALLSTREAM_PORT": "0"},
        timeout=30,
    )  # fmt: skip
    assert out.returncode == 2 and "CALLSTREAM_PSEUDONYM_KEY" in out.stderr, out.stderr


def test_a_generated_key_is_owner_only_and_kept(tmp_path: Path) -> None:
    data = tmp_path / "fresh" / "data"
    settings = load_settings(environ={}, overrides={"data_dir": str(data)})
    key = deployment_key(settings)
    assert len(key) >= 32
    path = data / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert deployment_key(settings) == key == read_key_file(path), "reused, not regenerated"
    assert [p.name for p in data.iterdir()] == [KEY_FILE], "no temporary file left"
    # The setting wins over the file.
    explicit = load_settings(
        environ={}, overrides={"data_dir": str(data), "pseudonym_key": EXPLICIT_KEY}
    )
    assert deployment_key(explicit) == EXPLICIT_KEY


def test_replicas_sharing_a_store_or_bus_are_warned_to_set_the_key(tmp_path: Path) -> None:
    def warnings(**overrides: str) -> list[str]:
        errors, found = key_problems(
            load_settings(environ={}, overrides={"data_dir": str(tmp_path), **overrides})
        )
        assert errors == []
        return found

    assert warnings() == []  # one process, its own SQLite file: the generated key is enough
    [pg] = warnings(store="postgresql://cs@db/callstream")
    assert "CALLSTREAM_PSEUDONYM_KEY" in pg and "PostgreSQL" in pg
    [redis] = warnings(bus="redis://cache:6379/0")
    assert "CALLSTREAM_PSEUDONYM_KEY" in redis and "Redis" in redis
    assert warnings(store="postgresql://cs@db/callstream", pseudonym_key=EXPLICIT_KEY) == []


# ----------------------------------------------------------------- a real call, every output
def _llm_env(fake: FakeOpenAI) -> dict[str, str]:
    return {
        "OPENAI_API_KEY": fake.api_key, "OPENAI_BASE_URL": fake.base_url, "CALLSTREAM_SENTIMENT": "openai",
        "CALLSTREAM_TRANSLATOR": "openai", "CALLSTREAM_TRANSLATE_TO": "de",
    }  # fmt: skip


def _audio(participant: str) -> str:
    return json.dumps({"kind": "AudioData", "audioData": {
        "data": base64.b64encode(bytes(640)).decode(), "participantRawID": participant, "silent": False}})  # fmt: skip


async def _call(server: Server, call_id: str) -> list[dict]:
    """One call: each participant's audio (channels, joined from the audio path), then ACS's
    transcription of what they said (partials, finals: utterance ids, enrichment)."""
    [collector] = await start_subscribers(
        server, collect_call_events(server.ws, call_id, timeout=60)
    )
    async with connect(
        f"{server.ws}/media", additional_headers={"x-ms-call-connection-id": call_id}
    ) as ws:
        await ws.send(json.dumps({"kind": "AudioMetadata", "audioMetadata": {
            "subscriptionId": "s", "encoding": "PCM", "sampleRate": 16000, "channels": 1, "length": 640}}))  # fmt: skip
        for _ in range(5):
            for who in (CUSTOMER, AGENT, VISITOR):
                await ws.send(_audio(who))
        await ws.send(_transcription("thanks for calling how can I help", "Final", AGENT, 0))
        await ws.send(_transcription("hi I was charged", "Intermediate", CUSTOMER, 2000))
        await ws.send(_transcription("hi I was charged twice this month", "Final", CUSTOMER, 2000))
        await ws.send(_transcription("this is terrible service", "Final", CUSTOMER, 5000))
        await ws.send(_transcription("can I join the call too", "Final", VISITOR, 8000))
    return await collector


def _joined(events: list[dict]) -> dict[str, str]:
    return {e["participant"]: e["role"] for e in events if e["type"] == "participant.joined"}


def _customer_id(events: list[dict]) -> str:
    [customer] = [p for p, role in _joined(events).items() if p not in (AGENT, VISITOR)]
    return customer


def _leaks(name: str, data: str | bytes) -> list[str]:
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return [f"{needle!r} in {name}" for needle in NEEDLES if needle in text]


@pytest.fixture
def fake_llm():
    with FakeOpenAI() as fake:
        yield fake


async def test_the_number_is_in_no_output_and_its_pseudonym_is_stable(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    data = tmp_path / "data"
    env = {"CALLSTREAM_STT": "acs", "CALLSTREAM_DATA_DIR": str(data), **_llm_env(fake_llm)}
    server = start_server(tmp_path, **env)
    try:
        events = await _call(server, "pseudo-call")
        outputs: dict[str, str | bytes] = {"the live event stream": json.dumps(events)}
        for fmt in ("jsonl", "vtt", "txt", "csv"):
            outputs[f"the {fmt} export"] = server.get_bytes(
                f"/calls/pseudo-call/transcript?format={fmt}"
            )
        outputs["the audit API"] = json.dumps(server.get_json("/calls/pseudo-call/audit"))
        outputs["the call listing"] = json.dumps(server.get_json("/calls"))
        outputs["the metrics"] = server.get_bytes("/metrics")
    finally:
        server.stop()
    outputs["the server's log"] = server.logs()
    outputs["the model's requests"] = fake_llm.all_text()
    for path in sorted(data.rglob("*")):
        if path.is_file() and path.name != KEY_FILE:
            outputs[f"the data dir's {path.name}"] = path.read_bytes()
    assert any(name.endswith("callstream.db") for name in outputs), sorted(outputs)
    assert fake_llm.chat_requests, "enrichment ran: the model was asked"

    leaks = [leak for name, text in outputs.items() for leak in _leaks(name, text)]
    assert leaks == []

    # The customer is published as the pseudonym the deployment key makes, everywhere.
    key = read_key_file(data / KEY_FILE)
    assert stat.S_IMODE((data / KEY_FILE).stat().st_mode) == 0o600
    published = pseudonym(CUSTOMER, key)
    assert _joined(events) == {published: "customer", AGENT: "agent", VISITOR: "customer"}
    by_kind: dict[str, set[str]] = {}
    for e in events:
        if "participant" in e:
            by_kind.setdefault(e["type"], set()).add(e["participant"])
    for kind in ("transcript.partial", "transcript.final", "sentiment", "translation"):
        assert published in by_kind[kind], (kind, by_kind)
        assert by_kind[kind] <= {published, AGENT, VISITOR}, (kind, by_kind)
    # Utterance ids are made from the published id: no run of the number's digits in them.
    uids = {
        e["utteranceId"] for e in events if e.get("participant") == published and "utteranceId" in e
    }
    runs = {DIGITS[i : i + 4] for i in range(len(DIGITS) - 3)}
    assert uids and not [(uid, run) for uid in uids for run in runs if run in uid]
    assert published.encode() in outputs["the csv export"]

    # The same number after a restart on the same data dir: the same pseudonym.
    server = start_server(tmp_path, **env)
    try:
        again = await _call(server, "pseudo-call-2")
    finally:
        server.stop()
    assert _customer_id(again) == published
    assert key == read_key_file(data / KEY_FILE)

    # Another key (the setting wins over the file): another pseudonym; agents unchanged.
    server = start_server(tmp_path, **env, CALLSTREAM_PSEUDONYM_KEY=EXPLICIT_KEY)
    try:
        other = await _call(server, "pseudo-call-3")
    finally:
        server.stop()
    assert _joined(other) == {
        pseudonym(CUSTOMER, EXPLICIT_KEY): "customer", AGENT: "agent", VISITOR: "customer"
    }  # fmt: skip
    assert pseudonym(CUSTOMER, EXPLICIT_KEY) != published
    assert not [leak for leak in _leaks("the third call's events", json.dumps(other))]
