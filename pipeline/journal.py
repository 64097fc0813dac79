"""The journal: every event is written to the store, then published (invariant 4).

Call sessions hand events over synchronously (`append` never blocks or awaits); a
writer task batches whatever has accumulated, commits it in a worker thread (SQLite
would otherwise stall the event loop) and only then publishes the batch to the bus.
Batching keeps store cost per event low under load, and the media path never waits
for the disk.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

from models.events import CallEnded, CallStarted, Event, encode_event, event_type, utc_now_iso

from .bus import MemoryBus
from .store import AuditRecord, EventStore, StoredEvent

log = logging.getLogger(__name__)

PUBLISH_SLICE = 16


class Journal:
    def __init__(
        self,
        store: EventStore,
        bus: MemoryBus,
        max_batch: int = 512,
        observe_write: Callable[[float], None] | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self.max_batch = max_batch
        # Called with each committed batch's duration in seconds (the store-write latency
        # histogram); a plain callable so the journal needs no metrics library.
        self._observe_write = observe_write
        self._pending: list[StoredEvent] = []
        self._audit: list[AuditRecord] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.written = 0
        self.write_errors = 0
        self.write_seconds = 0.0
        self._idle = asyncio.Event()
        self._idle.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="journal-writer")

    def append(self, event: Event) -> bytes:
        """Queue one stamped event; returns its encoded bytes."""
        raw = encode_event(event)
        kind = event_type(event)
        mode = rate = reason = None
        if isinstance(event, CallStarted):
            mode, rate = event.mode, event.sampleRate
        elif isinstance(event, CallEnded):
            reason = event.reason
        self._pending.append(StoredEvent(event.callId, event.seq, kind, event.time, raw, mode, rate, reason))
        self._idle.clear()
        self._wakeup.set()
        return raw

    def audit(self, call_id: str, kind: str, body: dict) -> None:
        """Queue one audit record; it is written with the next batch (never published)."""
        record = {"kind": kind, "time": utc_now_iso(), **body}
        self._audit.append(AuditRecord(call_id, record["time"], kind, json.dumps(record).encode()))
        self._idle.clear()
        self._wakeup.set()

    async def _run(self) -> None:
        while True:
            if not self._pending and not self._audit:
                self._idle.set()
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = self._pending[: self.max_batch]
            del self._pending[: self.max_batch]
            audit, self._audit = self._audit, []
            t0 = time.perf_counter()
            try:
                await asyncio.to_thread(self.store.append, batch, audit)
            except Exception as exc:  # the store is down: keep the events, retry, never publish unstored
                self.write_errors += 1
                log.error("store write failed (%s); %d events kept for retry", type(exc).__name__, len(batch))
                self._pending[:0] = batch
                self._audit[:0] = audit
                await asyncio.sleep(0.5)
                continue
            elapsed = time.perf_counter() - t0
            self.write_seconds += elapsed
            if self._observe_write is not None:
                try:
                    self._observe_write(elapsed)
                except Exception:  # a metric must never stop the writer (and so publishing)
                    pass
            self.written += len(batch)
            # Publish in small slices, yielding between them, so subscriber pumps drain
            # their bounded queues while a large batch goes out.
            for i in range(0, len(batch), PUBLISH_SLICE):
                for e in batch[i : i + PUBLISH_SLICE]:
                    self.bus.publish(e.call_id, e.seq, e.body)
                if i + PUBLISH_SLICE < len(batch):
                    await asyncio.sleep(0)

    async def flush(self) -> None:
        """Wait until everything appended so far is stored and published."""
        if self._task is None:
            return
        await self._idle.wait()

    async def aclose(self) -> None:
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
