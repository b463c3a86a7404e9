"""The dispatcher's composition root: settings in, a FastAPI app out, resources owned by the lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import UTC, datetime
from functools import partial

from fastapi import FastAPI

from services.dispatcher.adapters.outbox import OutboxRelay
from services.dispatcher.adapters.store import PostgresDispatchStore
from services.dispatcher.api import router
from services.dispatcher.consumer import (
    assign_from,
    follow_positions,
    follow_statuses,
    history_offsets,
    tail_consumer,
)
from services.dispatcher.domain.eta import CircuityEta
from services.dispatcher.events import EventHub
from services.dispatcher.metrics import DispatcherMetrics
from services.dispatcher.service import DispatchRules, DispatchService
from shared.contract.topics import POSITIONS, UNIT_STATUS
from shared.infra.supervision import Supervisor
from shared.settings import Settings
from shared.web.errors import install_error_handlers
from shared.web.probes import Readiness, probes_router
from shared.web.service import open_service_resources, register_readiness

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    metrics = DispatcherMetrics()
    readiness = Readiness()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            resources = await open_service_resources(stack, settings, client_id="kuaijing-dispatcher", pool_size=10)
            pool, producer = resources.pool, resources.producer
            relay = OutboxRelay(pool, producer)
            service = DispatchService(
                store=PostgresDispatchStore(pool),
                outbox=relay,
                hub=EventHub(),
                eta=CircuityEta(circuity=settings.eta_circuity),
                rules=DispatchRules(
                    arrival_radius_m=settings.arrival_radius_m,
                    max_position_age_s=settings.max_position_age_s,
                    recommendations=settings.recommendations,
                ),
            )
            started = datetime.now(UTC)
            await service.load()
            caught_up = asyncio.Event()
            positions = tail_consumer(settings.kafka)
            statuses = tail_consumer(settings.kafka)
            await positions.start()
            stack.push_async_callback(positions.stop)
            await statuses.start()
            stack.push_async_callback(statuses.stop)
            partitions = await assign_from(
                positions, POSITIONS, await history_offsets(settings.kafka, settings.history_group)
            )
            await assign_from(statuses, UNIT_STATUS, None)

            supervisor = Supervisor()
            stack.push_async_callback(supervisor.aclose)
            supervisor.spawn("outbox-relay", relay.run)
            supervisor.spawn(
                "positions-tail",
                partial(
                    follow_positions,
                    consumer=positions,
                    partitions=partitions,
                    service=service,
                    producer=producer,
                    caught_up=caught_up,
                    batch_size=settings.history_batch_size,
                    poll_ms=settings.consumer_poll_ms,
                ),
            )
            supervisor.spawn(
                "unit-status-tail",
                partial(follow_statuses, consumer=statuses, service=service, producer=producer, poll_ms=200),
            )
            supervisor.spawn("registry-follow", partial(service.follow_registry, settings.registry_poll_s))
            await asyncio.wait_for(caught_up.wait(), timeout=120)
            log.info("live map ready in %.1f s", (datetime.now(UTC) - started).total_seconds())

            register_readiness(readiness, resources)
            _observe(service, metrics)
            app.state.service = service
            yield
            log.info("dispatcher stopping")
            await relay.publish_pending()

    app = FastAPI(
        title="Kuaijing dispatcher",
        version="0.1.0",
        description="Live map of every unit, exact nearest-unit recommendations and the 110 call lifecycle.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.include_router(router)
    app.include_router(probes_router(metrics.registry, readiness))
    install_error_handlers(app)
    return app


def _observe(service: DispatchService, metrics: DispatcherMetrics) -> None:
    """Gauges read when scraped: counting a large fleet on a timer would stall the event loop between scrapes."""
    metrics.units.labels("online").set_function(lambda: service.fleet_counts(service.clock())[0])
    metrics.units.labels("offline").set_function(lambda: service.fleet_counts(service.clock())[1])
    metrics.open_calls.set_function(lambda: service.open_call_count)
    metrics.sse_subscribers.set_function(lambda: service.subscribers)
