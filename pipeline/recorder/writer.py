"""The disk side of the recorder: one thread writes every call's WAV files, in order.

The event loop only queues work here (invariant 2: the media path never waits on a disk).
Files are PCM 16-bit mono WAV at the call's sample rate (stdlib `wave`: no FLAC or Opus
library is among the dependencies), created owner-only (compliance/private_files.py).
Each write patches the WAV header, so a file cut short by a crash is still a valid WAV
of what was written. When a file is finished its SHA-256 is taken from the bytes on disk:
that is the hash the call's manifest carries.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import threading
import wave
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pipeline.compliance.private_files import open_private, private_dir
from pipeline.recorder.paths import INDEX
from pipeline.recorder.tape import Segment

log = logging.getLogger(__name__)

ZEROS = bytes(1 << 16)  # silence is written from this, a block at a time
# A WAV file's sizes are 32-bit: stop a file well before it would overflow (~37 h at 16 kHz).
MAX_DATA_BYTES = (1 << 32) - (1 << 24)


@dataclass
class FileInfo:
    """A finished recording file, as the audit and the manifest name it."""

    file: str
    bytes: int
    sha256: str | None
    duration_ms: int
    error: str | None = None


class WavFile:
    """One recording file. Its methods run on the writer thread only."""

    def __init__(self, folder: Path, name: str, rate: int, call_id: str) -> None:
        self.folder = folder
        self.name = name
        self.rate = rate
        self.call_id = call_id
        self.data_bytes = 0
        self.error: str | None = None
        self._fh: IO[bytes] | None = None
        self._wav: wave.Wave_write | None = None

    @property
    def path(self) -> Path:
        return self.folder / self.name

    def open(self) -> None:
        try:
            private_dir(self.folder.parent)
            private_dir(self.folder)
            index = self.folder / INDEX
            if not index.exists():
                with open_private(index) as fh:
                    fh.write(json.dumps({"callId": self.call_id}).encode())
            self._fh = open_private(self.path)
            wav = wave.open(self._fh, "wb")
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(self.rate)
            self._wav = wav
        except OSError as exc:
            self._fail(exc)

    def write(self, segments: list[Segment]) -> None:
        wav = self._wav
        if wav is None or self.error is not None:
            return
        try:
            for seg in segments:
                if self.data_bytes + seg.size > MAX_DATA_BYTES:
                    self.error = "the recording reached the largest size a WAV file can hold"
                    return
                data = seg.data
                if isinstance(data, int):
                    while data > 0:
                        n = min(data, len(ZEROS))
                        wav.writeframes(ZEROS[:n])
                        data -= n
                else:
                    wav.writeframes(data)
                self.data_bytes += seg.size
        except OSError as exc:
            self._fail(exc)

    def finish(self, done: Future[FileInfo]) -> None:
        digest: str | None = None
        size = 0
        try:
            if self._wav is not None:
                self._wav.close()  # patches the header; leaves our file object open
            if self._fh is not None:
                self._fh.flush()
                os.fsync(self._fh.fileno())
                self._fh.close()
                h = hashlib.sha256()
                with open(self.path, "rb") as fh:
                    while block := fh.read(1 << 20):
                        h.update(block)
                        size += len(block)
                digest = h.hexdigest()
        except OSError as exc:
            self._fail(exc)
        done.set_result(
            FileInfo(self.name, size, digest, self.data_bytes * 500 // self.rate, self.error)
        )

    def _fail(self, exc: OSError) -> None:
        self.error = f"{type(exc).__name__}: {exc.strerror or exc}"
        log.error("recorder: writing %s failed (%s)", self.name, self.error)


class DiskWriter:
    """The one thread that writes recordings; jobs run in the order they were queued."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, job: Callable[[], None]) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(
                        target=self._run, name="recorder-writer", daemon=True
                    )
                    self._thread.start()
        self._jobs.put(job)

    def finish(self, wav: WavFile) -> Future[FileInfo]:
        done: Future[FileInfo] = Future()
        self.submit(lambda: wav.finish(done))
        return done

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            try:
                job()
            except Exception:  # a bug in one job must not stop every call's recording
                log.exception("recorder: a write job failed")

    def close(self) -> None:
        """Write what is queued, then stop the thread (blocking: call it off the loop)."""
        if self._thread is not None:
            self._jobs.put(None)
            self._thread.join()
            self._thread = None
