"""The ingest service's composition root: settings in, a FastAPI app out, resources owned by the lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from functools import partial

from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from services.ingest.adapters.batch_publisher import batch_publisher
from services.ingest.adapters.history_store import HistoryStore
from services.ingest.adapters.registry_cache import UnitDirectoryCache
from services.ingest.adapters.terminal_store import TerminalStore
from services.ingest.api import router
from services.ingest.consumer import consume_raw_telemetry
from services.ingest.domain.telemetry import TelemetryRules
from services.ingest.gateway import Jt808Gateway, allow_many_connections
from services.ingest.history import write_history
from services.ingest.intake import TelemetryIntake
from services.ingest.metrics import IngestMetrics
from shared.contract.registry import UnitDirectory
from shared.contract.topics import POSITIONS, TELEMETRY_RAW, VIDEO
from shared.infra.kafka import started_consumer
from shared.infra.supervision import Supervisor
from shared.settings import Settings
from shared.web.errors import install_error_handlers
from shared.web.probes import Readiness, probes_router
from shared.web.service import open_service_resources, register_readiness

log = logging.getLogger(__name__)


def create_app(settings: Settings) -> FastAPI:
    metrics = IngestMetrics()
    readiness = Readiness()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            resources = await open_service_resources(stack, settings, client_id="kuaijing-ingest", pool_size=8)
            pool, producer = resources.pool, resources.producer
            directory = UnitDirectoryCache(pool)
            await directory.refresh()
            publisher = await stack.enter_async_context(batch_publisher(producer))
            intake = TelemetryIntake(
                producer=publisher,
                directory=directory.current,
                metrics=metrics,
                rules=TelemetryRules(max_future_skew=timedelta(seconds=settings.max_future_skew_s)),
            )
            supervisor = Supervisor()
            stack.push_async_callback(supervisor.aclose)
            supervisor.spawn("registry-follow", partial(directory.follow, settings.registry_poll_s))
            if settings.raw_consumer_enabled:
                supervisor.spawn(
                    "raw-telemetry-consumer",
                    partial(
                        _run_raw_consumer,
                        settings=settings,
                        intake=intake,
                        metrics=metrics,
                        directory=directory.current,
                    ),
                )
            if settings.history_writer_enabled:
                supervisor.spawn(
                    "history-writer",
                    partial(
                        _run_history_writer,
                        settings=settings,
                        store=HistoryStore(pool),
                        producer=producer,
                        metrics=metrics,
                    ),
                )

            if settings.jt808_enabled:
                gateway = Jt808Gateway(
                    intake=intake,
                    directory=directory.current,
                    terminals=TerminalStore(pool),
                    metrics=metrics,
                    idle_timeout_s=settings.jt808_idle_timeout_s,
                )
                allow_many_connections()
                server = await asyncio.start_server(
                    gateway.serve, settings.bind_host, settings.jt808_port, limit=1 << 20
                )
                stack.push_async_callback(_close_server, server, gateway)
                log.info("JT/T 808 gateway listening on %s:%s", settings.bind_host, settings.jt808_port)

            register_readiness(readiness, resources)
            app.state.intake = intake
            app.state.directory = directory
            log.info("ingest ready: Kafka %s, PostgreSQL %s", settings.kafka, _redact(settings.database))
            yield
            log.info("ingest stopping: draining consumers and flushing the producer")

    app = FastAPI(
        title="Kuaijing ingest",
        version="0.1.0",
        description="Telemetry in from patrol-vehicle terminals: validated, published to Kafka, stored in history.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.include_router(router)
    install_error_handlers(app)
    app.include_router(probes_router(metrics.registry, readiness))

    return app


async def _run_raw_consumer(
    *,
    settings: Settings,
    intake: TelemetryIntake,
    metrics: IngestMetrics,
    directory: Callable[[], UnitDirectory],
) -> None:
    async with started_consumer(
        settings.kafka, TELEMETRY_RAW, group_id=settings.raw_group, client_id="kuaijing-ingest-raw"
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
    *, settings: Settings, store: HistoryStore, producer: AIOKafkaProducer, metrics: IngestMetrics
) -> None:
    async with started_consumer(
        settings.kafka, POSITIONS, VIDEO, group_id=settings.history_group, client_id="kuaijing-history"
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


def _redact(dsn: str) -> str:
    head, sep, tail = dsn.rpartition("@")
    if not sep:
        return dsn
    scheme, _, credentials = head.partition("://")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}@{tail}"
