"""Prometheus metrics, one registry per server (no process globals)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from customer_service.core.context_cache import CacheStats

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connections = Gauge("cs_connections_open", "Open WebSocket connections.",
                                 ["role"], registry=r)
        self.frames_in = Counter("cs_frames_in", "WebSocket frames received.", ["role"],
                                 registry=r)
        self.frames_out = Counter("cs_frames_out", "WebSocket frames sent.", ["role"],
                                  registry=r)
        self.errors_sent = Counter("cs_error_frames", "Error frames sent, by error code.",
                                   ["error"], registry=r)
        self.message_latency = Histogram(
            "cs_message_latency_seconds",
            "From a text frame's arrival to its commit and hand-off to every recipient.",
            buckets=LATENCY_BUCKETS, registry=r)
        self.messages_stored = Counter("cs_messages_stored", "Messages committed.",
                                       registry=r)
        self.commit_batch = Histogram("cs_commit_batch_size", "Messages per group commit.",
                                      buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
                                      registry=r)
        self.db_errors = Counter("cs_db_errors", "Database operations that failed.",
                                 registry=r)
        self.admission_limit = Gauge(
            "cs_admission_limit",
            "Visitor texts taken on at once before the others are answered busy.", registry=r)
        self.texts_in_flight = Gauge(
            "cs_texts_in_flight", "Visitor texts read and not yet answered.", registry=r)
        self.slow_consumers = Counter(
            "cs_slow_consumers_closed",
            "Connections closed because they did not read their outbound queue.", registry=r)
        self.ai_first_token = Histogram(
            "cs_ai_first_token_seconds", "From an AI request to its first token, retries included.",
            buckets=(*LATENCY_BUCKETS, 10.0, 30.0), registry=r)
        self.ai_tokens = Counter("cs_ai_tokens", "AI stream chunks received (about a token each).",
                                 registry=r)
        self.ai_tokens_per_second = Histogram(
            "cs_ai_reply_tokens_per_second", "Tokens per second of each completed AI reply.",
            buckets=(5, 10, 20, 40, 80, 160, 320, 640, 1280), registry=r)
        self.ai_streams = Gauge("cs_ai_streams_in_flight", "AI replies streaming now.", registry=r)
        self.ai_replies = Counter("cs_ai_replies", "AI replies by outcome.", ["outcome"],
                                  registry=r)
        self.ai_errors = Counter("cs_ai_errors", "Failed AI requests, by kind.", ["kind"],
                                 registry=r)
        self.ai_retries = Counter("cs_ai_retries", "AI requests retried before a first token.",
                                  registry=r)
        self.ai_breaker = Gauge("cs_ai_breaker_open",
                                "1 while the AI circuit breaker is open or half-open.", registry=r)
        self.bus_up = Gauge("cs_bus_up", "1 while the Redis bus works (publishing and "
                            "receiving this instance's own heartbeats), else 0.", registry=r)
        self.bus_batches_published = Counter("cs_bus_batches_published",
                                             "Batches published on the bus.", registry=r)
        self.bus_events_published = Counter("cs_bus_events_published",
                                            "Events published on the bus.", registry=r)
        self.bus_publish_failures = Counter("cs_bus_publish_failures",
                                            "Publishes to Redis that failed.", registry=r)
        self.bus_events_dropped = Counter(
            "cs_bus_events_dropped",
            "Events not published (outbox full, or Redis down); receivers refill from the "
            "database.", registry=r)
        self.bus_batches_received = Counter("cs_bus_batches_received",
                                            "Batches received from other instances.", registry=r)
        self.bus_bad_batches = Counter("cs_bus_bad_batches",
                                       "Messages on the bus channel that were not batches.",
                                       registry=r)
        self.bus_gap_fills = Counter(
            "cs_bus_gap_fill_messages",
            "Messages read from the database to fill a gap in what the bus delivered.",
            registry=r)
        self.bus_resyncs = Counter(
            "cs_bus_resyncs", "Resynchronisations from the database after missed batches.",
            registry=r)
        self.in_role = {role: self.frames_in.labels(role) for role in ("visitor", "agent")}
        self.out_role = {role: self.frames_out.labels(role) for role in ("visitor", "agent")}
        self.open_role = {role: self.connections.labels(role) for role in ("visitor", "agent")}

    def watch_context_cache(self, stats: Callable[[], CacheStats]) -> None:
        """Expose the AI context cache's counters (read at each scrape)."""
        self.registry.register(_ContextCacheCollector(stats))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _ContextCacheCollector(Collector):
    def __init__(self, stats: Callable[[], CacheStats]) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        now = self._stats()
        for name, text, value in (
                ("hits", "AI replies whose context window came from the cache.", now.hits),
                ("misses", "AI replies whose context window was read from the database.",
                 now.misses),
                ("evictions", "Context windows dropped to stay within the cache's bounds.",
                 now.evictions),
                ("invalidations", "Context windows dropped because they might be stale.",
                 now.invalidations)):
            yield CounterMetricFamily(f"cs_ai_context_cache_{name}", text, value=value)
        yield GaugeMetricFamily("cs_ai_context_cache_entries",
                                "Conversations whose context window is cached.",
                                value=now.entries)
        yield GaugeMetricFamily("cs_ai_context_cache_bytes",
                                "Approximate bytes held by cached context windows.",
                                value=now.bytes)
