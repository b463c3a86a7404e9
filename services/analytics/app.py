"""The analytics service's composition root: settings in, a FastAPI app out, built by the shared service builder."""

from __future__ import annotations

import math
from functools import partial

from fastapi import FastAPI

from services.analytics.adapters.store import AnalyticsStore
from services.analytics.api import Analytics, dashboard_page, router
from services.analytics.consumer import consume_call_events
from services.analytics.metrics import AnalyticsMetrics
from services.analytics.settings import AnalyticsSettings
from services.analytics.snapshot import Snapshot
from shared.contract.topics import CALLS, COVERAGE, Producer
from shared.infra.kafka import started_consumer
from shared.web.service import Runtime, ServiceSpec, create_service_app, serve

DASHBOARD_TIMEOUT_S = 60.0
"""Longest a dashboard snapshot may take (1.3 s with a million calls in the week on the 2-core development machine);
past it the computation is abandoned and the next screen's request starts another."""


def create_app(settings: AnalyticsSettings) -> FastAPI:
    metrics = AnalyticsMetrics()

    async def start(runtime: Runtime[AnalyticsSettings]) -> Analytics:
        store = AnalyticsStore(runtime.pool)
        runtime.supervisor.spawn(
            "call-events",
            partial(_run_consumer, settings=settings, store=store, producer=runtime.producer, metrics=metrics),
        )
        dashboard = Snapshot(
            partial(dashboard_page, store, settings.report_timezone),
            max_age_s=settings.dashboard_max_age_s,
            timeout_s=DASHBOARD_TIMEOUT_S,
            name="dashboard",
            observe=metrics.dashboard_seconds.observe,
        )
        runtime.stack.push_async_callback(dashboard.aclose)
        metrics.dashboard_age.set_function(lambda: math.nan if (age := dashboard.age_s()) is None else age)
        return Analytics(store, metrics, dashboard)

    spec = ServiceSpec(
        name="analytics",
        title="Kuaijing analytics",
        description="Response latency per patrol platform against the 1-3-5-15 promise.",
        routers=[router],
        metrics=metrics.registry,
        start=start,
    )
    return create_service_app(spec, settings, pool_size=settings.pool_size)


def main(port: int | None = None) -> int:
    return serve(create_app, AnalyticsSettings(), port=port)


async def _run_consumer(
    *, settings: AnalyticsSettings, store: AnalyticsStore, producer: Producer, metrics: AnalyticsMetrics
) -> None:
    async with started_consumer(
        settings.kafka_client, CALLS, COVERAGE, group_id=settings.analytics_group, client_id="kuaijing-analytics"
    ) as consumer:
        await consume_call_events(
            group=settings.analytics_group,
            consumer=consumer,
            store=store,
            producer=producer,
            metrics=metrics,
            batch_size=settings.history_batch_size,
            poll_ms=settings.consumer_poll_ms,
        )
