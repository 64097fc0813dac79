"""Teams expert consult (`POST /calls/{callId}/consult`, `GET /experts`), end to end: a real
`callstream serve` answers a call through a fake of ACS (tests/fake_acs.py, which checks
every request's HMAC signature), the call's media streams, an agent asks a Teams expert
in, and the real Call Automation SDK sends `participants:add`; the fake answers as ACS
does and posts AddParticipantSucceeded or AddParticipantFailed back. What the agent sees
(`consult.*` events) and what the audit keeps are checked against what reached ACS."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from azure.communication.callautomation._generated.models import AddParticipantSucceeded
from websockets.asyncio.client import connect

from models.settings import load_settings
from pipeline.cli.replay import audio_message, load_call_audio, metadata_message
from pipeline.consult.experts import ExpertsError, expert_problems, parse_experts

from .conftest import (
    FIXTURES,
    Server,
    collect_call_events,
    free_port,
    run_cli,
    start_server,
    wait_for,
)
from .fake_acs import FakeAcs, post_event_grid
from .test_console import chromium_path  # noqa: F401  (the fixture: skips without chromium)
from .test_security import bearer, request

BILLING = "6f1c2a4e-0b7d-4c55-9a1e-2d3f4b5c6d7e"
FRAUD = "0b9e8d7c-6a5f-4e3d-8c2b-1a0f9e8d7c6b"
EXPERTS = f"Billing desk={BILLING}, Fraud team={FRAUD.upper()}"  # ids are matched in lower case
OUTSIDER = "11111111-2222-4333-8444-555555555555"  # a Teams user who is not a configured expert
AGENT = "8:orgid:0a11ce00-0000-4000-8000-00000000c0de"
CUSTOMER = "4:+15557654321"
SECRET = "consult-callback-secret"
TOKENS = {r: f"{r}-" + secrets.token_urlsafe(18) for r in ("admin", "agent", "supervisor", "compliance")}  # fmt: skip


def _access_file(path: Path) -> Path:
    path.write_text(
        f'[[token]]\ntoken = "{TOKENS["agent"]}"\nrole = "agent"\nname = "agent one"\n'
        f"participants = [{json.dumps(AGENT)}]\n\n"
        f'[[token]]\ntoken = "{TOKENS["supervisor"]}"\nrole = "supervisor"\nname = "sup one"\n\n'
        f'[[token]]\ntoken = "{TOKENS["compliance"]}"\nrole = "compliance"\nname = "comp one"\n'
    )
    return path


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAcs]:
    with FakeAcs() as f:
        yield f


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fake: FakeAcs) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("consult")
    s = start_server(
        tmp, public_url_self=True, CALLSTREAM_STT="local", CALLSTREAM_MEDIA_AUTH="off",
        CALLSTREAM_ACS_ENDPOINT=fake.endpoint, CALLSTREAM_ACS_KEY=fake.access_key,
        CALLSTREAM_CALLBACK_SECRET=SECRET, CALLSTREAM_RECORDING="off",
        CALLSTREAM_EXPERTS=EXPERTS, CALLSTREAM_API_TOKENS=TOKENS["admin"],
        CALLSTREAM_ACCESS_FILE=str(_access_file(tmp / "access.toml")),
    )  # fmt: skip
    yield s
    s.stop()


def post(server: Server, path: str, body: object, role: str = "agent") -> tuple[int, dict]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"content-type": "application/json", **bearer(TOKENS[role])}
    status, _, answer = request(server, "POST", path, headers, raw)
    return status, json.loads(answer or b"{}")


def get(server: Server, path: str, role: str = "admin") -> tuple[int, dict]:
    status, _, answer = request(server, "GET", path, bearer(TOKENS[role]))
    return status, json.loads(answer or b"{}")


def consult(server: Server, call_id: str, oid: str, name: str, role: str = "agent"):
    return post(
        server, f"/calls/{call_id}/consult", {"teamsUserId": oid, "displayName": name}, role
    )


class LiveCall:
    """A call ACS handed to the server (answered through the fake) whose media streams:
    ``events`` fills with the call's stream as it comes."""

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.events: list[dict] = []
        self.media = None  # the call's media socket (ACS's), while it is open

    def of(self, *kinds: str) -> list[dict]:
        return [e for e in self.events if e["type"] in kinds]

    async def wait(self, kind: str, count: int = 1, what: str | None = None) -> list[dict]:
        await wait_for(lambda: len(self.of(kind)) >= count, 20, what or f"{count} {kind}")
        return self.of(kind)


@contextlib.asynccontextmanager
async def live_call(
    server: Server, fake: FakeAcs, answered: bool = True
) -> AsyncIterator[LiveCall]:
    call = LiveCall("consult-" + secrets.token_hex(4))
    if answered:  # Event Grid's IncomingCall: the server answers it through the fake
        fake.next_call_connection_id = call.call_id
        url = f"{server.http}/acs/events?secret={SECRET}"
        assert (await asyncio.to_thread(post_event_grid, url, fake.incoming_call()))[0] == 200
        await wait_for(lambda: call.call_id in fake.calls, 20, "the call to be answered")
        assert await asyncio.to_thread(fake.wait_callbacks, 10)  # CallConnected delivered
    headers = {"x-ms-call-connection-id": call.call_id}
    async with connect(f"{server.ws}/media", additional_headers=headers) as media:
        call.media = media
        await media.send(metadata_message(16000).decode())
        for raw in (CUSTOMER, AGENT):
            await media.send(audio_message(b"\x01\x00" * 320, raw, "2026-01-01T00:00:00.000Z").decode())  # fmt: skip
        stream = asyncio.create_task(
            collect_call_events(server.ws, call.call_id, since=0, token=TOKENS["admin"], into=call.events, timeout=60)
        )  # fmt: skip
        try:
            # The signal that the agent is on the call (and so may act on it).
            await wait_for(
                lambda: any(e.get("participant") == AGENT for e in call.of("participant.joined")),
                20, "the agent to join",
            )  # fmt: skip
            yield call
        except BaseException:
            stream.cancel()
            raise
    await asyncio.wait_for(stream, 30)  # the media closed: the stream ends after call.ended
    assert call.events[-1]["type"] == "call.ended"


def audit_records(server: Server, call_id: str, prefix: str = "consult.") -> list[dict]:
    status, doc = get(server, f"/calls/{call_id}/audit")
    assert status == 200, doc
    return [r for r in doc["records"] if r["kind"].startswith(prefix)]


def in_order(records: list[dict], first: str, *rest: str) -> bool:
    """These kinds, each once: ``first`` first and the last one last. (A callback may
    overtake the SDK's own answer, so the kinds between may come in either order.)"""
    kinds = [r["kind"] for r in records]
    return kinds[0] == first and kinds[-1] == rest[-1] and sorted(kinds) == sorted([first, *rest])


def add_requests(fake: FakeAcs, call_id: str) -> list:
    return [r for r in fake.of("add_participant") if r.call_connection_id == call_id]


def teams_user(oid: str) -> dict:
    return {
        "kind": "microsoftTeamsUser",
        "rawId": f"8:orgid:{oid}",
        "microsoftTeamsUser": {"userId": oid, "isAnonymous": False, "cloud": "public"},
    }


# ------------------------------------------------------------------ the experts setting


def test_experts_setting_is_parsed_in_order_and_bad_entries_are_named() -> None:
    experts = parse_experts(f" Billing desk = {BILLING.upper()} ,Fraud team={FRAUD},")
    assert [(e.name, e.teams_user_id) for e in experts] == [
        ("Billing desk", BILLING),
        ("Fraud team", FRAUD),
    ]
    assert parse_experts("") == () and parse_experts(None) == ()
    for bad, says in (
        ("Billing desk", "entry #1 is not"),
        (f"={BILLING}", "entry #1 has no name"),
        ("Billing desk=not-a-guid", "not an Entra object id"),
        (f"Billing desk={BILLING}x", "not an Entra object id"),
        (f"A={BILLING},a={FRAUD}", "given twice"),
        (f"A={BILLING},B={BILLING.upper()}", "repeats another entry's id"),
    ):
        with pytest.raises(ExpertsError, match=re.escape(says)) as info:
            parse_experts(bad)
        assert str(info.value).startswith("CALLSTREAM_EXPERTS: ")
        settings = load_settings(environ={"CALLSTREAM_EXPERTS": bad})
        assert expert_problems(settings) == [str(info.value)]


@pytest.mark.parametrize(
    "bad",
    ["Billing desk", f"  ={BILLING}", "Billing desk=0b9e8d7c", f"A={BILLING},A={FRAUD}"],
    ids=["no-equals", "empty-name", "not-a-guid", "duplicate-name"],
)
def test_bad_experts_stop_serve_at_start_with_one_line(tmp_path, bad: str) -> None:
    import os

    env = {**os.environ, "CALLSTREAM_EXPERTS": bad, "CALLSTREAM_DATA_DIR": str(tmp_path / "d"),
           "CALLSTREAM_PORT": str(free_port())}  # fmt: skip
    result = run_cli("serve", env=env, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("callstream: CALLSTREAM_EXPERTS: "), lines
    assert "Traceback" not in result.stderr + result.stdout


def test_experts_are_listed_to_agents_and_supervisors(server: Server) -> None:
    want = {
        "experts": [
            {"name": "Billing desk", "teamsUserId": BILLING},
            {"name": "Fraud team", "teamsUserId": FRAUD},
        ]
    }
    for role in ("agent", "supervisor", "admin"):
        assert get(server, "/experts", role) == (200, want)
    assert get(server, "/experts", "compliance")[0] == 403


# ------------------------------------------------------------------ asking an expert in


async def test_an_agent_asks_an_expert_in_and_acs_adds_them(server: Server, fake: FakeAcs) -> None:
    async with live_call(server, fake) as call:
        status, accepted = await asyncio.to_thread(
            consult, server, call.call_id, BILLING, "Billing desk"
        )
        assert status == 202, accepted
        context = accepted.pop("operationContext")
        assert re.fullmatch(r"callstream-consult-[0-9a-f]{24}", context)
        assert accepted == {
            "callId": call.call_id, "teamsUserId": BILLING, "displayName": "Billing desk",
        }  # fmt: skip
        [added] = await call.wait("consult.added")

        # What reached ACS: signed, to this call, a Teams user by object id, our context.
        [req] = add_requests(fake, call.call_id)
        assert req.signed_ok and req.status == 202 and req.method == "POST"
        assert req.path.startswith(
            f"/calling/callConnections/{call.call_id}/participants:add?api-version="
        )
        target = req.body["participantToAdd"]
        assert target["rawId"] == f"8:orgid:{BILLING}"
        assert target["microsoftTeamsUser"]["userId"] == BILLING
        assert target["microsoftTeamsUser"]["isAnonymous"] is False
        assert req.body["operationContext"] == context
        # ... and the callback ACS sent back: to the call's callback URL, the SDK's own shape.
        # (Recorded once its POST is answered, which may be just after the event is out.)
        [(url, [cb], cb_status)] = await wait_for(lambda: [
            c for c in fake.callbacks_sent if c[1][0]["type"].endswith("AddParticipantSucceeded")
            and c[1][0]["data"]["callConnectionId"] == call.call_id
        ], 10, "the fake to record its callback")  # fmt: skip
        assert cb_status == 200 and url == fake.calls[call.call_id]["callbackUri"]
        model = AddParticipantSucceeded.deserialize(cb["data"])
        assert model.operation_context == context and model.result_information.code == 200
        assert model.participant.raw_id == f"8:orgid:{BILLING}"
        assert model.participant.microsoft_teams_user.user_id == BILLING

        # ACS delivering that callback again, and one with a context never issued, change
        # nothing (each is answered before the call ends, so its events would be seen).
        assert await asyncio.to_thread(fake.post_cloud_events, url, [cb]) == 200
        forged = {"operationContext": "callstream-consult-" + "0" * 24, "participant": teams_user(BILLING)}  # fmt: skip
        status = await asyncio.to_thread(
            fake.send_call_event, call.call_id, "AddParticipantSucceeded", **forged
        )
        assert status == 200

    requested = call.of("consult.requested")
    assert [e["type"] for e in call.of("consult.requested", "consult.added", "consult.failed")] == [
        "consult.requested",
        "consult.added",
    ]
    for ev in (requested[0], added):
        assert (ev["teamsUserId"], ev["displayName"], ev["error"]) == (
            BILLING,
            "Billing desk",
            None,
        )
    assert requested[0]["seq"] < added["seq"]

    records = audit_records(server, call.call_id)
    assert in_order(records, "consult.requested", "consult.sent", "consult.added")
    for r in records:
        assert (r["by"], r["byRole"]) == ("agent one", "agent")
        assert (r["teamsUserId"], r["displayName"], r["operationContext"]) == (
            BILLING, "Billing desk", context,
        )  # fmt: skip
    callbacks = [
        r for r in audit_records(server, call.call_id, "acs.callback")
        if r["type"] == "AddParticipantSucceeded"
    ]  # fmt: skip
    assert len(callbacks) == 3  # the callback, its repeat, the forged one: all on record
    assert {(r["operationContext"], r["resultCode"]) for r in callbacks} == {
        (context, 200),
        (forged["operationContext"], 200),
    }


async def test_the_expert_is_a_third_channel_transcribed_and_redacted(
    server: Server, fake: FakeAcs
) -> None:
    """Once added, ACS streams the expert's audio on the call's socket as a third unmixed
    participant: it joins as staff (role agent), and what they say is transcribed and
    redacted like anyone's (here: the fixture customer's card number, said by the expert)."""
    audio = load_call_audio(FIXTURES / "payment_call.wav")
    [pcm] = [t for pid, t in audio.tracks if pid and pid.startswith("4:")]
    said = pcm[6200 * 32 : 11600 * 32]  # "four one one one, one one one one, ..." (6.37-11.32 s)
    expert = f"8:orgid:{BILLING}"
    async with live_call(server, fake) as call:
        status, _ = await asyncio.to_thread(consult, server, call.call_id, BILLING, "Billing desk")
        assert status == 202
        await call.wait("consult.added")
        silence = bytes(640)
        for i in range(0, len(said) + 25 * 640, 640):  # the speech, then 0.5 s of silence
            chunk = said[i : i + 640] if i < len(said) else silence
            for raw, frame in (
                (expert, chunk.ljust(640, b"\0")),
                (CUSTOMER, silence),
                (AGENT, silence),
            ):
                await call.media.send(
                    audio_message(frame, raw, "2026-01-01T00:00:01.000Z").decode()
                )
        await wait_for(
            lambda: any(e["participant"] == expert for e in call.of("transcript.final")),
            60, "the expert's final",
        )  # fmt: skip
    [joined] = [e for e in call.of("participant.joined") if e["participant"] == expert]
    assert joined["role"] == "agent"
    finals = [e for e in call.of("transcript.final") if e["participant"] == expert]
    assert all(e["role"] == "agent" for e in finals)
    text = " ".join(e["text"] for e in finals)
    assert "[" in text and "one one one" not in text and "1111" not in text, text
    last = call.of("analytics")[-1]
    assert last["final"] and last["talkMs"]["agent"] >= 4000  # the expert's talk is staff's


async def test_nobody_is_asked_in_while_a_card_is_read_and_an_agent_cannot_rename_an_expert(
    server: Server, fake: FakeAcs
) -> None:
    async with live_call(server, fake) as call:
        assert (
            await asyncio.to_thread(post, server, f"/calls/{call.call_id}/recording/pause", {})
        )[0] == 202
        status, refused = await asyncio.to_thread(
            consult, server, call.call_id, BILLING, "Billing desk"
        )
        assert status == 409 and "payment" in refused["error"]
        assert add_requests(fake, call.call_id) == []
        assert (
            await asyncio.to_thread(post, server, f"/calls/{call.call_id}/recording/resume", {})
        )[0] == 202
        # Once the payment is over; the agent's label is replaced by the configured name.
        status, accepted = await asyncio.to_thread(
            consult, server, call.call_id, BILLING, "my friend Bob"
        )
        assert status == 202 and accepted["displayName"] == "Billing desk"
        [requested] = await call.wait("consult.requested")
        assert requested["displayName"] == "Billing desk"
        await call.wait("consult.added")
    [refusal] = audit_records(server, call.call_id, "consult.refused")
    assert refusal["reason"] == "payment window open" and refusal["teamsUserId"] == BILLING


async def test_a_second_ask_while_one_is_pending_is_the_same_request(
    server: Server, fake: FakeAcs
) -> None:
    fake.auto_callbacks = False  # ACS has not answered the invitation yet
    try:
        async with live_call(server, fake) as call:
            status, first = await asyncio.to_thread(
                consult, server, call.call_id, FRAUD, "Fraud team", "supervisor"
            )
            assert status == 202
            await wait_for(lambda: add_requests(fake, call.call_id), 20, "the request at ACS")
            status, again = await asyncio.to_thread(
                consult, server, call.call_id, FRAUD.upper(), "Fraud team"
            )
            assert status == 202 and again == first
            ctx = first["operationContext"]
            participant = teams_user(FRAUD)
            # A callback naming someone else under this context settles nothing (were it
            # taken, the consult would have failed) ...
            await asyncio.to_thread(
                fake.send_call_event, call.call_id, "AddParticipantFailed",
                operationContext=ctx, participant=teams_user(BILLING),
            )  # fmt: skip
            # ... the real one does.
            await asyncio.to_thread(
                fake.send_call_event, call.call_id, "AddParticipantSucceeded",
                operationContext=ctx, participant=participant,
            )  # fmt: skip
            await call.wait("consult.added")
    finally:
        fake.auto_callbacks = True
    assert len(add_requests(fake, call.call_id)) == 1  # asked ACS once
    kinds = [e["type"] for e in call.of("consult.requested", "consult.added", "consult.failed")]
    assert kinds == ["consult.requested", "consult.added"]
    records = audit_records(server, call.call_id)
    assert in_order(
        records, "consult.requested", "consult.sent", "consult.repeated", "consult.added"
    )
    assert {r["byRole"] for r in records} == {"supervisor"}  # the request that was sent
    [repeated] = [r for r in records if r["kind"] == "consult.repeated"]
    assert repeated["askedBy"] == "agent one" and repeated["operationContext"] == ctx


async def test_acs_reports_the_expert_could_not_be_added(server: Server, fake: FakeAcs) -> None:
    fake.script("add_participant", ("fail", {"code": 403, "subCode": 10005, "message": "Declined.\nBy the callee."}))  # fmt: skip
    async with live_call(server, fake) as call:
        assert (await asyncio.to_thread(consult, server, call.call_id, BILLING, "Billing desk"))[0] == 202  # fmt: skip
        [failed] = await call.wait("consult.failed")
    error = "ACS 403/10005: Declined. By the callee."
    assert (failed["teamsUserId"], failed["displayName"], failed["error"]) == (
        BILLING, "Billing desk", error,
    )  # fmt: skip
    assert not call.of("consult.added")
    records = audit_records(server, call.call_id)
    assert in_order(records, "consult.requested", "consult.sent", "consult.failed")
    [record] = [r for r in records if r["kind"] == "consult.failed"]
    assert record["error"] == error and record["by"] == "agent one"
    [cb] = [r for r in audit_records(server, call.call_id, "acs.callback") if r["type"] == "AddParticipantFailed"]  # fmt: skip
    assert (cb["resultCode"], cb["resultSubCode"]) == (403, 10005)


async def test_acs_refusing_the_request_is_a_failed_consult(server: Server, fake: FakeAcs) -> None:
    fake.script("add_participant", 403)
    async with live_call(server, fake) as call:
        assert (await asyncio.to_thread(consult, server, call.call_id, BILLING, "Billing desk"))[0] == 202  # fmt: skip
        [failed] = await call.wait("consult.failed")
        [req] = add_requests(fake, call.call_id)
        assert req.status == 403 and req.signed_ok
        # Not pending any more: asking again is a new request (and this time ACS adds them).
        status, again = await asyncio.to_thread(consult, server, call.call_id, BILLING, "Billing desk")  # fmt: skip
        assert status == 202
        await call.wait("consult.added")
    assert failed["error"] == "HttpResponseError (HTTP 403): Forbidden"
    assert len(add_requests(fake, call.call_id)) == 2
    records = audit_records(server, call.call_id)
    assert [r["kind"] for r in records[:3]] == [
        "consult.requested", "consult.failed", "consult.requested",
    ]  # fmt: skip
    assert sorted(r["kind"] for r in records[3:]) == ["consult.added", "consult.sent"]
    assert records[1]["error"] == failed["error"] and records[1]["byRole"] == "agent"
    assert records[0]["operationContext"] != again["operationContext"]


async def test_a_late_answer_from_acs_still_settles_the_consult(
    server: Server, fake: FakeAcs
) -> None:
    """ACS takes longer to answer than callstream waits (3 s), but adds the expert: the
    consult fails as a timeout, and ACS's callback then says it was added after all."""
    fake.script("add_participant", ("delay", 5.0))  # 2 s past callstream's read timeout
    async with live_call(server, fake) as call:
        status, accepted = await asyncio.to_thread(
            consult, server, call.call_id, BILLING, "Billing desk"
        )
        assert status == 202
        [failed] = await call.wait("consult.failed")
        [added] = await call.wait("consult.added")
    assert failed["error"].startswith("timeout") and failed["seq"] < added["seq"]
    records = audit_records(server, call.call_id)
    assert [r["kind"] for r in records] == ["consult.requested", "consult.failed", "consult.added"]
    assert {r["operationContext"] for r in records} == {accepted["operationContext"]}


async def test_bad_bodies_roles_and_calls_that_are_not_live(server: Server, fake: FakeAcs) -> None:
    path = "/calls/{}/consult"
    # A call ACS handed over whose media has not started: known, not live.
    fake.next_call_connection_id = quiet = "consult-quiet-" + secrets.token_hex(3)
    url = f"{server.http}/acs/events?secret={SECRET}"
    assert (await asyncio.to_thread(post_event_grid, url, fake.incoming_call()))[0] == 200
    await wait_for(lambda: quiet in fake.calls, 20, "the quiet call to be answered")
    for call_id in (quiet, "no-such-call"):
        assert consult(server, call_id, BILLING, "Billing desk", "supervisor")[0] == 404

    async with live_call(server, fake) as call:
        p = path.format(call.call_id)
        for body in (
            b"", b"not json", b"[]", {}, {"teamsUserId": BILLING},
            {"teamsUserId": "not-a-guid", "displayName": "Billing desk"},
            {"teamsUserId": BILLING + "\n", "displayName": "Billing desk"},
            {"teamsUserId": f"8:orgid:{BILLING}", "displayName": "Billing desk"},
            {"teamsUserId": BILLING, "displayName": "   "},
            {"teamsUserId": BILLING, "displayName": "x" * 257},
            {"teamsUserId": BILLING, "displayName": "Billing desk", "extra": 1},
            {"teamsUserId": 1, "displayName": "Billing desk"},
        ):  # fmt: skip
            status, answer = await asyncio.to_thread(post, server, p, body)
            assert status == 400 and "teamsUserId" in answer["error"], (body, answer)
        # An agent may ask only a configured expert; a supervisor anyone by object id.
        status, answer = await asyncio.to_thread(consult, server, call.call_id, OUTSIDER, "Someone")
        assert status == 403 and "configured expert" in answer["error"]
        assert (await asyncio.to_thread(consult, server, call.call_id, BILLING, "x", "compliance"))[0] == 403  # fmt: skip
        status, answer = await asyncio.to_thread(
            consult, server, call.call_id, OUTSIDER, "Someone", "supervisor"
        )
        assert status == 202, answer
        await call.wait("consult.added")
    assert consult(server, call.call_id, BILLING, "Billing desk")[0] == 404  # ended
    assert [e["teamsUserId"] for e in call.of("consult.requested")] == [OUTSIDER]
    assert len(add_requests(fake, call.call_id)) == 1


async def test_without_acs_a_consult_is_503_and_no_experts_are_listed(tmp_path) -> None:
    server = start_server(tmp_path, CALLSTREAM_STT="acs", CALLSTREAM_MEDIA_AUTH="off")
    try:
        call_id = "consult-no-acs"
        headers = {"x-ms-call-connection-id": call_id}
        async with connect(f"{server.ws}/media", additional_headers=headers) as media:
            await media.send(metadata_message(16000).decode())
            await media.send(audio_message(b"\x01\x00" * 320, AGENT, "2026-01-01T00:00:00.000Z").decode())  # fmt: skip
            await wait_for(
                lambda: asyncio.to_thread(
                    lambda: any(c["callId"] == call_id and c["live"] for c in server.get_json("/calls")[1]["calls"])
                ), 20, "the call to be live",
            )  # fmt: skip
            body = {"teamsUserId": BILLING, "displayName": "Billing desk"}
            status, answer = await asyncio.to_thread(
                server.post_json, f"/calls/{call_id}/consult", body
            )
            assert status == 503 and "not configured" in answer["error"]
            assert await asyncio.to_thread(server.get_json, "/experts") == (200, {"experts": []})
    finally:
        server.stop()


# ------------------------------------------------------------------ the console


async def test_the_console_asks_an_expert_in(
    chromium_path,  # noqa: F811  (the fixture imported above)
    server: Server,
    fake: FakeAcs,
    tmp_path: Path,
) -> None:
    from playwright.async_api import async_playwright, expect

    async with live_call(server, fake) as call:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=chromium_path, args=["--no-sandbox"], headless=True
            )
            try:
                page = await browser.new_page()
                problems: list[str] = []
                page.on("pageerror", lambda exc: problems.append(str(exc)))
                # The agent's own token, kept as the console's cookie (as an agent opens it).
                await page.goto(f"{server.http}/console/{call.call_id}?token={TOKENS['agent']}")
                picker = page.get_by_label("Expert", exact=True)
                await expect(picker).to_be_enabled(timeout=20_000)
                assert await picker.locator("option").all_text_contents() == [
                    "Billing desk",
                    "Fraud team",
                ]
                await picker.select_option(label="Fraud team")
                await page.get_by_role("button", name="Ask to join").click()
                await expect(page.locator("#consult-status")).to_have_attribute(
                    "data-result", "accepted", timeout=20_000
                )
                item = page.locator(f'#consults li[data-teams-user-id="{FRAUD}"]')
                await expect(item).to_have_attribute("data-state", "added", timeout=20_000)
                await expect(item).to_contain_text("Fraud team")
                await expect(item).to_contain_text("joined the call")
                await page.screenshot(path=str(tmp_path / "consult.png"), full_page=True)
                assert not problems, problems
            finally:
                await browser.close()
    [req] = add_requests(fake, call.call_id)
    assert req.body["participantToAdd"]["microsoftTeamsUser"]["userId"] == FRAUD
    records = audit_records(server, call.call_id)
    assert in_order(records, "consult.requested", "consult.sent", "consult.added")
    assert {r["by"] for r in records} == {"agent one"}


class _Session:
    """A call's session as the consult controller sees it (no media, no engine)."""

    def __init__(self, call_id: str) -> None:
        self.call_id = call_id
        self.started, self.ending, self.ended, self.payment_open = True, False, False, False
        self.events: list = []
        self.audits: list[tuple[str, dict]] = []

    def emit(self, event) -> None:
        self.events.append(event)

    def audit(self, kind: str, body: dict) -> None:
        self.audits.append((kind, body))

    def track_new(self, coro) -> None:
        coro.close()  # (the request to ACS is not what this test is about)


def test_a_pending_consult_goes_with_its_call_to_another_replica() -> None:
    """The call's media moves while ACS has not answered: the consult travels in the
    hand-over state, and ACS's callback settles it on the new owner's session."""
    from pipeline.consult.controller import OP_REQUEST, OP_RESULT, ConsultController
    from pipeline.ingest.handover import HandOverState, from_wire, to_wire
    from pipeline.pci.recording import RecordingController

    settings = load_settings(environ={"CALLSTREAM_EXPERTS": EXPERTS})
    old_replica = ConsultController(settings, RecordingController(settings), cluster=None)
    new_replica = ConsultController(settings, RecordingController(settings), cluster=None)
    old, new = _Session("moving-call"), _Session("moving-call")
    body = {
        "teamsUserId": BILLING,
        "displayName": "Billing desk",
        "by": "agent one",
        "byRole": "agent",
    }
    context = old_replica.command(old, OP_REQUEST, body)["operationContext"]

    old.ending = True  # hand_over: the call leaves this replica
    waiting = old_replica.forget(old)
    state = from_wire(to_wire(HandOverState(last_seq=3, consults=waiting)))
    new_replica.restore(new, state.consults)
    # The old replica knows nothing more of it; the new one settles it.
    answer = {"operationContext": context, "succeeded": True, "teamsUserId": BILLING}
    assert old_replica.command(old, OP_RESULT, answer) == {"matched": False}
    assert new_replica.command(new, OP_RESULT, answer) == {"matched": True}
    [added] = new.events
    assert (type(added).__name__, added.teamsUserId, added.displayName) == (
        "ConsultAdded", BILLING, "Billing desk",
    )  # fmt: skip
    [(kind, record)] = new.audits
    assert kind == "consult.added" and (record["by"], record["operationContext"]) == (
        "agent one",
        context,
    )
    assert new_replica.command(new, OP_RESULT, answer) == {"matched": False}  # settled once
