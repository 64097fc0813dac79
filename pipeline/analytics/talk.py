"""Talk time, silence, overlap, interruptions and monologues from talk intervals.

A talk interval is one VAD utterance of one participant, from its first voiced 20 ms frame
to its last (`workers.vad.Segmenter.onset_ms` / `last_voiced_end_ms`): the segmenter's own
bounds carry its pre-roll and hangover (about 0.7 s an utterance), which would inflate talk
and hide overlap. Pauses inside an utterance (under the hangover, 400 ms) count as talk,
as in a contact center's "talk time".

Everything is computed from the whole list at once, when a figure is asked for (every
`analytics_interval_s`, at the end, for an alert rule): a call has a few thousand intervals
at most, so a sort is cheap, and nothing runs per audio frame. One definition serves the
live figures, the final ones and the rules.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

AGENT = "agent"
CUSTOMER = "customer"
ROLES = (AGENT, CUSTOMER)
# Pauses shorter than this between one role's utterances, with nobody else speaking in
# between, do not end a monologue.
MONOLOGUE_GAP_MS = 2000


@dataclass(frozen=True, slots=True)
class Talk:
    role: str  # agent | customer | unknown (mixed audio, or a participant of no known role)
    start_ms: int
    end_ms: int


@dataclass(frozen=True, slots=True)
class TalkFigures:
    talk_ms: dict[str, int]
    speech_ms: int  # anyone talking
    silence_ms: int
    overlap_ms: int
    interruptions: dict[str, int]
    longest_monologue_ms: dict[str, int]


def _union(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if e <= s:
            continue
        if merged and s <= merged[-1][1]:
            if e > merged[-1][1]:
                merged[-1] = (merged[-1][0], e)
        else:
            merged.append((s, e))
    return merged


def _length(spans: list[tuple[int, int]]) -> int:
    return sum(e - s for s, e in spans)


def _intersection(a: list[tuple[int, int]], b: list[tuple[int, int]]) -> int:
    """Length of the intersection of two sorted, disjoint span lists."""
    i = j = total = 0
    while i < len(a) and j < len(b):
        s = max(a[i][0], b[j][0])
        e = min(a[i][1], b[j][1])
        if e > s:
            total += e - s
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return total


def interruptions(talks: list[Talk]) -> dict[str, int]:
    """R interrupts when R starts while the other role is talking: the other role has an
    interval that began strictly before R's onset and ends after it."""
    counts = dict.fromkeys(ROLES, 0)
    reach = dict.fromkeys(ROLES, -1)  # the latest end of each role's intervals begun earlier
    ordered = sorted((t for t in talks if t.role in counts), key=lambda t: t.start_ms)
    i = 0
    while i < len(ordered):
        j = i
        while j < len(ordered) and ordered[j].start_ms == ordered[i].start_ms:
            j += 1
        same_start = ordered[i:j]  # begun together: neither cuts into the other
        for t in same_start:
            if reach[CUSTOMER if t.role == AGENT else AGENT] > t.start_ms:
                counts[t.role] += 1
        for t in same_start:
            reach[t.role] = max(reach[t.role], t.end_ms)
        i = j
    return counts


def _monologues(talks: list[Talk]) -> dict[str, int]:
    """The longest run of one role's utterances with nobody else's in between."""
    longest = dict.fromkeys(ROLES, 0)
    role: str | None = None
    start = end = 0
    for t in sorted(talks, key=lambda t: t.start_ms):
        if t.role == role and t.start_ms - end < MONOLOGUE_GAP_MS:
            end = max(end, t.end_ms)
            continue
        if role in longest:
            longest[role] = max(longest[role], end - start)
        role, start, end = t.role, t.start_ms, t.end_ms
    if role in longest:
        longest[role] = max(longest[role], end - start)
    return longest


def measure(talks: list[Talk], duration_ms: int) -> TalkFigures:
    """The figures of a call whose audio so far is ``duration_ms`` long."""
    by_role = {r: _union((t.start_ms, t.end_ms) for t in talks if t.role == r) for r in ROLES}
    anyone = _union((t.start_ms, min(t.end_ms, duration_ms)) for t in talks)
    speech = _length(anyone)
    return TalkFigures(
        talk_ms={r: _length(by_role[r]) for r in ROLES},
        speech_ms=speech,
        silence_ms=max(0, duration_ms - speech),
        overlap_ms=_intersection(by_role[AGENT], by_role[CUSTOMER]),
        interruptions=interruptions(talks),
        longest_monologue_ms=_monologues(talks),
    )
