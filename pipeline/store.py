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

SCHEMA_VERSION = 2  # 2: the audit table

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    call_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    time TEXT NOT NULL,
    body BLOB NOT NULL,
    PRIMARY KEY (call_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    end_reason TEXT,
    mode TEXT,
    sample_rate INTEGER,
    last_seq INTEGER NOT NULL DEFAULT 0
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
"""


class AuditRecord(NamedTuple):
    """One compliance record of a call (a payment window, a pause request, an exposure)."""

    call_id: str
    time: str
    kind: str
    body: bytes  # JSON object


class StoredEvent(NamedTuple):
    call_id: str
    seq: int
    type: str
    time: str
    body: bytes
    mode: str | None = None  # call.started only
    sample_rate: int | None = None  # call.started only
    reason: str | None = None  # call.ended only


class CallRecord(NamedTuple):
    call_id: str
    started_at: str
    ended_at: str | None
    end_reason: str | None
    mode: str | None
    sample_rate: int | None
    last_seq: int


class EventStore(Protocol):
    def append(self, events: list[StoredEvent], audit: list[AuditRecord] | None = None) -> None: ...
    def audit(self, call_id: str) -> list[AuditRecord]: ...
    def read(self, call_id: str, since_seq: int = 0) -> Iterator[tuple[int, bytes]]: ...
    def calls(self, limit: int = 100) -> list[CallRecord]: ...
    def get_call(self, call_id: str) -> CallRecord | None: ...
    def close(self) -> None: ...


class SqliteEventStore:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._writer = self._connect()
        with self._writer:
            self._writer.executescript(_SCHEMA)
            # Migrations are additive (CREATE ... IF NOT EXISTS above); record the version.
            self._writer.execute(
                "INSERT INTO meta(key, value) VALUES ('schema_version', ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (str(SCHEMA_VERSION),),
            )
        self._write_lock = threading.Lock()

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
            cur.execute("BEGIN")
            try:
                if audit:
                    cur.executemany(
                        "INSERT INTO audit(call_id, time, kind, body) VALUES (?, ?, ?, ?)",
                        [(a.call_id, a.time, a.kind, a.body) for a in audit],
                    )
                cur.executemany(
                    "INSERT INTO events(call_id, seq, type, time, body) VALUES (?, ?, ?, ?, ?)",
                    [(e.call_id, e.seq, e.type, e.time, e.body) for e in events],
                )
                last: dict[str, int] = {}
                for e in events:
                    last[e.call_id] = e.seq
                    if e.type == "call.started":
                        cur.execute(
                            "INSERT INTO calls(call_id, started_at, mode, sample_rate) VALUES (?, ?, ?, ?)"
                            " ON CONFLICT(call_id) DO NOTHING",
                            (e.call_id, e.time, e.mode, e.sample_rate),
                        )
                    elif e.type == "call.ended":
                        cur.execute(
                            "UPDATE calls SET ended_at = ?, end_reason = ? WHERE call_id = ?",
                            (e.time, e.reason, e.call_id),
                        )
                cur.executemany(
                    "UPDATE calls SET last_seq = ? WHERE call_id = ? AND last_seq < ?",
                    [(seq, cid, seq) for cid, seq in last.items()],
                )
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

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

    def audit(self, call_id: str) -> list[AuditRecord]:
        conn = self._connect()
        try:
            rows = conn.execute(
                "SELECT call_id, time, kind, body FROM audit WHERE call_id = ? ORDER BY n", (call_id,)
            ).fetchall()
        finally:
            conn.close()
        return [AuditRecord(c, t, k, bytes(b)) for c, t, k, b in rows]

    def calls(self, limit: int = 100) -> list[CallRecord]:
        conn = self._connect()
        try:
            rows = conn.execute(
                "SELECT call_id, started_at, ended_at, end_reason, mode, sample_rate, last_seq"
                " FROM calls ORDER BY started_at DESC LIMIT ?",
                (limit,),
            ).fetchall()
        finally:
            conn.close()
        return [CallRecord(*r) for r in rows]

    def get_call(self, call_id: str) -> CallRecord | None:
        conn = self._connect()
        try:
            row = conn.execute(
                "SELECT call_id, started_at, ended_at, end_reason, mode, sample_rate, last_seq"
                " FROM calls WHERE call_id = ?",
                (call_id,),
            ).fetchone()
        finally:
            conn.close()
        return CallRecord(*row) if row else None

    def close(self) -> None:
        with self._write_lock:
            self._writer.close()


def open_store(url: str) -> EventStore:
    if url.startswith(("postgres://", "postgresql://")):
        raise NotImplementedError("the PostgreSQL store is not built yet; use the SQLite default")
    return SqliteEventStore(url)
