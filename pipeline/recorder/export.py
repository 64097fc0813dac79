"""`callstream export CALL_ID --audio --out DIR`: a call's recording, as other tools read it.

DIR gets each recording file (owner-only copies, checked against the hash on the call's
audit first, so a file changed on disk is refused rather than exported) and
`recording.json`: `{"callId", "files": [{"file", "participant", "role", "format",
"sampleRate", "channels", "durationMs", "bytes", "sha256"}], "removedSpans": [{"fromMs",
"toMs", "reason"}], "exposures": [...]}`. Time 0 of every file is the call's first audio
frame; removed spans are digital silence of the same length, so their offsets are
positions in the files. Participants are the ids the call published (a customer's phone
number as its pseudonym). `recording.json.manifest.json` beside it ties the files to the
call's event chain; `callstream verify DIR/recording.json` checks all of them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pipeline.compliance.manifest import write_export
from pipeline.compliance.private_files import open_private, private_dir
from pipeline.compliance.store import EventStore
from pipeline.recorder.paths import call_folder
from pipeline.recorder.record import FILE, recording_doc

__all__ = ["RecordingExportError", "export_audio"]

INDEX_NAME = "recording.json"


class RecordingExportError(Exception):
    """The call has no recording here, or a file of it is missing or altered (one line)."""


def _folder_of(store: EventStore, call_id: str, data_dir: str | Path) -> Path:
    """The folder the recorder named on the audit (a data dir of another layout), else the
    one the call's id gives."""
    for a in store.audit(call_id):
        if a.kind == FILE:
            name = json.loads(a.body).get("folder")
            if name:
                return Path(data_dir) / "recordings" / Path(name).name
    return call_folder(data_dir, call_id)


def export_audio(store: EventStore, call_id: str, data_dir: str | Path, out: Path) -> dict:
    """Write the call's recording files and `recording.json` (and its manifest) into
    ``out``; returns what `recording.json` says."""
    records = [json.loads(a.body) for a in store.audit(call_id)]
    doc = recording_doc(records)
    if doc is None or not doc["files"]:
        raise RecordingExportError(
            f"call {call_id!r} has no recording (callstream records with CALLSTREAM_RECORDER=local)"
        )
    folder = _folder_of(store, call_id, data_dir)
    private_dir(out)
    for entry in doc["files"]:
        name = Path(entry["file"]).name
        _copy_checked(folder / name, out / name, entry["sha256"])
    body = json.dumps({"callId": call_id, **doc}, indent=1).encode() + b"\n"
    write_export(store, call_id, "audio", out / INDEX_NAME, iter([body]))
    return doc


def _copy_checked(src: Path, dst: Path, sha256: str | None) -> None:
    h = hashlib.sha256()
    try:
        with open(src, "rb") as fin, open_private(dst) as fout:
            while block := fin.read(1 << 20):
                h.update(block)
                fout.write(block)
    except FileNotFoundError:
        raise RecordingExportError(f"the recording {src} is missing (purged?)") from None
    if h.hexdigest() != sha256:
        dst.unlink(missing_ok=True)
        raise RecordingExportError(
            f"the recording {src} does not match the SHA-256 on the call's audit: not exported"
        )
