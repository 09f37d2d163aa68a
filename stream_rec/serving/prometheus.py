"""The worker's figures in the Prometheus text format (the web view's ``/metrics``), from prometheus-client.

Counters and gauges are read from the figures of ``/stats`` when scraped, so the two never disagree; latency
and model freshness are histograms over the whole run, fed as they are measured (``live.Window(also=...)``).
Every name starts ``stream_rec_``; counters end ``_total`` in the exposition, as Prometheus names them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "Exposition"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
FRESHNESS_BUCKETS = (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)

# (key in /stats, metric name, help)
COUNTERS = (
    ("events", "events", "messages read from the events topics"),
    ("valid", "valid_events", "events read that were valid"),
    ("invalid", "dead_lettered", "messages sent to the dead-letter topic"),
    ("duplicates", "duplicates", "events whose id the user's sequence held already, not answered again"),
    ("redelivered", "redelivered", "events read again after a restart and answered again"),
    ("rerouted", "rerouted", "events sent on to their user's partition"),
    ("recommendations", "recommendations", "recommendation lists published"),
    ("cold_start", "cold_start", "recommendations from popularity, for users the model could not serve"),
    ("forgotten", "forgotten_users", "users removed on request"),
    ("expired", "expired_users", "users removed after inactivity"),
    ("scored", "scored", "events scored against the list last served to their user"),
    ("hits", "hits", "scored events whose item was in that list"),
    ("steps", "steps", "gradient steps taken"),
    ("skipped_steps", "skipped_steps", "gradient steps skipped (a loss that was not finite)"),
    ("examples", "examples_learned", "examples learned from"),
    ("learn_dropped", "learn_dropped", "examples shed unlearned because the trainer's queue was full"),
    ("drift_alarms", "drift_alarms", "rises of the running loss taken as a change of the stream"),
    ("index_builds", "index_builds", "item indexes built for ranking from candidates (a large catalogue)"),
)
GAUGES = (
    ("events_per_s", "events_per_second", "events served per second, over the last 10 s"),
    ("hit_rate", "hit_rate", "HR@k as served, since the start"),
    ("ndcg", "ndcg", "NDCG@k as served, since the start"),
    ("hit_rate_1m", "hit_rate_last_minute", "HR@k as served, over the last minute"),
    ("loss", "loss", "the last gradient step's loss"),
    ("learn_waiting", "learn_waiting", "examples waiting for the trainer"),
    ("snapshot_age_s", "snapshot_age_seconds", "age of the serving snapshot of the model"),
    ("model_ts", "snapshot_timestamp_seconds", "wall-clock time the serving snapshot was taken"),
    ("checkpoint_age_s", "checkpoint_age_seconds", "age of the newest model checkpoint"),
    ("lag_total", "consumer_lag", "events waiting on the worker's partitions, all of them"),
    ("partitions_assigned", "partitions_assigned", "partitions of the events topic assigned to this worker"),
    ("catalogue_items", "catalogue_items", "items the serving snapshot ranks over"),
    ("index_items", "index_items", "items in the newest item index (0: none)"),
    ("index_age_s", "index_age_seconds", "age of the newest item index"),
    ("index_build_s", "index_build_seconds", "how long the newest item index took to build"),
)


class Exposition:
    """The worker's metrics registry: its histograms, and the figures of ``stats()`` when scraped."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.latency = Histogram(
            "stream_rec_latency_seconds", "event read to its recommendation ranked, in the engine",
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.freshness = Histogram(
            "stream_rec_model_freshness_seconds", "event read to a published snapshot that learned from it",
            buckets=FRESHNESS_BUCKETS, registry=self.registry,
        )  # fmt: skip

    def read_stats(self, stats: Callable[[], dict[str, Any]]) -> None:
        """Take counters and gauges from ``stats()`` (the figures of ``/stats``) at every scrape."""
        self.registry.register(_StatsCollector(stats))

    def text(self) -> bytes:
        return generate_latest(self.registry)


class _StatsCollector(Collector):
    def __init__(self, stats: Callable[[], dict[str, Any]]) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self.stats()
        for key, name, doc in COUNTERS:
            if s.get(key) is not None:
                yield CounterMetricFamily(f"stream_rec_{name}", doc, value=s[key])
        for key, name, doc in GAUGES:
            if s.get(key) is not None:
                yield GaugeMetricFamily(f"stream_rec_{name}", doc, value=s[key])
        info = GaugeMetricFamily("stream_rec_model_info", "the serving snapshot's version", labels=["version"])
        info.add_metric([s["model_version"]], 1.0)
        yield info
        by_event = s.get("by_event", {})
        scored = CounterMetricFamily("stream_rec_scored_by_event", "scored events by type", labels=["event"])
        hit_rate = GaugeMetricFamily("stream_rec_hit_rate_by_event", "HR@k as served by event type", labels=["event"])
        ndcg = GaugeMetricFamily("stream_rec_ndcg_by_event", "NDCG@k as served by event type", labels=["event"])
        for event, figures in by_event.items():
            scored.add_metric([event], figures["scored"])
            hit_rate.add_metric([event], figures["hit_rate"])
            ndcg.add_metric([event], figures["ndcg"])
        yield from (scored, hit_rate, ndcg)
        lag = GaugeMetricFamily(
            "stream_rec_partition_lag", "events waiting on one partition", labels=["topic", "partition"]
        )
        for where, n in (s.get("lag") or {}).items():
            topic, _, partition = where.rpartition(":")
            lag.add_metric([topic, partition], n)
        yield lag
