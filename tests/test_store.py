"""One test suite for every event store: SQLite (the default) and PostgreSQL (a real
server the tests start from the installed binaries, see tests/pg_server.py)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest

from pipeline.compliance import chain
from pipeline.compliance.store import AuditRecord, EventStore, SqliteEventStore, StoredEvent

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[EventStore]:
    if request.param == "sqlite":
        s: EventStore = SqliteEventStore(tmp_path / "events.db")
    else:
        from pipeline.compliance.store_postgres import PostgresEventStore

        s = PostgresEventStore(request.getfixturevalue("postgres_url"))
    yield s
    s.close()


def event(call_id: str, seq: int, kind: str, time: str, **fields: object) -> StoredEvent:
    body = json.dumps(
        {"type": kind, "callId": call_id, "seq": seq, "time": time, **fields}
    ).encode()
    mode = fields.get("mode") if kind == "call.started" else None
    reason = fields.get("reason") if kind == "call.ended" else None
    return StoredEvent(call_id, seq, kind, time, body, mode, 16000 if mode else None, reason)


def a_call(
    call_id: str,
    start: str = "2026-01-01T10:00:00.000Z",
    end: str | None = "2026-01-01T10:05:00.000Z",
) -> list[StoredEvent]:
    events = [
        event(call_id, 1, "call.started", start, mode="unmixed", sampleRate=16000),
        event(call_id, 2, "transcript.final", start, text="hello [PERSON]", role="agent"),
        event(
            call_id, 3, "transcript.final", start, text="my card is [CREDIT_CARD]", role="customer"
        ),
    ]
    if end:
        events.append(event(call_id, 4, "call.ended", end, reason="media-disconnected"))
    return events


def new_id() -> str:
    return f"call-{uuid.uuid4().hex[:10]}"


def test_append_read_and_call_records(store: EventStore) -> None:
    cid = new_id()
    events = a_call(cid)
    store.append(events[:2])
    store.append(
        events[2:],
        [AuditRecord(cid, "2026-01-01T10:00:01.000Z", "window.opened", b'{"window": 1}')],
    )
    assert [s for s, _ in store.read(cid)] == [1, 2, 3, 4]
    assert [b for _, b in store.read(cid, since_seq=2)] == [e.body for e in events[2:]]
    rec = store.get_call(cid)
    assert rec is not None and rec.last_seq == 4 and rec.ended_at == "2026-01-01T10:05:00.000Z"
    assert (rec.mode, rec.sample_rate, rec.end_reason, rec.hold) == (
        "unmixed",
        16000,
        "media-disconnected",
        False,
    )
    assert [a.kind for a in store.audit(cid)] == ["window.opened"]
    assert store.get_call("no-such-call") is None and list(store.read("no-such-call")) == []
    assert cid in [c.call_id for c in store.calls(1000)]


def test_every_event_is_chained_across_batches(store: EventStore) -> None:
    cid = new_id()
    events = a_call(cid)
    store.append(events[:1])
    store.append(events[1:3])
    store.append(events[3:])
    links = [link for _, _, link in store.read_chain(cid)]
    expected, prev = [], chain.genesis(cid)
    for e in events:
        prev = chain.link(prev, e.body)
        expected.append(prev)
    assert links == expected


def reopen(store: EventStore, request: pytest.FixtureRequest) -> EventStore:
    """A second store on the same database: a restarted process, another replica."""
    if isinstance(store, SqliteEventStore):
        return SqliteEventStore(store.path)
    from pipeline.compliance.store_postgres import PostgresEventStore

    return PostgresEventStore(request.getfixturevalue("postgres_url"))


def test_chain_continues_in_another_process(
    store: EventStore, request: pytest.FixtureRequest
) -> None:
    cid = new_id()
    events = a_call(cid)
    store.append(events[:2])
    again = reopen(store, request)
    try:
        again.append(events[2:])
        links = [link for _, _, link in again.read_chain(cid)]
    finally:
        again.close()
    prev = chain.genesis(cid)
    for e, got in zip(events, links, strict=True):
        prev = chain.link(prev, e.body)
        assert got == prev


def test_holds_and_purge(store: EventStore) -> None:
    old, held, recent, live = new_id(), new_id(), new_id(), new_id()
    store.append(a_call(old, end="2026-01-01T10:05:00.000Z"))
    store.append(a_call(held, end="2026-01-01T11:05:00.000Z"))
    store.append(a_call(recent, "2026-03-01T10:00:00.000Z", "2026-03-01T10:05:00.000Z"))
    store.append(a_call(live, end=None))
    assert store.set_hold(held, True) and store.get_call(held).hold
    assert not store.set_hold("no-such-call", True)
    purged = store.purge("2026-02-01T00:00:00.000Z")
    assert purged == [old]
    assert store.get_call(old) is None and list(store.read(old)) == [] and store.audit(old) == []
    assert (
        store.get_call(held) is not None
        and store.get_call(recent) is not None
        and store.get_call(live) is not None
    )
    assert store.set_hold(held, False)
    assert store.purge("2026-02-01T00:00:00.000Z") == [held]


def test_calls_between(store: EventStore) -> None:
    a, b, c = new_id(), new_id(), new_id()
    store.append(a_call(a, "2030-05-01T09:00:00.000Z"))
    store.append(a_call(b, "2030-05-02T09:00:00.000Z"))
    store.append(a_call(c, "2030-05-03T09:00:00.000Z"))
    got = [r.call_id for r in store.calls_between("2030-05-01T12:00:00Z", "2030-05-03T00:00:00Z")]
    assert got == [b]
    assert [r.call_id for r in store.calls_between("2030-05-01T00:00:00Z", None)][-3:] == [a, b, c]


def test_unfinished_calls_are_those_without_call_ended(store: EventStore) -> None:
    open_id, done_id = new_id(), new_id()
    store.append(a_call(open_id, end=None) + a_call(done_id))
    unfinished = {c.call_id: c for c in store.unfinished_calls()}
    assert open_id in unfinished and done_id not in unfinished
    assert unfinished[open_id].last_seq == 3
