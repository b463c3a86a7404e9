"""Session fixtures: one real Kafka broker and one real PostgreSQL cluster, started by the project's own code.

Outside CI a machine that cannot run them skips the integration tests with the reason; under `CI=true` that is a
failure, never a skip.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from services.analytics.settings import AnalyticsSettings
from services.dispatcher.settings import DispatcherSettings
from services.ingest.adapters.history_store import HistoryStore
from services.ingest.history import write_history
from services.ingest.metrics import IngestMetrics
from services.ingest.settings import IngestSettings
from shared.contract.registry import Platform, PlatformKind, RegistryImport, Unit, UnitKind
from shared.contract.topics import POSITIONS, VIDEO
from shared.errors import KuaijingError
from shared.infra.embedded.kafka import EmbeddedKafka
from shared.infra.embedded.postgres import EmbeddedPostgres
from shared.infra.kafka import ensure_topics, started_consumer, started_producer
from shared.infra.postgres import connect, migrate, open_pool
from shared.infra.registry_store import import_registry
from shared.settings import CommonSettings
from tests.harness import eventually, free_port


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Tests marked `no_cover` (simulated nights and property tests that run the same pure Python thousands of
    times; the lines they reach, example tests reach too) run untraced: tracing made them 2.5 times slower. In an
    xdist worker pytest-cov has started two tracers and its marker pauses only one, so this hook, inside pytest-cov's
    own, lifts whichever is left for the test's duration."""
    if item.get_closest_marker("no_cover") is None:
        return (yield)
    tracer = sys.gettrace()
    sys.settrace(None)
    try:
        return (yield)
    finally:
        sys.settrace(tracer)


TOKENS = {"terminal": "t-terminal", "dispatcher": "t-dispatcher", "viewer": "t-viewer", "admin": "t-admin"}


@dataclass(frozen=True)
class Infra:
    kafka: str
    database: str
    data_dir: Path


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    data_dir = tmp_path_factory.mktemp("kuaijing-data")
    kafka_port = free_port()
    kafka = EmbeddedKafka(data_dir, port=kafka_port, controller_port=free_port())
    postgres = EmbeddedPostgres(data_dir, port=free_port())
    try:
        postgres.start()
        kafka.start()
        asyncio.run(ensure_topics(kafka.bootstrap))
        asyncio.run(migrate(postgres.url))
    except (KuaijingError, OSError) as e:
        kafka.stop()
        postgres.stop()
        if os.environ.get("CI") == "true":
            pytest.fail(f"Kafka/PostgreSQL could not be started for the tests: {e}")
        pytest.skip(f"Kafka/PostgreSQL could not be started: {e}")
    yield Infra(kafka=kafka.bootstrap, database=postgres.url, data_dir=data_dir)
    kafka.stop()
    postgres.stop()


def _common(infra: Infra) -> dict[str, object]:
    return {
        "kafka_bootstrap": infra.kafka,
        "database_url": infra.database,
        "api_tokens": ",".join(f"{role}:{token}" for role, token in TOKENS.items()),
        "data_dir": infra.data_dir,
        "consumer_poll_ms": 100,
    }


@pytest.fixture(scope="session")
def settings(infra: Infra) -> CommonSettings:
    """What every test's own clients need: the real broker and database, the tokens."""
    return CommonSettings(**_common(infra))  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def ingest_settings(infra: Infra) -> IngestSettings:
    return IngestSettings(
        **_common(infra),  # type: ignore[arg-type]
        registry_poll_s=0.2,
        history_writer_enabled=False,
        jt808_port=free_port(),
        jt808_idle_timeout_s=5.0,
    )


@pytest.fixture(scope="session")
def dispatcher_settings(infra: Infra) -> DispatcherSettings:
    city = Path(__file__).resolve().parents[1] / "services" / "simulator" / "cities" / "shaoyang.json"
    return DispatcherSettings(
        **_common(infra),  # type: ignore[arg-type]
        registry_poll_s=0.2,
        city_file=city,
        coverage_every_s=0.5,
        coverage_sample_s=1.0,
    )


@pytest.fixture(scope="session")
def analytics_settings(infra: Infra) -> AnalyticsSettings:
    return AnalyticsSettings(**_common(infra), dashboard_max_age_s=0.5)  # type: ignore[arg-type]


@pytest.fixture
async def db(infra: Infra) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(infra.database)
    yield conn
    await conn.close()


class RunningService:
    """A service app served by a real uvicorn on a free loopback port, in the test's event loop."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RunningService:
        self._task = asyncio.create_task(self._server.serve())

        async def started() -> bool:
            if self._task is not None and self._task.done():
                self._task.result()
            return self._server.started

        await eventually(started, timeout_s=60, what="the service to start")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task


@pytest.fixture(scope="session")
async def ingest(ingest_settings: IngestSettings) -> AsyncIterator[RunningService]:
    from services.ingest.app import create_app

    async with RunningService(create_app(ingest_settings)) as service:
        yield service


@pytest.fixture
async def client(ingest: RunningService) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=ingest.url, headers={"Authorization": f"Bearer {TOKENS['terminal']}"}, timeout=30
    ) as c:
        yield c


@dataclass(frozen=True)
class Fleet:
    platform_id: str
    unit_ids: list[str]
    terminal_ids: list[str]


async def register_fleet(database: str, units: int = 3, *, terminals: bool = False) -> Fleet:
    tag = uuid.uuid4().hex[:8]
    platform = Platform(
        id=f"P-{tag}", name=f"Test platform {tag}", kind=PlatformKind.FAST_RESPONSE, lat=27.24, lon=111.47
    )
    unit_list = [
        Unit(
            id=f"U-{tag}-{i}",
            platform_id=platform.id,
            kind=UnitKind.PATROL_CAR,
            callsign=f"{i:04d}",
            terminal_id=f"1{int(tag, 16) % 10**9:09d}{i}" if terminals else None,
        )
        for i in range(units)
    ]
    conn = await connect(database)
    try:
        await import_registry(conn, RegistryImport(platforms=[platform], units=unit_list))
    finally:
        await conn.close()
    return Fleet(
        platform_id=platform.id,
        unit_ids=[u.id for u in unit_list],
        terminal_ids=[u.terminal_id or "" for u in unit_list],
    )


@pytest.fixture
async def fleet(infra: Infra, ingest: RunningService) -> Fleet:
    """Three fresh units, known to the running ingest service before the test starts."""
    registered = await register_fleet(infra.database)

    async def known() -> bool:
        return all(u in ingest.app.state.service.directory.current().by_unit for u in registered.unit_ids)

    await eventually(known, what="ingest to learn the new units")
    return registered


@pytest.fixture
async def terminals(infra: Infra, ingest: RunningService) -> Fleet:
    """Three fresh units with JT/T 808 terminal numbers, known to the running ingest service's gateway."""
    registered = await register_fleet(infra.database, units=3, terminals=True)

    async def known() -> bool:
        directory = ingest.app.state.service.directory.current()
        return all(t in directory.by_terminal for t in registered.terminal_ids)

    await eventually(known, what="ingest to learn the terminals")
    return registered


@pytest.fixture(scope="session")
async def dispatcher(dispatcher_settings: DispatcherSettings) -> AsyncIterator[RunningService]:
    from services.dispatcher.app import create_app

    async with RunningService(create_app(dispatcher_settings)) as service:
        yield service


def console(service: RunningService, role: str = "dispatcher") -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=service.url, headers={"Authorization": f"Bearer {TOKENS[role]}"}, timeout=30)


@pytest.fixture
async def crew(infra: Infra, dispatcher: RunningService) -> Fleet:
    """Three fresh units, known to the running dispatcher before the test starts."""
    registered = await register_fleet(infra.database)

    async def known() -> bool:
        return set(registered.unit_ids) <= {u.unit_id for u in dispatcher.app.state.service.units()}

    await eventually(known, what="the dispatcher to learn the new units")
    return registered


@pytest.fixture(scope="session")
async def analytics(analytics_settings: AnalyticsSettings) -> AsyncIterator[RunningService]:
    from services.analytics.app import create_app

    async with RunningService(create_app(analytics_settings)) as service:
        yield service


@pytest.fixture
async def history_writer(settings: CommonSettings) -> AsyncIterator[None]:
    """A history writer in its own consumer group, in process, for the length of one test."""
    group = f"history-{uuid.uuid4().hex[:8]}"
    async with (
        open_pool(settings.database) as pool,
        started_producer(settings.kafka) as producer,
        started_consumer(settings.kafka, POSITIONS, VIDEO, group_id=group) as consumer,
    ):
        task = asyncio.create_task(
            write_history(
                group=group, consumer=consumer, store=HistoryStore(pool), producer=producer,
                metrics=IngestMetrics(), batch_size=1000, poll_ms=100,
            )
        )  # fmt: skip
        try:
            yield
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
