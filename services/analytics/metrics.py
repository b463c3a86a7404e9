"""Analytics' Prometheus metrics, in a registry of their own per app instance."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class AnalyticsMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.consumer_lag = Gauge(
            "kuaijing_consumer_lag",
            "Records behind the partition's high watermark",
            ["group", "topic"],
            registry=self.registry,
        )
        self.events_applied = Counter(
            "kuaijing_analytics_events_applied_total",
            "Call events stored for the first time (a replayed event is not counted again)",
            registry=self.registry,
        )
        self.facts_recomputed = Counter(
            "kuaijing_analytics_facts_recomputed_total",
            "Per-call facts recomputed from all of the call's events",
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "kuaijing_analytics_dead_letters_total",
            "Records of kuaijing.calls that could not be decoded, sent to the dead-letter topic",
            registry=self.registry,
        )
        self.report_seconds = Histogram(
            "kuaijing_analytics_report_seconds",
            "Time to answer a report or the dashboard",
            ["route"],
            registry=self.registry,
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        self.dashboard_seconds = Histogram(
            "kuaijing_analytics_dashboard_snapshot_seconds",
            "Time to take a new snapshot of the dashboard (its queries and the page)",
            registry=self.registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
        )
        self.dashboard_age = Gauge(
            "kuaijing_analytics_dashboard_age_seconds",
            "Age of the dashboard snapshot screens are served now (NaN before the first)",
            registry=self.registry,
        )

    def set_lag(self, group: str, lag_by_topic: dict[str, int]) -> None:
        for topic, lag in lag_by_topic.items():
            self.consumer_lag.labels(group, topic).set(lag)
