"""Which store a URL names: SQLite (the embedded default) or PostgreSQL.

Its own module so that the SQLite store and the PostgreSQL store, which shares its
records and schema version, never import each other.
"""

from __future__ import annotations

from pipeline.compliance.store import EventStore, SqliteEventStore


def open_store(url: str) -> EventStore:
    if url.startswith(("postgres://", "postgresql://")):
        from pipeline.compliance.store_postgres import PostgresEventStore

        return PostgresEventStore(url)
    return SqliteEventStore(url)
