"""The batch publisher against the real broker: nothing lost, each key in order and on the partition `send` picks."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.errors import ProducerClosed

from services.ingest.adapters.batch_publisher import BatchPublisher, batch_publisher
from shared.contract.topics import Topic
from shared.errors import UnavailableError
from shared.infra.kafka import ensure_topics, started_producer
from shared.settings import CommonSettings

pytestmark = pytest.mark.integration

SENDERS = 20
RECORDS = 50


async def read_all(bootstrap: str, topic: Topic[Any], count: int) -> list[tuple[int, bytes, dict[str, int]]]:
    consumer = AIOKafkaConsumer(topic.name, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None)
    records: list[tuple[int, bytes, dict[str, int]]] = []
    try:
        await consumer.start()
        async with asyncio.timeout(30):
            while len(records) < count:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    records += [(r.partition, r.key or b"", orjson.loads(r.value or b"{}")) for r in batch]
    finally:
        await consumer.stop()
    return records


async def test_concurrent_senders_lose_nothing_and_keep_each_keys_order_and_partition(settings: CommonSettings) -> None:
    topic: Topic[Any] = Topic(f"test.batch-publisher.{uuid.uuid4().hex[:8]}", "sender", None, partitions=4)
    await ensure_topics(settings.kafka, [topic])
    async with started_producer(settings.kafka) as producer:
        # Where `send` itself puts each key: the publisher must agree, or a unit's records would split.
        expected = {
            f"k{s}".encode(): (await (await producer.send(topic.name, b'{"seq": -1}', key=f"k{s}".encode()))).partition
            for s in range(SENDERS)
        }
        async with batch_publisher(producer) as publisher:

            async def sender(s: int) -> None:
                for seq in range(RECORDS):
                    value = orjson.dumps({"seq": seq})
                    delivered = await publisher.send(topic.name, value, key=f"k{s}".encode())
                    if seq % 10 == 9:
                        await delivered  # some senders wait for their acknowledgement mid-stream
                        await asyncio.sleep(0)

            await asyncio.gather(*(sender(s) for s in range(SENDERS)))

    records = await read_all(settings.kafka, topic, SENDERS * (RECORDS + 1))
    assert len(records) == SENDERS * (RECORDS + 1)
    sequences: dict[bytes, list[int]] = defaultdict(list)
    for partition, key, value in records:
        assert partition == expected[key], key
        sequences[key].append(value["seq"])
    assert all(seqs == [-1, *range(RECORDS)] for seqs in sequences.values()), sequences
    assert len({partition for partition, _, _ in records}) > 1  # the keys really were spread


async def test_a_batch_kafka_refuses_fails_every_sender_waiting_on_it(settings: CommonSettings) -> None:
    topic: Topic[Any] = Topic(f"test.batch-publisher.{uuid.uuid4().hex[:8]}", "sender", None, partitions=1)
    await ensure_topics(settings.kafka, [topic])
    async with started_producer(settings.kafka) as producer:
        publisher = BatchPublisher(producer)
        await (await publisher.send(topic.name, b"{}", key=b"k"))
        await producer.stop()
        first = await publisher.send(topic.name, b"{}", key=b"k")
        second = await publisher.send(topic.name, b"{}", key=b"k")
        for delivered in (first, second):
            with pytest.raises(UnavailableError) as refused:
                await delivered
            assert isinstance(refused.value.__cause__, ProducerClosed)
        await publisher.drain()
