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
from typing import TYPE_CHECKING

from models.events import Sentiment as SentimentEvent
from models.events import Summary, Translation
from workers.enrich.llm import LlmClient, LlmError
from workers.enrich.sentiment import LocalSentiment, Sentiment

if TYPE_CHECKING:
    from models.settings import Settings
    from pipeline.ingest.session import CallSession

log = logging.getLogger(__name__)

# Weight of the newest utterance in a participant's rolling score.
ROLLING_WEIGHT = 0.3


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
        self._batch: list[tuple[CallSession, str, str, str]] = []
        self._batch_task: asyncio.Task | None = None
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

    # ----- per utterance -----------------------------------------------------------------
    def on_final(
        self, session: CallSession, participant: str, utterance_id: str, text: str
    ) -> None:
        """A redacted final was published: rate it, translate it (on the loop, never waits)."""
        if self.use_llm_sentiment:
            self._batch.append((session, participant, utterance_id, text))
            if len(self._batch) >= self.settings.sentiment_batch_max:
                self._flush_now()
            elif self._batch_task is None:
                self._batch_task = session.track_new(self._flush_later())
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
        self, session: CallSession, participant: str, utterance_id: str, s: Sentiment
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

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.settings.sentiment_batch_ms / 1000)
        self._flush_now()

    def _flush_now(self) -> None:
        batch, self._batch = self._batch, []
        if self._batch_task is not None and self._batch_task is not asyncio.current_task():
            self._batch_task.cancel()
        self._batch_task = None
        if batch:
            batch[0][0].track_new(self._rate_batch(batch))

    async def _rate_batch(self, batch: list[tuple[CallSession, str, str, str]]) -> None:
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
        self, session: CallSession, participant: str, uid: str, text: str, target: str
    ) -> None:
        assert self.llm is not None
        try:
            translated = await self.llm.translate(text, target)
        except LlmError as exc:
            self.errors["translation"] += 1
            log.warning("translation to %s failed (%s); skipped", target, exc)
            return
        if not session.ended:
            session.emit(
                Translation(
                    callId=session.call_id,
                    participant=participant,
                    utteranceId=uid,
                    language=target,
                    text=translated,
                )
            )

    def translation_from_engine(
        self, session: CallSession, participant: str, uid: str, language: str, redacted: str
    ) -> None:
        """Azure live translation, already redacted by the session."""
        if not session.ended and redacted.strip():
            session.emit(
                Translation(
                    callId=session.call_id,
                    participant=participant,
                    utteranceId=uid,
                    language=language,
                    text=redacted,
                )
            )

    # ----- per call ----------------------------------------------------------------------
    async def summary(self, session: CallSession) -> None:
        """At call end, when a model is configured: a short summary of the redacted finals."""
        if self.llm is None or not session.finals:
            return
        try:
            text = await self.llm.summarize(session.finals)
        except LlmError as exc:
            self.errors["summary"] += 1
            log.warning("call %s: summary failed (%s)", session.call_id, exc)
            return
        session.emit(Summary(callId=session.call_id, text=text))

    async def drain(self) -> None:
        if self._batch:
            self._flush_now()

    async def aclose(self) -> None:
        self._pool.shutdown(wait=True)
        if self.llm is not None:
            await self.llm.aclose()
