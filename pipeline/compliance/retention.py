"""Retention: calls are kept exactly as long as policy says, legal holds excepted.

``CALLSTREAM_RETENTION_DAYS`` drives a periodic purge in the service (hourly, or every
``CALLSTREAM_RETENTION_INTERVAL_S``) and
``callstream purge``. Every purge is itself on record: an audit record under the
system id ``_retention`` (never purged) with the cutoff, who ran it and the calls removed.
A purged call's recording (callstream's own recorder, in the data dir) goes with it; a
call on legal hold is not purged, so its recording stays too.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from models.events import utc_now_iso
from pipeline.compliance.store import AuditRecord, EventStore
from pipeline.recorder.paths import remove_calls, sweep_orphans

SYSTEM_ID = "_retention"


def cutoff_for(days: float, now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    return (now - dt.timedelta(days=days)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def purge_now(
    store: EventStore, days: float, actor: str, data_dir: str | Path | None = None
) -> list[str]:
    """Purge the calls that ended before the cutoff (not those on hold), and, given the data
    dir, their recordings, and recordings whose call another replica purged from a shared
    store."""
    cutoff = cutoff_for(days)
    purged = store.purge(cutoff)
    recordings = 0
    if data_dir is not None:
        recordings = remove_calls(data_dir, purged)
        recordings += sweep_orphans(data_dir, lambda cid: store.get_call(cid) is not None, cutoff)
    record = {"kind": "purge", "time": utc_now_iso(), "actor": actor, "retentionDays": days, "cutoff": cutoff,
              "purged": purged, "count": len(purged), "recordingsRemoved": recordings}  # fmt: skip
    store.append([], [AuditRecord(SYSTEM_ID, record["time"], "purge", json.dumps(record).encode())])
    return purged
