"""Where recordings live in the data dir, and how retention removes them.

``<data dir>/recordings/<call folder>/<role>-<n>.wav``, owner-only like everything else
there (compliance/private_files.py). A call's folder name is a readable prefix of its id
and a hash of the whole id: any id (slashes, dots, a thousand characters) maps to one
folder no other id shares, and retention finds it from the id alone. `call.json` in the
folder names the call, so that a sweep can tell whose files they are.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = ["INDEX", "call_folder", "recordings_root", "remove_calls", "sweep_orphans"]

INDEX = "call.json"


def recordings_root(data_dir: str | Path) -> Path:
    return Path(data_dir) / "recordings"


def call_folder(data_dir: str | Path, call_id: str) -> Path:
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in call_id)
    digest = hashlib.blake2b(call_id.encode(), digest_size=8).hexdigest()
    return recordings_root(data_dir) / f"{safe[:64]}-{digest}"


def remove_calls(data_dir: str | Path, call_ids: Iterable[str]) -> int:
    """Delete the recordings of these calls (purged from the store); how many folders went."""
    removed = 0
    for call_id in call_ids:
        folder = call_folder(data_dir, call_id)
        if folder.is_dir():
            shutil.rmtree(folder)
            removed += 1
    return removed


def sweep_orphans(data_dir: str | Path, is_stored: Callable[[str], bool], cutoff: str) -> int:
    """Delete recording folders whose call the store no longer has (another replica's purge
    removed it from a shared store) and that were last written before ``cutoff`` (ISO 8601
    UTC): a call on legal hold is still stored, so its files stay."""
    root = recordings_root(data_dir)
    if not root.is_dir():
        return 0
    limit = dt.datetime.fromisoformat(cutoff.replace("Z", "+00:00")).timestamp()
    removed = 0
    for folder in root.iterdir():
        index = folder / INDEX
        try:
            call_id = json.loads(index.read_text(encoding="utf-8"))["callId"]
            stale = folder.stat().st_mtime < limit
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a folder the recorder made: never deleted on a guess
        if stale and not is_stored(call_id):
            shutil.rmtree(folder)
            removed += 1
    return removed
