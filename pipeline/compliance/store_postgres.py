"""The event store in PostgreSQL: the same log, calls table, audit records, chain and
holds as the SQLite store (pipeline/compliance/store.py), for deployments with several replicas.

Writes (append, set_hold, purge) go through one writer connection guarded by a lock;
readers borrow connections from a small pool of their own, so reads never wait for a
batch being written. Bodies are ``bytea``: an export is byte-for-byte what went out.

Several processes may append at once. Each batch takes a transaction-scoped advisory
lock per call it touches (in a fixed order, so two batches never deadlock) before it
reads the call's last chain link, so the links of one call stay a single chain whoever
writes them; batches for different calls never wait for each other.

Text columns compared or sorted on (ids, ISO 8601 times) use the "C" collation, so
ranges and order are byte order exactly as in SQLite, whatever the database's locale.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import psycopg

from pipeline.compliance import chain
from pipeline.compliance.store import (
    SCHEMA_VERSION,
    AuditRecord,
    CallRecord,
    StoredEvent,
    call_updates,
    member_rows,
)

# First key of the two-key advisory locks this store takes (the second is the call id's
# hashtext), so they never collide with advisory locks other applications take.
_LOCK_SPACE = 0x63537472  # "cStr"
_SCHEMA_LOCK = 0  # second key of the lock held while the schema is created or migrated

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    call_id TEXT COLLATE "C" NOT NULL,
    seq INTEGER NOT NULL,
    type TEXT NOT NULL,
    time TEXT COLLATE "C" NOT NULL,
    body BYTEA NOT NULL,
    chain TEXT,
    PRIMARY KEY (call_id, seq)
);
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT COLLATE "C" PRIMARY KEY,
    started_at TEXT COLLATE "C" NOT NULL,
    ended_at TEXT COLLATE "C",
    end_reason TEXT,
    mode TEXT,
    sample_rate INTEGER,
    last_seq INTEGER NOT NULL DEFAULT 0,
    hold BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX IF NOT EXISTS calls_started ON calls (started_at, call_id);
CREATE INDEX IF NOT EXISTS calls_ended ON calls (ended_at) WHERE ended_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS audit (
    n BIGSERIAL PRIMARY KEY,
    call_id TEXT COLLATE "C" NOT NULL,
    time TEXT NOT NULL,
    kind TEXT NOT NULL,
    body BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_call ON audit (call_id, n);
CREATE TABLE IF NOT EXISTS members (
    member TEXT COLLATE "C" NOT NULL,
    call_id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (member, call_id)
);
CREATE INDEX IF NOT EXISTS members_call ON members (call_id);
"""

# Columns added after the first version of a table: added to an older database on open.
_MIGRATIONS = (
    "ALTER TABLE events ADD COLUMN IF NOT EXISTS chain TEXT",
    "ALTER TABLE calls ADD COLUMN IF NOT EXISTS hold BOOLEAN NOT NULL DEFAULT FALSE",
)

_CALL_COLUMNS = "call_id, started_at, ended_at, end_reason, mode, sample_rate, last_seq, hold"

_PAGE = 1000  # rows per query when iterating: a slow consumer never holds a connection
_POOL_IDLE = 4  # reader connections kept open between reads


def _call_record(row: tuple) -> CallRecord:
    return CallRecord(*row[:7], hold=bool(row[7]))


class PostgresEventStore:
    def __init__(self, url: str) -> None:
        self.url = url
        self._write_lock = threading.Lock()
        self._pool_lock = threading.Lock()
        self._idle: list[psycopg.Connection] = []
        self._closed = False
        self._writer: psycopg.Connection | None = self._connect_writer()
        if not self._schema_is_current():
            with self._writer.transaction():
                # Two replicas starting together must not race on CREATE ... IF NOT EXISTS.
                self._writer.execute(
                    "SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_SPACE, _SCHEMA_LOCK)
                )
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        self._writer.execute(statement)
                for statement in _MIGRATIONS:
                    self._writer.execute(statement)
                self._writer.execute(
                    "INSERT INTO meta(key, value) VALUES ('schema_version', %s)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (str(SCHEMA_VERSION),),
                )

    def _schema_is_current(self) -> bool:
        """True when the schema is this version's: DDL is then skipped altogether (even
        CREATE INDEX IF NOT EXISTS and ADD COLUMN IF NOT EXISTS lock their table, and
        would stall, or deadlock with, the other replicas' appends)."""
        assert self._writer is not None
        if self._writer.execute("SELECT to_regclass('meta')").fetchone()[0] is None:
            return False
        row = self._writer.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return row is not None and row[0] == str(SCHEMA_VERSION)

    # -- connections ---------------------------------------------------------------

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(self.url, autocommit=True)

    def _connect_writer(self) -> psycopg.Connection:
        conn = self._connect()
        # Read committed whatever the database's default: a batch must see the last link
        # another process committed while this one waited for the call's lock.
        conn.isolation_level = psycopg.IsolationLevel.READ_COMMITTED
        return conn

    def _writer_conn(self) -> psycopg.Connection:
        """The writer connection (under the write lock), reopened if the server dropped it."""
        if self._closed:
            raise RuntimeError("the event store is closed")
        if self._writer is None or self._writer.closed or self._writer.broken:
            if self._writer is not None:
                self._writer.close()
            self._writer = None
            self._writer = self._connect_writer()
        return self._writer

    def _borrow(self) -> psycopg.Connection:
        with self._pool_lock:
            if self._closed:
                raise RuntimeError("the event store is closed")
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed and not conn.broken:
                    return conn
                conn.close()
        return self._connect()

    def _give_back(self, conn: psycopg.Connection) -> None:
        usable = (
            not conn.closed
            and not conn.broken
            and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        )
        with self._pool_lock:
            if usable and not self._closed and len(self._idle) < _POOL_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def _query(self, sql: str, params: tuple) -> list[tuple]:
        for attempt in (1, 2):
            conn = self._borrow()
            try:
                rows = conn.execute(sql, params).fetchall()
            except psycopg.OperationalError:
                # An idle pooled connection outlived a server restart: it only shows when
                # used, and its idle siblings are as stale. Reads are idempotent: drop the
                # pool and try once more on a fresh connection.
                conn.close()
                with self._pool_lock:
                    stale, self._idle = self._idle, []
                for c in stale:
                    c.close()
                if attempt == 2:
                    raise
                continue
            except BaseException:
                conn.close()
                raise
            self._give_back(conn)
            return rows
        raise AssertionError("unreachable")

    # -- writes --------------------------------------------------------------------

    def append(self, events: list[StoredEvent], audit: list[AuditRecord] | None = None) -> None:
        """Write a batch in one transaction; events of one call arrive in seq order."""
        if not events and not audit:
            return
        with self._write_lock:
            conn = self._writer_conn()
            with conn.transaction():
                cur = conn.cursor()
                if audit:
                    cur.executemany(
                        "INSERT INTO audit(call_id, time, kind, body) VALUES (%s, %s, %s, %s)",
                        [(a.call_id, a.time, a.kind, a.body) for a in audit],
                    )
                if members := member_rows(events, audit):
                    cur.executemany(
                        "INSERT INTO members(member, call_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                        members,
                    )
                if events:
                    call_ids = sorted({e.call_id for e in events})
                    # One writer per call at a time (until this transaction ends), locks
                    # taken in hash order so concurrent batches cannot deadlock.
                    cur.execute(
                        "SELECT pg_advisory_xact_lock(%s, h) FROM"
                        " (SELECT DISTINCT hashtext(c) AS h FROM unnest(%s::text[]) AS c ORDER BY h) AS locks",
                        (_LOCK_SPACE, call_ids),
                    )
                    cur.execute(
                        "SELECT DISTINCT ON (call_id) call_id, chain FROM events"
                        " WHERE call_id = ANY(%s) ORDER BY call_id, seq DESC",
                        (call_ids,),
                    )
                    links: dict[str, str] = {
                        cid: link or chain.genesis(cid) for cid, link in cur.fetchall()
                    }
                    rows = []
                    for e in events:
                        prev = links.get(e.call_id) or chain.genesis(e.call_id)
                        links[e.call_id] = chain.link(prev, e.body)
                        rows.append((e.call_id, e.seq, e.type, e.time, e.body, links[e.call_id]))
                    cur.executemany(
                        "INSERT INTO events(call_id, seq, type, time, body, chain) VALUES (%s, %s, %s, %s, %s, %s)",
                        rows,
                    )
                    started, ended, last = call_updates(events)
                    if started:
                        cur.executemany(
                            "INSERT INTO calls(call_id, started_at, mode, sample_rate) VALUES (%s, %s, %s, %s)"
                            " ON CONFLICT (call_id) DO NOTHING",
                            started,
                        )
                    if ended:
                        cur.executemany(
                            "UPDATE calls SET ended_at = %s, end_reason = %s WHERE call_id = %s",
                            ended,
                        )
                    if last:
                        cur.executemany(
                            "UPDATE calls SET last_seq = %s WHERE call_id = %s AND last_seq < %s",
                            last,
                        )

    def set_hold(self, call_id: str, hold: bool) -> bool:
        with self._write_lock:
            cur = self._writer_conn().execute(
                "UPDATE calls SET hold = %s WHERE call_id = %s", (hold, call_id)
            )
            return cur.rowcount > 0

    def purge(self, cutoff: str) -> list[str]:
        with self._write_lock:
            conn = self._writer_conn()
            with conn.transaction():
                # FOR UPDATE: a hold set concurrently by another process either lands
                # first (and the row is re-checked, so it is kept) or waits for this purge.
                ids = [r[0] for r in conn.execute(
                    "SELECT call_id FROM calls WHERE ended_at IS NOT NULL AND ended_at < %s AND NOT hold"
                    " ORDER BY ended_at, call_id FOR UPDATE",
                    (cutoff,),
                ).fetchall()]  # fmt: skip
                if ids:
                    conn.execute("DELETE FROM events WHERE call_id = ANY(%s)", (ids,))
                    conn.execute("DELETE FROM audit WHERE call_id = ANY(%s)", (ids,))
                    conn.execute("DELETE FROM members WHERE call_id = ANY(%s)", (ids,))
                    conn.execute("DELETE FROM calls WHERE call_id = ANY(%s)", (ids,))
        return ids

    # -- reads ---------------------------------------------------------------------

    def read(self, call_id: str, since_seq: int = 0) -> Iterator[tuple[int, bytes]]:
        while True:
            rows = self._query(
                "SELECT seq, body FROM events WHERE call_id = %s AND seq > %s ORDER BY seq LIMIT %s",
                (call_id, since_seq, _PAGE),
            )
            for seq, body in rows:
                yield seq, bytes(body)
            if len(rows) < _PAGE:
                return
            since_seq = rows[-1][0]

    def read_chain(self, call_id: str) -> Iterator[tuple[int, bytes, str]]:
        after = 0
        while True:
            rows = self._query(
                "SELECT seq, body, chain FROM events WHERE call_id = %s AND seq > %s ORDER BY seq LIMIT %s",
                (call_id, after, _PAGE),
            )
            for seq, body, link in rows:
                yield seq, bytes(body), link or ""
            if len(rows) < _PAGE:
                return
            after = rows[-1][0]

    def calls_between(self, since: str | None, until: str | None) -> Iterator[CallRecord]:
        """Calls that started in [since, until), oldest first (ties in call id order)."""
        after: tuple[str, str] | None = None
        while True:
            where, params = ["started_at >= %s"], [since or ""]
            if until is not None:
                where.append("started_at < %s")
                params.append(until)
            if after is not None:
                where.append("(started_at, call_id) > (%s, %s)")
                params.extend(after)
            rows = self._query(
                f"SELECT {_CALL_COLUMNS} FROM calls WHERE {' AND '.join(where)}"
                " ORDER BY started_at, call_id LIMIT %s",
                (*params, _PAGE),
            )
            for row in rows:
                yield _call_record(row)
            if len(rows) < _PAGE:
                return
            after = (rows[-1][1], rows[-1][0])

    def audit(self, call_id: str) -> list[AuditRecord]:
        rows = self._query(
            "SELECT call_id, time, kind, body FROM audit WHERE call_id = %s ORDER BY n", (call_id,)
        )
        return [AuditRecord(c, t, k, bytes(b)) for c, t, k, b in rows]

    def calls(self, limit: int = 100, members: list[str] | None = None) -> list[CallRecord]:
        where, params = "", ()
        if members is not None:
            where = " WHERE call_id IN (SELECT call_id FROM members WHERE member = ANY(%s))"
            params = (members,)
        rows = self._query(
            f"SELECT {_CALL_COLUMNS} FROM calls{where} ORDER BY started_at DESC, call_id DESC LIMIT %s",
            (*params, limit),
        )
        return [_call_record(r) for r in rows]

    def members(self, call_id: str) -> set[str]:
        return {
            r[0] for r in self._query("SELECT member FROM members WHERE call_id = %s", (call_id,))
        }

    def get_call(self, call_id: str) -> CallRecord | None:
        rows = self._query(f"SELECT {_CALL_COLUMNS} FROM calls WHERE call_id = %s", (call_id,))
        return _call_record(rows[0]) if rows else None

    def unfinished_calls(self) -> list[CallRecord]:
        return [
            _call_record(r)
            for r in self._query(f"SELECT {_CALL_COLUMNS} FROM calls WHERE ended_at IS NULL", ())
        ]

    def close(self) -> None:
        with self._write_lock:
            with self._pool_lock:
                self._closed = True
                idle, self._idle = self._idle, []
            for conn in idle:
                conn.close()
            if self._writer is not None:
                self._writer.close()
                self._writer = None
