"""One participant's audio on its way to disk: the tape, the delay line, the release.

The channel's whole per-frame cost is one `tape.append(frame)` (or, for a silent frame or
a gap, the number of zero bytes it stands for): no copy, no lock, no clock read, so the
media path stays as cheap as before (invariant 2). A few times a second the call's
recorder drains each tape into its track's delay line, stamping each stretch with its
place on the call's timeline (bytes from the call's first audio frame, at the call's
sample rate, so file offsets are `startMs` offsets) and the wall time it arrived.

A stretch leaves the line only once it is older than the delay both in audio and in wall
time. Audio alone would let a replay faster than real time (the demo at `--speed 0`)
write everything before the recognizer has heard it; wall time alone would let a slow
stream write audio whose words are still being decoded. Payment windows are cut out of
what leaves (`spans.py`) before it reaches the writer.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(slots=True)
class Segment:
    """A stretch of a track: audio bytes, or that many bytes of digital silence."""

    pos: int  # byte offset on the call's timeline
    data: bytes | int
    arrived: float  # monotonic seconds, when the recorder drained it from the tape

    @property
    def size(self) -> int:
        return self.data if isinstance(self.data, int) else len(self.data)

    @property
    def end(self) -> int:
        return self.pos + self.size


class Track:
    """One participant's recording (or the mixed stream's): one file."""

    __slots__ = (
        "participant", "role", "name", "rate", "bytes_per_ms", "tape", "line", "head", "written",
        "sound_written",
    )  # fmt: skip

    def __init__(
        self, participant: str, role: str, name: str, rate: int, start_ms: int, now: float
    ) -> None:
        self.participant = participant
        self.role = role
        self.name = name  # the file's name in the call's folder
        self.rate = rate
        self.bytes_per_ms = rate // 500  # 16-bit mono: 32 bytes a millisecond at 16 kHz
        # The channel appends here: bytes (a frame at the call's rate) or int (zero bytes).
        self.tape: list[bytes | int] = []
        start = start_ms * self.bytes_per_ms
        # Time 0 of every file is the call's first audio frame: a participant who joined
        # later starts with silence up to the moment they did.
        self.line: deque[Segment] = deque([Segment(0, start, now)] if start else [])
        self.head = start  # end of what the line holds
        self.written = 0  # end of what has left the line for the writer
        self.sound_written = 0  # end of the last stretch that left with any sound in it

    def position_ms(self) -> int:
        """Where this participant's audio has reached on the timeline, tape included."""
        pending = sum(x if isinstance(x, int) else len(x) for x in self.tape)
        return (self.head + pending) // self.bytes_per_ms

    def drain(self, now: float) -> None:
        """Move what the channel appended onto the delay line (on the loop, between frames)."""
        tape = self.tape
        if not tape:
            return
        items = tape.copy()
        tape.clear()
        run: list[bytes] = []
        for item in items:
            if isinstance(item, int):
                if run:
                    self._push(b"".join(run), now)
                    run = []
                self._push(item, now)
            else:
                run.append(item)
        if run:
            self._push(b"".join(run), now)

    def _push(self, data: bytes | int, now: float) -> None:
        line = self.line
        if isinstance(data, int):
            if data <= 0:
                return
            last = line[-1] if line else None
            if last is not None and isinstance(last.data, int) and last.arrived == now:
                last.data += data  # consecutive silence drained together: one stretch
                self.head += data
                return
        line.append(Segment(self.head, data, now))
        self.head += len(data) if isinstance(data, bytes) else data

    def release(self, upto: int, arrived_by: float) -> list[Segment]:
        """The stretches that have waited long enough: ending at or before ``upto`` (bytes)
        and drained at or before ``arrived_by`` (monotonic seconds)."""
        out: list[Segment] = []
        line = self.line
        while line and line[0].arrived <= arrived_by and line[0].pos < upto:
            seg = line[0]
            if seg.end <= upto:
                out.append(line.popleft())
                continue
            # A stretch drained in one piece (a burst) is split where the line ends.
            n = upto - seg.pos
            if isinstance(seg.data, int):
                out.append(Segment(seg.pos, n, seg.arrived))
                seg.data -= n
            else:
                out.append(Segment(seg.pos, seg.data[:n], seg.arrived))
                seg.data = seg.data[n:]
            seg.pos = upto
            break
        return out

    def release_all(self) -> list[Segment]:
        out = list(self.line)
        self.line.clear()
        return out

    def mark_written(self, segments: list[Segment]) -> None:
        """What left for the writer (after the cut): how far the file reaches, and the last
        place it holds sound (what an exposure found later would have put on disk)."""
        for seg in segments:
            self.written = seg.end
            data = seg.data
            if isinstance(data, bytes) and data.count(0) != len(data):
                self.sound_written = seg.end
