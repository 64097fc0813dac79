"""Garbage-collector pauses, as a histogram, and the freeze that keeps them short.

A full collection walks every tracked object, and a running service holds hundreds of
thousands that never die (Presidio's recognizers, spaCy's vocabulary, the ASGI stack).
The soak benchmark saw 90–350 ms full collections at 150 calls: every call on the replica
stalls for that long. `freeze_startup_heap` moves what exists once the service is ready into
the permanent generation (`gc.freeze`), which collections skip; `GcPauseObserver` times
each collection from the interpreter's own callbacks so the effect is visible on /metrics.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

GENERATIONS = ("0", "1", "2")


def freeze_startup_heap() -> int:
    """Collect once, then freeze the survivors; returns how many objects were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class GcPauseObserver:
    """Calls `observe(generation, seconds)` for every collection while installed.

    gc callbacks are process-wide; each service installs its own and removes it at stop.
    """

    def __init__(self, observe: Callable[[str, float], None]) -> None:
        self._observe = observe
        self._started = 0.0

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started:
            self._observe(
                GENERATIONS[info.get("generation", 2)], time.perf_counter() - self._started
            )
            self._started = 0.0

    def install(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def remove(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)
