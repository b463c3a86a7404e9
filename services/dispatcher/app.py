"""The dispatcher's composition root: settings in, a FastAPI app out, built by the shared service builder."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from pathlib import Path

import orjson
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from services.dispatcher.adapters.outbox import OutboxRelay
from services.dispatcher.adapters.store import PostgresDispatchStore
from services.dispatcher.api import create_call_direct, router
from services.dispatcher.consumer import (
    assign_from,
    follow_calls,
    follow_positions,
    follow_statuses,
    history_offsets,
    tail_consumer,
)
from services.dispatcher.domain.base_map import base_map
from services.dispatcher.domain.eta import CircuityEta
from services.dispatcher.domain.speed_profiles import SpeedProfiles
from services.dispatcher.events import EventHub
from services.dispatcher.metrics import DispatcherMetrics
from services.dispatcher.service import CoverageWatch, DispatchRules, DispatchService, EtaLearning, MoveUpRules
from services.dispatcher.settings import DispatcherSettings
from shared.city import read_city_file
from shared.contract.registry import ZoneClass
from shared.contract.topics import CALLS, POSITIONS, UNIT_STATUS
from shared.errors import InfrastructureError
from shared.infra.kafka import running
from shared.web.direct_route import DirectRoute
from shared.web.service import Runtime, ServiceSpec, create_service_app, serve

log = logging.getLogger(__name__)

CONSOLE = Path(__file__).resolve().parent / "console"
"""The command-centre console, served at /console/: static files, MapLibre GL JS in vendor/ (deploy/bootstrap.sh)."""


def create_app(settings: DispatcherSettings) -> FastAPI:
    metrics = DispatcherMetrics()

    async def start(runtime: Runtime[DispatcherSettings]) -> DispatchService:
        started = time.monotonic()
        relay = OutboxRelay(runtime.pool, runtime.producer)
        # Unwinds before the producer stops: what was committed during the last requests reaches Kafka now.
        runtime.stack.push_async_callback(relay.flush)
        service = DispatchService(
            store=PostgresDispatchStore(runtime.pool),
            outbox=relay,
            hub=EventHub(),
            eta=CircuityEta(circuity=settings.eta_circuity),
            rules=DispatchRules(
                arrival_radius_m=settings.arrival_radius_m,
                max_position_age_s=settings.max_position_age_s,
                recommendations=settings.recommendations,
            ),
            event_time=settings.clock == "event",
            move_up=MoveUpRules(level=settings.move_up_level) if settings.move_up else None,
            learning=EtaLearning(history=timedelta(days=settings.eta_history_days), every_s=settings.eta_relearn_s)
            if settings.eta_model == "learned"
            else None,
        )
        positions, statuses, calls = [
            await runtime.stack.enter_async_context(running(tail_consumer(settings.kafka_client, gathered=gathered)))
            for gathered in (False, False, True)
        ]
        # The status and call tails are pinned before memory is rebuilt: what another replica commits meanwhile is
        # both in the rebuild and on the tails, and applying it twice changes nothing.
        await assign_from(statuses, UNIT_STATUS, None)
        await assign_from(calls, CALLS, None)
        await service.load()
        caught_up = asyncio.Event()
        partitions = await assign_from(
            positions, POSITIONS, await history_offsets(settings.kafka_client, settings.history_group)
        )

        supervisor = runtime.supervisor
        supervisor.spawn("outbox-relay", relay.run)
        supervisor.spawn(
            "positions-tail",
            partial(
                follow_positions,
                consumer=positions,
                partitions=partitions,
                service=service,
                caught_up=caught_up,
                batch_size=settings.history_batch_size,
                poll_ms=settings.consumer_poll_ms,
            ),
        )
        supervisor.spawn(
            "unit-status-tail",
            partial(
                follow_statuses,
                consumer=statuses,
                service=service,
                producer=runtime.producer,
                poll_ms=settings.consumer_poll_ms,
            ),
        )
        supervisor.spawn(
            "calls-tail",
            partial(
                follow_calls,
                consumer=calls,
                service=service,
                poll_ms=settings.consumer_poll_ms,
            ),
        )
        supervisor.spawn("registry-follow", partial(service.follow_registry, settings.registry_poll_s))
        if settings.eta_model == "learned":
            supervisor.spawn("eta-learning", service.follow_eta_learning)
        watch = CoverageWatch(every_s=settings.coverage_every_s, sample_s=settings.coverage_sample_s)
        supervisor.spawn("coverage", partial(service.follow_coverage, watch))
        if settings.move_up:
            supervisor.spawn("move-up-advice", service.follow_dispatches)
        try:
            await asyncio.wait_for(caught_up.wait(), timeout=settings.ready_timeout_s)
        except TimeoutError as e:
            raise InfrastructureError(
                f"the positions tail did not catch up within {settings.ready_timeout_s:.0f} s"
            ) from e
        log.info("live map ready in %.1f s", time.monotonic() - started)
        _observe(service, metrics)
        return service

    spec = ServiceSpec(
        name="dispatcher",
        title="Kuaijing dispatcher",
        description="Live map of every unit, exact nearest-unit recommendations and the 110 call lifecycle.",
        routers=[router],
        metrics=metrics.registry,
        start=start,
    )
    app = create_service_app(spec, settings, pool_size=settings.pool_size)
    app.router.routes.insert(0, DirectRoute(app, "POST", "/v1/calls", create_call_direct))
    city = None if settings.city_file is None else read_city_file(settings.city_file)
    app.state.base_map = orjson.dumps(base_map(city))
    app.mount("/console", StaticFiles(directory=CONSOLE, html=True), name="console")
    return app


def main(port: int | None = None) -> int:
    return serve(create_app, DispatcherSettings(), port=port)


def _observe(service: DispatchService, metrics: DispatcherMetrics) -> None:
    """Gauges read when scraped: counting a large fleet on a timer would stall the event loop between scrapes."""
    metrics.units.labels("online").set_function(lambda: service.fleet_counts(service.clock())[0])
    metrics.units.labels("offline").set_function(lambda: service.fleet_counts(service.clock())[1])
    metrics.open_calls.set_function(lambda: service.open_call_count)
    metrics.sse_subscribers.set_function(lambda: service.subscribers)

    def profiles_figure(read: Callable[[SpeedProfiles], float]) -> Callable[[], float]:
        return lambda: float("nan") if service.profiles is None else read(service.profiles)

    metrics.eta_age.set_function(profiles_figure(lambda p: (service.clock() - p.built_at).total_seconds()))
    metrics.eta_cells.set_function(profiles_figure(lambda p: p.cells))
    metrics.eta_trips.set_function(profiles_figure(lambda p: p.trips))
    for zone_class in ZoneClass:

        def share(zone_class: ZoneClass = zone_class) -> float:
            figure = service.coverage().classes.get(zone_class)
            return float("nan") if figure is None else figure.share

        metrics.coverage.labels(zone_class.value).set_function(share)
