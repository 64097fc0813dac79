"""Enrichment of redacted finals: sentiment, translation, and the end-of-call summary.

Runs after the Redactor, so it only ever sees redacted text. Nothing here may hold up a
call: local sentiment (VADER) runs on a worker thread; the model (OpenAI-compatible) is
called with a timeout, batched for sentiment, and on any failure sentiment falls back to
VADER, a translation is skipped and the summary left out, each counted as an error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Protocol

from models.events import Event, Summary, Translation
from models.events import Sentiment as SentimentEvent
from pipeline.tasks import TaskSet
from workers.enrich.llm import LlmClient, LlmError
from workers.enrich.sentiment import LocalSentiment, Sentiment

if TYPE_CHECKING:
    from models.settings import Settings
    from pipeline.analytics.call_analytics import CallAnalytics

log = logging.getLogger(__name__)

# Weight of the newest utterance in a participant's rolling score.
ROLLING_WEIGHT = 0.3


class EnrichedCall(Protocol):
    """What enrichment needs of a call: who it is, whether it has ended, where its events
    go (and where a rating goes besides: its analytics), its rolling sentiment, its
    redacted finals (for the summary), and a way to make the call wait for enrichment in
    flight before its `call.ended`."""

    call_id: str
    ended: bool
    rolling_sentiment: dict[str, float]
    finals: list[tuple[str, str]]
    analytics: CallAnalytics  # (its categories go with the summary)

    def emit(self, event: Event) -> None: ...
    def rated(self, participant: str, utterance_id: str, score: float) -> None: ...
    def track(self, task: asyncio.Future) -> None: ...
    def track_new(self, coro) -> asyncio.Task: ...


def make_llm(settings: Settings) -> LlmClient | None:
    if not (settings.openai_api_key or settings.azure_openai_endpoint):
        return None
    return LlmClient(
        model=settings.llm_model,
        api_key=settings.openai_api_key,
        base_url=settings.openai_base_url,
        azure_endpoint=settings.azure_openai_endpoint,
        azure_api_key=settings.azure_openai_api_key,
        timeout_s=settings.llm_timeout_s,
    )


class Enricher:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.local = LocalSentiment()
        self.llm = make_llm(settings)
        self.use_llm_sentiment = settings.sentiment == "openai" and self.llm is not None
        self.translate_to = [t.strip() for t in settings.translate_to.split(",") if t.strip()]
        self.translator = settings.translator if self.translate_to else "off"
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="enrich")
        # Model sentiment is rated in batches that may span calls. The batch belongs to the
        # enricher (its tasks), never to one of its calls: each call only waits on a future
        # of its own that the batch resolves, so one call ending cancels nothing of another.
        self._batch: list[tuple[EnrichedCall, str, str, str]] = []
        self._batch_waiters: dict[int, tuple[EnrichedCall, asyncio.Future[None]]] = {}
        self._batch_timer: asyncio.Task | None = None
        self._tasks = TaskSet("enrichment")
        self.errors: Counter[str] = Counter()
        self.sentiment_seconds = 0.0
        self.sentiment_count = 0
        if settings.sentiment == "openai" and self.llm is None:
            log.warning(
                "CALLSTREAM_SENTIMENT=openai needs OPENAI_API_KEY or AZURE_OPENAI_ENDPOINT; using local"
            )
        if self.translator == "openai" and self.llm is None:
            log.warning(
                "CALLSTREAM_TRANSLATOR=openai needs OPENAI_API_KEY or AZURE_OPENAI_ENDPOINT; translation is off"
            )
            self.translator = "off"

    @property
    def wants_finals(self) -> bool:
        """A model will write the end-of-call summary: calls keep their redacted finals."""
        return self.llm is not None

    # ----- per utterance -----------------------------------------------------------------
    def on_final(
        self, session: EnrichedCall, participant: str, utterance_id: str, text: str
    ) -> None:
        """A redacted final was published: rate it, translate it (on the loop, never waits)."""
        if self.use_llm_sentiment:
            self._batch.append((session, participant, utterance_id, text))
            if id(session) not in self._batch_waiters:
                waiter = asyncio.get_running_loop().create_future()
                self._batch_waiters[id(session)] = (session, waiter)
                session.track(waiter)
            if len(self._batch) >= self.settings.sentiment_batch_max:
                self._flush_now()
            elif self._batch_timer is None:
                self._batch_timer = self._tasks.spawn(self._flush_later(), "sentiment-batch-timer")
        else:
            loop = asyncio.get_running_loop()
            fut = loop.run_in_executor(self._pool, self._score_local, text)
            fut.add_done_callback(
                lambda f: self._emit_sentiment(session, participant, utterance_id, f.result())
            )
            session.track(fut)  # type: ignore[arg-type]
        if self.translator == "openai":
            for target in self.translate_to:
                session.track_new(self._translate(session, participant, utterance_id, text, target))

    def _score_local(self, text: str) -> Sentiment:
        t0 = time.perf_counter()
        result = self.local.score(text)
        self.sentiment_seconds += time.perf_counter() - t0
        self.sentiment_count += 1
        return result

    def _emit_sentiment(
        self, session: EnrichedCall, participant: str, utterance_id: str, s: Sentiment
    ) -> None:
        if session.ended:
            return
        prev = session.rolling_sentiment.get(participant)
        rolling = (
            s.score if prev is None else (1 - ROLLING_WEIGHT) * prev + ROLLING_WEIGHT * s.score
        )
        session.rolling_sentiment[participant] = round(rolling, 3)
        session.emit(
            SentimentEvent(
                callId=session.call_id, participant=participant, utteranceId=utterance_id,
                label=s.label, score=s.score, rollingScore=round(rolling, 3),
            )
        )  # fmt: skip
        session.rated(participant, utterance_id, s.score)  # analytics and its rules

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.settings.sentiment_batch_ms / 1000)
        self._flush_now()

    def _flush_now(self) -> None:
        batch, self._batch = self._batch, []
        waiters, self._batch_waiters = list(self._batch_waiters.values()), {}
        if self._batch_timer is not None and self._batch_timer is not asyncio.current_task():
            self._batch_timer.cancel()
        self._batch_timer = None
        if batch:
            task = self._tasks.spawn(self._rate_batch(batch), "sentiment-batch")
            task.add_done_callback(lambda _t: _resolve(waiters))
        else:
            _resolve(waiters)

    async def _rate_batch(self, batch: list[tuple[EnrichedCall, str, str, str]]) -> None:
        assert self.llm is not None
        keyed = {f"{i}": item for i, item in enumerate(batch)}
        try:
            rated = await self.llm.sentiment([(k, item[3]) for k, item in keyed.items()])
        except LlmError as exc:
            self.errors["sentiment"] += 1
            log.warning(
                "model sentiment failed (%s); using local sentiment for %d utterances",
                exc,
                len(batch),
            )
            rated = {}
        for k, (session, participant, uid, text) in keyed.items():
            s = rated.get(k)
            if s is None:
                s = await asyncio.get_running_loop().run_in_executor(
                    self._pool, self._score_local, text
                )
            self._emit_sentiment(session, participant, uid, s)

    async def _translate(
        self, session: EnrichedCall, participant: str, uid: str, text: str, target: str
    ) -> None:
        assert self.llm is not None
        try:
            translated = await self.llm.translate(text, target)
        except LlmError as exc:
            self.errors["translation"] += 1
            log.warning("translation to %s failed (%s); skipped", target, exc)
            return
        _emit_translation(session, participant, uid, target, translated)

    def translation_from_engine(
        self, session: EnrichedCall, participant: str, uid: str, language: str, redacted: str
    ) -> None:
        """Azure live translation, already redacted by the session."""
        if redacted.strip():
            _emit_translation(session, participant, uid, language, redacted)

    # ----- per call ----------------------------------------------------------------------
    async def summary(self, session: EnrichedCall) -> None:
        """At call end, when a model is configured: a short summary of the redacted finals."""
        if self.llm is None or not session.finals:
            return
        try:
            text = await self.llm.summarize(session.finals)
        except LlmError as exc:
            self.errors["summary"] += 1
            log.warning("call %s: summary failed (%s)", session.call_id, exc)
            return
        session.emit(
            Summary(callId=session.call_id, text=text, categories=session.analytics.categories)
        )

    async def drain(self) -> None:
        if self._batch:
            self._flush_now()

    async def aclose(self) -> None:
        await self._tasks.aclose()
        self._pool.shutdown(wait=True)
        if self.llm is not None:
            await self.llm.aclose()


def _resolve(waiters: list[tuple[EnrichedCall, asyncio.Future[None]]]) -> None:
    """The batch these calls waited on is done (or gone): let each call go on."""
    for _call, waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)


def _emit_translation(
    session: EnrichedCall, participant: str, uid: str, language: str, text: str
) -> None:
    """A translation of a redacted final, unless its call has ended meanwhile."""
    if not session.ended:
        session.emit(
            Translation(
                callId=session.call_id, participant=participant, utteranceId=uid,
                language=language, text=text,
            )
        )  # fmt: skip
