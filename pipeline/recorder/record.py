"""The recording as the call's audit holds it, and as `recording.json` describes it.

The recorder puts everything a reader needs on the call's audit (nothing else is kept
about a recording): `recorder.file` per file (participant, role, hash), `recorder.removed`
per span cut out, `recorder.exposure` when a window reached back further than the delay
line held. The manifest, the export and `verify` all read it from there, through here.
"""

from __future__ import annotations

from typing import Any

__all__ = ["EXPOSURE", "FILE", "REMOVED", "RECORDING_ID", "recording_doc"]

FILE = "recorder.file"
REMOVED = "recorder.removed"
EXPOSURE = "recorder.exposure"
ERROR = "recorder.error"
# The `recordingId` of the recorder's `recording.paused`/`resumed`/`error` events (ACS's
# own recording has its server-issued id there).
RECORDING_ID = "local"


def recording_doc(records: list[dict]) -> dict[str, Any] | None:
    """The recording of a call from its audit records (as stored: `kind` and body), or None
    when it has none. Keys as the contract names them: `files` (`file`, `participant`,
    `role`, ...), `removedSpans` (`fromMs`, `toMs`, `reason`), and `exposures`."""
    files = [
        {"file": r["file"], "participant": r["participant"], "role": r["role"], "format": "wav",
         "sampleRate": r["sampleRate"], "channels": 1, "durationMs": r["durationMs"],
         "bytes": r["bytes"], "sha256": r["sha256"]}
        for r in records if r["kind"] == FILE
    ]  # fmt: skip
    spans = [
        {"fromMs": r["fromMs"], "toMs": r["toMs"], "reason": r["reason"]}
        for r in records
        if r["kind"] == REMOVED
    ]
    exposures = [
        {"participant": r["participant"], "fromMs": r["fromMs"], "toMs": r["toMs"],
         "reason": r["reason"]}
        for r in records if r["kind"] == EXPOSURE
    ]  # fmt: skip
    if not files and not spans and not exposures:
        return None
    return {"files": files, "removedSpans": spans, "exposures": exposures}
