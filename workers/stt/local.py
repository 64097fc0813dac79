"""Local speech-to-text: pocketsphinx decoders in worker processes.

WHY processes: pocketsphinx decoding is CPU-bound C code driven from Python, so one
process would use one core and any decode on the event loop would stall every call's
media path. `workers` processes (started with the "spawn" context: never fork a process
that runs an asyncio loop and threads) each own a pool of `Decoder`s; the loop only
buffers audio and posts messages.

Process protocol (plain tuples, cheap to pickle):
- parent -> worker, one `multiprocessing.Queue` per worker (only the parent writes it, so
  a dying worker cannot leave a cross-process lock held):
  ("s", sid, start_ms, channel, digits) start, ("a", sid, pcm) audio, ("e", sid, end_ms)
  end, ("c", sid) cancel, None stop.
- worker -> parent, one one-way `Pipe` per worker: ("ready",), and
  (sid, is_final, text, end_ms, confidence, decode_s, audio_ms) results. A per-worker pipe
  rather than a shared queue: the pipe's EOF is how the parent learns that a worker died.
- One daemon reader thread waits on all result pipes and hands results to the loop with
  `loop.call_soon_threadsafe`, so callbacks run on the loop thread of `start()`.

Batching: `push` appends to the stream's buffer and arms one 100 ms timer; the batch is
shipped when it fires (or at `end`). That is ~10 IPC messages/s per active utterance
instead of 50.

Partials: the worker looks at the hypothesis every `LOOK_MS` of audio (one VAD frame, so
always at the end of a batch), and sends a batch's freshest changed hypothesis, plus any
that are `partial_interval_ms` apart (a batch of seconds, a replay at full speed, still
yields partials at that interval). The payment guard reads every partial, so it sees an
intent phrase about a batch after the words were decoded; with a look only every
`partial_interval_ms` (300) it saw it up to 300 ms of audio later (issue 18). The call
still publishes one partial per `partial_interval_ms` (`pipeline.ingest.transcripts`),
so redaction and subscribers carry no more than before. A look costs a worker ~0.03 ms
(pocketsphinx's `hyp()`), in the noise of decoding (`bench/pci_latency.py`).

Pinning: each stream goes to the worker with the fewest active streams and stays there
(a Decoder holds the utterance's state). A worker reuses idle Decoders across utterances
and creates one more only when more utterances are active at once than it has decoders.
Memory: one Decoder with the bundled en-US model costs ~93-95 MB RSS (measured; it loads
its own copy of the 26 MB LM, the dictionary and the acoustic model) and ~0.5 s to create,
so each worker creates one at start (before reporting ready) and pools them afterwards.
A worker with one Decoder is ~128 MB RSS; with three (three utterances at once) ~325 MB
(figures from before issue 15; the mean estimator each worker now also holds loads no
language model: ~28 MB, measured by a review of the change).
Pools only grow (bounded by the peak of concurrent utterances per worker).

Normalisation per channel: what an utterance is decoded with (warm-up, the channel's
cepstral mean, partials, final, confidence, the payment digits search) is
`workers/stt/local_decoding.py`; this module only carries it between processes. A channel
(one participant of one call) is pinned to the worker that decoded its first utterance,
and that worker keeps the channel's mean (`channel_norm.ChannelNorm`, 13 numbers; at most
`MAX_CHANNELS`, least recently used dropped) and updates it from each final in order. So an
utterance always starts from every earlier utterance of its channel, however far the
worker lags behind (a replay at full speed gives the same finals as one in real time),
which carrying the mean through the parent could not promise. A channel has one utterance
at a time, so pinning costs little balance. A restarted worker starts its channels over.

Speed and accuracy: bench/RESULTS.md ("Speech on telephone audio") has the curve and the
numbers behind `local_decoding.DEFAULT_OPTIONS`.
Language: the bundled model is US English; results say "en-US" whatever was asked.

Worker crash: the reader thread sees EOF on the worker's pipe. Every stream pinned to it
is marked lost: a stream that was already ended gets an empty final (confidence 0) at
once; a stream still open drops further audio and gets its empty final when `end()` is
called. So a crash never leaves a caller waiting forever, and the "exactly one final per
end()" rule holds. The worker is then restarted in the same slot.

Raw transcript text only travels in result tuples and SpeechResult; nothing here logs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing as mp
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from models.speech import SpeechResult
from workers.stt.base import Capabilities, ResultCallback, SegmentedOnly
from workers.stt.channel_norm import ChannelNorm
from workers.stt.local_decoding import DEFAULT_WARM_MS

log = logging.getLogger(__name__)

SOURCE = "local"
LANGUAGE = "en-US"
SHIP_INTERVAL_S = 0.1
LOOK_MS = 20  # how often a worker looks at an utterance's hypothesis (see above)
BYTES_PER_MS = 32  # 16 kHz * 2 bytes
JOIN_TIMEOUT_S = 3.0
MAX_STARTUP_FAILURES = 3
MAX_CHANNELS = 4096  # channel means kept (13 numbers each); the least recently used go

_OPEN, _ENDED, _DONE = 0, 1, 2


# --------------------------------------------------------------------------- worker side


def _worker_main(
    cmd_q: Any,
    res_conn: Connection,
    partial_interval_ms: int,
    options: dict[str, Any] | None,
    warm_ms: int,
) -> None:
    """Entry point of a worker process: decode utterances until told to stop."""
    import queue
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent owns shutdown
    from workers.stt.local_decoding import Decoders, UtteranceDecoding

    decoders = Decoders(options)
    active: dict[int, UtteranceDecoding] = {}
    last_sent: dict[int, int] = {}  # sid -> end_ms of its last partial sent
    channels: OrderedDict[str, ChannelNorm] = OrderedDict()  # least recently used first
    parent = os.getppid()
    send = res_conn.send
    send(("ready",))

    while True:
        try:
            msg = cmd_q.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent:  # orphaned: the parent died without stopping us
                return
            continue
        if msg is None:
            return
        kind, sid = msg[0], msg[1]
        if kind == "a":
            utt = active.get(sid)
            if utt is not None:
                for text, end_ms in _thin(utt.feed(msg[2]), last_sent, sid, partial_interval_ms):
                    send((sid, False, text, end_ms, 0.0, 0.0, 0))
        elif kind == "s":
            channel = msg[3]
            norm = channels.get(channel) if channel is not None else None
            if norm is not None:
                channels.move_to_end(channel)
            utt = UtteranceDecoding(
                decoders, msg[2], prior=norm.state() if norm is not None else None, digits=msg[4],
                warm_ms=warm_ms, partial_interval_ms=min(LOOK_MS, partial_interval_ms),
            )  # fmt: skip
            utt.channel = channel
            active[sid] = utt
        elif kind == "e":
            last_sent.pop(sid, None)
            utt = active.pop(sid, None)
            if utt is not None:
                text, conf = utt.finish()
                send((sid, True, text, msg[2], conf, utt.decode_s, utt.audio_ms))
                if utt.channel is not None and (mean := utt.channel_mean()) is not None:
                    _learn(channels, utt.channel, mean)
        elif kind == "c":
            last_sent.pop(sid, None)
            utt = active.pop(sid, None)
            if utt is not None:
                utt.cancel()


def _thin(
    looks: list[tuple[str, int]], last_sent: dict[int, int], sid: int, interval_ms: int
) -> list[tuple[str, int]]:
    """Of one batch's changed hypotheses (text, end_ms), the ones to send: the freshest,
    and those ``interval_ms`` after the last one sent. The looks in between would reach
    the parent together with the freshest, which supersedes them."""
    out: list[tuple[str, int]] = []
    for i, (text, end_ms) in enumerate(looks):
        last = last_sent.get(sid)
        if i == len(looks) - 1 or last is None or end_ms - last >= interval_ms:
            out.append((text, end_ms))
            last_sent[sid] = end_ms
    return out


def _learn(
    channels: OrderedDict[str, ChannelNorm], channel: str, mean: tuple[list[float], int]
) -> None:
    norm = channels.get(channel)
    if norm is None:
        norm = channels[channel] = ChannelNorm()
        while len(channels) > MAX_CHANNELS:
            channels.popitem(last=False)
    else:
        channels.move_to_end(channel)
    norm.add(*mean)


# --------------------------------------------------------------------------- parent side


@dataclass(eq=False)
class _Worker:
    slot: int
    proc: Any
    cmd_q: Any
    res_conn: Connection
    ready: asyncio.Future[None]
    failures: int = 0  # consecutive deaths before becoming ready
    streams: set[LocalSpeechStream] = field(default_factory=set)


@dataclass
class DecodeStats:
    """Totals over finished utterances, for a real-time-factor metric."""

    utterances: int = 0
    decode_s: float = 0.0
    audio_s: float = 0.0

    @property
    def real_time_factor(self) -> float:
        return self.decode_s / self.audio_s if self.audio_s else 0.0


class LocalSpeechStream:
    """Parent-side handle of one utterance; all methods run on the loop thread."""

    __slots__ = (
        "_engine", "_worker", "sid", "utterance_id", "start_ms", "_on_result", "_buf",
        "_timer", "_state", "_lost", "_end_ms",
    )  # fmt: skip

    def __init__(
        self,
        engine: LocalSpeechEngine,
        worker: _Worker,
        sid: int,
        utterance_id: str,
        start_ms: int,
        on_result: ResultCallback,
    ) -> None:
        self._engine = engine
        self._worker = worker
        self.sid = sid
        self.utterance_id = utterance_id
        self.start_ms = start_ms
        self._on_result = on_result
        self._buf = bytearray()
        self._timer: asyncio.TimerHandle | None = None
        self._state = _OPEN
        self._lost = False
        self._end_ms = start_ms

    def __repr__(self) -> str:
        return f"LocalSpeechStream(utterance_id={self.utterance_id!r}, sid={self.sid})"

    def push(self, pcm16k: bytes) -> None:
        if self._state != _OPEN or self._lost:
            return
        self._buf += pcm16k
        if self._timer is None:
            self._timer = self._engine._loop_call_later(SHIP_INTERVAL_S, self._ship)

    def end(self, end_ms: int) -> None:
        if self._state != _OPEN:
            return
        self._state = _ENDED
        self._end_ms = end_ms
        if self._lost:
            self._engine._deliver_empty_final(self)
            return
        self._ship()
        self._worker.cmd_q.put(("e", self.sid, end_ms))

    def cancel(self) -> None:
        if self._state == _DONE:
            return
        self._state = _DONE
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._buf = bytearray()
        self._engine._forget(self)
        if not self._lost:
            self._worker.cmd_q.put(("c", self.sid))

    def _ship(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._buf and not self._lost:
            self._worker.cmd_q.put(("a", self.sid, bytes(self._buf)))
        self._buf = bytearray()


class LocalSpeechEngine(SegmentedOnly):
    """SpeechEngine backed by pocketsphinx in `workers` spawned processes."""

    source = SOURCE
    capabilities = Capabilities(
        audio_input=True, continuous=False, interim_results=True, remote=False
    )

    def __init__(
        self,
        workers: int,
        partial_interval_ms: int = 300,
        decoder_options: dict[str, Any] | None = None,
        warm_ms: int = DEFAULT_WARM_MS,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.n_workers = workers
        self.partial_interval_ms = partial_interval_ms
        self.decoder_options = decoder_options
        self.warm_ms = warm_ms
        # The worker that holds each channel's mean (pinned: see the module docstring).
        self._channel_worker: OrderedDict[str, int] = OrderedDict()
        self.stats = DecodeStats()
        self.restarts = 0
        self._ctx = mp.get_context("spawn")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._workers: list[_Worker] = []
        self._streams: dict[int, LocalSpeechStream] = {}
        self._next_sid = 0
        self._closing = False
        self._starting = False
        self._wake_r: Connection | None = None
        self._wake_w: Connection | None = None
        self._reader: threading.Thread | None = None
        self._conns_lock = threading.Lock()

    # -- lifecycle

    async def start(self) -> None:
        """Spawn the workers and wait until each has its first Decoder loaded."""
        if self._loop is not None:
            return
        self._loop = asyncio.get_running_loop()
        self._wake_r, self._wake_w = self._ctx.Pipe(duplex=False)
        self._workers = [self._spawn(slot) for slot in range(self.n_workers)]
        self._reader = threading.Thread(
            target=self._read_results, name="callstream-stt-local-reader", daemon=True
        )
        self._reader.start()
        self._starting = True
        try:
            await asyncio.gather(*(w.ready for w in self._workers))
        except BaseException:
            await self.aclose()
            raise
        finally:
            self._starting = False

    async def aclose(self) -> None:
        """Stop the workers (join, then terminate, then kill) and the reader thread."""
        if self._loop is None or self._closing:
            return
        self._closing = True
        for stream in list(self._streams.values()):
            stream.cancel()
        for w in self._workers:
            with contextlib.suppress(Exception):
                w.cmd_q.put(None)
        await asyncio.gather(*(asyncio.to_thread(_stop_process, w.proc) for w in self._workers))
        for w in self._workers:
            w.cmd_q.close()
            w.cmd_q.join_thread()
        self._wake()
        if self._reader is not None:
            await asyncio.to_thread(self._reader.join, JOIN_TIMEOUT_S)
        for w in self._workers:
            if not w.res_conn.closed:
                w.res_conn.close()
            if not w.ready.done():
                w.ready.cancel()
        assert self._wake_r is not None and self._wake_w is not None
        self._wake_r.close()
        self._wake_w.close()
        self._workers = []

    def open_stream(
        self,
        utterance_id: str,
        start_ms: int,
        on_result: ResultCallback,
        language: str = "en-US",
        channel: str | None = None,
        digits: bool = False,
    ) -> LocalSpeechStream:
        """`channel` names whose audio this is (one participant of one call, or a call's
        mixed stream): utterances of a channel start from its cepstral mean so far.
        `digits`: a payment window is open and this is the customer's own audio."""
        if self._loop is None or self._closing or not self._workers:
            raise RuntimeError("engine is not running")
        worker = self._worker_for(channel)
        self._next_sid += 1
        stream = LocalSpeechStream(self, worker, self._next_sid, utterance_id, start_ms, on_result)
        self._streams[stream.sid] = stream
        worker.streams.add(stream)
        worker.cmd_q.put(("s", stream.sid, start_ms, channel, digits))
        return stream

    def _worker_for(self, channel: str | None) -> _Worker:
        """The channel's worker if it has one, else the least busy (which then keeps it)."""
        by_slot = {w.slot: w for w in self._workers}
        if channel is not None and (slot := self._channel_worker.get(channel)) in by_slot:
            self._channel_worker.move_to_end(channel)
            return by_slot[slot]
        worker = min(self._workers, key=lambda w: len(w.streams))
        if channel is not None:
            self._channel_worker[channel] = worker.slot
            while len(self._channel_worker) > MAX_CHANNELS:
                self._channel_worker.popitem(last=False)
        return worker

    @property
    def active_streams(self) -> int:
        return len(self._streams)

    def worker_pids(self) -> list[int]:
        return [w.proc.pid for w in self._workers if w.proc.pid is not None]

    # -- internals (loop thread unless noted)

    def _spawn(self, slot: int) -> _Worker:
        assert self._loop is not None
        cmd_q = self._ctx.Queue()
        res_r, res_w = self._ctx.Pipe(duplex=False)
        proc = self._ctx.Process(
            target=_worker_main,
            args=(cmd_q, res_w, self.partial_interval_ms, self.decoder_options, self.warm_ms),
            name=f"callstream-stt-{slot}",
            daemon=True,
        )
        proc.start()
        res_w.close()  # the child holds the only write end: its death means EOF here
        worker = _Worker(slot, proc, cmd_q, res_r, self._loop.create_future())
        worker.ready.add_done_callback(_retrieve)
        return worker

    def _loop_call_later(self, delay: float, cb: Any) -> asyncio.TimerHandle:
        assert self._loop is not None
        return self._loop.call_later(delay, cb)

    def _wake(self) -> None:
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send_bytes(b"w")

    def _forget(self, stream: LocalSpeechStream) -> None:
        self._streams.pop(stream.sid, None)
        stream._worker.streams.discard(stream)

    def _deliver_empty_final(self, stream: LocalSpeechStream) -> None:
        stream._state = _DONE
        self._forget(stream)
        result = SpeechResult(
            utterance_id=stream.utterance_id,
            is_final=True,
            text="",
            start_ms=stream.start_ms,
            end_ms=stream._end_ms,
            confidence=0.0,
            language=LANGUAGE,
            source=SOURCE,
        )
        _safe_call(stream._on_result, result)

    def _on_message(self, worker: _Worker, msg: tuple[Any, ...]) -> None:
        if msg[0] == "ready":
            if not worker.ready.done():
                worker.ready.set_result(None)
            return
        sid, is_final, text, end_ms, conf, decode_s, audio_ms = msg
        stream = self._streams.get(sid)
        if stream is None or stream._state == _DONE:
            return
        if is_final:
            stream._state = _DONE
            self._forget(stream)
            self.stats.utterances += 1
            self.stats.decode_s += decode_s
            self.stats.audio_s += audio_ms / 1000
        result = SpeechResult(
            utterance_id=stream.utterance_id,
            is_final=is_final,
            text=text,
            start_ms=stream.start_ms,
            end_ms=end_ms,
            confidence=conf,
            language=LANGUAGE,
            source=SOURCE,
        )
        _safe_call(stream._on_result, result)

    def _on_worker_died(self, worker: _Worker) -> None:
        if self._closing or worker not in self._workers:
            return
        log.warning(
            "speech worker %d died (exit code %s); %d stream(s) lost, restarting",
            worker.slot, worker.proc.exitcode, len(worker.streams),
        )  # fmt: skip
        # Reap it off the loop (join, else terminate/kill): no zombie, no blocking.
        self._loop.run_in_executor(None, _stop_process, worker.proc)  # type: ignore[union-attr]
        worker.cmd_q.cancel_join_thread()
        worker.cmd_q.close()
        for stream in list(worker.streams):
            stream._lost = True
            if stream._timer is not None:
                stream._timer.cancel()
                stream._timer = None
            stream._buf = bytearray()
            if stream._state == _ENDED:
                self._deliver_empty_final(stream)
        worker.streams.clear()
        index = self._workers.index(worker)
        if worker.ready.done():
            failures = 0
        else:
            # Died before loading its model: a start-up fault, likely to repeat.
            worker.ready.set_exception(RuntimeError("speech worker died during start-up"))
            failures = worker.failures + 1
            if self._starting or failures >= MAX_STARTUP_FAILURES:
                del self._workers[index]  # give up on this slot; start() raises
                return
        self.restarts += 1
        replacement = self._spawn(worker.slot)
        replacement.failures = failures
        self._workers[index] = replacement
        self._wake()  # after the swap, so the reader's next wait includes the new pipe

    def _read_results(self) -> None:
        """Reader thread: wait on every worker's pipe; hop each message to the loop."""
        loop = self._loop
        assert loop is not None and self._wake_r is not None
        wake_r = self._wake_r
        while True:
            workers = {w.res_conn: w for w in list(self._workers) if not w.res_conn.closed}
            try:
                ready = wait([wake_r, *workers])
            except (OSError, ValueError):
                if self._closing:
                    return
                continue
            for conn in ready:
                if conn is wake_r:
                    try:
                        wake_r.recv_bytes()
                    except (EOFError, OSError):
                        return
                    if self._closing:
                        return
                    continue
                worker = workers[conn]  # type: ignore[index]
                try:
                    msg = conn.recv()  # type: ignore[union-attr]
                except (EOFError, OSError):
                    # The worker is gone. This thread owns the read end, so it closes it
                    # (which also drops it from the next wait); the loop restarts it.
                    conn.close()  # type: ignore[union-attr]
                    if self._closing:
                        continue
                    loop.call_soon_threadsafe(self._on_worker_died, worker)
                    continue
                loop.call_soon_threadsafe(self._on_message, worker, msg)


def _retrieve(fut: asyncio.Future[None]) -> None:
    if not fut.cancelled():
        fut.exception()  # mark retrieved; start() reports it when it awaits


def _stop_process(proc: Any) -> None:
    """Join with a timeout, then terminate, then kill: never leave a zombie."""
    proc.join(JOIN_TIMEOUT_S)
    if proc.is_alive():
        proc.terminate()
        proc.join(JOIN_TIMEOUT_S)
    if proc.is_alive():
        proc.kill()
        proc.join(JOIN_TIMEOUT_S)


def _safe_call(cb: ResultCallback, result: SpeechResult) -> None:
    try:
        cb(result)
    except Exception:
        # Never log the result itself (it holds raw text); its repr is text-free anyway.
        log.exception("speech result callback failed for %s", result.utterance_id)
