"""Dispatcher metrics, in a registry of their own per app instance."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class DispatcherMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.nearest_seconds = Histogram(
            "kuaijing_dispatcher_nearest_seconds",
            "Time to answer a nearest-units search in process",
            registry=self.registry,
            buckets=(25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 1e-2),
        )
        self.calls_created = Counter("kuaijing_dispatcher_calls_created_total", "Calls created", registry=self.registry)
        self.units = Gauge("kuaijing_dispatcher_units", "Units on the live map", ["state"], registry=self.registry)
        self.open_calls = Gauge("kuaijing_dispatcher_open_calls", "Calls not yet closed", registry=self.registry)
        self.sse_subscribers = Gauge(
            "kuaijing_dispatcher_sse_subscribers", "Consoles following /v1/events", registry=self.registry
        )
        self.eta_age = Gauge(
            "kuaijing_dispatcher_eta_model_age_seconds",
            "Age of the learned ETA's speed profiles (NaN while none is built, or with KUAIJING_ETA_MODEL=configured)",
            registry=self.registry,
        )
        self.eta_cells = Gauge(
            "kuaijing_dispatcher_eta_profile_cells", "H3 cells with a learned speed profile", registry=self.registry
        )
        self.eta_trips = Gauge(
            "kuaijing_dispatcher_eta_trips", "Drives to calls the learned ETA was built from", registry=self.registry
        )
        self.coverage = Gauge(
            "kuaijing_dispatcher_coverage_share",
            "Share of a zone class's cells an available unit reaches within its target (NaN: no zone of the class)",
            ["zone_class"],
            registry=self.registry,
        )
