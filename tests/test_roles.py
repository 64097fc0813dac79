"""Roles, through a real `callstream serve` with an access file: every route with every role.

The matrix is generated from the route declarations (`pipeline/api/routes.py`), so a
route added later is tested without anyone writing its row; the README's permission
table must be that same matrix, so the documented policy and the enforced one cannot
drift. Then what a matrix cannot show: an agent's own calls against someone else's (HTTP
and websockets, stored and live), the list an agent sees, an assignment, a JWT's app
roles, the audit naming who did it, and the lows that hang off the same guard (reserved
ids, unknown calls, body limits, the metrics token, known-entity answers).
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from models.events import CallEnded, CallStarted, ParticipantJoined, encode_event, event_type
from pipeline.api import access
from pipeline.api.roles import ROLES
from pipeline.api.routes import ROUTES
from pipeline.api.spec import Operation, Socket, doc_path
from pipeline.cli.replay import audio_message, metadata_message
from pipeline.compliance.store import SqliteEventStore, StoredEvent

from .conftest import Server, start_server
from .fake_jwks import FakeJwks
from .test_security import bearer, request

ROOT = Path(__file__).resolve().parent.parent
ALICE, BOB = "8:orgid:0a11ce00-0000-4000-8000-000000000001", "8:acs:bob"
CUSTOMER = "4:+15557654321"
TOKENS = {role: f"{role}-" + secrets.token_urlsafe(18) for role in ROLES}
TOKENS["bob"] = "bob-" + secrets.token_urlsafe(18)
METRICS_TOKEN = "metrics-" + secrets.token_urlsafe(18)
ISSUER, AUDIENCE = "https://login.example.com/tenant/v2.0", "api://callstream"
MINE, THEIRS = "call-alice", "call-bob"


def _access_file(path: Path) -> Path:
    tables = []
    for role in ROLES:
        if role == "admin":
            continue  # CALLSTREAM_API_TOKENS are admin tokens
        extra = f"participants = [{json.dumps(ALICE)}]\n" if role == "agent" else ""
        tables.append(
            f'[[token]]\ntoken = "{TOKENS[role]}"\nrole = "{role}"\nname = "{role} one"\n{extra}'
        )
    tables.append(
        f'[[token]]\ntoken = "{TOKENS["bob"]}"\nrole = "agent"\nname = "bob"\nparticipants = ["{BOB}"]\n'
    )
    path.write_text("\n".join(tables))
    return path


def _stored_call(store: SqliteEventStore, call_id: str, agent: str) -> None:
    events = [
        CallStarted(callId=call_id, seq=1, mode="unmixed", sampleRate=16000),
        ParticipantJoined(callId=call_id, seq=2, participant=agent, role="agent"),
        ParticipantJoined(callId=call_id, seq=3, participant=CUSTOMER, role="customer"),
        CallEnded(callId=call_id, seq=4, reason="test"),
    ]
    store.append([
        StoredEvent(call_id, e.seq, event_type(e), e.time, encode_event(e),
                    mode=getattr(e, "mode", None), sample_rate=getattr(e, "sampleRate", None),
                    reason=getattr(e, "reason", None), participant=getattr(e, "participant", None))
        for e in events
    ])  # fmt: skip


@pytest.fixture(scope="module")
def jwks() -> Iterator[FakeJwks]:
    with FakeJwks() as j:
        yield j


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, jwks: FakeJwks) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("roles")
    db = tmp / "calls.db"
    store = SqliteEventStore(db)
    _stored_call(store, MINE, ALICE)
    _stored_call(store, THEIRS, BOB)
    store.close()
    s = start_server(
        tmp, CALLSTREAM_STT="acs", CALLSTREAM_MEDIA_AUTH="off", CALLSTREAM_STORE=str(db),
        CALLSTREAM_API_TOKENS=TOKENS["admin"], CALLSTREAM_ACCESS_FILE=str(_access_file(tmp / "access.toml")),
        CALLSTREAM_METRICS_TOKEN=METRICS_TOKEN, CALLSTREAM_API_JWT_ISSUER=ISSUER,
        CALLSTREAM_API_JWT_AUDIENCE=AUDIENCE, CALLSTREAM_API_JWKS_URL=jwks.url,
    )  # fmt: skip
    yield s
    s.stop()


# ------------------------------------------------------------------ the matrix


def _guarded() -> list[Operation | Socket]:
    return [e for e in ROUTES if e.access in ("api", "console")]


def _url(entry: Operation | Socket, call_id: str = MINE) -> str:
    path = doc_path(entry.path).replace("{callId}", call_id).replace("{action}", "pause")
    assert "{" not in path, f"{entry.path}: the matrix needs a value for its parameters"
    return path


def _expected(entry: Operation | Socket, role: str) -> bool:
    """Allowed per the declaration: agents are asked about their own call (MINE)."""
    return role in access.roles(entry)


def test_every_route_declares_its_roles() -> None:
    for entry in _guarded():
        assert set(entry.roles) <= set(ROLES) - {"admin"}, entry.name
        assert set(entry.roles.values()) <= {"all", "own"}, entry.name
        if "own" in entry.roles.values():
            assert set(entry.roles) >= {"agent"}, f"{entry.name}: only an agent has own calls"


def test_http_matrix(server: Server) -> None:
    """Every operation x every role: refused with 403 exactly when the declaration says so."""
    checked = 0
    for op in (e for e in _guarded() if isinstance(e, Operation)):
        for role in ROLES:
            status, _, _ = request(
                server, op.method, _url(op), {**bearer(TOKENS[role]), "Accept": "application/json"},
                body=b"{}" if op.method == "POST" else None,
            )  # fmt: skip
            if _expected(op, role):
                assert status not in (401, 403), f"{role} {op.method} {op.path}: {status}"
            else:
                assert status == 403, f"{role} {op.method} {op.path}: {status}, not refused"
            checked += 1
        assert request(server, op.method, _url(op))[0] == 401, f"{op.path} without a token"
    assert checked == len(ROLES) * len([e for e in _guarded() if isinstance(e, Operation)])


async def _socket_outcome(url: str) -> int | None:
    """None when the server keeps the socket (a ping is answered), else the close code."""
    try:
        async with connect(url, open_timeout=10) as ws:
            await asyncio.wait_for(await ws.ping(), 10)
            return None
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else -1


async def test_websocket_matrix(server: Server) -> None:
    for sock in (e for e in _guarded() if isinstance(e, Socket)):
        for role in ROLES:
            code = await _socket_outcome(f"{server.ws}{_url(sock)}?access_token={TOKENS[role]}")
            if _expected(sock, role):
                assert code != 1008, f"{role} {sock.path}: refused"
            else:
                assert code == 1008, f"{role} {sock.path}: {code}, not refused"
        assert await _socket_outcome(f"{server.ws}{_url(sock)}") == 1008


def _readme_matrix() -> dict[str, dict[str, str]]:
    text = (ROOT / "README.md").read_text()
    section = text.split("### Permissions", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    out: dict[str, dict[str, str]] = {}
    for line in rows:
        cells = [c.strip() for c in line.strip("|").split("|")]
        route = cells[0].strip("`")
        out[route] = {role: cells[1 + i] for i, role in enumerate(ROLES) if cells[1 + i] != "—"}
    return out


def test_the_readme_table_is_the_declared_one() -> None:
    declared = {}
    for e in _guarded():
        name = f"WS {e.path}" if isinstance(e, Socket) else f"{e.method} {doc_path(e.path)}"
        declared[name] = {
            r: "own calls" if g == "own" else "yes" for r, g in access.roles(e).items()
        }
    assert _readme_matrix() == declared


# ------------------------------------------------------------------ an agent's own calls


async def test_an_agent_reads_only_their_own_calls(server: Server) -> None:
    alice = bearer(TOKENS["agent"])
    status, _, body = request(server, "GET", "/calls", alice)
    assert status == 200 and [c["callId"] for c in json.loads(body)["calls"]] == [MINE]
    status, _, body = request(server, "GET", "/calls", bearer(TOKENS["supervisor"]))
    assert {c["callId"] for c in json.loads(body)["calls"]} >= {MINE, THEIRS}
    assert request(server, "GET", f"/calls/{MINE}/transcript", alice)[0] == 200
    for path in (f"/calls/{THEIRS}/transcript", f"/calls/{THEIRS}/recording/pause"):
        method = "POST" if path.endswith("pause") else "GET"
        assert request(server, method, path, alice)[0] == 403, path
    url = f"{server.ws}/calls/{THEIRS}/events?access_token={TOKENS['agent']}"
    assert await _socket_outcome(url) == 1008
    assert request(server, "GET", f"/console/{THEIRS}", alice)[0] == 403


async def test_a_live_call_is_its_agents_and_nobody_elses(server: Server) -> None:
    """Live on this replica (not yet on record): membership comes from who joined."""
    call_id = "live-" + secrets.token_hex(4)
    watch = f"{server.ws}/calls/{call_id}/events?access_token={TOKENS['admin']}"
    headers = {"x-ms-call-connection-id": call_id}
    async with (
        connect(watch) as admin,
        connect(f"{server.ws}/media", additional_headers=headers) as media,
    ):
        await media.send(metadata_message(16000).decode())
        await media.send(
            audio_message(b"\x01\x00" * 320, ALICE, "2026-01-01T00:00:00.000Z").decode()
        )
        while json.loads(await asyncio.wait_for(admin.recv(), 10))["type"] != "participant.joined":
            pass  # the signal: ALICE is a participant of the live call now
        url = f"{server.ws}/calls/{call_id}/events?since=0&access_token="
        async with connect(url + TOKENS["agent"], open_timeout=10) as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["callId"] == call_id
        assert await _socket_outcome(url + TOKENS["bob"]) == 1008
        status = request(
            server, "POST", f"/calls/{call_id}/recording/pause", bearer(TOKENS["bob"])
        )[0]
        assert status == 403


def test_an_assignment_lets_an_agent_read_a_call_and_is_audited(server: Server) -> None:
    bob = bearer(TOKENS["bob"])
    assert request(server, "GET", f"/calls/{MINE}/transcript", bob)[0] == 403
    body = json.dumps({"agentId": BOB}).encode()
    for role in ("agent", "supervisor", "compliance"):
        assert (
            request(server, "POST", f"/calls/{MINE}/assignment", bearer(TOKENS[role]), body)[0]
            == 403
        )
    status, _, answer = request(
        server, "POST", f"/calls/{MINE}/assignment", bearer(TOKENS["integration"]), body
    )
    assert status == 200 and json.loads(answer) == {"callId": MINE, "agentId": BOB}
    assert request(server, "GET", f"/calls/{MINE}/transcript", bob)[0] == 200
    for bad in (b"{}", b'{"agentId": "bob\\nforged"}', b"[]", b"x" * 70_000):
        status = request(
            server, "POST", f"/calls/{MINE}/assignment", bearer(TOKENS["integration"]), bad
        )[0]
        assert status in (400, 413), bad[:20]
    assert (
        request(
            server, "POST", "/calls/no-such-call/assignment", bearer(TOKENS["integration"]), body
        )[0]
        == 404
    )
    records = _audit(server, MINE)
    assigned = [r for r in records if r["kind"] == "call.assigned"]
    assert assigned == [
        {**assigned[0], "agentId": BOB, "by": "integration one", "byRole": "integration"}
    ]
    exports = [r for r in records if r["kind"] == "export"]
    assert {(r["by"], r["byRole"]) for r in exports} >= {("agent one", "agent"), ("bob", "agent")}


def _audit(server: Server, call_id: str) -> list[dict[str, Any]]:
    status, _, body = request(
        server, "GET", f"/calls/{call_id}/audit", bearer(TOKENS["compliance"])
    )
    assert status == 200
    return json.loads(body)["records"]  # fmt: skip


def test_jwt_app_roles_map_to_roles(server: Server, jwks: FakeJwks) -> None:
    def jwt(*roles: str, oid: str | None = None) -> dict[str, str]:
        claims: dict[str, Any] = {"roles": list(roles), "preferred_username": "pat@example.com"}
        if oid:
            claims["oid"] = oid
        return bearer(jwks.token(issuer=ISSUER, audience=AUDIENCE, **claims))

    assert request(server, "GET", "/calls", jwt())[0] == 403  # valid, but no known role
    assert request(server, "GET", "/calls", jwt("Callstream.Unknown"))[0] == 403
    assert request(server, "GET", f"/calls/{THEIRS}/audit", jwt("Callstream.Supervisor"))[0] == 200
    assert (
        request(server, "GET", f"/calls/{THEIRS}/manifest", jwt("Callstream.Supervisor"))[0] == 403
    )
    agent = jwt("Callstream.Agent", oid=ALICE.removeprefix("8:orgid:"))
    assert request(server, "GET", f"/calls/{MINE}/transcript", agent)[0] == 200
    assert request(server, "GET", f"/calls/{THEIRS}/transcript", agent)[0] == 403
    hold = json.dumps({"hold": True, "reason": "case 7"}).encode()
    assert (
        request(server, "POST", f"/calls/{THEIRS}/hold", jwt("Callstream.Compliance"), hold)[0]
        == 200
    )
    held = [r for r in _audit(server, THEIRS) if r["kind"] == "legal-hold"]
    assert held[-1]["by"] == "pat@example.com" and held[-1]["byRole"] == "compliance"


# ------------------------------------------------------------------ the lows on the same guard


def test_reserved_and_unknown_call_ids_are_refused_on_control_routes(server: Server) -> None:
    admin = bearer(TOKENS["admin"])
    for call_id in ("_retention", "_anything", "never-seen"):
        for path, body in (
            (f"/calls/{call_id}/hold", b'{"hold": true, "reason": "forged\\nline"}'),
            (f"/calls/{call_id}/assignment", json.dumps({"agentId": BOB}).encode()),
        ):
            assert request(server, "POST", path, admin, body)[0] == 404, path
    known = b'{"entities": [{"type": "PERSON", "value": "Marta Kowalski"}]}'
    assert request(server, "POST", "/calls/_retention/known-entities", admin, known)[0] == 404
    for call_id in ("_retention", "never-seen"):  # and nothing was written for them
        assert not json.loads(request(server, "GET", f"/calls/{call_id}/audit", admin)[2]).get(
            "records"
        )
    registration = b'{"recordingId": "rec-1"}'
    assert request(server, "POST", "/calls/_retention/recording", admin, registration)[0] == 404


def test_bodies_are_limited(server: Server) -> None:
    admin = bearer(TOKENS["admin"])
    big = b'{"hold": true, "reason": "' + b"x" * (70 * 1024) + b'"}'
    assert request(server, "POST", f"/calls/{MINE}/hold", admin, big)[0] == 413
    entities = {"entities": [{"type": "PERSON", "value": "Marta Kowalski " + "y" * 200}] * 400}
    payload = json.dumps(entities).encode()
    assert len(payload) > 64 * 1024
    assert request(server, "POST", f"/calls/{MINE}/known-entities", admin, payload)[0] == 413


def test_known_entity_answers_do_not_confirm_a_guess(server: Server) -> None:
    integration = bearer(TOKENS["integration"])
    url = f"/calls/{MINE}/known-entities"

    def post(*values: str) -> tuple[int, Any]:
        body = json.dumps({"entities": [{"type": "ACCOUNT", "value": v} for v in values]})
        status, _, answer = request(server, "POST", url, integration, body.encode())
        return status, json.loads(answer)

    filled = [f"AC-{n:05d}" for n in range(62)]
    assert post(*filled)[0] == 200
    right, wrong = post(filled[0]), post("AC-99999")  # one guess is already there, one is not
    assert right[0] == wrong[0] == 200 and right[1]["accepted"] == wrong[1]["accepted"] == 1
    wrong, right = post("AC-99998"), post(filled[1])  # the list is full: refused alike
    assert right[0] == wrong[0] == 400 and right[1] == wrong[1]
    for common in ("I", "refund", "my account", "ok", "a1"):
        status, answer = post(common)
        assert status == 400 and f'"{common}"' not in json.dumps(answer), common  # never echoed
    records = [r for r in _audit(server, MINE) if r["kind"] == "known-entities"]
    assert [r["count"] for r in records] == [62, 1, 1] and records[0]["types"] == {"ACCOUNT": 62}
    assert records[0]["by"] == "integration one"
    assert "AC-00000" not in json.dumps(records)


def test_metrics_need_the_metrics_token(server: Server) -> None:
    assert request(server, "GET", "/metrics")[0] == 401
    assert request(server, "GET", "/metrics", bearer(TOKENS["admin"]))[0] == 401
    status, _, body = request(server, "GET", "/metrics", bearer(METRICS_TOKEN))
    assert status == 200 and b"callstream_" in body
    assert request(server, "GET", "/healthz")[0] == 200


def test_refusals_name_the_caller_not_the_token(server: Server) -> None:
    logs = server.logs()
    assert re.search(r"refused to 'agent one' \(agent\)", logs)
    for token in TOKENS.values():
        assert token not in logs
    assert METRICS_TOKEN not in logs


def test_an_access_file_that_names_no_token_fails_closed(tmp_path: Path) -> None:
    """Not an open API: `serve` stops with one line, and the app would still refuse."""
    from models.settings import load_settings
    from pipeline.api.auth import startup_check
    from pipeline.api.credentials import api_auth_enabled

    empty = tmp_path / "access.toml"
    empty.write_text("# [[token]] entries were commented out\n")
    settings = load_settings({"CALLSTREAM_ACCESS_FILE": str(empty)})
    errors, _ = startup_check(settings, loopback=True)
    assert errors == [f"CALLSTREAM_ACCESS_FILE {empty}: names no [[token]]"]
    assert api_auth_enabled(settings)  # never "open" because the file was empty
    for bad, message in (
        ('[[token]]\ntoken = "short"\nrole = "admin"\nname = "x"\n', "at least 16"),
        ('[[token]]\ntoken = "a-long-enough-token-1"\nrole = "root"\nname = "x"\n', "role must be"),
        (
            '[[token]]\ntoken = "a-long-enough-token-1"\nrole = "agent"\nname = "x"\n',
            "participants",
        ),
    ):
        empty.write_text(bad)
        [error] = startup_check(settings, loopback=True)[0]
        assert message in error and "a-long-enough" not in error


def test_a_name_with_common_words_does_not_erase_them() -> None:
    """A PERSON value's parts are matched alone too ("Kowalski"), but not a part that is a
    common word: registering "Qzx the refund" must not erase every "the" and "refund"."""
    from pipeline.privacy.recognizers import KnownValuesRecognizer

    found = KnownValuesRecognizer([("PERSON", "Qzx the refund")]).find("I want the refund for Qzx")
    assert [(start, end) for start, end, _ in found] == [(22, 25)]
    found = KnownValuesRecognizer([("PERSON", "Marta Kowalski")]).find("thanks Ms. Kowalski")
    assert [(start, end) for start, end, _ in found] == [(11, 19)]
