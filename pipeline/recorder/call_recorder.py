"""One call's recording: tracks in, payment windows cut out, files out, all on record.

The session hands each new channel to `track` (frames.py) and gets back the tape the
channel appends its frames to; it tells `windows_changed` when the payment guard opens or
closes a window (payment_window.py), and awaits `close` before its `call.ended`. Nothing
else passes between them: the session knows this class only as the `CallRecorder` port.

A window's span starts at the earliest of: the window's start, a late trigger's
utterance start (`exposure_from_ms`), the start of any utterance still being spoken when
it opened (the customer may have begun before the words that opened it were decoded),
and where the audio stood when it opened. It ends at the latest of the window's end and
where the audio stood then. Comparing both clocks keeps the cut on the audio's own
timeline even when the stream runs faster or slower than the wall clock (replays). If
the span begins before what has already been written, that part is an exposure,
audited with its offsets: never hidden.

Audio leaves the delay line once it is older than the delay, and once the guard has read
the final of every utterance it belongs to (an utterance of the engine's stream whose
final is still pending holds it), up to `MAX_ENGINE_WAIT_S`: a recognizer running behind
(the local engine on a busy machine: a late trigger 19 s after the card's first word,
measured) must not let the card reach disk before the guard has heard it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from models.events import RecordingError, RecordingPaused, RecordingResumed
from pipeline.recorder import record
from pipeline.recorder.spans import Span, cut
from pipeline.recorder.tape import Segment, Track
from pipeline.recorder.writer import DiskWriter, FileInfo, WavFile

if TYPE_CHECKING:
    from models.events import Event
    from pipeline.pci.payment_guard import PaymentGuard, Window

log = logging.getLogger(__name__)

TICK_S = 0.25  # how often tapes are drained and what has waited long enough is written
# ACS reports a keypad tone once it has sounded: its audio began before the DtmfData came.
DTMF_LEAD_MS = 1000
CLOSE_TIMEOUT_S = 30.0  # the longest a call's end waits for its files to be finished
# The longest audio waits for a recognizer that is behind (memory stays bounded: about
# 4 MB a participant at 16 kHz); beyond it, a window that reaches back is an exposure.
MAX_ENGINE_WAIT_S = 120.0


class Speaking(Protocol):
    id: str
    start_ms: int


class RecordedChannel(Protocol):
    """What the recorder reads of a channel: whose audio, and any utterance in progress."""

    participant: str
    role: str
    utterance: Speaking | None


class RecordedCall(Protocol):
    """What the recorder needs of its call."""

    call_id: str
    mode: str | None
    guard: PaymentGuard
    pending: set[str]  # utterances whose final has not been published yet

    def now_ms(self) -> int: ...
    def emit(self, event: Event) -> None: ...
    def audit(self, kind: str, body: dict) -> None: ...


@dataclass(slots=True)
class _Part:
    """A participant's track, the channel it comes from, and the file it goes to."""

    track: Track
    channel: RecordedChannel
    wav: WavFile


class NoRecorder:
    """`CALLSTREAM_RECORDER=off`: channels get no tape; nothing is kept."""

    def track(self, channel: RecordedChannel, start_ms: int, sample_rate: int) -> None:
        return None

    def windows_changed(self) -> None:
        pass

    async def close(self, reason: str) -> None:
        pass


class CallRecorder:
    def __init__(
        self, call: RecordedCall, folder: Path, writer: DiskWriter, delay_s: float
    ) -> None:
        self.call = call
        self.folder = folder
        self.writer = writer
        self.delay_s = delay_s
        self.parts: list[_Part] = []
        self.spans: dict[int, Span] = {}  # window number -> its span
        self.closed = False
        self._timer: asyncio.TimerHandle | None = None
        self._names: set[str] = set()
        self._starts: dict[str, int] = {}  # utterance id -> start, while its final is pending

    # ----- what the session calls ----------------------------------------------------------
    def track(self, channel: RecordedChannel, start_ms: int, sample_rate: int) -> list | None:
        if self.closed:
            return None
        base = "mixed" if self.call.mode == "mixed" else channel.role
        n = 1
        while f"{base}-{n}.wav" in self._names or (self.folder / f"{base}-{n}.wav").exists():
            n += 1  # a second part of the call (a reconnect after a restart) keeps the first
        name = f"{base}-{n}.wav"
        self._names.add(name)
        tr = Track(channel.participant, channel.role, name, sample_rate, start_ms, time.monotonic())
        wav = WavFile(self.folder, name, sample_rate, self.call.call_id)
        self.writer.submit(wav.open)
        self.parts.append(_Part(tr, channel, wav))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(TICK_S, self._tick)
        return tr.tape

    def windows_changed(self) -> None:
        """Bring the spans in line with the guard's windows: called as a window opens or
        closes, and on every tick (so a window restored from a hand-over is seen too)."""
        if self.closed or not self.parts:
            return
        for w in self.call.guard.windows:
            span = self.spans.get(w.number)
            if span is None:
                self._opened(w)
            elif span.to_ms is None and w.end_ms is not None:
                self._closed(span, w.end_ms)

    async def close(self, reason: str) -> None:
        """The call ended (or moved to another replica): write everything held, cut, and put
        the files and the spans on the call's audit."""
        if self.closed:
            return
        self.windows_changed()
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        end_ms = self._newest_ms()
        for span in self.spans.values():
            if span.to_ms is None:  # still open as the recording ends: silent to its end
                span.to_ms = end_ms
                span.reason += f"; open when the recording ended ({reason})"
        now = time.monotonic()
        done: list[tuple[Track, asyncio.Future[FileInfo]]] = []
        for part in self.parts:
            part.track.drain(now)
            self._write(part, part.track.release_all())
            done.append((part.track, asyncio.wrap_future(self.writer.finish(part.wav))))
        for span in self.spans.values():
            self._audit_removed(span)
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                infos = [(tr, await fut) for tr, fut in done]
        except TimeoutError:
            self.call.audit(
                record.ERROR, {"error": "the recording files were not finished in time"}
            )
            return
        for tr, info in infos:
            self.call.audit(
                record.FILE,
                {"file": info.file, "participant": tr.participant, "role": tr.role,
                 "sampleRate": tr.rate, "durationMs": info.duration_ms, "bytes": info.bytes,
                 "sha256": info.sha256, "folder": self.folder.name, "endReason": reason},
            )  # fmt: skip
            if info.error:
                self.call.audit(record.ERROR, {"file": info.file, "error": info.error})

    # ----- the delay line ------------------------------------------------------------------
    def _tick(self) -> None:
        self._timer = None
        if self.closed:
            return
        self.windows_changed()
        now = time.monotonic()
        for part in self.parts:
            part.track.drain(now)
        # Held until older than the delay in audio (behind the newest audio of the call) and
        # in wall time, whichever holds longer, and until the guard has read the finals.
        newest = max(part.track.head for part in self.parts)
        unjudged = self._unjudged_from_ms()
        for part in self.parts:
            tr = part.track
            upto = newest - int(self.delay_s * 1000) * tr.bytes_per_ms
            if unjudged is not None:
                upto = min(upto, unjudged * tr.bytes_per_ms)
            out = tr.release(upto, now - self.delay_s)
            limit = newest - int(MAX_ENGINE_WAIT_S * 1000) * tr.bytes_per_ms
            self._write(part, out + tr.release(limit, now - MAX_ENGINE_WAIT_S))
        self._timer = asyncio.get_running_loop().call_later(TICK_S, self._tick)

    def _write(self, part: _Part, segments: list[Segment]) -> None:
        if not segments:
            return
        segments = cut(segments, list(self.spans.values()), part.track.bytes_per_ms)
        part.track.mark_written(segments)
        wav = part.wav
        self.writer.submit(lambda: wav.write(segments))

    def _unjudged_from_ms(self) -> int | None:
        """The start of the earliest utterance whose final the guard has not read yet, of
        those the engine decodes from our channels (ids it has from elsewhere, such as ACS's
        own transcription, have no place on this timeline: the delay covers them)."""
        pending = self.call.pending
        for part in self.parts:
            u = part.channel.utterance
            if u is not None and u.id in pending:
                self._starts.setdefault(u.id, u.start_ms)
        self._starts = {uid: ms for uid, ms in self._starts.items() if uid in pending}
        return min(self._starts.values(), default=None)

    def _newest_ms(self) -> int:
        """Where the newest audio of the call stands on the timeline (tapes included)."""
        return max((part.track.position_ms() for part in self.parts), default=0)

    # ----- windows -------------------------------------------------------------------------
    def _opened(self, w: Window) -> None:
        call = self.call
        late = call.now_ms() - w.start_ms if w.end_ms is None else 0
        # Where the newest audio stood when the window opened: now, less the time since it
        # opened, should this be a tick that found it later.
        newest = self._newest_ms()
        candidates = [w.start_ms, newest - max(0, late)]
        if w.exposure_from_ms is not None:
            candidates.append(w.exposure_from_ms)
        if w.trigger == "dtmf":
            candidates.append(w.start_ms - DTMF_LEAD_MS)
        candidates += [
            p.channel.utterance.start_ms for p in self.parts if p.channel.utterance is not None
        ]
        from_ms = max(0, min(candidates))
        reason = f"payment window {w.number} (trigger: {w.trigger})"
        if w.exposure_from_ms is not None:
            reason += f"; from the start of the digits that triggered it at {w.exposure_from_ms} ms"
        span = Span(w.number, w.trigger, from_ms, reason, reach_back_ms=newest - from_ms)
        self.spans[w.number] = span
        if w.end_ms is not None:  # a window that closed before this recording began
            span.to_ms = w.end_ms  # (restored from a hand-over): cut, nothing to announce
            self._audit_removed(span)
            return
        call.emit(
            RecordingPaused(
                callId=call.call_id, recordingId=record.RECORDING_ID, latencyMs=0.0, attempt=1
            )
        )
        self._check_exposure(span)

    def _check_exposure(self, span: Span) -> None:
        """Audio of the span that was written before the window opened: on record."""
        for part in self.parts:
            tr = part.track
            if tr.sound_written <= span.from_ms * tr.bytes_per_ms:
                continue
            to_ms = tr.sound_written // tr.bytes_per_ms
            body = {
                "window": span.window, "participant": tr.participant, "fromMs": span.from_ms,
                "toMs": to_ms, "durationMs": to_ms - span.from_ms, "recordingId": record.RECORDING_ID,
                "reason": f"written to disk before the window reached back (delay line {self.delay_s:g} s, "
                f"the cut reached {span.reach_back_ms} ms back)",
            }  # fmt: skip
            self.call.audit(record.EXPOSURE, body)
            self.call.emit(
                RecordingError(
                    callId=self.call.call_id, recordingId=record.RECORDING_ID, attempt=1,
                    error=f"exposure: {to_ms - span.from_ms} ms of the payment window's audio were already written",
                )
            )  # fmt: skip
            log.warning(
                "call %s: local recording exposure of %d ms (window %d)", self.call.call_id,
                to_ms - span.from_ms, span.window, extra={"callId": self.call.call_id},
            )  # fmt: skip

    def _closed(self, span: Span, end_ms: int) -> None:
        span.to_ms = max(end_ms, self._newest_ms())
        self._audit_removed(span)
        call = self.call
        call.emit(
            RecordingResumed(
                callId=call.call_id, recordingId=record.RECORDING_ID, latencyMs=0.0, attempt=1
            )
        )

    def _audit_removed(self, span: Span) -> None:
        if span.audited or span.to_ms is None:
            return
        span.audited = True
        self.call.audit(
            record.REMOVED,
            {"window": span.window, "trigger": span.trigger, "fromMs": span.from_ms, "toMs": span.to_ms,
             "durationMs": span.to_ms - span.from_ms, "reason": span.reason, "reachBackMs": span.reach_back_ms,
             "delayS": self.delay_s},
        )  # fmt: skip
