"""The analytics service's composition root: settings in, a FastAPI app out, resources owned by the lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.analytics.adapters.store import AnalyticsStore
from services.analytics.api import router
from services.analytics.consumer import consume_call_events
from shared.contract.topics import CALLS, Producer
from shared.infra.kafka import started_consumer
from shared.infra.supervision import Supervisor
from shared.settings import Settings
from shared.web.errors import install_error_handlers
from shared.web.probes import Readiness, probes_router
from shared.web.service import open_service_resources, register_readiness

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    registry = CollectorRegistry()
    readiness = Readiness()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            resources = await open_service_resources(stack, settings, client_id="kuaijing-analytics", pool_size=8)
            pool, producer = resources.pool, resources.producer
            store = AnalyticsStore(pool)
            supervisor = Supervisor()
            stack.push_async_callback(supervisor.aclose)
            supervisor.spawn("call-events", partial(_run_consumer, settings=settings, store=store, producer=producer))

            register_readiness(readiness, resources)
            app.state.store = store
            log.info("analytics ready")
            yield

    app = FastAPI(
        title="Kuaijing analytics",
        version="0.1.0",
        description="Response latency per patrol platform against the 1-3-5-15 promise.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.include_router(router)
    install_error_handlers(app)
    app.include_router(probes_router(registry, readiness))
    return app


async def _run_consumer(*, settings: Settings, store: AnalyticsStore, producer: Producer) -> None:
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
