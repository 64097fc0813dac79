"""A local fake of the Azure Speech service websocket (the "USP" protocol), for tests.

The REAL Speech SDK talks to it:

    with FakeSpeech() as fake:
        fake.script([Phrase("hello there", 500, 1200)])
        config = speechsdk.SpeechConfig(host=fake.host, subscription="fake-key")
        # or SpeechConfig(endpoint=fake.endpoint, subscription="fake-key")

It runs a `websockets` server on 127.0.0.1 in a background thread with its own event loop,
so it serves the SDK's native threads whatever the test's loop is doing.

Wire protocol, as the SDK (azure-cognitiveservices-speech 1.53) speaks it (observed):
- Handshake: GET /speech/recognition/conversation/cognitiveservices/v1?language=en-US
  (&format=detailed with OutputFormat.Detailed). A TranslationRecognizer configured with
  `host=` goes to /stt/speech/universal/v2 with NO query: its language and target
  languages travel in speech.context. Headers: Ocp-Apim-Subscription-Key,
  X-ConnectionId, Sec-WebSocket-Protocol: USP (the fake selects it).
- Client text frames: "Header:value\r\n..." lines, a blank line, a JSON body. Paths
  `speech.config` (SDK/OS/audio format), `speech.context` (phraseDetection.language;
  translation.targetLanguages; on a reconnection "continuation" with the audio offset it
  resumes from), `telemetry`. The turn's X-RequestId comes with speech.context.
- Client binary frames: 2-byte big-endian header length, headers (Path:audio,
  X-RequestId, X-StreamId), then audio. The first audio frame of a turn carries only a 44
  byte RIFF/WAVE header (Content-Type:audio/x-wav); an empty audio frame ends the stream.
- Service text frames: "X-RequestId:<id>\r\nContent-Type:application/json;
  charset=utf-8\r\nPath:<path>\r\n\r\n<json>": turn.start, speech.startDetected,
  speech.hypothesis {Text, Offset, Duration} (translation.hypothesis adds Translation
  {TranslationStatus, Translations: [{Language, Text}]}), speech.phrase
  {RecognitionStatus: "Success", DisplayText, Offset, Duration, NBest} (translation.phrase:
  Text + Translation), and at the end of the stream speech.endDetected, a phrase with
  RecognitionStatus "EndOfDictation" at the end offset, turn.end. Without EndOfDictation
  the SDK thinks audio after the last final is unacknowledged: it opens a new turn to
  replay it and a stop then waits ~10 s for the service. With it, the SDK fires canceled
  (EndOfStream) and session_stopped. Offsets/durations: 100-ns ticks from the start of
  the connection's audio; after a reconnection the SDK replays from the end of the last
  final and adds that offset itself, so the engine sees stream offsets.

Scripting: each new connection takes a `Script`: the first one queued for its language
(the `language` query parameter; translation connections have none and use the FIFO),
else the next one of the plain FIFO, else an empty script (no speech: the turn just ends
with the audio). A script lists `Phrase`s with offsets relative to that connection's
audio; each is sent as a partial hypothesis (first half of its words) once audio reaches
its middle, and a final phrase once audio reaches its end (32 bytes per ms of 16 kHz
PCM16), so results are driven by the audio actually streamed. A `Failure` as the whole
script rejects the handshake (HTTP status) or closes the websocket with a close code after
`after_ms` of audio; `repeat` fails that many connections in a row (the SDK retries a
dropped connection: 5 connections in all before it cancels with an error). A `Failure`
inside a phrase list drops the connection mid-stream after the phrases due by `after_ms`.
One turn per connection.

Every connection is recorded (`ConnectionRecord`): path, query, headers, the messages it
sent, the last speech.context, the audio bytes received, whether the stream was ended,
and the paths answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

BYTES_PER_MS = 32  # 16 kHz * 16-bit mono
TICKS_PER_MS = 10_000


@dataclass(frozen=True)
class Phrase:
    """One recognized phrase: text, offset/duration in ms from the stream start, and
    (translation only) the translations by language."""

    text: str
    offset_ms: int
    duration_ms: int
    translations: dict[str, str] | None = None
    confidence: float = 0.9
    # "Success", or e.g. "NoMatch": the final phrase then carries no text (the partial
    # hypothesis is still sent when `text` is not empty).
    status: str = "Success"


@dataclass(frozen=True)
class Failure:
    """Fail a connection: `http_status` rejects the handshake; otherwise the websocket is
    closed with `close_code`/`reason` once `after_ms` of audio arrived."""

    http_status: int | None = None
    close_code: int = 1011
    reason: str = "fake speech service failure"
    after_ms: int = 0
    repeat: int = 1  # also fail this many - 1 reconnections (the SDK retries)


Script = list[Phrase | Failure] | Failure


@dataclass
class ConnectionRecord:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    script: Script
    messages: list[tuple[str, dict[str, str], str]] = field(default_factory=list)
    audio_bytes: int = 0
    wav_headers: int = 0
    stream_ended: bool = False
    closed: bool = False
    sent: list[str] = field(default_factory=list)  # paths the fake answered with
    context: dict[str, Any] = field(default_factory=dict)  # the last speech.context body

    @property
    def language(self) -> str | None:
        values = self.query.get("language") or self.query.get("from")
        if values:
            return values[0]
        return self.context.get("phraseDetection", {}).get("language")

    @property
    def targets(self) -> list[str]:
        if "to" in self.query:
            return list(self.query["to"])
        return list(self.context.get("translation", {}).get("targetLanguages", []))

    @property
    def audio_ms(self) -> int:
        return self.audio_bytes // BYTES_PER_MS

    @property
    def is_translation(self) -> bool:
        return "/translation/" in self.path or bool(self.targets)


def _parse_headers(block: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.split("\r\n"):
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return headers


def _message(path: str, request_id: str, body: dict[str, Any]) -> str:
    return (
        f"X-RequestId:{request_id}\r\n"
        "Content-Type:application/json; charset=utf-8\r\n"
        f"Path:{path}\r\n\r\n" + json.dumps(body)
    )


class FakeSpeech:
    """The fake service. Use as a context manager (sync); safe to use from async tests."""

    def __init__(self) -> None:
        self.port = 0
        self.connections: list[ConnectionRecord] = []
        self._fifo: deque[Script] = deque()
        self._by_language: dict[str, deque[Script]] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    # ------------------------------------------------------------------ test-facing API

    @property
    def host(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def endpoint(self) -> str:
        return f"{self.host}/speech/recognition/conversation/cognitiveservices/v1"

    def script(self, script: Script, language: str | None = None) -> None:
        """Queue the behaviour of a future connection (for `language`, or the next one)."""
        with self._lock:
            if language is None:
                self._fifo.append(script)
            else:
                self._by_language.setdefault(language, deque()).append(script)

    def wait_connections(self, n: int, timeout: float = 10.0) -> list[ConnectionRecord]:
        """Block until at least `n` connections were accepted (or rejected)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.connections) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self.connections)} of {n} connections")
                self._changed.wait(left)
            return list(self.connections)

    async def await_connections(self, n: int, timeout: float = 10.0) -> list[ConnectionRecord]:
        return await asyncio.to_thread(self.wait_connections, n, timeout)

    # ------------------------------------------------------------------ lifecycle

    def __enter__(self) -> FakeSpeech:
        self._thread = threading.Thread(target=self._run, name="fake-speech", daemon=True)
        self._thread.start()
        self._started.wait(10)
        if self._error is not None:
            raise RuntimeError("fake speech service failed to start") from self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # surfaced by __enter__
            self._error = e
            self._started.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with serve(
            self._handle,
            "127.0.0.1",
            0,
            process_request=self._process_request,
            subprotocols=["USP"],
            max_size=None,
            compression=None,
        ) as server:
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._started.set()
            await self._stop.wait()
            server.close(close_connections=True)

    # ------------------------------------------------------------------ protocol

    def _take_script(self, language: str | None) -> Script:
        with self._lock:
            queue = self._by_language.get(language or "") or self._fifo
            if not queue:
                return []
            script = queue.popleft()
            if isinstance(script, Failure) and script.repeat > 1:
                queue.appendleft(dataclasses.replace(script, repeat=script.repeat - 1))
            return script

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        split = urlsplit(request.path)
        query = parse_qs(split.query)
        lang = (query.get("language") or query.get("from") or [None])[0]
        record = ConnectionRecord(
            path=split.path,
            query=query,
            headers={k.lower(): v for k, v in request.headers.raw_items()},
            script=self._take_script(lang),
        )
        with self._changed:
            self.connections.append(record)
            self._changed.notify_all()
        connection.fake_record = record  # type: ignore[attr-defined]
        if isinstance(record.script, Failure) and record.script.http_status is not None:
            status = HTTPStatus(record.script.http_status)
            record.closed = True
            return Response(status.value, status.phrase, Headers(), record.script.reason.encode())
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        record: ConnectionRecord = ws.fake_record  # type: ignore[attr-defined]
        try:
            await _Session(ws, record).run()
        except ConnectionClosed:
            pass
        finally:
            record.closed = True


class _Session:
    """One connection: follow the client's turn and answer by the script."""

    def __init__(self, ws: ServerConnection, record: ConnectionRecord) -> None:
        self.ws = ws
        self.record = record
        self.request_id = ""
        self.turn_started = False
        self.turn_ended = False
        self.pending: list[tuple[int, str, Phrase]] = []  # (audio_ms trigger, kind, phrase)
        self.speech_started = False
        self.drop: Failure | None = None  # a Failure inside a phrase list: drop mid-stream
        if isinstance(record.script, list):
            phrases = [p for p in record.script if isinstance(p, Phrase)]
            self.drop = next((p for p in record.script if isinstance(p, Failure)), None)
            for ph in sorted(phrases, key=lambda p: p.offset_ms):
                end = ph.offset_ms + ph.duration_ms
                self.pending.append((ph.offset_ms + ph.duration_ms // 2, "partial", ph))
                self.pending.append((end, "final", ph))
            self.pending.sort(key=lambda t: (t[0], t[1] == "final"))

    async def send(self, path: str, body: dict[str, Any]) -> None:
        self.record.sent.append(path)
        await self.ws.send(_message(path, self.request_id, body))

    async def run(self) -> None:
        async for raw in self.ws:
            if isinstance(raw, str):
                head, _, body = raw.partition("\r\n\r\n")
                headers = _parse_headers(head)
                self.record.messages.append((headers.get("path", ""), headers, body))
                if headers.get("path", "").lower() == "speech.context":
                    with contextlib.suppress(ValueError):
                        self.record.context = json.loads(body)
                if headers.get("x-requestid"):
                    self.request_id = headers["x-requestid"]
                continue
            hlen = int.from_bytes(raw[:2], "big")
            headers = _parse_headers(raw[2 : 2 + hlen].decode("utf-8", "replace"))
            audio = raw[2 + hlen :]
            if headers.get("path", "").lower() != "audio":
                self.record.messages.append((headers.get("path", ""), headers, ""))
                continue
            if headers.get("x-requestid"):
                self.request_id = headers["x-requestid"]
            if not audio:
                self.record.stream_ended = True
                await self.end_turn()
                continue
            if audio[:4] == b"RIFF" and "wav" in headers.get("content-type", ""):
                self.record.wav_headers += 1
                audio = audio[44:]
            if not self.turn_started:
                self.turn_started = True
                await self.send("turn.start", {"context": {"serviceTag": uuid.uuid4().hex}})
            self.record.audio_bytes += len(audio)
            script = self.record.script
            if isinstance(script, Failure):
                if self.record.audio_ms >= script.after_ms:
                    await self.ws.close(script.close_code, script.reason)
                    return
                continue
            await self.advance(self.record.audio_ms)
            if self.drop is not None and self.record.audio_ms >= self.drop.after_ms:
                await self.ws.close(self.drop.close_code, self.drop.reason)
                return

    async def advance(self, audio_ms: int) -> None:
        while self.pending and self.pending[0][0] <= audio_ms:
            _, kind, ph = self.pending.pop(0)
            await self.emit(kind, ph)

    async def emit(self, kind: str, ph: Phrase) -> None:
        offset = ph.offset_ms * TICKS_PER_MS
        if not self.speech_started:
            self.speech_started = True
            await self.send("speech.startDetected", {"Offset": offset})
        translation = self.record.is_translation
        if kind == "partial":
            if not ph.text:
                return
            words = ph.text.split()
            text = " ".join(words[: max(1, len(words) // 2)])
            body: dict[str, Any] = {
                "Text": text,
                "Offset": offset,
                "Duration": ph.duration_ms // 2 * TICKS_PER_MS,
            }
            if translation:
                body["Translation"] = self.translations(ph, partial=True)
                await self.send("translation.hypothesis", body)
            else:
                await self.send("speech.hypothesis", body)
            return
        duration = ph.duration_ms * TICKS_PER_MS
        if ph.status != "Success":
            path = "translation.phrase" if translation else "speech.phrase"
            body = {"RecognitionStatus": ph.status, "Offset": offset, "Duration": duration}
            await self.send(path, body)
            return
        if translation:
            await self.send(
                "translation.phrase",
                {
                    "RecognitionStatus": "Success",
                    "Text": ph.text,
                    "Offset": offset,
                    "Duration": duration,
                    "Translation": self.translations(ph, partial=False),
                },
            )
            return
        await self.send(
            "speech.phrase",
            {
                "RecognitionStatus": "Success",
                "DisplayText": ph.text,
                "Offset": offset,
                "Duration": duration,
                "NBest": [
                    {
                        "Confidence": ph.confidence,
                        "Lexical": ph.text.lower(),
                        "ITN": ph.text.lower(),
                        "MaskedITN": ph.text.lower(),
                        "Display": ph.text,
                    }
                ],
            },
        )

    def translations(self, ph: Phrase, partial: bool) -> dict[str, Any]:
        out = []
        for lang in self.record.targets:
            text = (ph.translations or {}).get(lang, "")
            if partial:
                words = text.split()
                text = " ".join(words[: max(1, len(words) // 2)])
            out.append({"Language": lang, "Text": text})
        return {"TranslationStatus": "Success", "Translations": out}

    async def end_turn(self) -> None:
        if self.turn_ended:
            return
        self.turn_ended = True
        if not self.turn_started:
            self.turn_started = True
            await self.send("turn.start", {"context": {"serviceTag": uuid.uuid4().hex}})
        # Phrases the audio reached only in part are recognized with what there is.
        audio_ms = self.record.audio_ms
        while self.pending:
            _, kind, ph = self.pending.pop(0)
            if ph.offset_ms < audio_ms:
                await self.emit(kind, ph)
        end = audio_ms * TICKS_PER_MS
        await self.send("speech.endDetected", {"Offset": end})
        phrase_path = "translation.phrase" if self.record.is_translation else "speech.phrase"
        await self.send(
            phrase_path, {"RecognitionStatus": "EndOfDictation", "Offset": end, "Duration": 0}
        )
        await self.send("turn.end", {})
