"""Azure Speech engine: continuous recognition per participant with the Speech SDK.

WHY a different shape ("continuous" mode): Azure segments speech itself and works best on
a participant's whole audio, so instead of one stream per utterance (`open_stream`) this
engine opens one *channel* per participant (`open_channel`) and pushes all of that
participant's audio into it; Azure decides where phrases start and end. The session uses
`open_channel()` because the engine declares `capabilities.continuous`.

Per channel: a `PushAudioInputStream` (PCM16 LE mono 16 kHz) feeding a `SpeechRecognizer`
(or a `TranslationRecognizer` when `translate_to` is set) in continuous recognition. The
SDK calls back on its own threads; every callback only extracts plain values and hops to
the event loop of `start()` with `loop.call_soon_threadsafe`, where utterance ids are
assigned and the caller's callbacks run (so callers never need locks).

Threads: creating/starting a recognizer and stopping it block (`.get()` on SDK futures,
stop waits for the service), so they run on this engine's own thread pool, never on the
loop. `push` only writes to the push stream's buffer. Each channel has one lifecycle
coroutine: start (thread) -> wait for close()/aclose() -> finish (thread: close the push
stream, wait for the service's last results unless aborting, stop, disconnect and drop
the recognizer, which closes its connection).

Results:
- `recognizing` -> partial SpeechResult; `recognized` -> final SpeechResult. All events of
  one phrase share an utterance id f"{participant_short}-az{n}", n from one engine-wide
  counter (unique among all channels of the engine), taken at the phrase's first event.
- A NoMatch / empty `recognized` is skipped, unless a partial of that phrase was
  published: then a final with text "" settles it. An open phrase is settled the same way
  when the channel fails or its session stops.
- Offsets: SDK results carry 100-ns ticks from the start of the channel's audio (the SDK
  keeps them continuous across its reconnections): start_ms = channel start_ms +
  offset // 10_000, end_ms = start_ms + duration // 10_000.
- confidence: NBest[0].Confidence of the detailed JSON (output format Detailed), else 0.0.
  language: the detected one (PrimaryLanguage in the JSON) if any, else the configured.
- Translation: `result.translations` (lang -> text) go to `on_translation(utterance_id,
  channel_id, translations, is_final)` after the SpeechResult of the same event.
- `canceled` with reason Error -> `on_error(f"canceled: {reason} {code}")` (no text; the
  service's error details are logged, they never carry transcript). EndOfStream (the
  normal end after close()) and CancelledByUser are not errors. Audio pushed into a
  failed channel is dropped. The SDK itself retries a dropped connection a few times
  (5 connections in all, measured with 1.53) before it cancels with an error.

Text here is RAW transcript: nothing in this module logs it or puts it in a repr; logs
carry the participant short id, utterance ids and lengths only.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from models.speech import SpeechResult
from workers.stt.acs import participant_short
from workers.stt.base import (
    Capabilities,
    ContinuousOnly,
    ErrorCallback,
    ResultCallback,
    TranslationCallback,
)

log = logging.getLogger(__name__)

SOURCE = "azure"
DEFAULT_LANGUAGE = "en-US"
TICKS_PER_MS = 10_000
BYTES_PER_MS = 32  # 16 kHz * 2 bytes
DRAIN_TIMEOUT_S = 10.0  # after close(): wait this long for the service's last results
CLOSE_TIMEOUT_S = 8.0  # aclose(): bound on stopping every channel
MAX_THREADS = 32  # lifecycle threads mostly wait (drain, stop); they are cheap


def _sdk() -> Any:
    try:
        import azure.cognitiveservices.speech as speechsdk
    except ImportError as e:  # pragma: no cover - depends on the deployment
        raise RuntimeError(
            "the azure speech engine needs the package azure-cognitiveservices-speech"
        ) from e
    return speechsdk


def _details(raw_json: str, language: str) -> tuple[float, str]:
    """(confidence, language) from a result's detailed JSON."""
    if not raw_json:
        return 0.0, language
    try:
        data = json.loads(raw_json)
    except ValueError:
        return 0.0, language
    if not isinstance(data, dict):
        return 0.0, language
    confidence = 0.0
    nbest = data.get("NBest")
    if isinstance(nbest, list) and nbest and isinstance(nbest[0], dict):
        with contextlib.suppress(TypeError, ValueError):
            confidence = max(0.0, min(1.0, float(nbest[0].get("Confidence", 0.0))))
    primary = data.get("PrimaryLanguage")
    if isinstance(primary, dict) and isinstance(primary.get("Language"), str):
        language = primary["Language"] or language
    return confidence, language


class AzureChannel:
    """One participant's audio under continuous recognition. Use from the loop thread."""

    def __init__(
        self,
        engine: AzureSpeechEngine,
        channel_id: str,
        start_ms: int,
        on_result: ResultCallback,
        on_translation: TranslationCallback | None,
        on_error: ErrorCallback,
        language: str,
    ) -> None:
        sdk = _sdk()
        self._engine = engine
        self.channel_id = channel_id
        self.short = participant_short(channel_id)
        self.start_ms = start_ms
        self.language = language
        self._on_result = on_result
        self._on_translation = on_translation
        self._on_error = on_error
        fmt = sdk.audio.AudioStreamFormat(samples_per_second=16000, bits_per_sample=16, channels=1)
        self._push = sdk.audio.PushAudioInputStream(stream_format=fmt)
        self._recognizer: Any = None
        self.audio_bytes = 0
        # Lifecycle (loop thread).
        self._closed = False  # close() or aclose(): no more audio
        self._discarded = False  # aclose(): no more results either
        self._close_requested = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Set from SDK threads: plain flags and an Event.
        self._failed = False
        self._wake = threading.Event()  # session over (stopped / canceled) or abort
        self._abort = False
        # Utterance state (loop thread).
        self._current: str | None = None
        self._partial_sent = False
        self._translation_partial_sent = False
        self._last_span = (start_ms, start_ms)

    def __repr__(self) -> str:
        return (
            f"AzureChannel(participant={self.short!r}, start_ms={self.start_ms}, "
            f"audio_ms={self.audio_bytes // BYTES_PER_MS}, closed={self._closed}, "
            f"failed={self._failed})"
        )

    __str__ = __repr__

    # ------------------------------------------------------------------ loop side API

    def push(self, pcm16k: bytes) -> None:
        """Add PCM16 LE mono 16 kHz audio; buffered by the SDK, never blocks."""
        if self._closed or self._failed or not pcm16k:
            return
        self.audio_bytes += len(pcm16k)
        try:
            self._push.write(pcm16k)
        except Exception as e:  # a broken push stream: treat as a failed channel
            self._failed = True
            log.warning("azure stt %s: push failed (%s)", self.short, type(e).__name__)

    def close(self) -> None:
        """No more audio: the last results still arrive, then the recognizer stops."""
        if self._closed:
            return
        self._closed = True
        self._close_requested.set()

    async def wait_closed(self) -> None:
        """Until the recognizer has stopped after close(): its last results are delivered."""
        if self._task is not None:
            await asyncio.shield(self._task)

    # ------------------------------------------------------------------ lifecycle

    def _begin(self, loop: asyncio.AbstractEventLoop) -> None:
        self._task = loop.create_task(self._run(loop), name=f"azure-stt-{self.short}")

    async def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        executor = self._engine._executor
        try:
            try:
                await loop.run_in_executor(executor, self._start_blocking)
            except Exception as e:
                self._failed = True
                log.warning("azure stt %s: start failed (%s)", self.short, type(e).__name__)
                self._deliver_error(f"start failed: {type(e).__name__}")
            await self._close_requested.wait()
            try:
                done = loop.run_in_executor(executor, self._finish_blocking)
            except RuntimeError:  # the pool is shut down (aclose timed out): own thread
                threading.Thread(target=self._finish_blocking, name="azure-stt-stop").start()
            else:
                try:
                    await done
                except Exception as e:
                    log.warning("azure stt %s: stop failed (%s)", self.short, type(e).__name__)
        finally:
            self._engine._channels.discard(self)

    def _abort_now(self) -> None:
        """aclose(): stop without waiting for the last results, deliver nothing more."""
        self._discarded = True
        self._closed = True
        self._abort = True
        self._wake.set()
        self._close_requested.set()

    def _start_blocking(self) -> None:
        sdk = _sdk()
        engine = self._engine
        config = engine._speech_config(self.language)
        audio_config = sdk.audio.AudioConfig(stream=self._push)
        if engine.translate_to:
            rec = sdk.translation.TranslationRecognizer(
                translation_config=config, audio_config=audio_config
            )
        else:
            rec = sdk.SpeechRecognizer(speech_config=config, audio_config=audio_config)
        rec.recognizing.connect(self._sdk_recognizing)
        rec.recognized.connect(self._sdk_recognized)
        rec.canceled.connect(self._sdk_canceled)
        rec.session_stopped.connect(self._sdk_session_stopped)
        self._recognizer = rec
        if self._abort:
            return
        rec.start_continuous_recognition_async().get()
        log.debug("azure stt %s: recognition started", self.short)

    def _finish_blocking(self) -> None:
        with contextlib.suppress(Exception):
            self._push.close()
        rec = self._recognizer
        if rec is None:
            return
        if not self._abort and not self._failed:
            if not self._wake.wait(self._engine.drain_timeout_s):
                log.warning("azure stt %s: no end of session after close", self.short)
        try:
            rec.stop_continuous_recognition_async().get()
        except Exception as e:
            log.warning("azure stt %s: stop failed (%s)", self.short, type(e).__name__)
        for signal in (rec.recognizing, rec.recognized, rec.canceled, rec.session_stopped):
            with contextlib.suppress(Exception):
                signal.disconnect_all()
        self._recognizer = None
        del rec  # the last reference: the SDK closes the connection here, off the loop
        log.debug("azure stt %s: recognizer stopped", self.short)
        loop = self._engine._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._on_stopped)

    # ------------------------------------------------------------------ SDK threads

    def _hop(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._engine._loop
        if loop is None or self._discarded:
            return
        with contextlib.suppress(RuntimeError):  # loop closed: nobody is listening
            loop.call_soon_threadsafe(fn, *args)

    def _translations(self, result: Any) -> dict[str, str] | None:
        if not self._engine.translate_to:
            return None
        try:
            return {str(k): str(v) for k, v in dict(result.translations).items()}
        except Exception:
            return {}

    def _sdk_recognizing(self, evt: Any) -> None:
        try:
            res = evt.result
            self._hop(
                self._on_partial,
                res.text or "",
                int(res.offset),
                int(res.duration),
                self._translations(res),
            )
        except Exception as e:
            log.warning("azure stt %s: recognizing callback (%s)", self.short, type(e).__name__)

    def _sdk_recognized(self, evt: Any) -> None:
        try:
            sdk = _sdk()
            res = evt.result
            matched = res.reason in (
                sdk.ResultReason.RecognizedSpeech,
                sdk.ResultReason.TranslatedSpeech,
            )
            text = (res.text or "") if matched else ""
            raw_json = ""
            with contextlib.suppress(Exception):
                raw_json = res.json or ""
            self._hop(
                self._on_final,
                text,
                int(res.offset),
                int(res.duration),
                raw_json,
                self._translations(res) if matched else None,
            )
        except Exception as e:
            log.warning("azure stt %s: recognized callback (%s)", self.short, type(e).__name__)

    def _sdk_canceled(self, evt: Any) -> None:
        try:
            sdk = _sdk()
            details = evt.cancellation_details
            reason = details.reason
            if reason == sdk.CancellationReason.Error:
                self._failed = True
                code = getattr(details.code, "name", str(details.code))
                name = getattr(reason, "name", str(reason))
                log.warning(
                    "azure stt %s: canceled %s %s: %s",
                    self.short,
                    name,
                    code,
                    " ".join((details.error_details or "").split())[:300],
                )
                self._hop(self._deliver_error, f"canceled: {name} {code}")
        except Exception as e:
            log.warning("azure stt %s: canceled callback (%s)", self.short, type(e).__name__)
        finally:
            self._wake.set()

    def _sdk_session_stopped(self, evt: Any) -> None:
        self._wake.set()

    # ------------------------------------------------------------------ loop thread

    def _utterance_id(self) -> str:
        if self._current is None:
            self._current = f"{self.short}-az{next(self._engine._counter)}"
            self._partial_sent = False
            self._translation_partial_sent = False
        return self._current

    def _span(self, offset: int, duration: int) -> tuple[int, int]:
        start = self.start_ms + max(0, offset) // TICKS_PER_MS
        return start, start + max(0, duration) // TICKS_PER_MS

    def _emit(self, result: SpeechResult) -> None:
        try:
            self._on_result(result)
        except Exception as e:
            log.error("azure stt %s: on_result raised %s", self.short, type(e).__name__)

    def _emit_translation(self, uid: str, translations: dict[str, str], final: bool) -> None:
        if self._on_translation is None:
            return
        try:
            self._on_translation(uid, self.channel_id, translations, final)
        except Exception as e:
            log.error("azure stt %s: on_translation raised %s", self.short, type(e).__name__)

    def _on_partial(
        self, text: str, offset: int, duration: int, translations: dict[str, str] | None
    ) -> None:
        if self._discarded or not text:
            return
        uid = self._utterance_id()
        start, end = self._span(offset, duration)
        self._last_span = (start, end)
        self._partial_sent = True
        self._emit(
            SpeechResult(
                utterance_id=uid,
                is_final=False,
                text=text,
                start_ms=start,
                end_ms=end,
                confidence=0.0,
                language=self.language,
                source=SOURCE,
            )
        )
        if translations:
            self._translation_partial_sent = True
            self._emit_translation(uid, translations, False)

    def _on_final(
        self,
        text: str,
        offset: int,
        duration: int,
        raw_json: str,
        translations: dict[str, str] | None,
    ) -> None:
        if self._discarded:
            return
        if not text:
            self._settle(offset, duration)
            return
        uid = self._utterance_id()
        start, end = self._span(offset, duration)
        confidence, language = _details(raw_json, self.language)
        tr_partial = self._translation_partial_sent
        self._current = None
        log.debug("azure stt %s: final %s chars=%d", self.short, uid, len(text))
        self._emit(
            SpeechResult(
                utterance_id=uid,
                is_final=True,
                text=text,
                start_ms=start,
                end_ms=end,
                confidence=confidence,
                language=language,
                source=SOURCE,
            )
        )
        if translations or tr_partial:
            self._emit_translation(uid, translations or {}, True)

    def _settle(self, offset: int = 0, duration: int = 0) -> None:
        """Close an open phrase (a partial was published) with an empty final."""
        uid = self._current
        if uid is None:
            return
        self._current = None
        if not self._partial_sent:
            return
        start, end = self._span(offset, duration) if duration > 0 else self._last_span
        tr_partial = self._translation_partial_sent
        self._emit(
            SpeechResult(
                utterance_id=uid,
                is_final=True,
                text="",
                start_ms=start,
                end_ms=end,
                confidence=0.0,
                language=self.language,
                source=SOURCE,
            )
        )
        if tr_partial:
            self._emit_translation(uid, {}, True)

    def _deliver_error(self, description: str) -> None:
        if self._discarded:
            return
        self._settle()
        try:
            self._on_error(description)
        except Exception as e:
            log.error("azure stt %s: on_error raised %s", self.short, type(e).__name__)

    def _on_stopped(self) -> None:
        if not self._discarded:
            self._settle()


class AzureSpeechEngine(ContinuousOnly):
    """Azure Speech (cloud) recognizer shared by all calls of the process."""

    source = SOURCE
    # Audio leaves the machine; Azure segments a participant's whole audio itself.
    capabilities = Capabilities(
        audio_input=True, continuous=True, interim_results=True, remote=True
    )

    def __init__(
        self,
        *,
        key: str | None,
        region: str | None = None,
        endpoint: str | None = None,
        host: str | None = None,
        language: str = DEFAULT_LANGUAGE,
        translate_to: list[str] | None = None,
        drain_timeout_s: float = DRAIN_TIMEOUT_S,
        close_timeout_s: float = CLOSE_TIMEOUT_S,
    ) -> None:
        if sum(x is not None for x in (region, endpoint, host)) != 1:
            raise ValueError("azure speech needs exactly one of region, endpoint or host")
        if region is not None and not key:
            raise ValueError("azure speech with a region needs a key")
        _sdk()  # fail early if the SDK is missing
        self._key = key
        self.region = region
        self.endpoint = endpoint
        self.host = host
        self.language = language or DEFAULT_LANGUAGE
        self.translate_to = [t for t in (translate_to or []) if t]
        self.drain_timeout_s = drain_timeout_s
        self.close_timeout_s = close_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._channels: set[AzureChannel] = set()
        self._counter = itertools.count(1)
        self._closing = False

    def __repr__(self) -> str:  # never the key
        where = self.region or self.endpoint or self.host
        return (
            f"AzureSpeechEngine(where={where!r}, language={self.language!r}, "
            f"translate_to={self.translate_to!r}, channels={len(self._channels)})"
        )

    __str__ = __repr__

    def _speech_config(self, language: str) -> Any:
        sdk = _sdk()
        kwargs: dict[str, Any] = {}
        if self.host is not None:
            kwargs["host"] = self.host
        elif self.endpoint is not None:
            kwargs["endpoint"] = self.endpoint
        else:
            kwargs["region"] = self.region
        if self._key:
            kwargs["subscription"] = self._key
        if self.translate_to:
            config = sdk.translation.SpeechTranslationConfig(**kwargs)
            for target in self.translate_to:
                config.add_target_language(target)
        else:
            config = sdk.SpeechConfig(**kwargs)
        config.speech_recognition_language = language
        config.output_format = sdk.OutputFormat.Detailed  # NBest with Confidence
        return config

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=MAX_THREADS, thread_name_prefix="azure-stt"
            )
        self._closing = False

    async def aclose(self) -> None:
        """Stop every channel's recognizer (bounded by close_timeout_s); no more results."""
        self._closing = True
        channels = list(self._channels)
        for ch in channels:
            ch._abort_now()
        tasks = [ch._task for ch in channels if ch._task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.close_timeout_s)
            if pending:
                log.warning("azure stt: %d channel(s) did not stop in time", len(pending))
        if self._executor is not None:
            # Threads still stopping a recognizer finish on their own (the SDK bounds
            # them); the interpreter joins them at exit, after the recognizers are gone.
            self._executor.shutdown(wait=False)
            self._executor = None

    def open_channel(
        self,
        channel_id: str,
        start_ms: int,
        on_result: ResultCallback,
        on_translation: TranslationCallback | None,
        on_error: ErrorCallback,
        language: str | None = None,
    ) -> AzureChannel:
        """Begin recognizing a participant whose audio starts at `start_ms` (call clock)."""
        if self._loop is None or self._executor is None or self._closing:
            raise RuntimeError("AzureSpeechEngine is not started")
        channel = AzureChannel(
            self,
            channel_id,
            start_ms,
            on_result,
            on_translation,
            on_error,
            language or self.language,
        )
        self._channels.add(channel)
        channel._begin(self._loop)
        return channel
