"""What every service opens first, in the same order: the pool (with migrations applied), the contract's topics,
the producer, and the readiness checks over them. Kept in one place so the three lifespans cannot drift apart."""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass

import asyncpg
from aiokafka import AIOKafkaProducer

from shared.infra.kafka import ensure_topics, started_producer
from shared.infra.postgres import apply_migrations, open_pool
from shared.settings import Settings
from shared.web.probes import Readiness


@dataclass(frozen=True, slots=True)
class ServiceResources:
    pool: asyncpg.Pool
    producer: AIOKafkaProducer


async def open_service_resources(
    stack: AsyncExitStack, settings: Settings, *, client_id: str, pool_size: int
) -> ServiceResources:
    """Open them on `stack` (closed in reverse when it unwinds)."""
    pool = await stack.enter_async_context(open_pool(settings.database, max_size=pool_size))
    async with pool.acquire() as conn:
        await apply_migrations(conn)
    await ensure_topics(settings.kafka)
    producer = await stack.enter_async_context(started_producer(settings.kafka, client_id=client_id))
    return ServiceResources(pool, producer)


def register_readiness(readiness: Readiness, resources: ServiceResources) -> None:
    """`/readyz`: a real Kafka metadata request and a real query."""

    async def kafka() -> None:
        await resources.producer.client.fetch_all_metadata()

    async def postgres() -> None:
        await resources.pool.fetchval("SELECT 1")

    readiness.register("kafka", kafka)
    readiness.register("postgres", postgres)
