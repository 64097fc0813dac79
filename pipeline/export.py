"""Exports read from the store only: what compliance gets is what was recorded.

JSONL is the events exactly as published. (WebVTT, TXT and CSV come with the export issue.)
"""

from __future__ import annotations

from collections.abc import Iterator

from .store import EventStore

FORMATS = ("jsonl",)
PLANNED_FORMATS = ("vtt", "txt", "csv")


class ExportError(ValueError):
    pass


def export_lines(store: EventStore, call_id: str, fmt: str) -> Iterator[bytes]:
    if fmt in PLANNED_FORMATS:
        raise ExportError(f"format {fmt!r} is not available yet; available: {', '.join(FORMATS)}")
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; available: {', '.join(FORMATS)}")
    for _seq, body in store.read(call_id):
        yield body + b"\n"


MEDIA_TYPES = {"jsonl": "application/x-ndjson"}
