"""A live call's analytics clock: about once a second the rules' clock (dead air while it
lasts), and every `analytics_interval_s` an `analytics` event. Wall time paces it; the
figures are on the call's audio timeline. The final event is the call's to publish, as it
ends (`CallSession._finish`), after its last finals and their sentiment."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from models.events import Event
    from pipeline.analytics.call_analytics import CallAnalytics


log = logging.getLogger(__name__)


class ClockedCall(Protocol):
    ending: bool
    ended: bool
    analytics: CallAnalytics

    def audio_ms(self) -> int: ...
    def emit(self, event: Event) -> None: ...


class AnalyticsClock:
    def __init__(self, call: ClockedCall, interval_s: float) -> None:
        self._call = call
        self._interval = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        call = self._call
        step = min(1.0, self._interval)
        due = time.monotonic() + self._interval
        while not (call.ending or call.ended):
            await asyncio.sleep(step)
            if call.ending or call.ended:
                return
            try:
                call.analytics.tick(call.audio_ms())
                if time.monotonic() >= due:
                    due = max(due + self._interval, time.monotonic())
                    call.emit(call.analytics.snapshot(call.audio_ms()))
            except Exception:  # a bug must not silence the call's analytics for good
                log.exception("analytics clock of a call failed; it goes on")
