"""Append-only event log in SQLite (WAL): what an agent saw is on record.

One writer connection is used only from the journal's writer thread; readers open
their own connections (WAL lets them read while the writer appends). Events are kept
as the exact bytes that were published, so an export is byte-for-byte what went out.
A `calls` table is maintained by the writer from `call.started` / `call.ended` so
listing calls never scans the event log.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple, Protocol

from pipeline.compliance import chain
from pipeline.compliance.private_files import private_dir, private_file

SCHEMA_VERSION = 4  # 2: the audit table; 3: the event chain and legal holds; 4: members

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    call_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    time TEXT NOT NULL,
    body BLOB NOT NULL,
    chain TEXT,
    PRIMARY KEY (call_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    end_reason TEXT,
    mode TEXT,
    sample_rate INTEGER,
    last_seq INTEGER NOT NULL DEFAULT 0,
    hold INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS calls_started ON calls (started_at);
CREATE TABLE IF NOT EXISTS audit (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL,
    time TEXT NOT NULL,
    kind TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_call ON audit (call_id, n);
CREATE TABLE IF NOT EXISTS members (
    member TEXT NOT NULL,
    call_id TEXT NOT NULL,
    PRIMARY KEY (member, call_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS members_call ON members (call_id);
"""


class AuditRecord(NamedTuple):
    """One compliance record of a call (a payment window, a pause request, an exposure)."""

    call_id: str
    time: str
    kind: str
    body: bytes  # JSON object
    member: str | None = None  # an assignment: the agent id that may now read the call


class StoredEvent(NamedTuple):
    call_id: str
    seq: int
    type: str
    time: str
    body: bytes
    mode: str | None = None  # call.started only
    sample_rate: int | None = None  # call.started only
    reason: str | None = None  # call.ended only
    participant: str | None = None  # participant.joined only: a member of the call


def member_rows(events: list[StoredEvent], audit: list[AuditRecord] | None) -> list[tuple]:
    """(member, call id) rows a batch adds: who joined a call, and who was assigned to it.
    An agent may read the calls they are a member of (README, "Roles")."""
    rows = [(e.participant, e.call_id) for e in events if e.participant]
    return rows + [(a.member, a.call_id) for a in audit or () if a.member]


class CallRecord(NamedTuple):
    call_id: str
    started_at: str
    ended_at: str | None
    end_reason: str | None
    mode: str | None
    sample_rate: int | None
    last_seq: int
    hold: bool = False


def call_updates(events: list[StoredEvent]) -> tuple[list[tuple], list[tuple], list[tuple]]:
    """What a batch changes in the calls table, for any store: rows to insert for
    call.started, (time, reason, call id) for call.ended, and (seq, call id, seq) last seqs."""
    started = [
        (e.call_id, e.time, e.mode, e.sample_rate) for e in events if e.type == "call.started"
    ]
    ended = [(e.time, e.reason, e.call_id) for e in events if e.type == "call.ended"]
    last: dict[str, int] = {}
    for e in events:
        last[e.call_id] = e.seq
    return started, ended, [(seq, cid, seq) for cid, seq in last.items()]


_CALL_COLUMNS = "call_id, started_at, ended_at, end_reason, mode, sample_rate, last_seq, hold"


def _call_record(row: tuple) -> CallRecord:
    return CallRecord(*row[:7], hold=bool(row[7]))


class EventStore(Protocol):
    """What every store does (SQLite here, PostgreSQL in store_postgres.py)."""

    def append(self, events: list[StoredEvent], audit: list[AuditRecord] | None = None) -> None:
        """One transaction; each event gets its chain link (pipeline.compliance.chain) as it is written."""
        ...

    def read(self, call_id: str, since_seq: int = 0) -> Iterator[tuple[int, bytes]]: ...
    def read_chain(self, call_id: str) -> Iterator[tuple[int, bytes, str]]:
        """(seq, body, link) in seq order: the export's manifest carries the links."""
        ...

    def audit(self, call_id: str) -> list[AuditRecord]: ...
    def calls(self, limit: int = 100, members: list[str] | None = None) -> list[CallRecord]:
        """The newest calls; with ``members``, only the calls one of them is a member of."""
        ...

    def members(self, call_id: str) -> set[str]:
        """Who joined the call or was assigned to it (published participant ids)."""
        ...

    def calls_between(self, since: str | None, until: str | None) -> Iterator[CallRecord]:
        """Calls that started in [since, until) (ISO 8601 UTC strings; None = unbounded)."""
        ...

    def get_call(self, call_id: str) -> CallRecord | None: ...
    def unfinished_calls(self) -> list[CallRecord]:
        """Calls with no call.ended: live somewhere, or left open by a process that died."""
        ...

    def set_hold(self, call_id: str, hold: bool) -> bool:
        """Put a call under legal hold (or lift it); False if the call is not stored."""
        ...

    def purge(self, cutoff: str) -> list[str]:
        """Delete the calls that ended before ``cutoff`` and are not on hold (events,
        audit records, the call row); returns their ids. The caller audits the purge."""
        ...

    def close(self) -> None: ...


class SqliteEventStore:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            private_dir(Path(self.path).parent)
            private_file(Path(self.path))
        self._writer = self._connect()
        with self._writer:
            self._writer.executescript(_SCHEMA)
            # Migrations are additive: tables above are CREATE ... IF NOT EXISTS; columns
            # added since version 1 are added to an older file here.
            for table, column, decl in (
                ("events", "chain", "TEXT"),
                ("calls", "hold", "INTEGER NOT NULL DEFAULT 0"),
            ):
                cols = {r[1] for r in self._writer.execute(f"PRAGMA table_info({table})")}
                if column not in cols:
                    self._writer.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
            self._writer.execute(
                "INSERT INTO meta(key, value) VALUES ('schema_version', ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )
        self._write_lock = threading.Lock()
        self._links: dict[str, str] = {}  # call id -> last chain link (writer thread)

    def _last_link(self, cur: sqlite3.Cursor, call_id: str) -> str:
        known = self._links.get(call_id)
        if known is not None:
            return known
        row = cur.execute(
            "SELECT chain FROM events WHERE call_id = ? ORDER BY seq DESC LIMIT 1", (call_id,)
        ).fetchone()
        return row[0] if row and row[0] else chain.genesis(call_id)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        return conn

    def append(self, events: list[StoredEvent], audit: list[AuditRecord] | None = None) -> None:
        """Write a batch in one transaction; events of one call arrive in seq order."""
        if not events and not audit:
            return
        with self._write_lock:
            cur = self._writer.cursor()
            cur.execute("BEGIN IMMEDIATE")  # take the write lock now: another process may write too
            try:
                if audit:
                    cur.executemany(
                        "INSERT INTO audit(call_id, time, kind, body) VALUES (?, ?, ?, ?)",
                        [(a.call_id, a.time, a.kind, a.body) for a in audit],
                    )
                rows = []
                links: dict[str, str] = {}
                for e in events:
                    prev = links.get(e.call_id) or self._last_link(cur, e.call_id)
                    links[e.call_id] = chain.link(prev, e.body)
                    rows.append((e.call_id, e.seq, e.type, e.time, e.body, links[e.call_id]))
                cur.executemany(
                    "INSERT INTO events(call_id, seq, type, time, body, chain) VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
                started, ended, last = call_updates(events)
                cur.executemany(
                    "INSERT INTO calls(call_id, started_at, mode, sample_rate) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT(call_id) DO NOTHING",
                    started,
                )
                cur.executemany(
                    "UPDATE calls SET ended_at = ?, end_reason = ? WHERE call_id = ?", ended
                )
                cur.executemany(
                    "UPDATE calls SET last_seq = ? WHERE call_id = ? AND last_seq < ?", last
                )
                cur.executemany(
                    "INSERT INTO members(member, call_id) VALUES (?, ?) ON CONFLICT DO NOTHING",
                    member_rows(events, audit),
                )
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            self._links.update(links)

    def read(self, call_id: str, since_seq: int = 0) -> Iterator[tuple[int, bytes]]:
        conn = self._connect()
        try:
            rows = conn.execute(
                "SELECT seq, body FROM events WHERE call_id = ? AND seq > ? ORDER BY seq",
                (call_id, since_seq),
            )
            for seq, body in rows:
                yield seq, bytes(body)
        finally:
            conn.close()

    def read_chain(self, call_id: str) -> Iterator[tuple[int, bytes, str]]:
        conn = self._connect()
        try:
            for seq, body, link in conn.execute(
                "SELECT seq, body, chain FROM events WHERE call_id = ? ORDER BY seq", (call_id,)
            ):
                yield seq, bytes(body), link or ""
        finally:
            conn.close()

    def calls_between(self, since: str | None, until: str | None) -> Iterator[CallRecord]:
        conn = self._connect()
        try:
            for row in conn.execute(
                f"SELECT {_CALL_COLUMNS} FROM calls WHERE started_at >= ? AND started_at < ? ORDER BY started_at",
                (since or "", until or "\uffff"),
            ):
                yield _call_record(row)
        finally:
            conn.close()

    def set_hold(self, call_id: str, hold: bool) -> bool:
        with self._write_lock:
            cur = self._writer.execute(
                "UPDATE calls SET hold = ? WHERE call_id = ?", (int(hold), call_id)
            )
            return cur.rowcount > 0

    def purge(self, cutoff: str) -> list[str]:
        with self._write_lock:
            cur = self._writer.cursor()
            cur.execute("BEGIN IMMEDIATE")  # take the write lock now: another process may write too
            try:
                ids = [r[0] for r in cur.execute(
                    "SELECT call_id FROM calls WHERE ended_at IS NOT NULL AND ended_at < ? AND hold = 0", (cutoff,)
                ).fetchall()]  # fmt: skip
                for call_id in ids:
                    cur.execute("DELETE FROM events WHERE call_id = ?", (call_id,))
                    cur.execute("DELETE FROM audit WHERE call_id = ?", (call_id,))
                    cur.execute("DELETE FROM members WHERE call_id = ?", (call_id,))
                    cur.execute("DELETE FROM calls WHERE call_id = ?", (call_id,))
                    self._links.pop(call_id, None)
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise
        return ids

    def audit(self, call_id: str) -> list[AuditRecord]:
        conn = self._connect()
        try:
            rows = conn.execute(
                "SELECT call_id, time, kind, body FROM audit WHERE call_id = ? ORDER BY n",
                (call_id,),
            ).fetchall()
        finally:
            conn.close()
        return [AuditRecord(c, t, k, bytes(b)) for c, t, k, b in rows]

    def calls(self, limit: int = 100, members: list[str] | None = None) -> list[CallRecord]:
        where, params = "", ()
        if members is not None:
            marks = ",".join("?" * len(members))
            where = f" WHERE call_id IN (SELECT call_id FROM members WHERE member IN ({marks}))"
            params = tuple(members)
        conn = self._connect()
        try:
            rows = conn.execute(
                f"SELECT {_CALL_COLUMNS} FROM calls{where} ORDER BY started_at DESC LIMIT ?",
                (*params, limit),
            ).fetchall()
        finally:
            conn.close()
        return [_call_record(r) for r in rows]

    def members(self, call_id: str) -> set[str]:
        conn = self._connect()
        try:
            rows = conn.execute("SELECT member FROM members WHERE call_id = ?", (call_id,))
            return {r[0] for r in rows}
        finally:
            conn.close()

    def get_call(self, call_id: str) -> CallRecord | None:
        conn = self._connect()
        try:
            row = conn.execute(
                f"SELECT {_CALL_COLUMNS} FROM calls WHERE call_id = ?", (call_id,)
            ).fetchone()
        finally:
            conn.close()
        return _call_record(row) if row else None

    def unfinished_calls(self) -> list[CallRecord]:
        conn = self._connect()
        try:
            rows = conn.execute(
                f"SELECT {_CALL_COLUMNS} FROM calls WHERE ended_at IS NULL"
            ).fetchall()
        finally:
            conn.close()
        return [_call_record(r) for r in rows]

    def close(self) -> None:
        with self._write_lock:
            self._writer.close()
