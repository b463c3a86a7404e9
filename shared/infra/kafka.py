"""Kafka clients as the project configures them: idempotent acks=all producers, manually committed consumers.

Every service gets its producer and consumers here, so delivery guarantees are decided once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from shared.contract.topics import ALL_TOPICS, Topic
from shared.errors import InfrastructureError

log = logging.getLogger(__name__)


def make_producer(bootstrap: str, *, client_id: str = "kuaijing") -> AIOKafkaProducer:
    """acks=all with idempotence: a retried send never duplicates and never reorders a unit's records."""
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=256 * 1024,
        request_timeout_ms=30_000,
    )


def make_consumer(
    bootstrap: str, *topics: Topic[Any], group_id: str, client_id: str = "kuaijing", max_poll_records: int = 5_000
) -> AIOKafkaConsumer:
    """Manual commits only: callers commit after what a batch produced is durable (at-least-once)."""
    return AIOKafkaConsumer(
        *(t.name for t in topics),
        bootstrap_servers=bootstrap,
        client_id=client_id,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_poll_records,
        fetch_max_bytes=16 * 1024 * 1024,
        max_partition_fetch_bytes=4 * 1024 * 1024,
        isolation_level="read_committed",
    )


@asynccontextmanager
async def started_producer(bootstrap: str, *, client_id: str = "kuaijing") -> AsyncIterator[AIOKafkaProducer]:
    producer = make_producer(bootstrap, client_id=client_id)
    try:
        await producer.start()
    except KafkaError as e:
        await producer.stop()
        raise InfrastructureError(f"cannot reach Kafka at {bootstrap}: {e}") from e
    try:
        yield producer
    finally:
        await producer.stop()


@asynccontextmanager
async def started_consumer(
    bootstrap: str, *topics: Topic[Any], group_id: str, client_id: str = "kuaijing"
) -> AsyncIterator[AIOKafkaConsumer]:
    """A group consumer from `make_consumer`, started, and stopped however the block ends."""
    consumer = make_consumer(bootstrap, *topics, group_id=group_id, client_id=client_id)
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


async def ensure_topics(bootstrap: str, topics: Iterable[Topic[Any]] = ALL_TOPICS) -> list[str]:
    """Create the contract's topics that do not exist yet; returns the names it created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="kuaijing-admin")
    try:
        await admin.start()
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t.name not in existing]
        created: list[str] = []
        for topic in missing:
            try:
                await admin.create_topics(
                    [NewTopic(topic.name, topic.partitions, 1, topic_configs=topic.config())],
                    timeout_ms=30_000,
                )
                created.append(topic.name)
            except TopicAlreadyExistsError:
                continue
        if created:
            await _wait_for_topics(admin, created)
            log.info("created Kafka topics %s", ", ".join(created))
        await _wait_for_group_coordinator(admin)
        return created
    except KafkaError as e:
        raise InfrastructureError(f"cannot create topics on {bootstrap}: {e}") from e
    finally:
        await admin.close()


async def _wait_for_topics(admin: AIOKafkaAdminClient, names: list[str], timeout_s: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        if set(names) <= set(await admin.list_topics()):
            return
        await asyncio.sleep(0.1)
    raise InfrastructureError(f"topics {names} did not appear within {timeout_s} s")


async def _wait_for_group_coordinator(admin: AIOKafkaAdminClient, timeout_s: float = 30.0) -> None:
    """A fresh broker creates its offsets topic on the first coordinator lookup and answers "not available" until
    it exists; waiting here spares every service's first group join a burst of aiokafka errors in the log."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        try:
            await admin.find_coordinator("kuaijing")
            return
        except KafkaError:
            if asyncio.get_running_loop().time() >= deadline:
                raise
            await asyncio.sleep(0.2)


async def describe_cluster(bootstrap: str, timeout_s: float = 10.0) -> dict[str, object]:
    """A real metadata request: the broker answers only once it is unfenced and serving."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="kuaijing-probe", request_timeout_ms=5_000)
    try:
        async with asyncio.timeout(timeout_s):
            await admin.start()
            info: dict[str, object] = await admin.describe_cluster()
            return info
    finally:
        await admin.close()


async def consumer_lag(consumer: AIOKafkaConsumer) -> dict[str, int]:
    """Records between each assigned partition's position and its high watermark, summed per topic."""
    per_topic: dict[str, int] = {}
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        if highwater is None:
            continue
        behind = max(0, highwater - await consumer.position(tp))
        per_topic[tp.topic] = per_topic.get(tp.topic, 0) + behind
    return per_topic
