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

from models.events import (
    CallEnded,
    CallStarted,
    Event,
    ParticipantJoined,
    encode_event,
    event_type,
    utc_now_iso,
)
from pipeline.compliance.store import AuditRecord, EventStore, StoredEvent
from pipeline.delivery.bus import EventBus

log = logging.getLogger(__name__)

PUBLISH_SLICE = 16


class Journal:
    def __init__(
        self,
        store: EventStore,
        bus: EventBus,
        max_batch: int = 512,
        observe_write: Callable[[float], None] | None = None,
        max_pending: int = 50_000,
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
        self._give_up_at = float("inf")
        # While the store is away, events wait here, up to max_pending; beyond that they
        # are refused, counted per call, and put on the call's record once the store is back.
        self.max_pending = max_pending
        self.store_ok = True
        self.dropped = 0
        self._overflow: dict[str, list[int]] = {}  # call id -> [first seq, last seq, count]
        self.written = 0
        self.write_errors = 0
        self.write_seconds = 0.0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def buffered(self) -> int:
        """Events appended and not yet stored."""
        return len(self._pending)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="journal-writer")

    def append(self, event: Event) -> bytes:
        """Queue one stamped event; returns its encoded bytes."""
        raw = encode_event(event)
        if len(self._pending) >= self.max_pending:
            span = self._overflow.get(event.callId)
            if span is None:
                self._overflow[event.callId] = [event.seq, event.seq, 1]
                log.error("call %s: the store buffer is full; events are being dropped", event.callId,
                          extra={"callId": event.callId})  # fmt: skip
            else:
                span[1], span[2] = event.seq, span[2] + 1
            self.dropped += 1
            return raw
        kind = event_type(event)
        mode = rate = reason = None
        if isinstance(event, CallStarted):
            mode, rate = event.mode, event.sampleRate
        elif isinstance(event, CallEnded):
            reason = event.reason
        joined = event.participant if isinstance(event, ParticipantJoined) else None
        self._pending.append(
            StoredEvent(event.callId, event.seq, kind, event.time, raw, mode, rate, reason, joined)
        )
        self._idle.clear()
        self._wakeup.set()
        return raw

    def audit(self, call_id: str, kind: str, body: dict, member: str | None = None) -> None:
        """Queue one audit record; it is written with the next batch (never published).
        ``member``: an agent id the record makes a member of the call (an assignment)."""
        record = {"kind": kind, "time": utc_now_iso(), **body}
        raw = json.dumps(record).encode()
        self._audit.append(AuditRecord(call_id, record["time"], kind, raw, member))
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
            except (
                Exception
            ) as exc:  # the store is down: keep the events, retry, never publish unstored
                self.write_errors += 1
                self.store_ok = False
                log.error(
                    "store write failed (%s); %d events kept for retry",
                    type(exc).__name__,
                    len(self._pending) + len(batch),
                )
                self._pending[:0] = batch
                self._audit[:0] = audit
                if self._closing and time.monotonic() > self._give_up_at:
                    log.error("shutting down with the store away: %d events and %d audit records were not stored",
                              len(self._pending), len(self._audit))  # fmt: skip
                    self._pending.clear()
                    self._audit.clear()
                    continue
                await asyncio.sleep(0.5)
                continue
            if not self.store_ok:
                log.warning(
                    "the store is back; %d events waited for it", len(batch) + len(self._pending)
                )
            self.store_ok = True
            self._record_overflow()
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

    def _record_overflow(self) -> None:
        """Put what a full buffer refused on each call's record (the audit): nothing is lost
        silently; the missing seq range is named, and the chain's verifier will flag it too."""
        overflow, self._overflow = self._overflow, {}
        for call_id, (first, last, count) in overflow.items():
            self.audit(
                call_id, "store.overflow", {"missedFrom": first, "missedTo": last, "events": count}
            )

    async def flush(self) -> None:
        """Wait until everything appended so far is stored and published."""
        if self._task is None:
            return
        await self._idle.wait()

    async def aclose(self, give_up_s: float = 10.0) -> None:
        self._give_up_at = time.monotonic() + give_up_s
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task
