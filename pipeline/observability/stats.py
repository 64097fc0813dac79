"""The service's plain counters, shared by the media path and the metrics collector.

Plain integers rather than Prometheus counters: the per-frame path adds 1 to an
attribute and nothing more; the collector turns them into metrics when scraped.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass
class Stats:
    """Plain integer counters: the per-frame path only ever adds 1 to an attribute."""

    frames_received: int = 0
    frames_audio: int = 0
    frames_silent: int = 0
    frames_malformed: int = 0
    frames_unknown: int = 0
    dtmf_tones: int = 0
    utterances: int = 0
    empty_finals: int = 0
    calls_started: int = 0
    calls_ended: int = 0
    media_connections: int = 0
    payment_windows: int = 0
    speech_errors: int = 0
    # Messages received and not used, by reason (metrics.DROP_REASONS names them). All but
    # call_ended and message_too_large are malformed frames too (frames_malformed).
    dropped_invalid: int = 0
    dropped_unsupported_format: int = 0
    dropped_before_metadata: int = 0
    dropped_bad_size: int = 0
    dropped_payload_too_large: int = 0
    dropped_internal_error: int = 0
    dropped_call_ended: int = 0
    dropped_message_too_large: int = 0
    # VAD frames of ended calls, folded in when a call ends; live channels keep their own
    # counts (Segmenter.frames / speech_frames) and metrics add them at scrape time.
    vad_frames: int = 0
    vad_speech_frames: int = 0
    media_auth_refused: int = 0
    # ACS webhooks: refused (secret or token), and callbacks about calls not known here
    acs_webhooks_refused: int = 0
    acs_callbacks_unknown_call: int = 0
    media_ended_call_refused: int = 0  # media for a call whose call.ended is on record
    # a second socket for a call another socket streams (ingest/media_owner.py)
    media_second_socket_refused: int = 0
    http_header_timeouts: int = (
        0  # connections closed for not sending their request headers in time
    )
    media_throttled: int = 0  # times a websocket over CALLSTREAM_MEDIA_MESSAGE_RATE was held back

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
