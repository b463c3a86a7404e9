"""One service builder for all three: the lifespan, the probes, the error table, the supervisor and typed state.

Every service opens the same resources in the same order (the pool with migrations applied, the contract's
topics, the producer), hands them to its own `start` to build its state and background loops, and is ready only
once that returned. On SIGTERM the loops are cancelled first, then the resources close in reverse.
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

import asyncpg
from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, FastAPI, Request
from prometheus_client import CollectorRegistry

from shared.infra.kafka import ensure_topics, started_producer
from shared.infra.postgres import UNREACHABLE, apply_migrations, open_pool
from shared.infra.supervision import Supervisor
from shared.settings import ServiceSettings
from shared.web.admission import EXEMPT_PATHS, AdmissionControl
from shared.web.errors import install_error_handlers
from shared.web.log_throttle import throttle_libraries
from shared.web.probes import Readiness, probes_router

log = logging.getLogger(__name__)

S = TypeVar("S")
C = TypeVar("C", bound=ServiceSettings)


@dataclass(frozen=True, slots=True)
class Runtime(Generic[C]):
    """What a service's `start` is given: its settings and the resources the builder opened for it."""

    settings: C
    stack: AsyncExitStack
    """Close what `start` opens on it; it unwinds in reverse once the loops were cancelled."""
    pool: asyncpg.Pool
    producer: AIOKafkaProducer
    supervisor: Supervisor
    """Long-running loops: restarted with backoff on failure, cancelled on exit."""


@dataclass(frozen=True, slots=True)
class ServiceSpec(Generic[C, S]):
    name: str
    title: str
    description: str
    routers: Sequence[APIRouter]
    metrics: CollectorRegistry
    start: Callable[[Runtime[C]], Awaitable[S]]
    """Builds the service's state (the object its routes call) and spawns its loops."""


def create_service_app(spec: ServiceSpec[C, S], settings: C, *, pool_size: int) -> FastAPI:
    readiness = Readiness()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tune_collector(settings.gc_young_threshold)
        async with AsyncExitStack() as stack:
            pool = await stack.enter_async_context(open_pool(settings.database, max_size=pool_size))
            async with pool.acquire() as conn:
                await apply_migrations(conn)
            await ensure_topics(settings.kafka_client)
            producer = await stack.enter_async_context(
                started_producer(settings.kafka_client, client_id=f"kuaijing-{spec.name}")
            )
            supervisor = Supervisor()
            stack.push_async_callback(supervisor.aclose)
            state = await spec.start(Runtime(settings, stack, pool, producer, supervisor))
            _check_infrastructure(readiness, pool, producer)
            app.state.service = state
            # What start-up built (code, settings, the dispatcher's live map) lives as long as the process: out of
            # the collector's generations, it is never traversed again by a full collection.
            gc.freeze()
            log.info("%s ready: Kafka %s, PostgreSQL %s", spec.name, settings.kafka, redact(settings.database))
            yield
            log.info("%s stopping", spec.name)
            # Loops first, then what `start` opened, then the producer and the pool: nothing is flushed into a
            # resource that is already closed.
            await supervisor.aclose(settings.shutdown_timeout_s / 2)

    app = FastAPI(title=spec.title, version="0.1.0", description=spec.description, lifespan=lifespan)
    app.state.settings = settings
    for router in spec.routers:
        app.include_router(router)
    app.include_router(probes_router(spec.metrics, readiness))
    app.add_middleware(
        AdmissionControl,
        limit=settings.max_in_flight,
        wait_s=settings.admission_wait_s,
        registry=spec.metrics,
        exempt=EXEMPT_PATHS,
    )
    install_error_handlers(app, unreachable=UNREACHABLE)
    return app


def tune_collector(young_threshold: int) -> None:
    """Collect the young generation after this many new container objects instead of Python's 700.

    A service allocates thousands of short-lived objects per request or batch (a body of 500 pings makes several
    thousand). At 700 a collection runs in the middle of nearly every one and promotes what is still in use to the
    older generations, whose full collections then pause every request in flight. With room for a whole batch, most
    of it is gone before the young collection, which still finds young reference cycles; the older thresholds stay
    Python's."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young_threshold, older, oldest)


def service_state(request: Request, kind: type[S]) -> S:
    """The state `start` built, typed for a route's dependency."""
    state = request.app.state.service
    if not isinstance(state, kind):
        raise TypeError(f"this app serves {type(state).__name__}, not {kind.__name__}")
    return state


def settings_of(request: Request, kind: type[C]) -> C:
    settings = request.app.state.settings
    if not isinstance(settings, kind):
        raise TypeError(f"this app runs with {type(settings).__name__}, not {kind.__name__}")
    return settings


def _check_infrastructure(readiness: Readiness, pool: asyncpg.Pool, producer: AIOKafkaProducer) -> None:
    """`/readyz`: a real Kafka metadata request and a real query."""

    async def kafka() -> None:
        await producer.client.fetch_all_metadata()

    async def postgres() -> None:
        await pool.fetchval("SELECT 1")

    readiness.register("kafka", kafka)
    readiness.register("postgres", postgres)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", stream=sys.stderr
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    throttle_libraries("aiokafka")


def serve(create_app: Callable[[C], FastAPI], settings: C, *, port: int | None = None) -> int:
    """Run one service in the foreground until SIGTERM / Ctrl-C (`kuaijing serve` and `python -m services.X`)."""
    import uvicorn

    configure_logging(settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.bind_host,
        port=port or settings.port,
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=round(settings.shutdown_timeout_s),
    )
    return 0


def redact(dsn: str) -> str:
    """A DSN without its password, for logs."""
    head, sep, tail = dsn.rpartition("@")
    if not sep:
        return dsn
    scheme, _, credentials = head.partition("://")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}@{tail}"
