"""Exports read from the store only: what compliance gets is what was recorded.

JSONL is the events exactly as published. WebVTT, TXT and CSV are the finals as a
transcript (`export_formats`), made from the same stored, redacted events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from pipeline.compliance.export_formats import csv_lines, txt_lines, vtt_lines
from pipeline.compliance.store import EventStore

FORMATS = ("jsonl", "vtt", "txt", "csv")

MEDIA_TYPES = {
    "jsonl": "application/x-ndjson",
    "vtt": "text/vtt",
    "txt": "text/plain; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
}


class ExportError(ValueError):
    pass


def jsonl_lines(store: EventStore, call_id: str) -> Iterator[bytes]:
    for _seq, body in store.read(call_id):
        yield body + b"\n"


_WRITERS: dict[str, Callable[[EventStore, str], Iterator[bytes]]] = {
    "jsonl": jsonl_lines,
    "vtt": vtt_lines,
    "txt": txt_lines,
    "csv": csv_lines,
}


def export_lines(store: EventStore, call_id: str, fmt: str) -> Iterator[bytes]:
    """The export as bytes, produced lazily while the store is read.

    An unknown format raises ExportError here, before anything is read, so a caller
    can answer with an error and then stream the iterator.
    """
    writer = _WRITERS.get(fmt)
    if writer is None:
        raise ExportError(f"unknown format {fmt!r}; available: {', '.join(FORMATS)}")
    return writer(store, call_id)


def utc_bound(value: str, option: str) -> str:
    """An ISO 8601 date or date-time (``2026-11-01``, ``2026-11-01T00:00:00Z``, with any
    offset; no offset means UTC) as the UTC form the store keeps (``...T00:00:00.000Z``),
    so that it compares correctly with the stored start times. ExportError names ``option``."""
    import datetime as dt

    try:
        t = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise ExportError(
            f"{option}: {value!r} is not an ISO 8601 date/time (e.g. 2026-11-01 or 2026-11-01T00:00:00Z)"
        ) from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
