"""What the recorder removes: one span per payment window, cut out as digital silence.

A span is a stretch of the call's timeline (ms from its first audio frame). While its
window is open it has no end: everything after its start is silenced on the way out, so
the recorder fails closed whatever the guard decides next. Silence of the same length
(rather than a gap) keeps every later offset a position in the file, as the contract
asks; zero samples are exactly zero energy, which a reader can check.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.recorder.tape import Segment


@dataclass
class Span:
    window: int  # the payment window's number
    trigger: str
    from_ms: int
    reason: str
    reach_back_ms: int  # how far behind the newest audio the cut began when it opened
    to_ms: int | None = None  # None while the window is open
    audited: bool = False

    def covers(self, start: int, end: int, bytes_per_ms: int) -> tuple[int, int] | None:
        """The part of [start, end) (bytes on the timeline) this span removes, if any."""
        lo = max(start, self.from_ms * bytes_per_ms)
        hi = end if self.to_ms is None else min(end, self.to_ms * bytes_per_ms)
        return (lo, hi) if lo < hi else None


def cut(segments: list[Segment], spans: list[Span], bytes_per_ms: int) -> list[Segment]:
    """``segments`` with every part a span covers replaced by zero samples (in place of
    the audio, same length). Silence stays silence; only audio is copied, and only when
    a span touches it."""
    if not spans:
        return segments
    out: list[Segment] = []
    for seg in segments:
        data = seg.data
        if isinstance(data, bytes):
            hits = [c for s in spans if (c := s.covers(seg.pos, seg.end, bytes_per_ms))]
            if hits:
                buf = bytearray(data)
                for lo, hi in hits:
                    buf[lo - seg.pos : hi - seg.pos] = bytes(hi - lo)
                seg = Segment(seg.pos, bytes(buf), seg.arrived)
        out.append(seg)
    return out
