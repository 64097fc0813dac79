"""Two replicas behind one (imaginary) load balancer, sharing a real Redis server.

ACS's webhook, the media websocket and an agent's subscription each land on a different
replica: replica B must still show the agent every event of a call that streams to
replica A, and a payment pause decided on A must reach ACS exactly once although ACS
talks to B.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys

import redis
from websockets.asyncio.client import connect

from pipeline.privacy.pseudonyms import pseudonym

from .conftest import (
    Server,
    collect_call_events,
    free_port,
    start_server,
    wait_for,
    wait_subscribed,
)
from .fake_acs import FakeAcs, event_grid_validation, post_event_grid
from .test_e2e_media import _transcription

CUSTOMER = "4:+15551234"
AGENT = "8:acs:agent-7"
PSEUDONYM_KEY = "scale-out-tests-shared-pseudonym-key"


def _stored(server: Server, call_id: str) -> str:
    """The call's events in ``server``'s store so far, as JSON lines ("" before it has any)."""
    try:
        return server.get_bytes(f"/calls/{call_id}/transcript?format=jsonl").decode()
    except OSError:  # 404 until the call is stored
        return ""


def _in_call_stream(url: str, call_id: str, needle: str) -> bool:
    """``needle`` is in one of the call's events in Redis (its stream, callstream:call:ID)."""
    entries = redis.Redis.from_url(url).xrange(f"callstream:call:{call_id}")
    return any(needle.encode() in fields[b"r"] for _, fields in entries)


def _collect_firehose(ws_base: str, events: list[dict]) -> asyncio.Task:
    async def run() -> None:
        async with connect(f"{ws_base}/events", max_size=None) as ws:
            async for raw in ws:
                events.append(json.loads(raw))

    return asyncio.create_task(run())


async def test_a_subscriber_on_replica_b_sees_every_event_of_a_call_on_replica_a(
    tmp_path, redis_url
) -> None:
    env = {
        "CALLSTREAM_STT": "acs",
        "CALLSTREAM_BUS": redis_url,
        "CALLSTREAM_SUBSCRIBER_QUEUE": "4096",
    }
    a = start_server(tmp_path, **env)
    b = start_server(tmp_path, **env)
    firehose_b: list[dict] = []
    try:
        fire_task = _collect_firehose(b.ws, firehose_b)
        await wait_subscribed(b, 1)  # B's reader follows the firehose from here on
        call_id = "scale-out-call"
        async with connect(
            f"{a.ws}/media", additional_headers={"x-ms-call-connection-id": call_id}
        ) as media:
            await media.send(_transcription("hello thanks for calling", "Final", AGENT, 0))
            await wait_for(
                lambda: b.get_json("/readyz")[0] == 200 and len(firehose_b) >= 2,
                what="the call on B",
            )
            # An agent desktop on B joins mid-call and resumes from the start (seq 0):
            # the replica has never stored this call; the bus has it.
            on_b = asyncio.create_task(collect_call_events(b.ws, call_id, since=0, timeout=60))
            for i in range(1, 150):
                role = CUSTOMER if i % 2 else AGENT
                await media.send(
                    _transcription(f"line number {i} of the call", "Intermediate", role, i * 1000)
                )
                await media.send(
                    _transcription(f"line number {i} of the call", "Final", role, i * 1000)
                )
                if i % 25 == 0:
                    # Pacing a live call, not a wait for anything: no assertion depends on it.
                    await asyncio.sleep(0.05)
        events_b = await on_b
        await wait_for(
            lambda: any(e["type"] == "call.ended" for e in firehose_b),
            what="call.ended on B's firehose",
        )
        fire_task.cancel()
        stored_a = [
            json.loads(line)
            for line in a.get_bytes(f"/calls/{call_id}/transcript?format=jsonl").splitlines()
        ]
        _, calls_b = b.get_json("/calls")
    finally:
        a.stop()
        b.stop()

    seqs = [e["seq"] for e in events_b]
    assert seqs == list(range(1, len(seqs) + 1)), "a gap or a reordering on replica B"
    assert events_b == stored_a, "B's subscriber must see exactly what A stored, in order"
    assert events_b[-1]["type"] == "call.ended"
    assert [e for e in firehose_b if e["callId"] == call_id] == stored_a
    finals = [e for e in events_b if e["type"] == "transcript.final"]
    assert len(finals) == 150
    assert all(c["callId"] != call_id for c in calls_b["calls"])  # B never stored it: A did


def _everything_in(url: str) -> str:
    """Every key's content in a Redis database, as one text (streams, hashes, strings)."""
    r = redis.Redis.from_url(url)
    out = []
    for key in r.scan_iter():
        kind = r.type(key).decode()
        if kind == "stream":
            out += [repr(fields) for _, fields in r.xrange(key)]
        elif kind == "hash":
            out.append(repr(r.hgetall(key)))
        elif kind == "string":
            out.append(repr(r.get(key)))
        elif kind == "list":
            out.append(repr(r.lrange(key, 0, -1)))
    return "\n".join(out).replace("\\", "")


def confirmed(server, call_id: str) -> int:
    status, doc = server.get_json(f"/calls/{call_id}/audit")
    return (
        sum(r["kind"] == "recording.confirmed" for r in doc.get("records", []))
        if status == 200
        else 0
    )


async def test_webhook_on_b_media_on_a_pauses_the_recording_once(tmp_path, redis_url) -> None:
    with FakeAcs() as fake:
        env = {
            "CALLSTREAM_STT": "acs", "CALLSTREAM_BUS": redis_url, "CALLSTREAM_MEDIA_AUTH": "off",
            "CALLSTREAM_ACS_ENDPOINT": fake.endpoint, "CALLSTREAM_ACS_KEY": fake.access_key,
        }  # fmt: skip
        a = start_server(tmp_path, **env)
        b = start_server(tmp_path, public_url_self=True, **env)  # ACS's callbacks all go to B
        try:
            # No secret configured: the replicas generated one and agreed on it through Redis.
            secret = redis.Redis.from_url(redis_url).get("callstream:callback-secret").decode()
            for replica in (a, b):
                status, body = post_event_grid(
                    f"{replica.http}/acs/events?secret={secret}", event_grid_validation("code-7")
                )
                assert (status, body) == (200, {"validationResponse": "code-7"})

            call_id = "two-replica-call"
            fake.next_call_connection_id = call_id
            assert (
                post_event_grid(f"{b.http}/acs/events?secret={secret}", fake.incoming_call())[0]
                == 200
            )
            await wait_for(lambda: fake.of("start_recording"), what="B to start the recording")
            recording_id = next(iter(fake.recordings))
            await wait_for(
                lambda: redis.Redis.from_url(redis_url).hget(f"callstream:reg:{call_id}", "recordingId"),
                what="the recording id in the registry",
            )  # fmt: skip

            # ACS's media websocket lands on A.
            collector = asyncio.create_task(collect_call_events(a.ws, call_id, since=0))
            async with connect(
                f"{a.ws}/media", additional_headers={"x-ms-call-connection-id": call_id}
            ) as media:
                await media.send(
                    _transcription("can i take the card number please", "Final", AGENT, 500)
                )
                await wait_for(
                    lambda: confirmed(a, call_id) == 1, what="A to see the pause confirmed"
                )
                await media.send(
                    _transcription("sure it's 4111 1111 1111 1111", "Final", CUSTOMER, 2000)
                )
                await media.send(
                    _transcription("thanks your payment has gone through", "Final", AGENT, 9000)
                )
                await wait_for(
                    lambda: fake.recording_state(recording_id) == "active", what="the resume"
                )
                # recording.resumed only once A hears ACS confirm it (B's callback, forwarded).
                await wait_for(
                    lambda: confirmed(a, call_id) == 2, what="A to see the resume confirmed"
                )
                # The agent's desktop talks to B: the manual pause runs on A, which owns the call.
                status, body = b.post_json(f"/calls/{call_id}/recording/pause", {})
                assert status == 202, body
                assert body["payment"] == "open" and body["recordingId"] == recording_id
                await wait_for(
                    lambda: fake.recording_state(recording_id) == "inactive",
                    what="the manual pause",
                )
                registry = redis.Redis.from_url(redis_url, decode_responses=True).hgetall(
                    f"callstream:reg:{call_id}"
                )
                # The far end hangs up: CallDisconnected reaches B, which ends the call on A.
                fake.disconnect_call(call_id)
                events = await asyncio.wait_for(collector, 30)
            audit = a.get_json(f"/calls/{call_id}/audit")[1]
            in_redis = _everything_in(redis_url)
        finally:
            a.stop()
            b.stop()

    # Privacy: whatever the replicas put into Redis (streams, registry, secrets) holds no
    # digit of the card the customer read out.
    assert "4111" not in in_redis and "1111 1111" not in in_redis
    assert f'"callId":"{call_id}"' in in_redis  # the call's events did go through Redis
    pauses = [r for r in fake.of("pause") if r.status == 202]
    resumes = [r for r in fake.of("resume") if r.status == 202]
    assert len(pauses) == 2 and len(resumes) == 1, "one pause per window, each sent once"
    assert all(r.signed_ok for r in fake.requests)
    kinds = [e["type"] for e in events]
    assert kinds.count("recording.paused") == 2 and kinds.count("recording.resumed") == 1
    assert (
        kinds.index("payment.started")
        < kinds.index("recording.paused")
        < kinds.index("payment.ended")
    )
    [ended] = [e for e in events if e["type"] == "call.ended"]
    assert ended["reason"] == "call-disconnected"
    # A learnt of each state change through B's callback, forwarded to it.
    confirmed_records = [r for r in audit["records"] if r["kind"] == "recording.confirmed"]
    assert len(confirmed_records) == 3 and all(
        r["recordingId"] == recording_id for r in confirmed_records
    )
    assert all(r["confirmedBy"] == "callback" for r in confirmed_records), confirmed_records
    assert registry["owner"] and registry["payment"] == "open" and registry["serverCallId"]
    assert "4111" not in json.dumps(events) + json.dumps(registry)


def test_workers_need_the_redis_bus(tmp_path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pipeline.cli.commands", "serve", "--workers", "2", "--port", str(free_port())],
        env={**os.environ, "CALLSTREAM_DATA_DIR": str(tmp_path), "CALLSTREAM_STT": "acs"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2
    assert (
        "--workers 2 needs the Redis bus" in out.stderr and "CALLSTREAM_BUS=redis://" in out.stderr
    )


async def test_two_workers_share_one_port_and_one_bus(tmp_path, redis_url) -> None:
    port = free_port()
    env = {**os.environ, "CALLSTREAM_DATA_DIR": str(tmp_path / "data"), "CALLSTREAM_STT": "acs",
           "CALLSTREAM_BUS": redis_url, "CALLSTREAM_PORT": str(port)}  # fmt: skip
    log = open(tmp_path / "workers.log", "wb")  # noqa: ASYNC230 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli.commands", "serve", "--workers", "2"], env=env,  # noqa: ASYNC220
                            stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    server = Server(port, tmp_path / "data", proc, tmp_path / "workers.log")
    try:
        await wait_for(lambda: _ready(server), timeout=120, what="the workers to be ready")
        await wait_for(
            lambda: len(_listeners(port)) == 2, timeout=60, what="two processes on the port"
        )
        # Each connection lands on either worker; every subscriber sees every call.
        firehose: list[dict] = []
        fire_task = _collect_firehose(server.ws, firehose)
        # Attached on whichever worker took it: each /metrics scrape lands on either worker,
        # and only that one can count a subscriber.
        await wait_subscribed(server, 1)
        for n in range(6):
            async with connect(
                f"{server.ws}/media", additional_headers={"x-ms-call-connection-id": f"w-{n}"}
            ) as media:
                await media.send(_transcription("hello from a worker", "Final", AGENT, 0))
        await wait_for(
            lambda: sum(e["type"] == "call.ended" for e in firehose) == 6,
            timeout=30,
            what="six calls",
        )
        fire_task.cancel()
        workers = _listeners(port)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, 60)
        log.close()
    assert code == 0
    assert len(workers) == 2
    assert {e["callId"] for e in firehose} == {f"w-{n}" for n in range(6)}


def _ready(server: Server) -> bool:
    try:
        return server.get_json("/readyz")[0] == 200
    except OSError:
        return False


def _listeners(port: int) -> set[int]:
    """PIDs of processes with a socket listening on ``port`` (from ss)."""
    out = subprocess.run(
        ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True
    ).stdout
    return {int(p) for p in re.findall(r"pid=(\d+)", out)}


async def test_redis_restarted_mid_call_loses_no_event_for_a_subscriber_on_b(
    tmp_path, redis_server
) -> None:
    url = redis_server.fresh_url()
    env = {"CALLSTREAM_STT": "acs", "CALLSTREAM_BUS": url, "CALLSTREAM_SUBSCRIBER_QUEUE": "4096"}
    a = start_server(tmp_path, **env)
    b = start_server(tmp_path, **env)
    call_id = "redis-restart-call"
    owners = redis.Redis.from_url(url)
    try:
        async with connect(
            f"{a.ws}/media", additional_headers={"x-ms-call-connection-id": call_id}
        ) as media:
            await media.send(_transcription("before the restart", "Final", AGENT, 0))
            await wait_for(
                lambda: _in_call_stream(url, call_id, "before the restart"),
                what="the call's first final in Redis",
            )
            on_b = asyncio.create_task(collect_call_events(b.ws, call_id, since=0, timeout=90))
            await wait_subscribed(b, 1)
            for i in range(20):
                await media.send(
                    _transcription(
                        f"line {'abcdefghijklmnopqrst'[i]} before", "Final", CUSTOMER, 1000 + i
                    )
                )
            await asyncio.to_thread(
                redis_server.restart, 1.0
            )  # Redis is away for a second, data lost
            for i in range(20):
                await media.send(
                    _transcription(
                        f"line {'abcdefghijklmnopqrst'[i]} after", "Final", AGENT, 5000 + i
                    )
                )
            # The cluster has recovered: A registered its call again (its heartbeat) and wrote
            # into the new Redis what it kept meanwhile.
            await wait_for(
                lambda: owners.hget("callstream:owners", call_id),
                timeout=30,
                what="A to register its call again",
            )
            await wait_for(
                lambda: _in_call_stream(url, call_id, "line t after"), timeout=30, what="A's events after the restart in Redis"
            )  # fmt: skip
            await media.send(_transcription("after the restart", "Final", CUSTOMER, 9000))
            await wait_for(
                lambda: "after the restart" in _stored(a, call_id),
                what="the last final stored on A",
            )
        events_b = await on_b
        stored_a = [
            json.loads(x)
            for x in a.get_bytes(f"/calls/{call_id}/transcript?format=jsonl").splitlines()
        ]
    finally:
        a.stop()
        b.stop()
    finals = [e["text"] for e in events_b if e["type"] == "transcript.final"]
    assert finals[0] == "before the restart" and finals[-1] == "after the restart"
    assert len(finals) == 42
    assert [e for e in events_b if e["type"] != "lagged"] == stored_a


async def test_resuming_from_redis_names_the_events_redis_no_longer_has(
    tmp_path, redis_url
) -> None:
    """An agent on B resumes a call on A from the call's Redis stream, part of which Redis
    no longer has (trimmed, or lost in a restart): the hole comes as a `lagged` notice."""
    env = {"CALLSTREAM_STT": "acs", "CALLSTREAM_BUS": redis_url}
    a = start_server(tmp_path, **env)
    b = start_server(tmp_path, **env)
    call_id = "holed-call"
    stream = f"callstream:call:{call_id}"
    r = redis.Redis.from_url(redis_url)
    try:
        async with connect(
            f"{a.ws}/media", additional_headers={"x-ms-call-connection-id": call_id}
        ) as media:
            for i in range(6):
                await media.send(_transcription(f"line {'abcdef'[i]}", "Final", AGENT, i * 1000))
            await wait_for(lambda: r.xlen(stream) >= 8, what="the call's events in Redis")
            r.xdel(
                stream, *[eid for eid, fields in r.xrange(stream) if int(fields[b"s"]) in (4, 5)]
            )
            seen_on_b: list[dict] = []
            on_b = asyncio.create_task(
                collect_call_events(b.ws, call_id, since=0, timeout=60, into=seen_on_b)
            )
            # B's subscriber has resumed past the hole (its replay named it) before more comes.
            await wait_for(
                lambda: any(e["type"] == "lagged" for e in seen_on_b), what="the hole named on B"
            )
            await media.send(_transcription("the last line", "Final", AGENT, 9000))
        events_b = await on_b
    finally:
        a.stop()
        b.stop()
    notices = [(e["missedFrom"], e["missedTo"]) for e in events_b if e["type"] == "lagged"]
    assert notices == [(4, 5)]
    seqs = [e["seq"] for e in events_b if e["type"] != "lagged"]
    assert seqs == [1, 2, 3, *range(6, seqs[-1] + 1)] and events_b[-1]["type"] == "call.ended"


async def test_a_subscriber_that_resumed_while_redis_was_down_gets_the_hole_filled(
    tmp_path, redis_server
) -> None:
    """B's subscriber resumes a call on A from seq 0 while Redis is down: B's store does not
    have the call and Redis cannot be read. When live events come again past the hole, B
    fills it from the call's Redis stream (A wrote it again into the restarted Redis)."""
    url = redis_server.fresh_url()
    env = {"CALLSTREAM_STT": "acs", "CALLSTREAM_BUS": url}
    a = start_server(tmp_path, **env)
    b = start_server(tmp_path, **env)
    call_id = "resumed-in-the-dark"
    r = redis.Redis.from_url(url)
    try:
        async with connect(
            f"{a.ws}/media", additional_headers={"x-ms-call-connection-id": call_id}
        ) as media:
            for i in range(4):
                await media.send(
                    _transcription(f"early line {'abcd'[i]}", "Final", AGENT, i * 1000)
                )
            await wait_for(
                lambda: r.xlen(f"callstream:call:{call_id}") >= 6, what="the call's events in Redis"
            )
            await asyncio.to_thread(redis_server.stop)
            errors_before = await asyncio.to_thread(b.metric, "callstream_bus_errors_total")
            seen_on_b: list[dict] = []
            on_b = asyncio.create_task(
                collect_call_events(b.ws, call_id, since=0, timeout=90, into=seen_on_b)
            )
            # B replays: nothing in its store, Redis unreachable. Signals: the subscription is
            # attached (its replay runs right after) and B's bus has found Redis unreachable.
            await wait_subscribed(b, 1)
            await wait_for(
                lambda: asyncio.to_thread(lambda: b.metric("callstream_bus_errors_total") > errors_before),
                what="B to find Redis unreachable",
            )  # fmt: skip
            await asyncio.to_thread(redis_server.start)  # empty
            for i in range(3):
                await media.send(
                    _transcription(f"late line {'abc'[i]}", "Final", CUSTOMER, 9000 + i * 1000)
                )
            await wait_for(
                lambda: any(e.get("text") == "late line c" for e in seen_on_b),
                timeout=30,
                what="the late lines on B",
            )
        events_b = await on_b
        stored_a = [
            json.loads(x)
            for x in a.get_bytes(f"/calls/{call_id}/transcript?format=jsonl").splitlines()
        ]
    finally:
        a.stop()
        b.stop()
    assert events_b == stored_a  # every event, in order, no lagged notice: the hole was filled
    assert [e["text"] for e in events_b if e["type"] == "transcript.final"][0] == "early line a"


async def test_media_reconnecting_to_another_replica_is_handed_over(tmp_path, redis_url) -> None:
    """ACS's reconnect lands wherever the balancer sends it: replica B takes the call over
    from A (which stops without a call.ended), with its seq, timeline and payment window."""
    from .test_resilience import drop

    # Replicas that share a store share the pseudonym key (each has its own data dir).
    env = {"CALLSTREAM_STT": "acs", "CALLSTREAM_BUS": redis_url, "CALLSTREAM_STORE": str(tmp_path / "shared.db"),
           "CALLSTREAM_MEDIA_RECONNECT_GRACE_S": "30", "CALLSTREAM_PSEUDONYM_KEY": PSEUDONYM_KEY}  # fmt: skip
    a = start_server(tmp_path, **env)
    b = start_server(tmp_path, **env)
    call_id = "moving-call"
    try:
        # ?since=0: B's subscriber replays what it missed, whenever it attaches (no wait).
        collector = asyncio.create_task(collect_call_events(b.ws, call_id, since=0, timeout=60))
        ws = await connect(f"{a.ws}/media", additional_headers={"x-ms-call-connection-id": call_id})
        # The agent's CRM told A the customer's account number (known entities: memory only).
        status, _ = a.post_json(f"/calls/{call_id}/known-entities",
                                {"entities": [{"type": "ACCOUNT_NUMBER", "value": "77341926"}]})  # fmt: skip
        assert status == 200
        await ws.send(_transcription("can i take the card number please", "Final", AGENT, 500))
        await ws.send(_transcription("sure it is four one one one", "Intermediate", CUSTOMER, 2000))
        await wait_for(lambda: a.get_json("/readyz")[1]["activeCalls"] == 1, what="the call on A")
        # The customer's utterance has begun on A (its partial is on record) when A loses ACS.
        await wait_for(
            lambda: '"transcript.partial"' in _stored(a, call_id), what="the partial published on A"
        )
        await drop(ws)  # no close frame: A waits for ACS to come back (30 s here)
        async with connect(
            f"{b.ws}/media", additional_headers={"x-ms-call-connection-id": call_id}
        ) as ws2:
            # A lets go at once, not after its 30 s grace.
            await wait_for(
                lambda: a.get_json("/readyz")[1]["activeCalls"] == 0,
                what="A to hand the call over",
                timeout=10,
            )
            await ws2.send(
                _transcription("sure it is 4111 1111 1111 1111", "Final", CUSTOMER, 2000)
            )
            await ws2.send(
                _transcription("thanks your payment has gone through", "Final", AGENT, 9000)
            )
            await ws2.send(_transcription("and my account is 7734 1926", "Final", CUSTOMER, 12000))
            await wait_for(
                lambda: _stored(b, call_id).count('"transcript.final"') == 4,
                what="the four finals on B",
            )
        events = await collector
        in_redis = _everything_in(redis_url)
        stored = [
            json.loads(line)
            for line in b.get_bytes(f"/calls/{call_id}/transcript?format=jsonl").splitlines()
        ]
        audit = b.get_json(f"/calls/{call_id}/audit")[1]
        b_logs = b.logs()
    finally:
        a.stop()
        b.stop()
    kinds = [e["type"] for e in events]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), (
        "one seq, no gap, no overlap"
    )
    assert events == stored, "one record of the call, in one store"
    assert kinds.count("call.started") == 1 and kinds.count("call.ended") == 1
    assert events[-1]["reason"] == "media-disconnected"  # ended by B, when its socket closed
    joined = [e["participant"] for e in events if e["type"] == "participant.joined"]
    assert sorted(joined) == sorted(set(joined)), "a participant joined twice"
    # The customer is one pseudonym on both replicas (the key is shared), never the number.
    assert sorted(joined) == sorted([AGENT, pseudonym(CUSTOMER, PSEUDONYM_KEY)])
    assert CUSTOMER not in json.dumps(events)
    # The window opened on A and closed on B: one window, and the digits said on B redacted.
    assert kinds.count("payment.started") == 1 and kinds.count("payment.ended") == 1
    assert [e["trigger"] for e in events if e["type"] == "payment.ended"] == ["phrase"]
    assert "4111" not in json.dumps(events) and "4111" not in b_logs
    # The known value went along (as a command, never into a Redis key) and is redacted on B.
    assert not any(
        s in text
        for s in ("77341926", "7734 1926")
        for text in (json.dumps(events), in_redis, b_logs)
    )
    finals = [e for e in events if e["type"] == "transcript.final"]
    assert len(finals) == 4 and len({f["utteranceId"] for f in finals}) == 4
    # The customer's utterance begun on A (a partial) is finished on B under the same id.
    [partial] = [e for e in events if e["type"] == "transcript.partial"]
    assert partial["utteranceId"] == finals[1]["utteranceId"]
    kinds_on_record = [r["kind"] for r in audit["records"]]
    assert "media.handed-over" in kinds_on_record
    assert any(r["kind"] == "media.reconnected" and r.get("handedOver") for r in audit["records"])
