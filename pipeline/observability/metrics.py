"""Prometheus exposition (`GET /metrics`): counters read at scrape time, latency histograms.

Two kinds of metric, chosen by how often the thing measured happens:

- Per frame (50 per second per participant, hundreds of calls): the media path only adds 1
  to plain integers (`Stats`, and the VAD's own `Segmenter.frames` / `speech_frames`).
  `_ServiceCollector` reads them when Prometheus scrapes, so a metric costs nothing per
  frame: no lock, no label lookup, no prometheus_client call on the hot path.
- Per utterance, per text, per store batch, per payment window: latencies go into
  prometheus_client `Histogram`s (a lock and a bucket search each: negligible at that rate).

Every `Service` owns one `ServiceMetrics` with its own `CollectorRegistry` (never the
global one), because tests build several services in one process and a registry refuses
two metrics of the same name.

Labels are fixed enumerations only (`reason`, `kind`, `source`): never a call id, a
participant id, a phone number or any text, so no label can leak transcript content
(README, Architecture: invariant 1) or explode the series count.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, Histogram, generate_latest
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily

from pipeline.observability.gc_pauses import GENERATIONS
from pipeline.observability.stats import Stats

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client.metrics_core import Metric

    from pipeline.delivery.bus import Subscription


class Service(Protocol):
    """What the collector reads at scrape time: the service's own counters and the
    state of its parts. Structural, so that this module needs nothing of the service
    but these names (the service is what wires the metrics in)."""

    stats: Stats
    calls: Mapping[str, Any]  # call id -> session: its channels' VAD counts
    bus: Any  # subscriber counts and subscriptions
    cluster: Any  # commands sent and run
    media_owners: Any  # media sockets connected, displaced
    journal: Any  # store writes, errors, buffered events
    redaction: Any  # count and seconds of redactions
    recording: Any  # pause failures
    enricher: Any  # sentiment counts, errors
    metrics: ServiceMetrics


_COUNTERS = {
    "frames_received": "ACS websocket messages received",
    "frames_audio": "AudioData frames accepted",
    "frames_silent": "AudioData frames flagged silent",
    "frames_malformed": "messages rejected as malformed (counted and skipped; by cause in callstream_frames_dropped)",
    "frames_unknown": "messages of an unknown kind (tolerated)",
    "dtmf_tones": "DTMF tones received (digits are never kept)",
    "utterances": "utterances segmented by VAD",
    "empty_finals": "final results with no text (noise, or a recognizer that heard nothing)",
    "media_connections": "media websockets accepted",
    "calls_started": "calls started",
    "calls_ended": "calls ended",
    "payment_windows": "payment windows opened",
    "speech_errors": "speech engine cancellations and errors (the call goes on)",
    "media_auth_refused": "media websocket handshakes refused (bad or missing ACS token)",
    "acs_webhooks_refused": "POSTs to /acs/callbacks and /acs/events refused with 401 (wrong secret; missing or bad ACS or Event Grid token)",
    "acs_callbacks_unknown_call": "ACS callbacks about a call not answered, registered or streamed here (answered 200, ignored)",
    "media_ended_call_refused": "media websockets refused because their call has ended (close code 4410)",
    "http_header_timeouts": "connections closed for not completing their request headers within CALLSTREAM_HTTP_HEADER_TIMEOUT_S",
    "media_throttled": "times a websocket sending over CALLSTREAM_MEDIA_MESSAGE_RATE was read more slowly",
}

# callstream_frames_dropped{reason}: every message that arrived and was not used, by why.
# Values are Stats fields; the label values are this fixed list and nothing else.
DROP_REASONS = {
    "invalid": "dropped_invalid",  # not JSON, unknown field types, bad base64: decode failed
    "unsupported_format": "dropped_unsupported_format",  # AudioMetadata refused (format, rate change)
    "before_metadata": "dropped_before_metadata",  # AudioData before an accepted AudioMetadata
    "bad_size": "dropped_bad_size",  # AudioData payload empty or of an odd byte count
    "payload_too_large": "dropped_payload_too_large",  # AudioData payload over ten 20 ms frames
    "internal_error": "dropped_internal_error",  # handling the frame raised (a bug; the call goes on)
    "call_ended": "dropped_call_ended",  # arrived after its call ended (or while it was being ended)
    "message_too_large": "dropped_message_too_large",  # websocket message over ws_max_size: connection closed
}

# callstream_media_refused{reason}: media websockets accepted and closed at once, by why
# (the older refusals keep their own counters: media_auth_refused, media_ended_call_refused).
MEDIA_REFUSALS = {
    "second-socket": "media_second_socket_refused",  # another socket streams the call: 1008
}

SPEECH_SOURCES = ("local", "azure", "acs")

# Buckets in seconds, for what each latency really spans.
SPEECH_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
GC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
REDACTION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
PAUSE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServiceMetrics:
    """One service's registry: its scrape-time collector plus its latency histograms.

    Components observe into the histograms directly (`observe` is thread-safe, so the
    redaction thread may call it); the collector reads everything else from the service.
    """

    def __init__(self, service: Service) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.speech_latency = Histogram(
            "callstream_speech_final_latency_seconds",
            "end of an utterance's audio to its final result from the speech engine (local: exact; "
            "azure: from the call clock, real-time audio assumed; acs: not measured)",
            ["source"], registry=self.registry, buckets=SPEECH_BUCKETS,
        )  # fmt: skip
        self._speech_by_source = {s: self.speech_latency.labels(s) for s in SPEECH_SOURCES}
        self.redaction_latency = Histogram(
            "callstream_redaction_latency_seconds",
            "a text handed to the Redactor to its redacted result (queue wait on the redaction thread included)",
            registry=self.registry, buckets=REDACTION_BUCKETS,
        )  # fmt: skip
        self.pause_latency = Histogram(
            "callstream_payment_pause_latency_seconds",
            "a payment window opening (the triggering result or DTMF tone) to the first pause request sent to ACS",
            registry=self.registry, buckets=PAUSE_BUCKETS,
        )  # fmt: skip
        self.store_write_latency = Histogram(
            "callstream_store_write_seconds",
            "one batch of events and audit records committed to the store",
            registry=self.registry, buckets=STORE_BUCKETS,
        )  # fmt: skip
        self.gc_pause = Histogram(
            "callstream_gc_pause_seconds",
            "one garbage collection, by generation (every call on the replica waits for it)",
            ["generation"], registry=self.registry, buckets=GC_BUCKETS,
        )  # fmt: skip
        self._gc_by_generation = {g: self.gc_pause.labels(g) for g in GENERATIONS}
        self.registry.register(_ServiceCollector(service))

    def observe_gc(self, generation: str, seconds: float) -> None:
        self._gc_by_generation[generation].observe(seconds)

    def observe_speech_final(self, source: str, seconds: float) -> None:
        """One final result's latency; `source` is the engine's fixed name, never free text."""
        child = self._speech_by_source.get(source)
        if child is not None:
            child.observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _LagNotices:
    """A monotonic total of `lagged` notices over subscriptions that come and go.

    The bus only shows live subscriptions (`subscriptions()`, each with `lag_notices`), so
    the total remembers, per subscription, what it had at the previous scrape and keeps
    that count once the subscription is gone. Notices sent between a subscription's last
    scrape and its close are missed: the counter may undercount slightly, never go down.
    """

    def __init__(self) -> None:
        self._last: dict[Subscription, int] = {}
        self._retired = 0

    def total(self, subscriptions: list[Subscription]) -> int:
        current = {sub: sub.lag_notices for sub in subscriptions}
        self._retired += sum(n for sub, n in self._last.items() if sub not in current)
        self._last = current
        return self._retired + sum(current.values())


class _ServiceCollector:
    def __init__(self, service: Service) -> None:
        self.service = service
        self._lag = _LagNotices()

    def describe(self) -> list[Metric]:
        return []  # names depend on what the service has started; nothing to check up front

    def collect(self) -> Iterator[Metric]:
        s = self.service
        stats = s.stats
        for name, doc in _COUNTERS.items():
            yield CounterMetricFamily(f"callstream_{name}", doc, value=getattr(stats, name))
        dropped = CounterMetricFamily(
            "callstream_frames_dropped",
            "messages received and not used, by reason (all but call_ended and message_too_large are also malformed)",
            labels=["reason"],
        )
        for reason, field in DROP_REASONS.items():
            dropped.add_metric([reason], getattr(stats, field))
        yield dropped
        refused = CounterMetricFamily(
            "callstream_media_refused", "media websockets refused after the handshake, by reason", labels=["reason"]
        )  # fmt: skip
        for reason, field in MEDIA_REFUSALS.items():
            refused.add_metric([reason], getattr(stats, field))
        yield refused
        yield GaugeMetricFamily(
            "callstream_media_sockets", "media websockets connected now", value=s.media_owners.open
        )
        yield CounterMetricFamily(
            "callstream_media_displaced", "media sockets silent for 2 s (a dead peer) displaced by a new one",
            value=s.media_owners.displaced,
        )  # fmt: skip
        yield from self._vad(s)
        yield GaugeMetricFamily("callstream_active_calls", "calls in progress", value=len(s.calls))
        yield from self._bus(s)
        if hasattr(s, "journal"):
            yield GaugeMetricFamily(
                "callstream_store_up",
                "1 when the last store write succeeded",
                value=int(s.journal.store_ok),
            )
            yield GaugeMetricFamily(
                "callstream_store_buffered",
                "events waiting for the store",
                value=s.journal.buffered,
            )
            yield CounterMetricFamily(
                "callstream_store_buffer_dropped", "events refused by a full store buffer (on the call's audit)",
                value=s.journal.dropped,
            )  # fmt: skip
            yield CounterMetricFamily(
                "callstream_events_stored", "events written to the store", value=s.journal.written
            )
            yield CounterMetricFamily(
                "callstream_store_write_errors", "failed store writes", value=s.journal.write_errors
            )
        yield CounterMetricFamily(
            "callstream_recording_pause_failures",
            "pause requests to ACS that failed (each retried)",
            value=s.recording.pause_failures,
        )
        errors = CounterMetricFamily(
            "callstream_enrichment_errors",
            "model requests that failed (sentiment fell back to local)",
            labels=["kind"],
        )
        for kind in ("sentiment", "translation", "summary"):
            errors.add_metric([kind], s.enricher.errors[kind])
        yield errors
        yield CounterMetricFamily(
            "callstream_sentiment_local",
            "utterances rated by VADER",
            value=s.enricher.sentiment_count,
        )
        yield CounterMetricFamily(
            "callstream_sentiment_local_seconds",
            "time spent rating with VADER",
            value=s.enricher.sentiment_seconds,
        )
        if hasattr(s, "redaction"):
            yield CounterMetricFamily(
                "callstream_redactions",
                "texts passed through the Redactor",
                value=s.redaction.count,
            )
            yield CounterMetricFamily(
                "callstream_redaction_seconds", "time spent redacting (processing only; see the latency histogram)",
                value=s.redaction.seconds,
            )  # fmt: skip

    @staticmethod
    def _vad(s: Service) -> Iterator[Metric]:
        """Frames the VAD judged and those it found voiced: ended calls' totals (folded
        into `Stats` when a call ends) plus the live channels' own counters."""
        frames, speech = s.stats.vad_frames, s.stats.vad_speech_frames
        for session in s.calls.values():
            for ch in session.channels.values():
                frames += ch.segmenter.frames
                speech += ch.segmenter.speech_frames
        yield CounterMetricFamily(
            "callstream_vad_frames",
            "20 ms frames judged by the VAD (ACS silent frames included)",
            value=frames,
        )
        yield CounterMetricFamily(
            "callstream_vad_speech_frames", "20 ms frames the VAD judged voiced", value=speech
        )
        yield GaugeMetricFamily(
            "callstream_vad_speech_ratio",
            "voiced share of all VAD frames since start (for a recent ratio, divide the rates of the two counters)",
            value=speech / frames if frames else 0.0,
        )  # fmt: skip

    def _bus(self, s: Service) -> Iterator[Metric]:
        """Subscriber lag from the bus's public surface only (any bus with the same shape)."""
        subs = s.bus.subscriptions()
        yield GaugeMetricFamily(
            "callstream_subscribers", "agent-assist subscribers", value=s.bus.subscriber_count
        )
        yield GaugeMetricFamily(
            "callstream_subscriber_queue_depth_max", "events queued and not yet sent to the most lagging subscriber",
            value=max((sub.depth for sub in subs), default=0),
        )  # fmt: skip
        yield CounterMetricFamily(
            "callstream_subscriber_lag_notices", "`lagged` notices sent to subscribers that fell behind",
            value=self._lag.total(subs),
        )  # fmt: skip
        bus = s.bus
        if hasattr(bus, "outbox_dropped"):  # the Redis Streams bus
            yield CounterMetricFamily(
                "callstream_bus_published", "events written to Redis Streams", value=bus.published
            )
            yield CounterMetricFamily(
                "callstream_bus_delivered", "events read from the firehose for this replica's subscribers", value=bus.delivered
            )  # fmt: skip
            yield CounterMetricFamily(
                "callstream_bus_errors", "failed Redis reads and writes (retried)", value=bus.errors
            )
            yield GaugeMetricFamily(
                "callstream_bus_outbox", "events waiting for Redis", value=bus.outbox_depth
            )
            yield CounterMetricFamily(
                "callstream_bus_outbox_dropped", "events dropped from a full outbox (still in the store)",
                value=bus.outbox_dropped,
            )  # fmt: skip
            yield CounterMetricFamily(
                "callstream_bus_resent", "events written again because Redis lost its data (a new epoch)",
                value=bus.resent,
            )  # fmt: skip
            yield CounterMetricFamily(
                "callstream_bus_gaps", "holes in a call's seq seen on the firehose, told to subscribers as `lagged`",
                value=bus.gaps,
            )  # fmt: skip
        cluster = s.cluster
        yield CounterMetricFamily(
            "callstream_cluster_commands_sent", "commands sent to the replica that owns a call", value=cluster.commands_sent
        )  # fmt: skip
        yield CounterMetricFamily(
            "callstream_cluster_commands_run", "commands from other replicas run here", value=cluster.commands_run
        )  # fmt: skip


def render_metrics(service: Service) -> tuple[bytes, str]:
    """The exposition of ``service`` (kept for callers that have only the service)."""
    return service.metrics.render()
