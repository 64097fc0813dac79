"""What a call's new owner needs when ACS reconnects its media to another replica.

The old owner finishes what it has in hand and sends this, as JSON over the cluster's
command channel; the new owner goes on as the same call: same seq, same timeline, same
payment window, no second `call.started`. A typed struct, so both sides agree on every
field and a replica of another version fails loudly rather than half-adopting a call.
"""

from __future__ import annotations

import msgspec


class HandOverState(msgspec.Struct, rename="camel", kw_only=True):
    last_seq: int = 0
    started: bool = False
    mode: str | None = None
    sample_rate: int | None = None
    elapsed_ms: int | None = None  # the call clock when it was handed over
    t0_wall_ms: float | None = None
    t0_from_acs: bool = False
    # Published id -> role: a customer's number as its pseudonym, which the new owner
    # recomputes the same only with the same CALLSTREAM_PSEUDONYM_KEY (replicas share it).
    participants: dict[str, str] = {}
    guard: dict = {}  # PaymentGuard.export()
    policy_audited: bool = False
    redaction_counts: dict[str, int] = {}
    reconnects: int = 0
    dtmf_tones: int = 0
    finals: list[tuple[str, str]] = []  # (role, redacted text), for the summary
    acs_transcription: dict = {}  # AcsTranscriptionAdapter.export()
    recording: dict[str, str | None] = {}  # RecordingController.export()
    known_values: int = 0  # how many known values were sent ahead (a command of their own)
    analytics: dict = {}  # CallAnalytics.export(): talk intervals, words, scores, categories
    consults: list[dict] = []  # ConsultController.forget(): consults waiting for ACS's answer


def to_wire(state: HandOverState) -> dict:
    return msgspec.to_builtins(state)


def from_wire(doc: dict) -> HandOverState:
    return msgspec.convert(doc, HandOverState)
