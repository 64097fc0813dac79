"""A call's payment windows: the guard's decisions turned into events, audit and pauses.

The payment guard (`pipeline.pci.payment_guard`) decides when a window opens and closes,
from the agent's words, the customer's digits, DTMF and the manual API. This is the
call's side of it: while a window is open every digit is redacted and a remote engine
hears none of the customer's audio; opening sends the recording pause at once (PCI fails
closed), closing resumes it; each step is an event and an audit record, and audio that
may have been recorded before the pause took effect is audited as an exposure.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Protocol

from models.events import PaymentEnded, PaymentStarted
from pipeline.pci.payment_guard import Decision, PaymentGuard, Window

if TYPE_CHECKING:
    from models.events import Event
    from pipeline.ingest.ports import CallNotes, CallRecorder, RecordingDriver
    from pipeline.observability.stats import Stats


class PaymentCall(Protocol):
    """What a payment window needs of its call (the recording driver gets the call too)."""

    call_id: str
    ended: bool

    def now_ms(self) -> int: ...
    def emit(self, event: Event) -> None: ...
    def audit(self, kind: str, body: dict) -> None: ...
    def set_payment_window(self, open_: bool) -> None: ...


class PaymentWindows:
    def __init__(
        self,
        call: PaymentCall,
        guard: PaymentGuard,
        recording: RecordingDriver,
        notes: CallNotes,
        stats: Stats,
        recorder: CallRecorder | None = None,
    ) -> None:
        self.call = call
        self.guard = guard
        self._recording = recording
        self._notes = notes
        self._stats = stats
        self._recorder = recorder  # callstream's own recording: cuts each window out
        self._timer: asyncio.TimerHandle | None = None
        self.policy_audited = False  # the guard's policy goes on record with the first window

    def apply(
        self, decision: Decision | None, t0: float | None = None, notify_acs: bool = True
    ) -> None:
        """Carry out a guard decision: open or close the window, with its side effects."""
        if decision is None:
            return
        t0 = time.monotonic() if t0 is None else t0
        call = self.call
        w = decision.window
        if decision.action == "open":
            call.set_payment_window(True)
            self._notes.note(call.call_id, payment="open")
            self._stats.payment_windows += 1
            if not self.policy_audited:
                self.policy_audited = True
                policy = self.guard.policy
                call.audit("policy", {"version": policy.version, **policy.as_dict()})
            call.emit(
                PaymentStarted(callId=call.call_id, trigger=decision.trigger, startMs=w.start_ms)
            )
            call.audit(
                "window.opened",
                {
                    "window": w.number,
                    "trigger": decision.trigger,
                    "startMs": w.start_ms,
                    "exposureFromMs": w.exposure_from_ms,
                },
            )
            self._recording.window_opened(call, w, t0)
            if self._recorder is not None:
                self._recorder.windows_changed()
            self.schedule_timer()
        else:
            call.set_payment_window(False)
            self._notes.note(call.call_id, payment="closed")
            call.emit(
                PaymentEnded(callId=call.call_id, trigger=decision.trigger, startMs=w.end_ms or 0)
            )
            call.audit(
                "window.closed",
                {"window": w.number, "trigger": decision.trigger, "startMs": w.start_ms, "endMs": w.end_ms,
                 "pauseConfirmedMs": w.confirmed_ms, "callEnded": not notify_acs},
            )  # fmt: skip
            self.audit_exposures(w)
            if notify_acs:
                self._recording.window_closed(call, w, t0)
            if self._recorder is not None:
                self._recorder.windows_changed()

    def audit_exposures(self, window: Window) -> None:
        for start, end in window.exposures[window.audited_exposures :]:
            self.call.audit(
                "exposure",
                {"window": window.number, "fromMs": start, "toMs": end, "durationMs": end - start,
                 "reason": "late trigger: digits before the window" if window.exposure_from_ms is not None
                 else "the customer spoke or keyed before ACS confirmed the pause"},
            )  # fmt: skip
        window.audited_exposures = len(window.exposures)

    def schedule_timer(self) -> None:
        """While a window is open, the guard's timers (the longest window) are checked
        every second."""
        if self._timer is None or self._timer.cancelled():
            self._timer = asyncio.get_running_loop().call_later(1.0, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self.call.ended:
            return
        self.apply(self.guard.check_timers(self.call.now_ms()))
        if self.guard.is_open:
            self.schedule_timer()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
