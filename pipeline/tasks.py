"""Owned background tasks: every task the service starts is held, logged if it fails,
and cancelled when the service stops.

asyncio keeps only a weak reference to a task, so a task nobody holds can be collected
mid-flight, and one that fails does so silently. A `TaskSet` is the one place such work
lives; `Service.stop()` closes it after the calls have drained.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class TaskSet:
    def __init__(self, name: str) -> None:
        self._name = name
        self._tasks: set[asyncio.Task] = set()
        self._closed = False

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task:
        """Run ``coro`` in the background, owned by this set until it finishes."""
        if self._closed:
            coro.close()
            raise RuntimeError(f"{self._name}: closed, {name} not started")
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The type only: an exception's text may quote what it was working on.
            log.error(
                "%s: background task %s failed (%s)",
                self._name,
                task.get_name(),
                type(task.exception()).__name__,
            )

    def __len__(self) -> int:
        return len(self._tasks)

    async def aclose(self) -> None:
        """Cancel what is still running and wait until it has stopped."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
