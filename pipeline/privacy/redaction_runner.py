"""Runs the Redactor off the event loop, in order.

Presidio takes milliseconds per utterance: too long for the event loop that carries
every call's media. One worker thread takes texts first-in first-out and hands each
result back to the loop in the same order, so an utterance's partials and final are
published in the order the engine produced them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from pipeline.privacy.redaction import RedactionPolicy, RedactionResult, Redactor

log = logging.getLogger(__name__)


class RedactionJob(Protocol):
    """One text to redact, with what its redaction depends on.

    ``policy`` runs on the redaction thread just before the text is analyzed, so it sees
    what earlier jobs recorded (the previous turn's words as context, a partial's
    redacted values) however fast texts were submitted; ``redacted`` records this job's
    result there, in order; ``deliver`` gets the result on the event loop.
    """

    text: str

    def policy(self) -> RedactionPolicy: ...
    def redacted(self, result: RedactionResult) -> None: ...
    def deliver(self, result: RedactionResult) -> None: ...


class RedactionRunner:
    def __init__(
        self, redactor: Redactor, observe_latency: Callable[[float], None] | None = None
    ) -> None:
        self.redactor = redactor
        # Called on the redaction thread with each text's latency in seconds, from
        # `submit` to its result: the queue wait counts, because under load the single
        # thread's backlog, not Presidio itself, is what delays a transcript.
        self._observe_latency = observe_latency
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="redact")
        self._loop: asyncio.AbstractEventLoop | None = None
        self.in_flight = 0
        self._drained = asyncio.Event()
        self._drained.set()
        self.count = 0
        self.seconds = 0.0

    def submit(self, job: RedactionJob) -> None:
        """Redact ``job.text`` on the redaction thread; ``job.deliver`` gets the result on
        the event loop, in the order jobs were submitted."""
        loop = self._loop or asyncio.get_running_loop()
        self._loop = loop
        self.in_flight += 1
        self._drained.clear()
        self._pool.submit(self._work, loop, job, time.perf_counter())

    def _work(self, loop: asyncio.AbstractEventLoop, job: RedactionJob, submitted: float) -> None:
        t0 = time.perf_counter()
        try:
            policy = job.policy()
        except Exception:  # a broken policy must not let text through unredacted
            policy = RedactionPolicy(all_digits=True)
        result = self.redactor.redact_safe(job.text, policy)
        try:
            job.redacted(result)
        except Exception as exc:
            log.error("redaction job's record failed (%s)", type(exc).__name__)
        done = time.perf_counter()
        self.seconds += done - t0
        self.count += 1
        if self._observe_latency is not None:
            try:
                self._observe_latency(done - submitted)
            except Exception:  # a metric must never keep a result from being delivered
                pass
        loop.call_soon_threadsafe(self._deliver, job, result)

    def _deliver(self, job: RedactionJob, result: RedactionResult) -> None:
        self.in_flight -= 1
        try:
            job.deliver(result)
        finally:
            if self.in_flight == 0:
                self._drained.set()

    async def drain(self) -> None:
        await self._drained.wait()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)
