"""The analytics service's composition root: settings in, a FastAPI app out, built by the shared service builder."""

from __future__ import annotations

from functools import partial

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.analytics.adapters.store import AnalyticsStore
from services.analytics.api import router
from services.analytics.consumer import consume_call_events
from services.analytics.settings import AnalyticsSettings
from shared.contract.topics import CALLS, Producer
from shared.infra.kafka import started_consumer
from shared.web.service import Runtime, ServiceSpec, create_service_app, serve


def create_app(settings: AnalyticsSettings) -> FastAPI:
    async def start(runtime: Runtime[AnalyticsSettings]) -> AnalyticsStore:
        store = AnalyticsStore(runtime.pool)
        runtime.supervisor.spawn(
            "call-events", partial(_run_consumer, settings=settings, store=store, producer=runtime.producer)
        )
        return store

    spec = ServiceSpec(
        name="analytics",
        title="Kuaijing analytics",
        description="Response latency per patrol platform against the 1-3-5-15 promise.",
        routers=[router],
        metrics=CollectorRegistry(),
        start=start,
    )
    return create_service_app(spec, settings, pool_size=settings.pool_size)


def main(port: int | None = None) -> int:
    return serve(create_app, AnalyticsSettings(), port=port)


async def _run_consumer(*, settings: AnalyticsSettings, store: AnalyticsStore, producer: Producer) -> None:
    async with started_consumer(
        settings.kafka, CALLS, group_id=settings.analytics_group, client_id="kuaijing-analytics"
    ) as consumer:
        await consume_call_events(
            consumer=consumer,
            store=store,
            producer=producer,
            batch_size=settings.history_batch_size,
            poll_ms=settings.consumer_poll_ms,
        )
