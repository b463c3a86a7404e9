"""The ingest service's composition root: settings in, a FastAPI app out, built by the shared service builder."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta
from functools import partial

from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from services.ingest.adapters.batch_publisher import batch_publisher
from services.ingest.adapters.history_store import HistoryStore
from services.ingest.adapters.registry_cache import UnitDirectoryCache
from services.ingest.adapters.terminal_store import TerminalStore
from services.ingest.api import Ingest, router
from services.ingest.consumer import consume_raw_telemetry
from services.ingest.domain.telemetry import TelemetryRules
from services.ingest.gateway import Jt808Gateway, Limits, allow_many_connections
from services.ingest.history import write_history
from services.ingest.intake import TelemetryIntake
from services.ingest.metrics import IngestMetrics
from services.ingest.settings import IngestSettings
from shared.contract.registry import UnitDirectory
from shared.contract.topics import POSITIONS, TELEMETRY_RAW, VIDEO
from shared.infra.kafka import started_consumer
from shared.web.service import Runtime, ServiceSpec, create_service_app, serve

log = logging.getLogger(__name__)


def create_app(settings: IngestSettings) -> FastAPI:
    metrics = IngestMetrics()

    async def start(runtime: Runtime[IngestSettings]) -> Ingest:
        directory = UnitDirectoryCache(runtime.pool)
        await directory.refresh()
        publisher = await runtime.stack.enter_async_context(batch_publisher(runtime.producer))
        intake = TelemetryIntake(
            producer=publisher,
            directory=directory.current,
            metrics=metrics,
            rules=TelemetryRules(max_future_skew=timedelta(seconds=settings.max_future_skew_s)),
            ack_timeout_s=settings.publish_timeout_s,
        )
        supervisor = runtime.supervisor
        supervisor.spawn("registry-follow", partial(directory.follow, settings.registry_poll_s))
        if settings.raw_consumer_enabled:
            supervisor.spawn(
                "raw-telemetry-consumer",
                partial(
                    _run_raw_consumer, settings=settings, intake=intake, metrics=metrics, directory=directory.current
                ),
            )
        if settings.history_writer_enabled:
            supervisor.spawn(
                "history-writer",
                partial(
                    _run_history_writer,
                    settings=settings,
                    store=HistoryStore(runtime.pool),
                    producer=runtime.producer,
                    metrics=metrics,
                ),
            )
        if settings.jt808_enabled:
            gateway = Jt808Gateway(
                intake=intake,
                directory=directory.current,
                terminals=TerminalStore(runtime.pool),
                metrics=metrics,
                limits=Limits(
                    idle_timeout_s=settings.jt808_idle_timeout_s,
                    auth_timeout_s=settings.jt808_auth_timeout_s,
                    frame_timeout_s=settings.jt808_frame_timeout_s,
                    max_sessions=settings.jt808_max_sessions,
                    max_discarded_bytes=settings.jt808_max_discarded_bytes,
                    max_failed_logins=settings.jt808_max_failed_logins,
                ),
            )
            allow_many_connections()
            server = await asyncio.start_server(
                gateway.serve, settings.bind_host, settings.jt808_port, limit=settings.jt808_read_limit_bytes
            )
            runtime.stack.push_async_callback(_close_server, server, gateway)
            log.info("JT/T 808 gateway listening on %s:%s", settings.bind_host, settings.jt808_port)
        return Ingest(intake, directory)

    spec = ServiceSpec(
        name="ingest",
        title="Kuaijing ingest",
        description="Telemetry in from patrol-vehicle terminals: validated, published to Kafka, stored in history.",
        routers=[router],
        metrics=metrics.registry,
        start=start,
    )
    return create_service_app(spec, settings, pool_size=settings.pool_size)


def main(port: int | None = None) -> int:
    return serve(create_app, IngestSettings(), port=port)


async def _run_raw_consumer(
    *,
    settings: IngestSettings,
    intake: TelemetryIntake,
    metrics: IngestMetrics,
    directory: Callable[[], UnitDirectory],
) -> None:
    async with started_consumer(
        settings.kafka_client, TELEMETRY_RAW, group_id=settings.raw_group, client_id="kuaijing-ingest-raw"
    ) as consumer:
        await consume_raw_telemetry(
            group=settings.raw_group,
            consumer=consumer,
            intake=intake,
            directory=directory,
            metrics=metrics,
            batch_size=settings.history_batch_size,
            poll_ms=settings.consumer_poll_ms,
        )


async def _run_history_writer(
    *, settings: IngestSettings, store: HistoryStore, producer: AIOKafkaProducer, metrics: IngestMetrics
) -> None:
    async with started_consumer(
        settings.kafka_client, POSITIONS, VIDEO, group_id=settings.history_group, client_id="kuaijing-history"
    ) as consumer:
        await write_history(
            group=settings.history_group,
            consumer=consumer,
            store=store,
            producer=producer,
            metrics=metrics,
            batch_size=settings.history_batch_size,
            poll_ms=settings.consumer_poll_ms,
        )


async def _close_server(server: asyncio.Server, gateway: Jt808Gateway) -> None:
    server.close()
    await gateway.disconnect_all()
    await server.wait_closed()
