"""Exports read from the store only: what compliance gets is what was recorded.

JSONL is the events exactly as published. WebVTT, TXT and CSV are the finals as a
transcript (`export_formats`), made from the same stored, redacted events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from .export_formats import csv_lines, txt_lines, vtt_lines
from .store import EventStore

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
