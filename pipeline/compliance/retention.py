"""Retention: calls are kept exactly as long as policy says, legal holds excepted.

``CALLSTREAM_RETENTION_DAYS`` drives a periodic purge in the service (hourly, or every
``CALLSTREAM_RETENTION_INTERVAL_S``) and
``callstream purge``. Every purge is itself on record: an audit record under the
system id ``_retention`` (never purged) with the cutoff, who ran it and the calls removed.
"""

from __future__ import annotations

import datetime as dt
import json

from models.events import utc_now_iso
from pipeline.compliance.store import AuditRecord, EventStore

SYSTEM_ID = "_retention"


def cutoff_for(days: float, now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.UTC)
    return (now - dt.timedelta(days=days)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def purge_now(store: EventStore, days: float, actor: str) -> list[str]:
    cutoff = cutoff_for(days)
    purged = store.purge(cutoff)
    record = {"kind": "purge", "time": utc_now_iso(), "actor": actor, "retentionDays": days, "cutoff": cutoff,
              "purged": purged, "count": len(purged)}  # fmt: skip
    store.append([], [AuditRecord(SYSTEM_ID, record["time"], "purge", json.dumps(record).encode())])
    return purged
