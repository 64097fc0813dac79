"""The parts of a call's audit trail a compliance officer asks for first.

Kept apart from the HTTP layer so that exports and `callstream verify` read it without
loading the service.
"""

from __future__ import annotations

from typing import Any

__all__ = ["REQUEST_KINDS", "summarize"]

REQUEST_KINDS = (
    "recording.request",
    "recording.unconfirmed",
    "recording.skipped",
    "recording.abandoned",
)


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
        # What became of each pause and resume request: sent (accepted or failed), accepted
        # but not confirmed by ACS in time (asked again), skipped or abandoned. A confirmed
        # pause shows as its window's ``pauseConfirmedMs``.
        "requests": [r for r in records if r["kind"] in REQUEST_KINDS],
        "exposures": [r for r in records if r["kind"] == "exposure"],
        "redactionCounts": counts,
    }
