"""ACS's callbacks verified the way ACS signs them (issue 17, item 4), through real
`callstream serve` processes on loopback and the fake ACS, which signs every callback.

- With ``CALLSTREAM_ACS_AUDIENCE`` set, ``POST /acs/callbacks`` needs ACS's RS256 JWT (issuer,
  audience, expiry, key from the JWKS) besides the URL secret: a missing, forged, expired or
  wrong-audience token is refused with 401 and has no effect (a forged ``CallDisconnected``
  leaves the live call and its payment guard alone; a forged ``RecordingStateChanged`` is not
  believed; nothing is audited).
- A callback about a call this deployment neither answered nor registered is answered 200
  (ACS would retry anything else) and ignored: no audit row, no state, no recording started.
- With the Event Grid Entra settings, ``POST /acs/events`` needs the Entra bearer JWT too.
- Without an audience (an emulator, a test), the secret alone applies, as before.

Two servers for the module: ``server`` (audience and Event Grid Entra auth set) and
``plain`` (neither), started side by side.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import pytest
from websockets.asyncio.client import connect

from models.settings import Settings
from pipeline.cli.replay import audio_message, metadata_message

from .conftest import Server, collect_call_events, metric, start_server, start_subscribers, wait_for
from .fake_acs import FakeAcs, cloud_event, event_grid_validation
from .fake_jwks import ACS_AUDIENCE, FakeJwks, new_rsa_key

SECRET = "cb-" + secrets.token_urlsafe(24)
API_TOKEN = "api-" + secrets.token_urlsafe(24)
ENTRA_ISSUER = "https://login.microsoftonline.com/00000000-aaaa-bbbb-cccc-dddddddddddd/v2.0"
ENTRA_AUDIENCE = "api://callstream-eventgrid"
REFUSED = "callstream_acs_webhooks_refused_total"
UNKNOWN = "callstream_acs_callbacks_unknown_call_total"
AGENT = "8:acs:agent-7"

SENT_TOKENS: list[str] = []  # every token posted, for the log check


@pytest.fixture(scope="module")
def fake_acs() -> Iterator[FakeAcs]:
    with FakeAcs() as fake:
        yield fake


@pytest.fixture(scope="module")
def entra() -> Iterator[FakeJwks]:
    """The Entra tenant's keys, which sign Event Grid's tokens."""
    with FakeJwks() as keys:
        yield keys


@pytest.fixture(scope="module")
def servers(
    tmp_path_factory: pytest.TempPathFactory, fake_acs: FakeAcs, entra: FakeJwks
) -> Iterator[tuple[Server, Server]]:
    signed_env = {
        "CALLSTREAM_STT": "acs", "CALLSTREAM_ACS_ENDPOINT": fake_acs.endpoint,
        "CALLSTREAM_ACS_KEY": fake_acs.access_key, "CALLSTREAM_ACS_AUDIENCE": ACS_AUDIENCE,
        "CALLSTREAM_ACS_JWKS_URL": fake_acs.jwks.url, "CALLSTREAM_CALLBACK_SECRET": SECRET,
        "CALLSTREAM_API_TOKENS": API_TOKEN, "CALLSTREAM_EVENTGRID_JWT_ISSUER": ENTRA_ISSUER,
        "CALLSTREAM_EVENTGRID_JWT_AUDIENCE": ENTRA_AUDIENCE,
        "CALLSTREAM_EVENTGRID_JWKS_URL": entra.url,
    }  # fmt: skip
    # No ACS, no audience: media auth is off and the secret alone guards /acs/*.
    plain_env = {"CALLSTREAM_STT": "acs", "CALLSTREAM_CALLBACK_SECRET": SECRET}
    with ThreadPoolExecutor(2) as pool:
        futures = [
            pool.submit(start_server, tmp_path_factory.mktemp("signed"), True, **signed_env),
            pool.submit(start_server, tmp_path_factory.mktemp("plain"), **plain_env),
        ]
    failed = [f.exception() for f in futures if f.exception()]
    if failed:  # stop the one that did start
        for f in futures:
            if not f.exception():
                f.result().stop()
        raise failed[0]
    started = [f.result() for f in futures]
    for s in started:
        s.token = API_TOKEN
    yield started[0], started[1]
    for s in started:
        s.stop()


@pytest.fixture(scope="module")
def server(servers: tuple[Server, Server]) -> Server:
    return servers[0]


@pytest.fixture(scope="module")
def plain(servers: tuple[Server, Server]) -> Server:
    return servers[1]


def post(url: str, events: list[dict], token: str | None = None) -> tuple[int, Any]:
    """POST a JSON array as ACS or Event Grid does: (status, parsed body)."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
        SENT_TOKENS.append(token)
    req = urllib.request.Request(
        url, data=json.dumps(events).encode(), method="POST", headers=headers
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def callbacks_url(server: Server, secret: str = SECRET) -> str:
    return f"{server.http}/acs/callbacks?secret={secret}"


def events_url(server: Server, secret: str = SECRET) -> str:
    return f"{server.http}/acs/events?secret={secret}"


def call_event(kind: str, call_id: str, **data: str) -> list[dict]:
    return [
        cloud_event(kind, {"callConnectionId": call_id, "serverCallId": f"s-{call_id}", **data})
    ]


def audit_kinds(server: Server, call_id: str) -> list[tuple[str, str | None]]:
    """(kind, callback type) of the call's audit records; [] when it has none."""
    status, doc = server.get_json(f"/calls/{call_id}/audit")
    assert status in (200, 404), doc
    return [(r["kind"], r.get("type")) for r in doc.get("records", [])]


def counter(server: Server, name: str) -> float:
    return metric(server.get_bytes("/metrics").decode(), name)


async def audited(server: Server, call_id: str, record: tuple[str, str | None]) -> None:
    await wait_for(
        lambda: asyncio.to_thread(lambda: record in audit_kinds(server, call_id)),
        what=f"{record} on {call_id}'s audit",
    )


async def live_call(server: Server, call_id: str, media_token: str | None):
    """A call streaming on ``server``: (its event collector, what it has collected, the
    open media socket). Returns once call.started is out."""
    seen: list[dict] = []
    [collector] = await start_subscribers(
        server, collect_call_events(server.ws, call_id, token=API_TOKEN, timeout=60, into=seen)
    )
    headers = {"x-ms-call-connection-id": call_id}
    if media_token:
        headers["Authorization"] = f"Bearer {media_token}"
    ws = await connect(f"{server.ws}/media", additional_headers=headers)
    await ws.send(metadata_message(16000).decode())
    await ws.send(audio_message(b"\x01\x00" * 320, AGENT, "2026-01-01T00:00:00.000Z").decode())
    await wait_for(lambda: any(e["type"] == "call.started" for e in seen), what="call.started")
    return collector, seen, ws


def bad_tokens(fake: FakeAcs, entra: FakeJwks) -> dict[str, str | None]:
    return {
        "missing": None,
        "forged (another key, ACS's kid)": fake.callback_token(key=new_rsa_key()),
        "forged (another key and kid)": fake.callback_token(kid="rogue", key=new_rsa_key()),
        "expired": fake.callback_token(expires_in=-600),
        "wrong audience": fake.callback_token(audience="11111111-2222-3333-4444-555555555555"),
        "wrong issuer": fake.callback_token(issuer="https://evil.example.com"),
        "no expiry": fake.callback_token(expires_in=None),
        "unsigned (alg none)": fake.jwks.unsigned_token(),
        "Event Grid's Entra token": entra.token(issuer=ENTRA_ISSUER, audience=ENTRA_AUDIENCE),
    }


# ---------------------------------------------------------------- /acs/callbacks, signed


async def test_signed_callbacks_of_an_answered_call_are_accepted(
    server: Server, fake_acs: FakeAcs, entra: FakeJwks
) -> None:
    fake_acs.next_call_connection_id = call_id = "answered-call"
    token = entra.token(issuer=ENTRA_ISSUER, audience=ENTRA_AUDIENCE)
    assert post(events_url(server), fake_acs.incoming_call(), token)[0] == 200
    # CallConnected (signed by the fake) was accepted for the call just answered: the
    # recording starts, and its RecordingStateChanged is accepted too.
    await wait_for(lambda: fake_acs.of("start_recording"), what="the recording to start")
    await audited(server, call_id, ("acs.callback", "RecordingStateChanged"))
    assert fake_acs.wait_callbacks(10)
    mine = [(u, s) for u, _, s in fake_acs.callbacks_sent if u.startswith(server.http)]
    assert mine and {s for _, s in mine} == {200} and not fake_acs.callback_errors
    kinds = audit_kinds(server, call_id)
    for record in [("acs.answered", None), ("acs.callback", "CallConnected"),
                   ("acs.callback", "MediaStreamingStarted"), ("recording.started", None)]:  # fmt: skip
        assert record in kinds, kinds


async def test_forged_callbacks_are_refused_and_change_nothing(
    server: Server, fake_acs: FakeAcs, entra: FakeJwks
) -> None:
    call_id = "live-call"
    collector, seen, ws = await live_call(server, call_id, fake_acs.jwks.token())
    assert server.post_json(f"/calls/{call_id}/recording", {"recordingId": "rec-live"})[0] == 200
    refused_before = await asyncio.to_thread(counter, server, REFUSED)
    forged = [
        call_event("CallDisconnected", call_id),
        call_event("RecordingStateChanged", call_id, recordingId="rec-live", state="inactive"),
    ]
    answers = {}
    for what, token in bad_tokens(fake_acs, entra).items():
        for events in forged:
            answers[(what, events[0]["type"])] = await asyncio.to_thread(
                post, callbacks_url(server), events, token
            )
    # A good token does not stand in for the secret: both are needed.
    good = fake_acs.callback_token()
    for secret in ("", "wrong"):
        answers[("good token", f"secret={secret!r}")] = await asyncio.to_thread(
            post, callbacks_url(server, secret), forged[0], good
        )
    let_through = {k: v for k, v in answers.items() if v != (401, {"error": "unauthorized"})}
    assert not let_through, let_through
    refused = await asyncio.to_thread(counter, server, REFUSED)
    assert refused - refused_before == len(answers)

    # A signed callback goes through; by the time it is on the audit, any effect of the
    # refused ones would be too.
    status, _ = post(callbacks_url(server), call_event("MediaStreamingStarted", call_id), good)
    assert status == 200
    await audited(server, call_id, ("acs.callback", "MediaStreamingStarted"))
    callbacks = [t for k, t in audit_kinds(server, call_id) if k == "acs.callback"]
    assert callbacks == ["MediaStreamingStarted"]
    assert not collector.done() and not [e for e in seen if e["type"] == "call.ended"]
    [listed] = [c for c in server.get_json("/calls")[1]["calls"] if c["callId"] == call_id]
    assert listed["live"] is True

    # ACS's own CallDisconnected ends it.
    await asyncio.to_thread(fake_acs.post_cloud_events, callbacks_url(server),
                            call_event("CallDisconnected", call_id))  # fmt: skip
    events = await asyncio.wait_for(collector, 30)
    assert events[-1]["type"] == "call.ended" and events[-1]["reason"] == "call-disconnected"
    await ws.close()


async def test_a_callback_for_an_unknown_call_writes_nothing(
    server: Server, fake_acs: FakeAcs
) -> None:
    before = await asyncio.to_thread(counter, server, UNKNOWN)
    recordings_before = len(fake_acs.of("start_recording"))
    token = fake_acs.callback_token()
    ghosts = [
        call_event("CallConnected", "ghost-call"),
        call_event("CallDisconnected", "ghost-call"),
        call_event("RecordingStateChanged", "ghost-call", recordingId="ghost-rec", state="active"),
        [cloud_event("RecordingStateChanged", {"recordingId": "ghost-rec", "state": "inactive"})],
    ]
    for events in ghosts:
        assert post(callbacks_url(server), events, token) == (200, {}), events[0]["type"]
    # A callback for a known call, posted after: once on the audit, so would the ghosts' be.
    _, _, ws = await live_call(server, "known-call", fake_acs.jwks.token())
    status, _ = post(
        callbacks_url(server), call_event("MediaStreamingStarted", "known-call"), token
    )
    assert status == 200
    await audited(server, "known-call", ("acs.callback", "MediaStreamingStarted"))
    await ws.close()
    assert audit_kinds(server, "ghost-call") == []
    assert "ghost-call" not in json.dumps(server.get_json("/calls")[1])
    assert len(fake_acs.of("start_recording")) == recordings_before  # no recording started
    assert await asyncio.to_thread(counter, server, UNKNOWN) - before == len(ghosts)


# ---------------------------------------------------------------- /acs/events, Entra


def test_event_grid_needs_the_entra_token_when_configured(
    server: Server, fake_acs: FakeAcs, entra: FakeJwks
) -> None:
    good = entra.token(issuer=ENTRA_ISSUER, audience=ENTRA_AUDIENCE)
    assert post(events_url(server), event_grid_validation("v-1"), good) == (
        200, {"validationResponse": "v-1"},
    )  # fmt: skip
    bad = {
        "missing": None,
        "forged": entra.token(issuer=ENTRA_ISSUER, audience=ENTRA_AUDIENCE, key=new_rsa_key()),
        "expired": entra.token(issuer=ENTRA_ISSUER, audience=ENTRA_AUDIENCE, expires_in=-600),
        "another audience": entra.token(issuer=ENTRA_ISSUER, audience="api://other"),
        "ACS's callback token": fake_acs.callback_token(),
    }
    for what, token in bad.items():
        assert post(events_url(server), event_grid_validation("v-2"), token) == (
            401, {"error": "unauthorized"},
        ), what  # fmt: skip
    # Nor does a good token stand in for the secret.
    assert post(events_url(server, "wrong"), event_grid_validation("v-3"), good)[0] == 401
    answers = len(fake_acs.answers)
    assert post(events_url(server), fake_acs.incoming_call(), None)[0] == 401
    assert len(fake_acs.answers) == answers  # a refused IncomingCall is never answered


# ---------------------------------------------------------------- no audience: the secret alone


async def test_without_an_audience_the_secret_alone_applies(plain: Server) -> None:
    call_id = "plain-call"
    collector, _, ws = await live_call(plain, call_id, None)
    assert post(callbacks_url(plain, "wrong"), call_event("CallDisconnected", call_id))[0] == 401
    assert post(callbacks_url(plain), call_event("CallDisconnected", call_id)) == (200, {})
    events = await asyncio.wait_for(collector, 30)
    assert events[-1]["type"] == "call.ended" and events[-1]["reason"] == "call-disconnected"
    await ws.close()
    await audited(plain, call_id, ("acs.callback", "CallDisconnected"))
    # The rule on unknown calls holds without an audience too.
    assert post(callbacks_url(plain), call_event("CallDisconnected", "plain-ghost")) == (200, {})
    assert post(events_url(plain), event_grid_validation("p-1")) == (
        200, {"validationResponse": "p-1"},
    )  # fmt: skip
    assert audit_kinds(plain, "plain-ghost") == []


def event_data(**fields: str) -> Any:
    """What `known_control` reads of a callback's data (wire.AcsEventData's fields)."""
    return SimpleNamespace(**{"recording_id": None, "server_call_id": None, **fields})


async def test_a_callback_that_overtakes_its_answer_waits_for_it() -> None:
    """ACS may post CallConnected before the answer's reply (the callConnectionId) is in."""
    from pipeline.api.callback_auth import CallbackAuth
    from pipeline.delivery.cluster import Cluster
    from pipeline.pci.recording import RecordingController

    rec = RecordingController(Settings())
    service: Any = SimpleNamespace(recording=rec, calls={})
    service.cluster = Cluster(service)
    auth = CallbackAuth(Settings())
    try:
        first = event_data(call_connection_id="c-1", server_call_id="server-1")
        with auth.answering("server-1"):
            early = asyncio.create_task(auth.known_control(service, first))
            await asyncio.sleep(0)  # let it run up to its wait
            assert not early.done()
            answered = rec.control("c-1")  # the answer came back
        assert await asyncio.wait_for(early, 5) is answered
        # Nothing in flight: another call stays unknown, and nothing is made for it.
        other = event_data(call_connection_id="c-2", server_call_id="server-1")
        assert await auth.known_control(service, other) is None and rec.known("c-2") is None
    finally:
        rec.close()


# ---------------------------------------------------------------- settings


def test_the_startup_check_names_a_missing_event_grid_setting() -> None:
    from pipeline.api.callback_auth import callback_startup_check

    full = {"eventgrid_jwt_issuer": ENTRA_ISSUER, "eventgrid_jwt_audience": ENTRA_AUDIENCE,
            "eventgrid_jwks_url": "https://login.example/keys"}  # fmt: skip
    assert callback_startup_check(Settings(**full)) == ([], [])
    assert callback_startup_check(Settings()) == ([], [])
    for left_out, env in [("eventgrid_jwt_issuer", "CALLSTREAM_EVENTGRID_JWT_ISSUER"),
                          ("eventgrid_jwt_audience", "CALLSTREAM_EVENTGRID_JWT_AUDIENCE"),
                          ("eventgrid_jwks_url", "CALLSTREAM_EVENTGRID_JWKS_URL")]:  # fmt: skip
        errors, _ = callback_startup_check(
            Settings(**{k: v for k, v in full.items() if k != left_out})
        )
        assert len(errors) == 1 and f"{env} is not set" in errors[0], errors
    # ACS configured, media auth off, no audience: callbacks rest on the secret alone.
    acs = Settings(acs_endpoint="https://x.communication.azure.com", acs_key="k", media_auth="off")
    errors, warnings = callback_startup_check(acs)
    assert not errors and any("CALLSTREAM_ACS_AUDIENCE" in w for w in warnings), warnings


# ---------------------------------------------------------------- the log (keep this test last)


def test_refusals_are_logged_once_each_without_the_token(server: Server) -> None:
    logs = server.logs()
    refusals = re.findall(r"POST /acs/(?:callbacks|events) refused: [^\"]*", logs)
    assert len(refusals) == counter(server, REFUSED)  # one line each, and counted
    for reason in ("bad signature", "token expired", "wrong audience", "missing bearer token"):
        assert f"POST /acs/callbacks refused: ACS callback token: {reason}" in refusals, reason
    assert "POST /acs/events refused: Event Grid token: missing bearer token" in refusals
    unknown = re.findall(r"ACS callback \w+ for unknown call '(ghost-[a-z]+)' ignored", logs)
    assert sorted(unknown) == ["ghost-call"] * 3 + ["ghost-rec"]
    leaked = [t[:16] for t in set(SENT_TOKENS) if t and t in logs]
    assert not leaked and SECRET not in logs
