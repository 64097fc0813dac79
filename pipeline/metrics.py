"""Prometheus exposition of the service's counters.

The media path only increments plain integers (see `Stats`); this collector reads them
at scrape time, so metrics cost nothing per frame. Labels never carry text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily

if TYPE_CHECKING:
    from .service import Service

_COUNTERS = {
    "frames_received": "ACS websocket messages received",
    "frames_audio": "AudioData frames accepted",
    "frames_silent": "AudioData frames flagged silent",
    "frames_malformed": "messages rejected as malformed (counted and skipped)",
    "frames_unknown": "messages of an unknown kind (tolerated)",
    "dtmf_tones": "DTMF tones received (digits are never kept)",
    "utterances": "utterances segmented by VAD",
    "calls_started": "calls started",
    "calls_ended": "calls ended",
    "payment_windows": "payment windows opened",
    "speech_errors": "speech engine cancellations and errors (the call goes on)",
}


class _ServiceCollector:
    def __init__(self, service: Service) -> None:
        self.service = service

    def collect(self):  # noqa: ANN201 - prometheus collector protocol
        s = self.service
        stats = s.stats
        for name, doc in _COUNTERS.items():
            yield CounterMetricFamily(f"callstream_{name}", doc, value=getattr(stats, name))
        yield GaugeMetricFamily("callstream_active_calls", "calls in progress", value=len(s.calls))
        yield GaugeMetricFamily("callstream_subscribers", "agent-assist subscribers", value=s.bus.subscriber_count)
        if hasattr(s, "journal"):
            yield CounterMetricFamily("callstream_events_stored", "events written to the store", value=s.journal.written)
            yield CounterMetricFamily("callstream_store_write_errors", "failed store writes", value=s.journal.write_errors)
        yield CounterMetricFamily(
            "callstream_recording_pause_failures", "pause requests to ACS that failed (each retried)",
            value=s.recording.pause_failures,
        )
        errors = CounterMetricFamily(
            "callstream_enrichment_errors", "model requests that failed (sentiment fell back to local)",
            labels=["kind"],
        )
        for kind in ("sentiment", "translation", "summary"):
            errors.add_metric([kind], s.enricher.errors[kind])
        yield errors
        yield CounterMetricFamily("callstream_sentiment_local", "utterances rated by VADER", value=s.enricher.sentiment_count)
        yield CounterMetricFamily(
            "callstream_sentiment_local_seconds", "time spent rating with VADER", value=s.enricher.sentiment_seconds
        )
        if hasattr(s, "redaction"):
            yield CounterMetricFamily("callstream_redactions", "texts passed through the Redactor", value=s.redaction.count)
            yield CounterMetricFamily(
                "callstream_redaction_seconds", "time spent redacting", value=s.redaction.seconds
            )


def render_metrics(service: Service) -> tuple[bytes, str]:
    registry = CollectorRegistry()
    registry.register(_ServiceCollector(service))
    return generate_latest(registry), CONTENT_TYPE_LATEST
