"""When a recording pause (or resume) has taken effect: when ACS says so, after it was asked.

ACS answers ``pause_recording`` with 202: the request was accepted, and the recording may
well still be recording. A request counts as confirmed only when ACS reports the state it
asked for *after* the request was made (from the moment its payment window opened or
closed): a ``RecordingStateChanged`` callback, or the answer to a
``get_recording_properties`` poll. A state learnt earlier (the recording's start, an
earlier window, a callback delivered late and out of order) confirms nothing.

Until ACS confirms, the request is *unconfirmed*: the call hears ``recording.error`` with
``error: "unconfirmed"``, the contract's own event for a pause or resume that has not taken
effect (a consumer that knows only the contract shows a recording-control problem, which it
is; ``recording.paused`` stays a promise that the recording is paused), and the audit
records ``recording.unconfirmed`` (the request accepted, ACS's latest word on the state);
the driver keeps asking. ``recording.paused``/``resumed`` come with the confirmation, their
``latencyMs`` running from the trigger to the moment ACS's word arrived, and the payment
window's exposure ends there too.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from models.events import Event, RecordingError, RecordingPaused, RecordingResumed

if TYPE_CHECKING:
    from pipeline.pci.payment_guard import PaymentGuard, Window

__all__ = ["RecordedCall", "StateReport", "StateReports", "confirm", "confirmed", "unconfirmed"]

CALLBACK_WAIT_S = 0.25  # for ACS's callback, before asking
CONFIRM_WAIT_S = 1.0  # for a callback once more, before asking again and calling it unconfirmed
UNCONFIRMED = "unconfirmed"


class RecordedCall(Protocol):
    """What driving a call's recording needs of the call: who it is, its guard (is the
    window still open, the pause confirmed), its clock, and its record."""

    call_id: str
    guard: PaymentGuard

    def now_ms(self) -> int: ...
    def emit(self, event: Event) -> None: ...
    def audit(self, kind: str, body: dict) -> None: ...
    def audit_exposures(self, window: Window) -> None: ...
    def track(self, task: asyncio.Future) -> None: ...


@dataclass(frozen=True)
class StateReport:
    at: float  # time.monotonic() when it reached callstream
    state: str  # active | inactive
    source: str  # callback | poll


class StateReports:
    """ACS's latest words on one recording's state, and a bell for the drivers waiting on
    them (rung too when a window opens or closes, so a wait ends once it is not wanted)."""

    def __init__(self) -> None:
        self._reports: deque[StateReport] = deque(maxlen=16)
        self.changed = asyncio.Event()

    def add(self, state: str, source: str) -> None:
        self._reports.append(StateReport(time.monotonic(), state.lower(), source))
        self.changed.set()

    def wake(self) -> None:
        self.changed.set()

    def confirms(self, want: str, since: float) -> StateReport | None:
        """The report confirming ``want``: ACS's latest word since ``since`` says ``want``.
        Of an unbroken run of such words, the first: when the state took effect."""
        found = None
        for r in reversed(self._reports):
            if r.at < since or r.state != want:
                break
            found = r
        return found

    async def wait(
        self, want: str, since: float, seconds: float, wanted: Callable[[], bool]
    ) -> StateReport | None:
        """Until ``want`` is confirmed, ``seconds`` have passed or it is no longer wanted."""
        deadline = time.monotonic() + seconds
        while (got := self.confirms(want, since)) is None and wanted():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)
        return got


async def confirm(
    reports: StateReports,
    want: str,
    since: float,
    wanted: Callable[[], bool],
    poll: Callable[[], Awaitable[None]],
) -> StateReport | None:
    """After ACS accepted a request: wait for its callback (usually tens of milliseconds);
    if none comes (a recording started elsewhere sends its callbacks elsewhere), ask with a
    poll, wait once more, ask again. None: not confirmed (or no longer wanted)."""
    for seconds in (CALLBACK_WAIT_S, CONFIRM_WAIT_S):
        got = await reports.wait(want, since, seconds, wanted)
        if got is not None or not wanted():
            return got
        await poll()
        if (got := reports.confirms(want, since)) is not None:
            return got
    return None


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def confirmed(
    call: RecordedCall,
    window: Window,
    action: str,
    recording_id: str,
    attempt: int,
    t0: float,
    got: StateReport,
) -> None:
    """ACS confirmed: the event, the audit and, for a pause while its window is open, the
    moment from which nothing said is on the recording (the exposure ends there)."""
    latency = _ms(got.at - t0)
    if action == "pause" and window.open:
        # The call's clock when ACS's word arrived, not when this task got to run.
        call.guard.confirmed(call.now_ms() - round((time.monotonic() - got.at) * 1000))
        call.audit_exposures(window)
    cls = RecordingPaused if action == "pause" else RecordingResumed
    call.emit(
        cls(callId=call.call_id, recordingId=recording_id, latencyMs=latency, attempt=attempt)
    )
    call.audit(
        "recording.confirmed",
        {"action": action, "window": window.number, "recordingId": recording_id, "attempt": attempt,
         "state": got.state, "confirmedBy": got.source, "latencyMs": latency},
    )  # fmt: skip


def unconfirmed(
    call: RecordedCall,
    window: Window,
    action: str,
    recording_id: str,
    attempt: int,
    t0: float,
    state: str | None,
) -> None:
    """ACS accepted the request and, a confirmation wait later, has not reported the
    state: not paused (or resumed) as far as anyone can tell; the driver asks again."""
    latency = _ms(time.monotonic() - t0)
    call.emit(
        RecordingError(callId=call.call_id, recordingId=recording_id, latencyMs=latency,
                       attempt=attempt, error=UNCONFIRMED)
    )  # fmt: skip
    want = "inactive" if action == "pause" else "active"
    call.audit(
        "recording.unconfirmed",
        {"action": action, "window": window.number, "recordingId": recording_id, "attempt": attempt,
         "outcome": UNCONFIRMED, "state": state, "latencyMs": latency,
         "detail": f"ACS accepted the {action} request but has not reported the recording {want}"},
    )  # fmt: skip
