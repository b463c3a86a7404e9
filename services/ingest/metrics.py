"""Ingest's Prometheus metrics, in a registry of their own so that each app instance counts separately."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Children:
    """A labelled metric's children, each looked up once: `labels()` validates, builds a tuple and takes a lock,
    which is dear next to a ping. Only for labels with a bounded set of values (kinds, sources, reasons, message
    ids)."""

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


@dataclass
class IngestMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.accepted = Counter(
            "kuaijing_ingest_accepted_total", "Pings accepted", ["kind", "source"], registry=self.registry
        )
        self.rejected = Counter(
            "kuaijing_ingest_rejected_total",
            "Pings rejected to the dead-letter topic",
            ["reason", "source"],
            registry=self.registry,
        )
        self.produce_seconds = Histogram(
            "kuaijing_ingest_produce_seconds",
            "Time from handing a batch to Kafka until all records are acked",
            ["source"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )
        self.accepted_by, self.rejected_by = Children(self.accepted), Children(self.rejected)
        self.produce_seconds_by = Children(self.produce_seconds)
        self.consumer_lag = Gauge(
            "kuaijing_consumer_lag",
            "Records behind the partition's high watermark",
            ["group", "topic"],
            registry=self.registry,
        )
        self.history_rows = Counter(
            "kuaijing_history_rows_total",
            "Rows made durable by the history writer (after dedup)",
            ["table"],
            registry=self.registry,
        )
        self.registry_revision = Gauge(
            "kuaijing_ingest_registry_revision",
            "Registry revision held in the unit cache",
            registry=self.registry,
        )

        self.jt808_frames = Counter(
            "kuaijing_jt808_frames_total",
            "JT/T 808 frames received, by message id",
            ["message"],
            registry=self.registry,
        )
        self.jt808_frames_by = Children(self.jt808_frames)  # message ids: at most 65,536 values
        self.jt808_skipped = Counter(
            "kuaijing_jt808_unsupported_total",
            "JT/T 808 messages of ids the gateway does not handle",
            registry=self.registry,
        )
        self.jt808_sessions = Gauge("kuaijing_jt808_sessions", "Open terminal connections", registry=self.registry)
        self.jt808_closed = Counter(
            "kuaijing_jt808_closed_total",
            "Terminal connections the gateway closed, by why (a limit, or the terminal's own logout or hang-up)",
            ["reason"],
            registry=self.registry,
        )

    def set_lag(self, group: str, lag_by_topic: dict[str, int]) -> None:
        for topic, lag in lag_by_topic.items():
            self.consumer_lag.labels(group, topic).set(lag)
