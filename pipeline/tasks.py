"""Owned background tasks: work started off the request path is held, logged if it
fails, and given a bounded time to finish, then cancelled, when its owner stops.

asyncio keeps only a weak reference to a task, so a task nobody holds can be collected
mid-flight, and one that fails does so silently. The service (an incoming call's answer,
retention), the Redis registry (commands received) and enrichment (sentiment batches)
each keep theirs in a `TaskSet`; a call keeps its own (recording requests, enrichment it
waits for) and waits for them before its `call.ended`.
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

    async def aclose(self, grace_s: float = 0.0) -> None:
        """Take no more; let what runs finish for up to ``grace_s``, then cancel the rest
        and wait until it has stopped."""
        self._closed = True
        tasks = list(self._tasks)
        if tasks and grace_s > 0:
            _, tasks = await asyncio.wait(tasks, timeout=grace_s)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
