"""A pause (or resume) request's attempts: the first retry at once, a hedge when ACS is slow.

WHY: between an agent's "can I take the card number" and the customer's first digit there
is about a second. A pause ACS fails (HTTP 500 from one front end) or leaves unanswered
must be asked again within tens of milliseconds, not after a polite back-off, or the
digits are on the recording before it pauses (issue 18: with the first two requests
failing, retries at +200 and +700 ms put the confirmation ~780 ms after the trigger).

- A *round* is one request, and, if no answer came within `HEDGE_AFTER_S`, a second one
  sent beside it (pausing and resuming are idempotent at ACS: pausing a paused recording
  is accepted and changes nothing). The first request ACS accepts ends the round; at most
  two are in flight, so a struggling ACS gets at most twice the requests.
- A round that failed (every request answered with an error or timed out) is followed by
  another after `retry_delay`: 20 ms after the first failure, then 100 and 250 ms, 0.5,
  1, 2 and 4 s: the immediate retry rides out one failing front end, the back-off keeps
  every open window of an ACS in trouble from hammering it.
- Every request is an audit record (``recording.request``, with ``hedge: true`` for the
  second of a round) when its answer comes. A failure is a ``recording.error`` event
  while the action is still unsettled; an answer arriving after ACS confirmed (a hedged
  request's straggler) is audited only, so no error follows ``recording.paused``.
- ACS's word counts during a round too: a confirmation (its callback) ends the wait for
  answers, as does the window changing state (the reports' bell rings for both).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from models.events import RecordingError

if TYPE_CHECKING:
    from pipeline.pci.payment_guard import Window
    from pipeline.pci.recording_confirm import RecordedCall, StateReport, StateReports

__all__ = ["HEDGE_AFTER_S", "RETRY_DELAYS_S", "Attempt", "Attempts", "retry_delay"]

RETRY_DELAYS_S: tuple[float, ...] = (0.02, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
HEDGE_AFTER_S = 0.25  # no answer this long: a second request beside the first

# Sends one request; calls its argument when the request is on the wire.
Send = Callable[[Callable[[], None]], Awaitable[Any]]


def retry_delay(failed_rounds: int) -> float:
    """The wait after the ``failed_rounds``-th failed round (1 = the first)."""
    return RETRY_DELAYS_S[max(0, min(failed_rounds, len(RETRY_DELAYS_S)) - 1)]


@dataclass(frozen=True)
class Attempt:
    number: int
    hedge: bool
    error: str | None  # None: ACS accepted it


class Attempts:
    """One driver's requests for one action (pause or resume) of one window, numbered
    from 1, each on record as it is answered."""

    def __init__(
        self,
        call: RecordedCall,
        window: Window,
        action: str,
        recording_id: str,
        t0: float,
        send: Send,
        describe: Callable[[BaseException], str],
        on_failure: Callable[[], None] = lambda: None,
        on_first_sent: Callable[[float], None] | None = None,
    ) -> None:
        self.call = call
        self.window = window
        self.action = action
        self.recording_id = recording_id
        self.t0 = t0
        self._send = send
        self._describe = describe
        self._on_failure = on_failure
        self._on_first_sent = on_first_sent
        self.count = 0  # requests started
        self.settled = False  # confirmed or given up: later answers are audited only
        self._sent: list[float] = []  # when each request went on the wire (SDK threads append)
        self._observed = False

    async def round(
        self, reports: StateReports, want: str, wanted: Callable[[], bool]
    ) -> tuple[Attempt | None, StateReport | None]:
        """Send one request, and a hedge if it is slow. Returns the accepted attempt (None:
        all failed, or the round ended early) and ACS's confirmation if it came meanwhile."""
        started = time.monotonic()
        pending: set[asyncio.Future[Any]] = {self._start(hedge=False)}
        hedged = False
        while pending:
            got = reports.confirms(want, self.t0)
            if got is not None or not wanted():
                return None, got
            timeout = None if hedged else max(0.0, started + HEDGE_AFTER_S - time.monotonic())
            reports.changed.clear()
            bell = asyncio.ensure_future(reports.changed.wait())
            try:
                done, pending = await asyncio.wait(
                    {*pending, bell}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                bell.cancel()
            pending.discard(bell)
            for task in done - {bell}:
                attempt: Attempt = task.result()
                if attempt.error is None:
                    return attempt, None
            if not done and not hedged:
                hedged = True  # no answer in time: one more request beside the first
                pending.add(self._start(hedge=True))
        return None, reports.confirms(want, self.t0)

    # ----- one request -------------------------------------------------------------------
    def _start(self, hedge: bool) -> asyncio.Task[Attempt]:
        self.count += 1
        task = asyncio.get_running_loop().create_task(self._one(self.count, hedge))
        self.call.track(task)  # the call waits for it (bounded) before it ends
        return task

    async def _one(self, number: int, hedge: bool) -> Attempt:
        sent: list[float] = []

        def on_sent() -> None:  # on the SDK's thread
            now = time.monotonic()
            sent.append(now)
            self._sent.append(now)

        error: str | None = None
        try:
            await self._send(on_sent)
        except Exception as exc:
            error = self._describe(exc)
        if self._sent and not self._observed:
            # The first request on the wire (even if ACS failed it): how fast we reacted.
            self._observed = True
            if self._on_first_sent is not None:
                self._on_first_sent(min(self._sent) - self.t0)
        self._record(number, hedge, error, sent[0] if sent else None)
        return Attempt(number, hedge, error)

    def _record(self, number: int, hedge: bool, error: str | None, sent: float | None) -> None:
        call = self.call
        latency = round((time.monotonic() - self.t0) * 1000, 1)
        if error is not None:
            self._on_failure()
            if not self.settled:
                call.emit(
                    RecordingError(callId=call.call_id, recordingId=self.recording_id,
                                   latencyMs=latency, attempt=number, error=error)
                )  # fmt: skip
        body: dict[str, Any] = {
            "action": self.action, "window": self.window.number, "recordingId": self.recording_id,
            "attempt": number, "outcome": "ok" if error is None else "error",
        }  # fmt: skip
        if error is not None:
            body["error"] = error
        body["latencyMs"] = latency
        body["sentAfterMs"] = round((sent - self.t0) * 1000, 1) if sent is not None else None
        if hedge:
            body["hedge"] = True
        call.audit("recording.request", body)
