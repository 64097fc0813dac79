"""The parts of a call's audit trail a compliance officer asks for first.

Kept apart from the HTTP layer so that exports and `callstream verify` read it without
loading the service.
"""

from __future__ import annotations

from typing import Any

__all__ = ["summarize"]


def summarize(records: list[dict]) -> dict[str, Any]:
    """The audit trail, and the parts a compliance officer asks for first."""
    windows: dict[int, dict] = {}
    for r in records:
        if r["kind"] == "window.opened":
            windows[r["window"]] = {
                "window": r["window"],
                "trigger": r["trigger"],
                "startMs": r["startMs"],
                "openedAt": r["time"],
            }
        elif r["kind"] == "window.closed" and r["window"] in windows:
            windows[r["window"]] |= {
                "endMs": r["endMs"],
                "endTrigger": r["trigger"],
                "closedAt": r["time"],
                "pauseConfirmedMs": r["pauseConfirmedMs"],
            }
    policy = next((r for r in records if r["kind"] == "policy"), None)
    counts = next((r["counts"] for r in reversed(records) if r["kind"] == "redactions"), {})
    return {
        "policyVersion": policy["version"] if policy else None,
        "windows": list(windows.values()),
        "requests": [
            r
            for r in records
            if r["kind"] in ("recording.request", "recording.skipped", "recording.abandoned")
        ],
        "exposures": [r for r in records if r["kind"] == "exposure"],
        "redactionCounts": counts,
    }
